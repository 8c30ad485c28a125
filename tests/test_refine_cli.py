"""``rubrickit refine`` and ``rubrickit weight`` through typer's CliRunner (files in, files out)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rubrickit.cli import app
from rubrickit.rubric import Criterion, Rubric, ScoreRecord, Verdict, load_rubric, load_rubric_set
from rubrickit.rubric.files import save_rubric, save_rubric_set

ROWS = [
    ("aligned", "The response has substance.", 2.0, "essential"),
    ("misaligned", "The response lacks substance.", 1.0, "important"),
    ("always", "The response is in English.", 1.0, "optional"),
    ("pitfall", "The response is empty of content.", -1.0, "pitfall"),
]
MET = {"aligned": (1, 0), "misaligned": (0, 1), "always": (1, 1), "pitfall": (0, 1)}  # (better, worse)


def _rubric(rid: str = "toy", prompt_id: str | None = None) -> Rubric:
    return Rubric(id=rid, scope="prompt" if prompt_id else "general", prompt_id=prompt_id,
                  criteria=[Criterion(id=i, text=t, weight=w, category=c) for i, t, w, c in ROWS])


def _write_data(tmp: Path, rubric_ids=("toy",), prompt_ids=(None,), pairs: int = 3) -> tuple[Path, Path, Path]:
    pair_rows, pool_rows, records = [], [], []
    for rid, pid in zip(rubric_ids, prompt_ids, strict=True):
        for n in range(pairs):
            pair_id = f"{rid}-{n}"
            row = {"id": pair_id, "prompt": "Q?", "response_a": f"good {pair_id}", "response_b": f"bad {pair_id}",
                   "label": "A" if n % 2 == 0 else "B"}
            if n % 2:  # label B: the better response is shown second
                row["response_a"], row["response_b"] = row["response_b"], row["response_a"]
            if pid:
                row["prompt_id"] = pid
            pair_rows.append(row)
            for side in ("A", "B"):
                better = (side == row["label"])
                item = f"{pair_id}/{side}"
                pool_rows.append({"id": item, "prompt": "Q?", "response": row[f"response_{side.lower()}"],
                                  **({"prompt_id": pid} if pid else {})})
                verdicts = [Verdict(criterion_id=c, verdict="met" if MET[c][0 if better else 1] else "unmet")
                            for c in MET]
                records.append(ScoreRecord(item_id=item, rubric_id=rid, rubric_fingerprint="sha256:0", reward=None,
                                           coverage=1.0, verdicts=verdicts).model_dump_json())
    paths = tmp / "pairs.jsonl", tmp / "pool.jsonl", tmp / "verdicts.jsonl"
    paths[0].write_text("".join(json.dumps(r) + "\n" for r in pair_rows), encoding="utf-8")
    paths[1].write_text("".join(json.dumps(r) + "\n" for r in pool_rows), encoding="utf-8")
    paths[2].write_text("".join(r + "\n" for r in records), encoding="utf-8")
    return paths


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


def test_refine_filters_write_a_valid_rubric_with_history(tmp_path: Path, runner: CliRunner) -> None:
    source = save_rubric(_rubric(), tmp_path / "in.yaml")
    pairs, pool, verdicts = _write_data(tmp_path)
    out = tmp_path / "out.yaml"
    result = runner.invoke(app, ["refine", str(source), "-o", str(out), "--filter-misaligned", str(pairs),
                                 "--filter-nondiscriminative", str(pool), "--verdicts", str(verdicts)])
    assert result.exit_code == 0, result.output
    refined = load_rubric(out)
    assert [c.id for c in refined.criteria] == ["aligned", "pitfall"]
    steps = [h["step"] for h in refined.provenance.history]
    assert steps == ["misaligned", "nondiscriminative"]
    assert refined.provenance.history[0]["parameters"]["data"].startswith(str(pairs))
    assert "misaligned" in result.output and "favours the rejected response" in result.output
    assert "0 response(s) judged" not in result.output  # nothing was judged: all verdicts were given


def test_dry_run_writes_nothing(tmp_path: Path, runner: CliRunner) -> None:
    source = save_rubric(_rubric(), tmp_path / "in.yaml")
    pairs, _, verdicts = _write_data(tmp_path)
    out = tmp_path / "out.yaml"
    result = runner.invoke(app, ["refine", str(source), "-o", str(out), "--filter-misaligned", str(pairs),
                                 "--verdicts", str(verdicts), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert not out.exists() and "dry run" in result.output and "misaligned" in result.output
    result = runner.invoke(app, ["weight", str(source), "-o", str(out), "--method", "uniform", "--dry-run"])
    assert result.exit_code == 0 and not out.exists()


def test_existing_output_needs_force(tmp_path: Path, runner: CliRunner) -> None:
    source = save_rubric(_rubric(), tmp_path / "in.yaml")
    out = tmp_path / "out.yaml"
    out.write_text("keep me", encoding="utf-8")
    result = runner.invoke(app, ["weight", str(source), "-o", str(out), "--method", "category"])
    assert result.exit_code == 1 and "--force" in result.output
    assert out.read_text(encoding="utf-8") == "keep me"
    result = runner.invoke(app, ["weight", str(source), "-o", str(out), "--method", "category", "--force"])
    assert result.exit_code == 0, result.output
    assert [c.weight for c in load_rubric(out).criteria] == [1.0, 0.7, 0.3, -0.9]


def test_rubric_set_is_refined_per_rubric(tmp_path: Path, runner: CliRunner) -> None:
    rubrics = [_rubric("r1", "q1"), _rubric("r2", "q2")]
    source = save_rubric_set(rubrics, tmp_path / "in.rubrics.jsonl")
    pairs, _, verdicts = _write_data(tmp_path, ("r1", "r2"), ("q1", "q2"))
    out = tmp_path / "out.rubrics.jsonl"
    result = runner.invoke(app, ["refine", str(source), "-o", str(out), "--filter-misaligned", str(pairs),
                                 "--verdicts", str(verdicts)])
    assert result.exit_code == 0, result.output
    refined = list(load_rubric_set(out))
    assert [r.id for r in refined] == ["r1", "r2"]
    for rubric in refined:
        assert [c.id for c in rubric.criteria] == ["aligned", "pitfall"]
        assert rubric.provenance.history[0]["stats"]["pairs"] == 3  # its own prompt's pairs only
    bad = runner.invoke(app, ["refine", str(source), "-o", str(tmp_path / "x.yaml"), "--dedup"])
    assert bad.exit_code == 1 and "rubric set" in bad.output


def test_weight_whitened_and_learned_from_files(tmp_path: Path, runner: CliRunner) -> None:
    source = save_rubric(_rubric(), tmp_path / "in.yaml")
    pairs, _, verdicts = _write_data(tmp_path, pairs=6)
    out = tmp_path / "w.yaml"
    result = runner.invoke(app, ["weight", str(source), "-o", str(out), "--method", "whitened", "--verdicts",
                                 str(verdicts)])
    assert result.exit_code == 0, result.output
    weights = {c.id: c.weight for c in load_rubric(out).criteria}
    assert weights["pitfall"] < 0 < weights["aligned"]
    history = load_rubric(out).provenance.history[-1]
    assert history["parameters"]["method"] == "whitened" and history["stats"]["responses"] == 12
    result = runner.invoke(app, ["weight", str(source), "-o", str(out), "--method", "learned", "--pairs", str(pairs),
                                 "--verdicts", str(verdicts), "--folds", "3", "--force"])
    assert result.exit_code == 0, result.output
    learned = load_rubric(out)
    weights = {c.id: c.weight for c in learned.criteria}
    assert weights["aligned"] > 0 and weights["misaligned"] < 0  # the learned negative weight makes a penalty
    assert "now a penalty" in result.output and "cv accuracy 1" in result.output
    assert learned.provenance.history[-1]["stats"]["cv_folds"] == 3


def test_learned_without_pairs_is_a_clear_error(tmp_path: Path, runner: CliRunner) -> None:
    source = save_rubric(_rubric(), tmp_path / "in.yaml")
    result = runner.invoke(app, ["weight", str(source), "-o", str(tmp_path / "o.yaml"), "--method", "learned"])
    assert result.exit_code == 1 and "--pairs" in result.output
    result = runner.invoke(app, ["weight", str(source), "-o", str(tmp_path / "o.yaml"), "--method", "magic"])
    assert result.exit_code == 1 and "uniform, category, whitened, learned" in result.output
    result = runner.invoke(app, ["refine", str(source), "-o", str(tmp_path / "o.yaml")])
    assert result.exit_code == 1 and "no step asked for" in result.output
    assert not (tmp_path / "o.yaml").exists()


def test_dedup_and_select_on_the_bundled_example(tmp_path: Path, runner: CliRunner) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "refine" / "noisy.yaml"
    out = tmp_path / "clean.yaml"
    result = runner.invoke(app, ["refine", str(example), "-o", str(out), "--dedup", "--dedup-threshold", "0.85",
                                 "--select", "mcr", "--max-criteria", "6"])
    assert result.exit_code == 0, result.output
    refined = load_rubric(out)
    removed = {r["id"] for h in refined.provenance.history for r in h["removed"]}
    assert {"answers-question-again", "polite-tone-again"} <= removed
    assert len(refined.criteria) <= 6 and [h["step"] for h in refined.provenance.history] == ["dedup", "select"]


def test_misaligned_smoke_on_the_embedded_judge(tmp_path: Path, runner: CliRunner) -> None:
    rubric = Rubric(id="smoke", criteria=[Criterion(id="answers", text="The response answers the question."),
                                          Criterion(id="french", text="The response is written in French.")])
    source = save_rubric(rubric, tmp_path / "in.yaml")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"id": "s0", "prompt": "What is 2 + 2?", "response_a": "2 + 2 = 4.",
                                 "response_b": "I like turtles.", "label": "A"}) + "\n", encoding="utf-8")
    out = tmp_path / "out.yaml"
    result = runner.invoke(app, ["refine", str(source), "-o", str(out), "--filter-misaligned", str(pairs),
                                 "--judge-mode", "logprob"])
    assert result.exit_code == 0, result.output
    entry = load_rubric(out).provenance.history[0]
    assert "2 response(s) judged with embedded" in result.output
    assert set(entry["stats"]["edges"]) == {"answers", "french"}
    assert all(isinstance(v, float) for v in entry["stats"]["edges"].values())  # logprob p_met, never an error


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "refine"


def test_documented_examples_run_on_the_bundled_files(tmp_path: Path, runner: CliRunner) -> None:
    out = tmp_path / "aligned.yaml"
    result = runner.invoke(app, ["refine", str(EXAMPLES / "noisy.yaml"), "-o", str(out), "--filter-misaligned",
                                 str(EXAMPLES / "pairs.jsonl"), "--filter-nondiscriminative",
                                 str(EXAMPLES / "responses.jsonl"), "--verdicts", str(EXAMPLES / "verdicts.jsonl")])
    assert result.exit_code == 0, result.output
    removed = {r["id"] for h in load_rubric(out).provenance.history for r in h["removed"]}
    assert removed == {"concise", "cites-source"}
    out = tmp_path / "learned.yaml"
    result = runner.invoke(app, ["weight", str(EXAMPLES / "noisy.yaml"), "-o", str(out), "--method", "learned",
                                 "--pairs", str(EXAMPLES / "pairs.jsonl"), "--verdicts",
                                 str(EXAMPLES / "verdicts.jsonl")])
    assert result.exit_code == 0, result.output
    assert load_rubric(out).criterion("concise").weight < 0 and "now a penalty" in result.output
    out = tmp_path / "white.yaml"
    result = runner.invoke(app, ["weight", str(EXAMPLES / "noisy.yaml"), "-o", str(out), "--method", "whitened",
                                 "--verdicts", str(EXAMPLES / "verdicts.jsonl")])
    assert result.exit_code == 0, result.output
    assert load_rubric(out).provenance.history[-1]["stats"]["constant_columns"] == ["cites-source"]
