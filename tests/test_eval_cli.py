"""``rubrickit eval`` / ``rubrickit report`` end to end: a real OpenAI-compatible server on 127.0.0.1, refusal of
label-leaking generation, column mappings, and the shared benchmark files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rubrickit.cli import app

sys.path.insert(0, str(Path(__file__).parent))
from oai_server import OAIServer  # noqa: E402

runner = CliRunner(env={"COLUMNS": "160"})
REPO = Path(__file__).resolve().parents[1]


def run(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def _write_pairs(path: Path, labels: str) -> Path:
    rows = []
    for n, label in enumerate(labels):
        good, bad = f"Paris is the capital of France ({n}).", f"Lyon ({n})."
        a, b = (good, bad) if label == "A" else (bad, good)
        rows.append({"id": f"q{n}", "prompt": f"Capital of France? ({n})", "response_a": a, "response_b": b,
                     "label": label, "subset": "easy" if n % 2 else "hard"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _perfect(body: dict) -> str:
    user = body["messages"][-1]["content"]
    first = user.split("<response_a>\n", 1)[1].split("\n</response_a>", 1)[0]
    return json.dumps({"rationale": "Paris is right", "winner": "A" if "Paris" in first else "B"})


def test_eval_against_an_openai_compatible_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    data = _write_pairs(tmp_path / "pairs.jsonl", "ABBAB")
    out, records, report = tmp_path / "metrics.json", tmp_path / "records.jsonl", tmp_path / "report.html"
    with OAIServer(_perfect) as server:
        code, output = run("eval", "--data", data, "--judge", "openai:judge-model", "--base-url", server.url,
                           "--probes", "position,master-key", "--probe-limit", "2", "--out", out,
                           "--records", records, "--report", report, "--cache-dir", tmp_path / "cache")
        calls = len(server.chat_bodies)
    assert code == 0, output
    assert calls == 5 * 2 + 2 * 3 * 2  # both orders of every pair, then 2 pairs x 3 master keys x 2 orders
    metrics = json.loads(out.read_text())
    assert list(metrics)[:5] == ["accuracy", "consistency", "n", "ties", "coverage"]
    assert metrics["accuracy"] == 1.0 and metrics["consistency"] == 1.0 and metrics["n"] == 5
    assert set(metrics["per_subset"]) == {"easy", "hard"}
    assert metrics["details"]["judge"] == "openai:judge-model" and metrics["details"]["accounting"]["calls"] == calls
    assert metrics["probes"]["master-key"]["rate"] == 0.0 and metrics["probes"]["position"]["rate"] == 0.0
    assert "accuracy" in output and "100.0%" in output
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert [line["type"] for line in lines].count("pair") == 5
    assert report.read_text().startswith("<!DOCTYPE html>")
    # The report command rebuilds the same report from the records alone.
    code, output = run("report", records, "-o", tmp_path / "again.html")
    assert code == 0, output
    assert (tmp_path / "again.html").read_text() == report.read_text()


def test_compare_rubrics_runs_configurations_side_by_side(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    data = _write_pairs(tmp_path / "pairs.jsonl", "AB")
    rubric = REPO / "rubrics" / "helpfulness.yaml"
    with OAIServer(_perfect) as server:
        code, output = run("eval", "--data", data, "--judge", "openai:m", "--base-url", server.url,
                           "--compare-rubrics", f"none,{rubric}", "--out", tmp_path / "m.json",
                           "--cache-dir", tmp_path / "cache")
    assert code == 0, output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert list(metrics["configs"]) == ["none", "rubric:helpfulness"]
    assert [row["config"] for row in metrics["comparison"]] == ["none", "rubric:helpfulness"]


def test_label_using_generation_method_is_refused_before_any_call(tmp_path: Path) -> None:
    data = _write_pairs(tmp_path / "pairs.jsonl", "AB")
    code, output = run("eval", "--data", data, "--judge", "fake:x", "--rubric", "generate:contrastive")
    assert code == 1 and "leak" in output and "Traceback" not in output


def test_generated_rubrics_never_see_the_gold_labels(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import asyncio

    from rubrickit.backends.fake import FakeBackend
    from rubrickit.data.items import PairItem
    from rubrickit.eval import runner as runner_module
    from rubrickit.generate import GenerationResult
    from rubrickit.judge.engine import Judge
    from rubrickit.rubric import Criterion, Rubric

    seen = []

    async def fake_agenerate(method, groups, **kwargs):
        seen.extend(groups)
        rubrics = [Rubric(id=f"r-{g.id}", prompt_id=g.id, criteria=[Criterion(id="c", text="Correct.")])
                   for g in groups]
        return GenerationResult(method=method, rubrics=rubrics)

    def script(request) -> str:
        first = request.messages[-1].content.split("<response_a>\n", 1)[1].split("\n</response_a>", 1)[0]
        return json.dumps({"rationale": "x", "winner": "A" if first == "x" else "B"})

    monkeypatch.setattr("rubrickit.generate.agenerate", fake_agenerate)
    pairs = [PairItem(id="p", prompt="Q?", response_a="x", response_b="y", label="A")]
    judge = Judge(FakeBackend(script), cache_dir=tmp_path)

    async def go():
        try:
            return await runner_module.aevaluate(pairs, judge, rubric="generate:decompose")
        finally:
            await judge.aclose()

    run_ = asyncio.run(go())
    assert seen and all(not g.comparisons for g in seen)  # no better/worse: the label was withheld
    assert run_.config == "generate:decompose" and run_.rows[0]["winner"] == "A"
    assert run_.info["generated"]["generated"] == 1
    # A second run reads the cached rubrics instead of generating again.
    seen.clear()
    judge = Judge(FakeBackend(script), cache_dir=tmp_path)
    run_ = asyncio.run(go())
    assert not seen and run_.info["generated"]["cached"] is True


def test_column_mapping_and_bad_map(tmp_path: Path) -> None:
    path = tmp_path / "custom.jsonl"
    path.write_text(json.dumps({"question": "Q", "chosen": "good", "rejected": "bad", "gold": "A"}) + "\n")
    from rubrickit.eval import load_eval_pairs

    pairs, datasets = load_eval_pairs([path], mapping={"prompt": "question", "response_a": "chosen",
                                                       "response_b": "rejected", "label": "gold"})
    assert pairs[0].response_a == "good" and pairs[0].label == "A" and datasets[pairs[0].id] == "custom"
    code, output = run("eval", "--data", path, "--judge", "fake:x", "--map", "prompt")
    assert code == 1 and "FIELD=COLUMN" in output


@pytest.mark.shared_data
def test_every_shared_pairs_file_loads_with_subsets(shared_data: Path) -> None:
    from rubrickit.eval import load_eval_pairs

    files = sorted((shared_data / "pairs").glob("*.jsonl.gz"))
    assert {f.name.split(".")[0] for f in files} >= {"llmbar", "judgebench", "rewardbench", "rm_bench"}
    pairs, datasets = load_eval_pairs(files, limit=5)
    assert len(pairs) == 5 * len(files) and all(p.subset and p.label in ("A", "B", "tie") for p in pairs)
    assert len(set(datasets.values())) == len(files)


def test_eval_records_are_written_as_pairs_finish_then_put_in_order(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    data = _write_pairs(tmp_path / "pairs.jsonl", "ABBABABBAA")
    records = tmp_path / "records.jsonl"
    partial = tmp_path / "records.jsonl.partial"
    seen: list[int] = []

    def watching(body: dict) -> str:
        # While the judge is answering, the rows of the pairs already judged are on disk.
        seen.append(len(partial.read_text().splitlines()) if partial.exists() else -1)
        return _perfect(body)

    with OAIServer(watching) as server:
        code, output = run("eval", "--data", data, "--judge", "openai:judge-model", "--base-url", server.url,
                           "--records", records, "--cache-dir", tmp_path / "cache", "--concurrency", "1")
    assert code == 0, output
    assert seen[0] == 0 and seen[-1] == 9  # one pair (2 calls) at a time: the last pair's calls see 9 rows
    assert not partial.exists()
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert lines[0]["type"] == "run"
    assert [line["pair_id"] for line in lines[1:]] == [f"q{n}" for n in range(10)]  # input order
