"""Every CLI command through typer's runner, on the shipped rubrics and on broken files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rubrickit.cli import app
from rubrickit.rubric.files import load_rubric, load_rubric_set

REPO = Path(__file__).resolve().parents[1]
RUBRICS = REPO / "rubrics"
runner = CliRunner(env={"COLUMNS": "160"})


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_validate_shipped_rubrics_passes() -> None:
    code, output = run("validate", RUBRICS)
    assert code == 0, output
    assert "5 of 5 file(s) valid" in output


def test_validate_reports_file_line_field_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "support.yaml"
    bad.write_text("id: s\ncriteria:\n  - id: a\n    text: t\n    weight: high\n")
    code, output = run("validate", tmp_path)
    assert code == 1
    assert f"{bad}:5: criteria[0].weight: expected a number, got 'high'" in output.replace("\n", "")


def test_validate_with_no_rubric_files_fails(tmp_path: Path) -> None:
    code, output = run("validate", tmp_path)
    assert code == 1 and "no rubric files" in output


def test_lint_shipped_rubrics_is_clean() -> None:
    code, output = run("lint", RUBRICS)
    assert code == 0, output
    assert "no findings" in output


def test_lint_finds_and_disable_silences(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "id: r\ncriteria:\n"
        "  - id: a\n    text: Response A is more detailed than the other response.\n"
        "  - id: b\n    text: The answer does not mention the dosage.\n    weight: -2\n"
    )
    code, output = run("lint", path)
    assert code == 1
    assert f"{path}:3: r/a: names-response:" in output.replace("\n", "")
    assert f"{path}:5: r/b: double-negative:" in output.replace("\n", "")
    code, output = run("lint", path, "--disable", "names-response,double-negative")
    assert code == 0, output


def test_lint_lists_rules() -> None:
    code, output = run("lint", RUBRICS, "--list-rules")
    assert code == 0 and "non-atomic" in output and "near-duplicate" in output


def test_show_renders_table() -> None:
    code, output = run("show", RUBRICS / "support-reply.yaml")
    assert code == 0
    assert "support-reply" in output and "answers-question" in output and "max_words" in output


def test_schema_to_stdout_and_file(tmp_path: Path) -> None:
    code, output = run("schema")
    assert code == 0
    schema = json.loads(output)
    assert "criteria" in schema["properties"]
    code, _ = run("schema", "-o", tmp_path / "s.json")
    assert code == 0 and json.loads((tmp_path / "s.json").read_text()) == schema


def test_shipped_schema_file_is_current() -> None:
    code, output = run("schema")
    assert json.loads((RUBRICS / "rubric.schema.json").read_text()) == json.loads(output), (
        "rubrics/rubric.schema.json is stale: run `rubrickit schema -o rubrics/rubric.schema.json`")


def test_diff_reports_changes_and_rejudge_need(tmp_path: Path) -> None:
    old = RUBRICS / "support-reply.yaml"
    new = tmp_path / "support-reply.yaml"
    text = old.read_text().replace("weight: 3\n", "weight: 4\n", 1).replace(
        "The response blames the customer", "The response blames the customer or their device")
    new.write_text(text)
    code, output = run("diff", old, new)
    assert code == 0
    flat = output.replace("\n", " ")
    assert "answers-question" in flat and "3" in flat and "4" in flat
    assert "blames-customer" in flat and "re-judg" in flat
    code, _ = run("diff", old, new, "--exit-code")
    assert code == 1
    code, output = run("diff", old, old, "--exit-code")
    assert code == 0 and "no semantic changes" in output


def test_convert_yaml_normalises_and_refuses_overwrite(tmp_path: Path) -> None:
    source = tmp_path / "in.yaml"
    source.write_text("id: r\ncriteria: [{id: a, text: Is short., weight: 2.0, kind: principle}]\n")
    out = tmp_path / "out.yaml"
    code, output = run("convert", source, "-o", out)
    assert code == 0, output
    assert "weight: 2\n" in out.read_text() and "kind:" not in out.read_text()
    code, output = run("convert", source, "-o", out)
    assert code == 1 and "--force" in output
    code, _ = run("convert", source, "-o", out, "--force")
    assert code == 0


def test_convert_healthbench_sample(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "hb.rubrics.jsonl"
    code, output = run("convert", shared_data / "rubrics" / "healthbench_sample.jsonl.gz", "-o", out)
    assert code == 0, output
    rubrics = load_rubric_set(out)
    assert len(rubrics) == 500 and sum(len(r.criteria) for r in rubrics) == 5965


def test_aggregate_recomputes_rewards(tmp_path: Path) -> None:
    out = tmp_path / "scores.jsonl"
    code, output = run("aggregate", "--rubric", RUBRICS / "support-reply.yaml",
                       "--verdicts", REPO / "examples" / "support-verdicts.jsonl", "-o", out)
    assert code == 0, output
    records = {r["item_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(records) == {"ticket-1", "ticket-2", "ticket-3"}
    rubric = load_rubric(RUBRICS / "support-reply.yaml")
    assert all(r["rubric_fingerprint"] == rubric.fingerprint for r in records.values())
    # ticket-3 has one error verdict: counted, excluded, coverage below 1.
    assert records["ticket-3"]["errors"] == 1 and records["ticket-3"]["coverage"] == pytest.approx(8 / 9)
    assert records["ticket-1"]["reward"] > records["ticket-3"]["reward"] > records["ticket-2"]["reward"]
    code, output = run("aggregate", "--rubric", RUBRICS / "support-reply.yaml",
                       "--verdicts", REPO / "examples" / "support-verdicts.jsonl", "-o", out)
    assert code == 1 and "--force" in output


def test_aggregate_bad_verdict_row_names_line(tmp_path: Path) -> None:
    rows = tmp_path / "v.jsonl"
    rows.write_text('{"item_id": "a", "rubric_id": "support-reply", "criterion_id": "tone", "verdict": "maybe"}\n')
    code, output = run("aggregate", "-r", RUBRICS / "support-reply.yaml", "-v", rows, "-o", tmp_path / "o.jsonl")
    assert code == 1
    assert f"{rows}:1: verdict:" in output.replace("\n", "")


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    code, output = run("show", tmp_path / "absent.yaml")
    assert code == 1
    assert output.startswith("error:") and "Traceback" not in output


def test_examples_folder_is_self_contained(tmp_path: Path) -> None:
    # A user without ../shared can run the demo: copy rubrics and examples elsewhere and aggregate there.
    shutil.copytree(RUBRICS, tmp_path / "rubrics")
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    code, output = run("aggregate", "-r", tmp_path / "rubrics" / "support-reply.yaml",
                       "-v", tmp_path / "examples" / "support-verdicts.jsonl", "-o", "-")
    assert code == 0 and output.count('"item_id"') == 3
