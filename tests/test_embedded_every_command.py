"""Every judging command runs end to end on the embedded judge (issue 13): no ``--judge``, and no ``--mode`` or
every ``--mode``.

SmolLM2-135M-Instruct on real weights, through the CLI: ``score`` and ``compare`` in every mode (``compare`` with
and without a rubric), ``eval``, the five ``generate`` methods, ``refine`` and ``weight``, on the shipped examples and
on real preference pairs (one LLMBar and one JudgeBench pair of ``../shared/data/pairs``). Each run must exit 0,
write a file that validates, and have no error verdict and no reply that failed to parse. The JSON modes
(per_criterion, per_response, likert's scale replies, holistic) and the generators' JSON replies only hold because
the backend decodes under each request's JSON schema: before, the 135M model wrote prose and every such verdict was
an ``error`` and every generation "no usable generation". The verdicts' quality is that of a 135M model and is not
checked; where a method keeps only rubrics that the judge finds consistent with the labels, the test asks it to keep
its (marked) attempt. Inputs are tiny (one or two items, small ``--max-tokens``) so that the file runs in a few
minutes on 2 CPU cores; one judge cache serves the module (identical requests only: every mode asks its own).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rubrickit.cli import app
from rubrickit.rubric.files import load_rubric, load_rubric_set

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("llguidance")

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
MODES = [None, "per_criterion", "per_response", "logprob", "likert", "holistic"]
LLMBAR = "llmbar/Adversarial/Neighbor/0076"
JUDGEBENCH = "judgebench/857131ea-e0ef-517b-9f31-996edf4dc832"
# What a reply that cannot be read leaves in a command's output (the engine's error verdicts and parse reasons,
# the generators' skip and rejection reasons).
UNREAD = ("no JSON object", "unfinished JSON", "parse_failed", "malformed generation", "no usable generation",
          "ParseError", "cannot hold a reply")

RUBRIC = """\
rubrickit: 1
id: e2e
title: Embedded end-to-end rubric
criteria:
- id: answers
  text: The response answers the question that was asked.
  weight: 2
- id: apologises
  text: The response apologises for the problem.
  applies_if: The user reports a problem with an order or a product.
- id: clarity
  text: How clear the response is.
  scale:
    1: Hard to follow.
    3: Mostly clear.
    5: Clear throughout.
"""


@pytest.fixture(scope="module")
def embedded(_session_cache_dir: Path) -> Path:
    """The embedded model, converted once into the folder the CLI reads it from (``RUBRICKIT_CACHE_DIR``)."""
    from rubrickit.backends.embedded import locate_embedded_gguf, prepare_embedded_model
    from rubrickit.errors import MissingDependencyError

    try:
        locate_embedded_gguf()
    except MissingDependencyError as error:
        pytest.skip(str(error))
    return prepare_embedded_model(_session_cache_dir)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> None:
    """One intra-op thread: the test machines have 2 cores shared with other jobs, where two spinning threads make
    decoding ten times slower (measured: 150 s instead of 15 s for one per_criterion item)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, embedded: Path) -> Path:
    """The module's folder: the inputs below and one judge cache."""
    root = tmp_path_factory.mktemp("embedded-every-command")
    (root / "rubric.yaml").write_text(RUBRIC, encoding="utf-8")
    # Two criteria for the real pairs (their prompts are long): the plain one and the conditional one.
    (root / "small.yaml").write_text(RUBRIC.split("- id: clarity")[0].replace("id: e2e", "id: e2e-small"),
                                     encoding="utf-8")
    ticket = json.loads((REPO / "examples" / "support-tickets.jsonl").read_text(encoding="utf-8").splitlines()[0])
    _jsonl(root / "items.jsonl", [ticket])
    pair = json.loads((REPO / "examples" / "support-pairs.jsonl").read_text(encoding="utf-8").splitlines()[0])
    _jsonl(root / "pair.jsonl", [pair])
    responses = _rows(REPO / "examples" / "refine" / "responses.jsonl")[:2]  # a good and a poor answer
    _jsonl(root / "responses.jsonl", responses)
    return root


@pytest.fixture(scope="module")
def real(work: Path) -> Path:
    """One LLMBar and one JudgeBench pair (the shared samples), as a pairs file; skipped without the shared data."""
    folder = Path(os.environ.get("RUBRICKIT_SHARED_DATA") or REPO.parent / "shared" / "data") / "pairs"
    if not folder.is_dir():
        pytest.skip(f"shared evaluation data not found at {folder} (clone ../shared beside the repo or set "
                    "RUBRICKIT_SHARED_DATA)")
    rows = []
    for name, wanted in (("llmbar", LLMBAR), ("judgebench", JUDGEBENCH)):
        with gzip.open(folder / f"{name}.jsonl.gz", "rt", encoding="utf-8") as handle:
            rows.append(next(r for r in map(json.loads, handle) if r["id"] == wanted))
    path = work / "real-pairs.jsonl"
    _jsonl(path, rows)
    _jsonl(work / "real-items.jsonl", [{"id": f"{r['id']}/A", "prompt": r["prompt"], "response": r["response_a"]}
                                       for r in rows])
    return path


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def run(work: Path, *args: object) -> str:
    """Run the CLI with the module's judge cache; the command must exit 0 and leave no unread reply behind."""
    result = runner.invoke(app, [str(a) for a in args] + ["--cache-dir", str(work / "cache")])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    assert not [marker for marker in UNREAD if marker in result.output], result.output
    return result.output


def mode_args(mode: str | None) -> list[str]:
    return [] if mode is None else ["--mode", mode]


def check_scores(path: Path, count: int) -> None:
    records = _rows(path)
    assert len(records) == count
    for record in records:
        assert record["judge"].startswith("embedded:") and record["reward"] is not None, record
        assert not [v for v in record["verdicts"] if v["verdict"] == "error" or v["error"]], record["verdicts"]


def check_pairs(path: Path, count: int) -> None:
    records = _rows(path)
    assert len(records) == count
    for record in records:
        assert record["errors"] == 0 and record["winner"] in ("A", "B", "tie"), record
        assert not [d for d in record["details"] if d["error"]], record["details"]


# --------------------------------------------------------------------------- score and compare, every mode


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m or "default")
def test_score_in_every_mode_on_a_shipped_ticket(work: Path, mode: str | None) -> None:
    out = work / f"score-{mode}.jsonl"
    output = run(work, "score", "-r", work / "rubric.yaml", "-d", work / "items.jsonl", "-o", out, *mode_args(mode))
    # The run header names the judge's mode; with no --mode it is the embedded judge's own (logprob) and says so.
    header = "mode logprob (this judge's default" if mode is None else f"mode {mode}"
    assert f"judge embedded:smollm2-135m-instruct, {header}" in output
    check_scores(out, 1)


@pytest.mark.shared_data
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m or "default")
def test_score_in_every_mode_on_real_pairs(work: Path, real: Path, mode: str | None) -> None:
    out = work / f"score-real-{mode}.jsonl"
    run(work, "score", "-r", work / "small.yaml", "-d", work / "real-items.jsonl", "-o", out, *mode_args(mode))
    check_scores(out, 2)


@pytest.mark.parametrize("rubric", [True, False], ids=["rubric", "direct"])
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m or "default")
def test_compare_in_every_mode(work: Path, mode: str | None, rubric: bool) -> None:
    out = work / f"compare-{mode}-{rubric}.jsonl"
    extra = ["-r", work / "rubric.yaml"] if rubric else []
    run(work, "compare", "-d", work / "pair.jsonl", *extra, "-o", out, *mode_args(mode))
    check_pairs(out, 1)


@pytest.mark.shared_data
def test_compare_on_a_real_pair_with_and_without_a_rubric(work: Path, real: Path) -> None:
    # per_criterion: every JSON mode of compare asks the same A-vs-B questions (one per criterion, or one direct).
    # The LLMBar pair (eval below judges the JudgeBench one directly, in per_criterion too).
    data = work / "real-pair.jsonl"
    _jsonl(data, _rows(real)[:1])
    for extra in (["-r", work / "small.yaml"], []):
        out = work / f"compare-real-{bool(extra)}.jsonl"
        run(work, "compare", "-d", data, *extra, "-o", out, "--mode", "per_criterion")
        check_pairs(out, 1)


# --------------------------------------------------------------------------- eval


@pytest.mark.shared_data
@pytest.mark.parametrize("mode", [None, "per_criterion"], ids=lambda m: m or "default")
def test_eval_on_real_pairs(work: Path, real: Path, mode: str | None) -> None:
    out, records = work / f"eval-{mode}.json", work / f"eval-{mode}.records.jsonl"
    run(work, "eval", "-d", real, "-o", out, "--records", records, *mode_args(mode))
    metrics = json.loads(out.read_text(encoding="utf-8"))
    assert metrics["n"] == 2 and metrics["errors"] == 0 and metrics["coverage"] == 1.0, metrics
    assert len([r for r in _rows(records) if r["type"] == "pair"]) == 2


# --------------------------------------------------------------------------- generate: the five methods


def check_rubric_set(path: Path) -> list:
    rubrics = load_rubric_set(path)  # validates
    assert rubrics and all(r.provenance.generator.startswith("embedded") for r in rubrics)
    for rubric in rubrics:
        assert not rubric.provenance.stats.get("parse_failures"), rubric.provenance.stats
    return rubrics


@pytest.mark.shared_data
def test_generate_contrastive_on_a_real_pair(work: Path, real: Path) -> None:
    out = work / "contrastive.rubrics.jsonl"
    run(work, "generate", "contrastive", "-d", real, "--limit", 1, "-o", out, "--max-tries", 1,
        "--keep-inconsistent", "--max-tokens", 256)
    (rubric,) = check_rubric_set(out)
    assert rubric.provenance.stats["generating_pair"] == LLMBAR


def test_generate_per_on_the_shipped_pairs(work: Path) -> None:
    out = work / "per.yaml"
    run(work, "generate", "per", "-d", REPO / "examples" / "generate" / "per" / "pairs.jsonl", "--limit", 2,
        "--max-rounds", 2, "--max-criteria", 3, "--max-tokens", 256, "-o", out)
    rubric = load_rubric(out)
    assert rubric.id == "per-general" and rubric.criteria and rubric.provenance.method == "per"


def test_generate_decompose_on_a_shipped_pool(work: Path) -> None:
    rows = _rows(REPO / "examples" / "generate" / "decompose" / "pool.jsonl")
    data = work / "pool.jsonl"
    _jsonl(data, [r for r in rows if r["prompt_id"] == "reverse-list"])
    out = work / "decompose.rubrics.jsonl"
    run(work, "generate", "decompose", "-d", data, "--max-tokens", 256, "--max-rejections", 4, "-o", out)
    check_rubric_set(out)


def test_generate_reference_on_a_shipped_prompt(work: Path) -> None:
    # Three to eight items: SmolLM2 repeats itself, and repeats are dropped, so RaR's 7 to 20 rarely survive.
    out = work / "reference.rubrics.jsonl"
    run(work, "generate", "reference", "-d", REPO / "examples" / "generate" / "reference" / "prompts.jsonl",
        "--limit", 1, "--min-items", 3, "--max-items", 8, "--max-tries", 1, "--max-tokens", 512, "-o", out)
    (rubric,) = check_rubric_set(out)
    assert 3 <= len(rubric.criteria) <= 8


def test_generate_tail_on_the_shipped_pool(work: Path) -> None:
    generate = REPO / "examples" / "generate" / "tail"
    row = _rows(generate / "pool.jsonl")[0]
    data = work / "tail-pool.jsonl"
    _jsonl(data, [{**row, "responses": row["responses"][:2]}])  # the current top two: one round, one revision
    out = work / "tail.rubrics.jsonl"
    run(work, "generate", "tail", "-d", data, "-r", generate / "start.yaml", "--rounds", 1, "--max-tokens", 512,
        "-o", out)
    (rubric,) = check_rubric_set(out)
    assert rubric.provenance.method == "tail" and rubric.provenance.stats["rounds"] == 1


# --------------------------------------------------------------------------- refine and weight


def test_refine_with_the_llm_steps(work: Path) -> None:
    refine = REPO / "examples" / "refine"
    out = work / "refined.yaml"
    run(work, "refine", refine / "noisy.yaml", "-o", out, "--dedup", "--dedup-threshold", "0.85", "--llm-overlap",
        "embedded", "--filter-nondiscriminative", work / "responses.jsonl", "--structure", "themes")
    assert load_rubric(out).criteria


@pytest.mark.shared_data
def test_refine_and_weight_on_real_pairs(work: Path, real: Path) -> None:
    refined, weighted = work / "refined-real.yaml", work / "weighted-real.yaml"
    run(work, "refine", work / "small.yaml", "-o", refined, "--filter-misaligned", real)
    assert load_rubric(refined).criteria
    run(work, "weight", work / "small.yaml", "-o", weighted, "--method", "learned", "--pairs", real, "--folds", 2)
    assert load_rubric(weighted).criteria


def test_weight_whitened_from_judged_responses(work: Path) -> None:
    out = work / "whitened.yaml"
    run(work, "weight", REPO / "examples" / "refine" / "noisy.yaml", "-o", out, "--method", "whitened",
        "--responses", work / "responses.jsonl")
    assert load_rubric(out).criteria
