"""Hostile and broken input files end in one clean error naming the file (and line), never a traceback, hang or
memory blow-up; outputs are never overwritten without --force; empty data needs --allow-empty."""

from __future__ import annotations

import gzip
import json
import logging
import re
import time
import tracemalloc
from pathlib import Path

import click
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from rubrickit._util import io as _io
from rubrickit.cli import app
from rubrickit.data.items import load_items, load_pairs
from rubrickit.data.preferences import load_groups
from rubrickit.errors import OutputExistsError, RubricError, RubrickitError
from rubrickit.rubric.files import load_rubric, load_rubric_set, parse_rubric, validate_paths

REPO = Path(__file__).resolve().parents[1]
HOSTILE = REPO / "tests" / "data" / "hostile"
RUBRIC = REPO / "rubrics" / "support-reply.yaml"
ITEMS = REPO / "examples" / "support-tickets.jsonl"
PAIRS = REPO / "examples" / "support-pairs.jsonl"
VERDICTS = REPO / "examples" / "support-verdicts.jsonl"
runner = CliRunner(env={"COLUMNS": "160"})

H = str(HOSTILE)
# (case id, command line); {tmp} is a fresh folder, {h} the corpus folder. `validate` and `lint` report per file
# (✗ lines) and are tested on the corpus below.
CORPUS_CASES = [
    ("billion-laughs", ["show", "{h}/billion-laughs.yaml"]),
    ("billion-laughs-score", ["score", "-r", "{h}/billion-laughs.yaml", "-d", ITEMS]),
    ("deep-json-rubric", ["show", "{h}/deep-nesting.json"]),
    ("deep-yaml-rubric", ["diff", "{h}/deep-nesting.yaml", RUBRIC]),
    ("deep-rubric-set-line", ["show", "{h}/deep-line.rubrics.jsonl"]),
    ("rubric-inflates-past-limit", ["score", "-r", "{h}/inflates-past-limit.yaml.gz", "-d", ITEMS]),
    ("non-utf8-rubric", ["show", "{h}/non-utf8.yaml"]),
    ("non-utf8-rubric-diff", ["diff", RUBRIC, "{h}/non-utf8.yaml"]),
    ("non-utf8-data", ["score", "-r", RUBRIC, "-d", "{h}/non-utf8.jsonl"]),
    ("corrupt-gz-data", ["score", "-r", RUBRIC, "-d", "{h}/corrupt.jsonl.gz"]),
    ("not-gzip-pairs", ["compare", "-d", "{h}/not-gzip.jsonl.gz"]),
    ("long-line-data", ["score", "-r", RUBRIC, "-d", "{h}/long-line.jsonl.gz"]),
    ("huge-integer-data", ["score", "-r", RUBRIC, "-d", "{h}/huge-integer.jsonl"]),
    ("empty-data-score", ["score", "-r", RUBRIC, "-d", "{h}/empty.jsonl"]),
    ("empty-data-compare", ["compare", "-d", "{h}/blank-lines.jsonl"]),
    ("empty-data-eval", ["eval", "-d", "{h}/empty.jsonl"]),
    ("empty-data-generate", ["generate", "contrastive", "-d", "{h}/empty.jsonl", "-o", "{tmp}/r.rubrics.jsonl"]),
    ("empty-verdicts-aggregate", ["aggregate", "-r", RUBRIC, "-v", "{h}/empty.jsonl", "-o", "-"]),
    ("misspelt-reference", ["score", "-r", RUBRIC, "-d", "{h}/misspelt-reference.jsonl"]),
    ("misspelt-prompt-id", ["score", "-r", RUBRIC, "-d", "{h}/misspelt-prompt-id.jsonl"]),
    ("directory-as-data", ["score", "-r", RUBRIC, "-d", "{h}"]),
    ("directory-as-rubric", ["score", "-r", "{h}", "-d", ITEMS]),
    ("directory-as-verdicts", ["aggregate", "-r", RUBRIC, "-v", "{h}", "-o", "-"]),
    ("directory-as-pairs-generate", ["generate", "reference", "-d", "{h}", "-o", "{tmp}/r.rubrics.jsonl"]),
    ("missing-data", ["score", "-r", RUBRIC, "-d", "{h}/no-such-file.jsonl"]),
    ("corrupt-gz-verdicts", ["aggregate", "-r", RUBRIC, "-v", "{h}/corrupt.jsonl.gz", "-o", "-"]),
    ("corrupt-gz-refine-pairs", ["refine", RUBRIC, "--filter-misaligned", "{h}/corrupt.jsonl.gz",
                                 "-o", "{tmp}/r.yaml"]),
    ("non-utf8-weight-pairs", ["weight", RUBRIC, "--method", "learned", "--pairs", "{h}/non-utf8.jsonl",
                               "-o", "{tmp}/r.yaml"]),
    ("non-utf8-refine-verdicts", ["refine", RUBRIC, "--select", "mcr", "--verdicts", "{h}/non-utf8.jsonl",
                                  "-o", "{tmp}/r.yaml"]),
    ("non-utf8-report", ["report", "{h}/non-utf8.jsonl", "-o", "{tmp}/r.html"]),
    ("corrupt-gz-convert", ["convert", "{h}/corrupt.jsonl.gz", "-o", "{tmp}/r.yaml", "--from", "healthbench"]),
    ("deep-json-convert", ["convert", "{h}/deep-nesting.json", "-o", "{tmp}/r.yaml", "--from", "rar"]),
    ("huge-integer-convert", ["convert", "{h}/huge-integer.jsonl", "-o", "{tmp}/r.yaml"]),
]


def invoke(args: list[object], tmp: Path | None = None) -> click.testing.Result:
    text = [str(a).replace("{h}", H).replace("{tmp}", str(tmp)) for a in args]
    return runner.invoke(app, text)


def assert_one_clean_error(result: click.testing.Result) -> list[str]:
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors


@pytest.mark.parametrize("args", [case[1] for case in CORPUS_CASES], ids=[case[0] for case in CORPUS_CASES])
def test_hostile_corpus_gives_one_clean_error_line(args: list[object], tmp_path: Path) -> None:
    started = time.monotonic()
    assert_one_clean_error(invoke(args, tmp_path))
    assert time.monotonic() - started < 30


# --------------------------------------------------------------------------- YAML bombs, nesting, size


def test_yaml_aliases_are_refused_before_expanding() -> None:
    tracemalloc.start()
    try:
        started = time.monotonic()
        with pytest.raises(RubricError) as caught:
            load_rubric(HOSTILE / "billion-laughs.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 5
    assert peak < 32 << 20
    message = str(caught.value)
    assert message.startswith(f"{HOSTILE / 'billion-laughs.yaml'}:3: ")
    assert "alias" in message and "*a" in message


def test_yaml_anchor_without_alias_still_loads() -> None:
    rubric = parse_rubric("id: r\ncriteria: &c\n  - id: a\n    text: The response is polite.\n")
    assert [c.id for c in rubric.criteria] == ["a"]


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, "id: r\ncriteria:" + " [" * 100_000,
                                  "{a: " * 100_000 + "1" + "}" * 100_000])
def test_deep_nesting_in_a_rubric_is_a_clean_error(text: str, tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text(text)
    with pytest.raises(RubricError, match=r"deep\.json:\d+: .*nested more than \d+ levels"):
        load_rubric(path)


def test_deep_nesting_in_a_rubric_set_line_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.rubrics.jsonl"
    path.write_text('{"id": "ok", "prompt_id": "p", "criteria": [{"id": "a", "text": "t"}]}\n'
                    + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(RubricError, match=r"deep\.rubrics\.jsonl:2: .*nested more than \d+ levels"):
        load_rubric_set(path)


def test_rubric_file_past_the_size_limit_is_refused_without_reading_it_all() -> None:
    tracemalloc.start()
    try:
        with pytest.raises(RubricError) as caught:
            load_rubric(HOSTILE / "inflates-past-limit.yaml.gz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 48 << 20
    assert "16 MiB" in str(caught.value) and "inflates-past-limit.yaml.gz" in str(caught.value)


def test_jsonl_line_past_the_limit_is_refused_with_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_io, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "set.rubrics.jsonl"
    path.write_text('{"id": "a", "prompt_id": "p", "criteria": [{"id": "c", "text": "t"}]}\n'
                    + json.dumps({"id": "b", "prompt_id": "q", "criteria": [{"id": "c", "text": "t" * 2000}]}) + "\n")
    with pytest.raises(RubricError, match=r"set\.rubrics\.jsonl:2: .*longer than 1000 bytes"):
        load_rubric_set(path)


def test_integer_too_long_to_convert_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("id: r\ncriteria:\n  - id: a\n    text: t\n    weight: " + "9" * 5000 + "\n")
    with pytest.raises(RubricError, match=r"big\.yaml"):
        load_rubric(path)
    with pytest.raises(RubricError, match=r"huge-integer\.jsonl:1: "):
        load_items(HOSTILE / "huge-integer.jsonl")


# --------------------------------------------------------------------------- bytes, gzip, folders, missing files


def test_non_utf8_rubric_names_file_and_line() -> None:
    with pytest.raises(RubricError, match=r"non-utf8\.yaml:1: not UTF-8 text"):
        load_rubric(HOSTILE / "non-utf8.yaml")


def test_non_utf8_data_names_file_and_line() -> None:
    with pytest.raises(RubricError, match=r"non-utf8\.jsonl:2: not UTF-8 text"):
        load_items(HOSTILE / "non-utf8.jsonl")


def test_gzip_bytes_under_a_plain_name_say_so(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(gzip.compress(b'{"prompt": "p", "response": "r"}\n'))
    with pytest.raises(RubricError, match=r"data\.jsonl:1: .*gzip.*\.gz"):
        load_items(path)


@pytest.mark.parametrize("name", ["corrupt.jsonl.gz", "not-gzip.jsonl.gz"])
def test_corrupt_gzip_is_a_clean_error_in_every_reader(name: str) -> None:
    from rubrickit.judge.journal import read_records
    from rubrickit.rubric.aggregation import read_verdict_rows

    path = HOSTILE / name
    for read in (load_items, load_pairs, load_groups, load_rubric_set, read_records,
                 lambda p: list(read_verdict_rows(p))):
        with pytest.raises(RubricError, match=re.escape(str(path)) + r".*gzip"):
            read(path)


def test_gzip_cut_short_names_the_line_it_reached(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl.gz"
    rows = b"".join(json.dumps({"id": n, "prompt": "p", "response": "r"}).encode() + b"\n" for n in range(5000))
    path.write_bytes(gzip.compress(rows)[:-100])
    with pytest.raises(RubricError, match=r"data\.jsonl\.gz:\d{4}: the gzip data is corrupt or cut short"):
        load_items(path)


def test_a_folder_where_a_file_belongs_is_a_clean_error(tmp_path: Path) -> None:
    from rubrickit.eval import read_records
    from rubrickit.rubric.aggregation import read_verdict_rows

    for read in (load_rubric, load_rubric_set, load_items, load_pairs, load_groups, read_records,
                 lambda p: list(read_verdict_rows(p))):
        with pytest.raises(RubrickitError, match=re.escape(str(tmp_path)) + r".*(folder|directory)"):
            read(tmp_path)


def test_missing_files_are_clean_errors(tmp_path: Path) -> None:
    from rubrickit.eval import read_records

    missing = tmp_path / "missing.json"
    for read in (load_rubric, load_rubric_set, load_items, load_pairs, load_groups, read_records):
        with pytest.raises(RubrickitError, match=r"missing\.json.*no such file"):
            read(missing)


def test_unreadable_file_is_a_clean_error_and_validate_goes_on(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    unreadable = tmp_path / "a.yaml"
    unreadable.write_text("id: r\n")
    (tmp_path / "b.yaml").write_bytes(RUBRIC.read_bytes())
    real_open = open

    def deny(file, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - what chmod 000 does to non-root
        if Path(file) == unreadable:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(_io, "open", deny, raising=False)
    with pytest.raises(RubricError, match=r"a\.yaml: cannot read it \(permission denied\)"):
        load_rubric(unreadable)
    reports = validate_paths([tmp_path])
    assert [bool(r.problems) for r in reports] == [True, False]


def test_csv_cells_longer_than_the_csv_module_default_load(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text('prompt,response\np,"' + "x" * 200_000 + '"\n')
    rows = load_items(path)
    assert len(rows[0].response) == 200_000


# --------------------------------------------------------------------------- empty data


@pytest.mark.parametrize("loader", [load_items, load_pairs, load_groups])
@pytest.mark.parametrize("name", ["empty.jsonl", "blank-lines.jsonl"])
def test_empty_data_is_an_error_unless_allowed(loader, name: str, caplog: pytest.LogCaptureFixture) -> None:  # noqa: ANN001
    path = HOSTILE / name
    with pytest.raises(RubricError, match=f"no rows in {re.escape(str(path))}.*allow_empty"):
        loader(path)
    with caplog.at_level(logging.WARNING):
        assert loader(path, allow_empty=True) == []
    assert f"no rows in {path}" in caplog.text


def test_empty_csv_and_json_array_are_empty(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("prompt,response\n")
    (tmp_path / "d.json").write_text("[]")
    for name in ("d.csv", "d.json"):
        with pytest.raises(RubricError, match="no rows in"):
            load_items(tmp_path / name)


def test_cli_empty_data_names_allow_empty_and_with_it_does_nothing(tmp_path: Path) -> None:
    empty = HOSTILE / "empty.jsonl"
    out = tmp_path / "scores.jsonl"
    commands = [
        ["score", "-r", RUBRIC, "-d", empty, "-o", out],
        ["compare", "-d", empty, "-o", out],
        ["eval", "-d", empty, "--out", out],
        ["aggregate", "-r", RUBRIC, "-v", empty, "-o", out],
        ["refine", RUBRIC, "--filter-misaligned", empty, "-o", out],
        ["weight", RUBRIC, "--method", "learned", "--pairs", empty, "-o", out],
        *[["generate", method, "-d", empty, "-o", out] for method in
          ("contrastive", "per", "decompose", "reference", "tail")],
    ]
    for command in commands:
        (error,) = assert_one_clean_error(invoke(command))
        assert f"no rows in {empty}" in error and "--allow-empty" in error, error
        result = invoke([*command, "--allow-empty"])
        assert result.exit_code == 0, (command, result.output)
        assert not out.exists(), command


# --------------------------------------------------------------------------- validate keeps going


def test_validate_reports_every_file_past_bad_ones(tmp_path: Path) -> None:
    for name in ("billion-laughs.yaml", "non-utf8.yaml", "deep-nesting.json", "deep-line.rubrics.jsonl"):
        (tmp_path / name).write_bytes((HOSTILE / name).read_bytes())
    (tmp_path / "good.yaml").write_bytes(RUBRIC.read_bytes())
    (tmp_path / "z-corrupt.jsonl.gz").write_bytes((HOSTILE / "corrupt.jsonl.gz").read_bytes())
    reports = validate_paths([tmp_path])
    assert len(reports) == 6
    assert [r.path for r in reports if not r.problems] == [str(tmp_path / "good.yaml")]
    result = invoke(["validate", tmp_path])
    assert result.exit_code == 1 and "1 of 6 file(s) valid" in result.output, result.output
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- never overwrite without --force


def _existing(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_text("precious\n")
    return path


ABSTAINED = {"type": "pair", "config": "none", "pair_id": "p", "dataset": "d", "subset": None, "label": "A",
             "gold_score": None, "winner": None, "winner_ab": None, "winner_ba": None, "margin": None,
             "consistent": None, "p_a": None, "errors": 0, "status": "abstained", "method": None, "rationale": None,
             "error": "no rubric", "prompt": "p", "response_a": "a", "response_b": "b", "detail": None}
WRITERS = [  # (id, output suffix, command line writing OUT)
    ("schema", ".json", ["schema", "-o", "OUT"]),
    ("report", ".html", ["report", "{tmp}/records.jsonl", "-o", "OUT"]),
    ("aggregate", ".jsonl", ["aggregate", "-r", RUBRIC, "-v", VERDICTS, "-o", "OUT"]),
    ("convert", ".yaml", ["convert", RUBRIC, "-o", "OUT"]),
    ("refine", ".yaml", ["refine", RUBRIC, "--select", "mcr", "-o", "OUT"]),
    ("weight", ".yaml", ["weight", RUBRIC, "-o", "OUT"]),
    ("eval-out", ".json", ["eval", "-d", PAIRS, "--out", "OUT"]),
    ("eval-records", ".jsonl", ["eval", "-d", PAIRS, "--records", "OUT"]),
    ("eval-report", ".html", ["eval", "-d", PAIRS, "--report", "OUT"]),
    ("generate", ".jsonl", ["generate", "contrastive", "-d", PAIRS, "-o", "OUT"]),
    ("generate-per-pair-out", ".jsonl", ["generate", "per", "-d", PAIRS, "-o", "{tmp}/new.yaml",
                                         "--per-pair-out", "OUT"]),
    ("score", ".jsonl", ["score", "-r", RUBRIC, "-d", ITEMS, "-o", "OUT"]),
    ("compare", ".jsonl", ["compare", "-d", PAIRS, "-o", "OUT"]),
]


@pytest.mark.parametrize(("suffix", "command"), [w[1:] for w in WRITERS], ids=[w[0] for w in WRITERS])
def test_every_writer_refuses_to_overwrite_without_force(suffix: str, command: list[object], tmp_path: Path) -> None:
    out = _existing(tmp_path, "out" + suffix)
    (tmp_path / "records.jsonl").write_text(json.dumps(ABSTAINED) + "\n")
    (error,) = assert_one_clean_error(invoke([out if part == "OUT" else part for part in command], tmp_path))
    assert str(out) in error and "--force" in error, error
    assert out.read_text() == "precious\n"


def test_a_folder_as_output_is_a_clean_error_even_with_force(tmp_path: Path) -> None:
    for force in ([], ["--force"]):
        (error,) = assert_one_clean_error(invoke(["aggregate", "-r", RUBRIC, "-v", VERDICTS, "-o", tmp_path, *force]))
        assert str(tmp_path) in error
    (error,) = assert_one_clean_error(invoke(["convert", tmp_path, "-o", tmp_path / "r.yaml"]))
    assert "is a directory" in error


def test_schema_overwrites_with_force(tmp_path: Path) -> None:
    out = _existing(tmp_path, "schema.json")
    assert invoke(["schema", "-o", out, "--force"]).exit_code == 0
    assert json.loads(out.read_text())["$id"] == "rubrickit-rubric-v1.schema.json"


# --------------------------------------------------------------------------- misspelt columns


@pytest.mark.parametrize(("name", "column", "field"), [("misspelt-reference.jsonl", "refrence", "reference"),
                                                       ("misspelt-prompt-id.jsonl", "promt_id", "prompt_id")])
def test_misspelt_optional_column_is_an_error_with_a_suggestion(name: str, column: str, field: str) -> None:
    path = HOSTILE / name
    with pytest.raises(RubricError) as caught:
        load_items(path)
    assert str(caught.value).startswith(f"{path}:1: {column}: ")
    assert f"did you mean {field!r}?" in str(caught.value)


def test_misspelt_pair_and_group_columns(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "p", "response_a": "a", "response_b": "b", "lable": "A"}) + "\n")
    for loader in (load_pairs, load_groups):
        with pytest.raises(RubricError, match=r"pairs\.jsonl:1: lable: .*did you mean 'label'\?"):
            loader(path)
    csv_path = tmp_path / "items.csv"
    csv_path.write_text("prompt,response,Reference\np,r,x\n")
    with pytest.raises(RubricError, match=r"items\.csv:2: Reference: .*did you mean 'reference'\?"):
        load_items(csv_path)


def test_real_extra_columns_stay_in_meta(tmp_path: Path) -> None:
    rows = [{"id": "1", "prompt": "p", "response": "r", "source": "x", "subset": "s", "label_kind": "k",
             "uid": 7, "key": 3, "kwargs": {}, "model": "m", "reference_answer": "a"}]
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (item,) = load_items(path)
    assert set(item.meta) == {"source", "subset", "label_kind", "uid", "key", "kwargs", "model", "reference_answer"}
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "p", "response_a": "a", "response_b": "b", "response_c": "c",
                                 "label": "A", "source": "x"}) + "\n")
    (pair,) = load_pairs(pairs)
    assert pair.meta == {"response_c": "c", "source": "x"}


@pytest.mark.shared_data
def test_shared_pair_files_load_with_their_extra_columns(shared_data: Path) -> None:
    for path in sorted((shared_data / "pairs").glob("*.jsonl.gz")):
        pairs = load_pairs(path)
        assert pairs and {"source", "label_kind"} <= set(pairs[0].meta)


# --------------------------------------------------------------------------- suggested options exist


def _options_by_command() -> dict[str, set[str]]:
    root = get_command(app)
    found: dict[str, set[str]] = {}

    def walk(command: click.Command, name: str) -> None:
        found[name] = {opt for param in command.params
                       for opt in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]
                       if opt.startswith("--")}
        for child_name, child in getattr(command, "commands", {}).items():
            walk(child, f"{name} {child_name}".strip())

    walk(root, "")
    return found


PIP_OPTIONS = {"--no-deps", "--force-reinstall"}  # named in `pip install …` advice, not rubrickit options


def test_options_named_in_messages_exist_on_some_command() -> None:
    options = set().union(*_options_by_command().values(), PIP_OPTIONS)
    named = set()
    for path in (REPO / "rubrickit").rglob("*.py"):
        for literal in re.findall(r"(?:f?\"[^\"\n]*\"|f?'[^'\n]*')", path.read_text(encoding="utf-8")):
            named.update(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", literal))
    assert named - options == set(), "messages name options no command has"


def test_data_commands_take_map_allow_empty_and_force() -> None:
    options = _options_by_command()
    for name in ("score", "compare", "eval", "aggregate", "refine", "weight", "generate contrastive",
                 "generate per", "generate decompose", "generate reference", "generate tail"):
        assert {"--allow-empty", "--force"} <= options[name], name
    for name in ("score", "compare", "eval", "generate contrastive"):
        assert "--map" in options[name], name
    for name in ("schema", "report", "convert"):
        assert "--force" in options[name], name


def test_output_exists_error_is_raised_by_the_library(tmp_path: Path) -> None:
    from rubrickit.rubric.files import write_schema

    out = _existing(tmp_path, "schema.json")
    with pytest.raises(OutputExistsError, match="--force"):
        write_schema(out, overwrite=False)
