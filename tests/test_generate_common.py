"""The shared generation layer: JSON calls with re-asks, salts, stats, validated rubrics, atomic writes, judging a
pair with a rubric; and the selection/weighting math of DESIGN §7 against direct numpy computations."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from rubrickit.backends.base import CompletionRequest, FatalBackendError
from rubrickit.backends.fake import FakeBackend
from rubrickit.errors import OutputExistsError, RubrickitError
from rubrickit.generate import agenerate, generate
from rubrickit.generate.common import GenContext, GenerationResult, judge_pair, make_criteria, make_rubric, write_result
from rubrickit.judge import Judge, RetryPolicy
from rubrickit.judge.generator import GenerationFailed, Generator, Stats, blank_placeholders, contract_placeholders
from rubrickit.judge.prompts import PromptLibrary
from rubrickit.refine import coding_rate, greedy_coding_rate, whitened_weights
from rubrickit.rubric import Criterion, Rubric, load_rubric, load_rubric_set

NO_WAIT = RetryPolicy(max_attempts=1, base_delay=0.0, max_delay=0.0, max_retry_after=0.0)


def make_generator(script, **kwargs) -> tuple[Generator, FakeBackend]:
    backend = FakeBackend(script)
    judge = Judge(backend, use_cache=False, retry=NO_WAIT)
    return Generator(judge, PromptLibrary(), **kwargs), backend


def parse_items(obj: dict) -> list[str]:
    items = obj.get("items")
    if not isinstance(items, list) or not items:
        raise ValueError("items must be a non-empty list")
    return [str(i) for i in items]


def test_ajson_reasks_with_the_reason_then_succeeds():
    generator, backend = make_generator(["no json here", '{"items": []}', '{"items": ["a", "b"]}'], reasks=2)
    result = asyncio.run(generator.ajson("reask", {"reason": "x", "contract": "{}"}, parse_items, salt="s"))
    assert result == ["a", "b"]
    assert len(backend.requests) == 3
    # The second request re-asks: the bad reply as an assistant turn, then the reason.
    second = backend.requests[1].messages
    assert second[-2].role == "assistant" and second[-2].content == "no json here"
    assert "no JSON object in the reply" in second[-1].content
    assert "items must be a non-empty list" in backend.requests[2].messages[-1].content


def test_ajson_gives_up_with_the_last_reason_and_backend_errors_become_failures():
    generator, _ = make_generator(['{"items": 3}'], reasks=1)
    with pytest.raises(GenerationFailed, match="items must be a non-empty list"):
        asyncio.run(generator.ajson("reask", {"reason": "x", "contract": "{}"}, parse_items))
    failing, _ = make_generator([FatalBackendError("bad request", status=400)])
    with pytest.raises(GenerationFailed, match="backend error"):
        asyncio.run(failing.atext("reask", {"reason": "x", "contract": "{}"}))


def test_salts_give_distinct_seeded_samples_and_the_cache_replays_them(tmp_path):
    calls = []

    def script(request: CompletionRequest) -> str:
        calls.append(request.seed)
        return json.dumps({"items": [f"sample-{len(calls)}"]})

    judge = Judge(FakeBackend(script), cache_dir=tmp_path, retry=NO_WAIT)
    generator = Generator(judge, PromptLibrary())
    variables = {"reason": "x", "contract": "{}"}

    async def run() -> list:
        return [await generator.ajson("reask", variables, parse_items, salt=s) for s in ("try0", "try1", "try0")]

    first, second, again = asyncio.run(run())
    assert first != second and again == first
    assert len(calls) == 2 and calls[0] != calls[1] and None not in calls


def test_stats_merge_and_export():
    stats, other = Stats(), Stats()
    stats.add("tries", 2)
    other.add("tries")
    other.reject("parse failure")
    stats.merge(other)
    assert stats.as_dict() == {"tries": 3, "rejected": {"parse failure": 1}}


def test_make_criteria_slugs_unique_and_drops_blank():
    criteria = make_criteria([{"text": "Cites a source."}, {"text": "Cites a source!"}, {"text": "  "},
                              {"text": "Is rude.", "weight": -2, "kind": "hard", "id": "Not a slug"}])
    assert [c.id for c in criteria] == ["cites-a-source", "cites-a-source-2", "is-rude"]
    assert criteria[2].weight == -2 and criteria[2].kind == "hard"


def test_make_rubric_turns_validation_errors_into_failures():
    with pytest.raises(GenerationFailed, match="invalid rubric: criteria"):
        make_rubric(id="r", criteria=[])


def result_with(rubrics, general=False) -> GenerationResult:
    return GenerationResult(method="test", rubrics=rubrics, general=general)


def test_write_result_general_yaml_and_rubric_set(tmp_path):
    rubric = Rubric(id="g", criteria=[Criterion(id="c", text="Holds.")])
    path = write_result(result_with([rubric], general=True), tmp_path / "g.yaml")
    assert load_rubric(path).id == "g"
    per_prompt = [Rubric(id=f"r{i}", scope="prompt", prompt_id=f"p{i}", criteria=[Criterion(id="c", text="x")])
                  for i in range(2)]
    path = write_result(result_with(per_prompt), tmp_path / "set.rubrics.jsonl")
    assert len(load_rubric_set(path)) == 2
    with pytest.raises(RubrickitError, match="rubric set"):
        write_result(result_with(per_prompt), tmp_path / "set.yaml")


def test_write_result_never_overwrites_and_never_writes_nothing(tmp_path):
    target = tmp_path / "g.yaml"
    target.write_text("mine\n")
    rubric = Rubric(id="g", criteria=[Criterion(id="c", text="Holds.")])
    with pytest.raises(OutputExistsError):
        write_result(result_with([rubric], general=True), target)
    assert target.read_text() == "mine\n"
    empty = GenerationResult(method="m", rubrics=[], skipped=[{"prompt_id": "p", "reason": "parse failure"}])
    with pytest.raises(RubrickitError, match="parse failure"):
        write_result(empty, tmp_path / "none.yaml")
    assert not (tmp_path / "none.yaml").exists()


RUBRIC = Rubric(id="r", criteria=[Criterion(id="good", text="The response is helpful.")])


def test_judge_pair_pairwise_and_pointwise():
    def pairwise(request: CompletionRequest) -> str:
        user = request.messages[-1].content
        first = user.split("<response_a>\n", 1)[1].split("\n</response_a>", 1)[0]
        return json.dumps({"rationale": "r", "winner": "A" if first == "GOOD" else "B"})

    judge = Judge(FakeBackend(pairwise), use_cache=False, retry=NO_WAIT)
    ctx = GenContext(generator=Generator(judge, judge.library), judge=judge)
    outcome = asyncio.run(judge_pair(ctx, RUBRIC, "Q", "GOOD", "BAD", "p1"))
    assert outcome.correct is True and outcome.margin > 0 and outcome.consistent is True
    flipped = asyncio.run(judge_pair(ctx, RUBRIC, "Q", "BAD", "GOOD", "p2"))
    assert flipped.correct is False

    def pointwise(request: CompletionRequest) -> str:
        verdict = "met" if "GOOD" in request.messages[-1].content else "unmet"
        return json.dumps({"rationale": "r", "verdict": verdict})

    judge = Judge(FakeBackend(pointwise), use_cache=False, retry=NO_WAIT)
    ctx = GenContext(generator=Generator(judge, judge.library), judge=judge, compare="pointwise")
    assert asyncio.run(judge_pair(ctx, RUBRIC, "Q", "GOOD", "BAD", "p3")).correct is True
    # A tie is not correct; a failure is not correct either (None), never a win.
    assert asyncio.run(judge_pair(ctx, RUBRIC, "Q", "BAD", "BAD", "p4")).correct is False
    broken = Judge(FakeBackend(["not json"]), use_cache=False, retry=NO_WAIT, reasks=0)
    ctx = GenContext(generator=Generator(broken, broken.library), judge=broken, compare="pointwise")
    assert asyncio.run(judge_pair(ctx, RUBRIC, "Q", "GOOD", "BAD", "p5")).correct is None


def test_unknown_method_and_option_are_clear_errors(tmp_path):
    with pytest.raises(RubrickitError, match="did you mean 'decompose'"):
        generate("decompos", tmp_path / "x.jsonl")
    judge = Judge(FakeBackend(), use_cache=False)
    with pytest.raises(RubrickitError, match="unexpected keyword argument 'bogus'"):
        asyncio.run(agenerate("reference", [], generator=judge, judge=judge, bogus=1))


# --------------------------------------------------------------------------- DESIGN §7 math against numpy


def unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    z = np.random.default_rng(seed).normal(size=(n, d))
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def direct_rate(Z: np.ndarray, eps: float) -> float:
    n, d = Z.shape
    return 0.5 * np.log(np.linalg.det(np.eye(n) + d / (n * eps ** 2) * Z @ Z.T))


@pytest.mark.parametrize("eps", [0.1, 0.3, 0.5])
def test_coding_rate_matches_formula(eps):
    Z = unit_rows(6, 16, 1)
    assert coding_rate(Z, eps) == pytest.approx(direct_rate(Z, eps), rel=1e-9)
    assert coding_rate(np.zeros((0, 16)), eps) == 0.0


def test_greedy_picks_the_argmax_gain_each_step_and_skips_duplicates():
    Z = unit_rows(8, 12, 2)
    Z = np.vstack([Z, Z[3] + 1e-4])  # a near-duplicate of row 3
    selection = greedy_coding_rate(Z, epsilon=0.3, max_size=5)
    chosen: list[int] = []
    for pick in selection.selected:
        rest = [i for i in range(len(Z)) if i not in chosen]
        rates = {i: direct_rate(Z[chosen + [i]], 0.3) for i in rest}
        assert pick == max(rates, key=rates.get)
        chosen.append(pick)
    assert not {3, 8} <= set(selection.selected)
    assert selection.stopped == "cap" and len(selection.selected) == 5


def test_greedy_stops_when_gain_stays_below_threshold():
    base = unit_rows(3, 8, 3)
    Z = np.vstack([base] + [base[i % 3] + 1e-6 for i in range(6)])  # 3 distinct directions, then copies
    selection = greedy_coding_rate(Z, epsilon=0.3, min_gain=0.05, patience=2)
    assert selection.stopped == "gain"
    assert sorted(i % 3 for i in selection.selected) == [0, 1, 2]  # one row per direction (row i copies i % 3)
    assert all(g >= 0.05 for g in selection.gains)
    # Two consecutive below-threshold picks ended it; neither was kept.
    assert len(selection.rejected_gains) == 2 and all(g < 0.05 for _, g in selection.rejected_gains)
    assert selection.rate == pytest.approx(coding_rate(Z[selection.selected], 0.3))


def test_whitened_weights_match_formula_and_discount_duplicates():
    rng = np.random.default_rng(4)
    X = rng.integers(0, 2, size=(40, 3)).astype(float)
    sigma = np.cov(X, rowvar=False) + 0.1 * np.eye(3)
    vals, vecs = np.linalg.eigh(sigma)
    w = np.maximum(vecs @ np.diag(vals ** -0.5) @ vecs.T @ np.ones(3), 0)
    assert whitened_weights(X, ridge=0.1) == pytest.approx(w / w.sum())
    doubled = whitened_weights(np.hstack([X, X[:, [0]]]), ridge=0.1)
    # The two copies of criterion 0 together weigh less than twice what one copy gets next to the others.
    assert doubled[0] + doubled[3] < 2 * doubled[1:3].mean()
    assert doubled[0] == pytest.approx(doubled[3])


def test_placeholders_the_model_copies_from_the_reply_contract_are_blanked():
    # SmolLM2 under a JSON grammar copies the contract's example: "<one general sentence>" as a theme, a tip that
    # starts with the placeholder. The readers see blank strings (which they drop) and the model's own words.
    reply = ('{"themes": [{"theme": "<one general sentence>", "tips": ["<a concrete, checkable tip> Cite it", '
             '"Use <b> tags"], "criteria": ["<id of a listed criterion>", "c1"]}]}')
    generator, _ = make_generator([reply])
    variables = {"criteria": [{"id": "c1", "text": "Cites a source.", "penalty": False}], "max_themes": 2,
                 "max_tips": 2}
    theme = asyncio.run(generator.ajson("themes", variables, lambda obj: obj["themes"][0]))
    assert theme == {"theme": "", "tips": [" Cite it", "Use <b> tags"], "criteria": ["", "c1"]}
    assert contract_placeholders('{"rubrics": ["<one statement>", "..."], "n": "<x"}') == ("<one statement>", "...")
    assert blank_placeholders('["...", "It trails off..."]', ["..."]) == '["", "It trails off..."]'
