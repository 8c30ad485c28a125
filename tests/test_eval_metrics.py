"""Evaluation metrics pinned on scripted judges with known answers, and against direct computations."""

from __future__ import annotations

import asyncio
import json
import re

import numpy as np
import pytest

from rubrickit.backends.fake import FakeBackend
from rubrickit.data.items import PairItem
from rubrickit.eval import aevaluate, metrics_document, summarize
from rubrickit.eval.metrics import bootstrap_interval, cohen_kappa, credit, pair_metrics, reliability
from rubrickit.judge.engine import Judge
from rubrickit.rubric import Criterion, Rubric


def _pairs(labels: str, subset: str = "s") -> list[PairItem]:
    """Pairs whose gold winner says GOOD and the loser BAD; ``labels`` like "AABT" (T = tie)."""
    pairs = []
    for n, label in enumerate(labels):
        good, bad = f"GOOD answer {n}", f"BAD answer {n}"
        a, b = (good, bad) if label in "AT" else (bad, good)
        if label == "T":
            b = f"GOOD other {n}"
        pairs.append(PairItem(id=f"p{n}", prompt=f"question {n}", response_a=a, response_b=b,
                              label={"T": "tie"}.get(label, label), subset=subset))
    return pairs


def _shown(request) -> tuple[str, str]:
    text = request.messages[-1].content
    first = re.search(r"<response_a>\n(.*?)\n</response_a>", text, re.S).group(1)
    second = re.search(r"<response_b>\n(.*?)\n</response_b>", text, re.S).group(1)
    return first, second


def perfect(request) -> str:
    first, second = _shown(request)
    good = ("GOOD" in first, "GOOD" in second)
    winner = "tie" if good[0] == good[1] else ("A" if good[0] else "B")
    return json.dumps({"rationale": "the good one", "winner": winner})


def always_a(request) -> str:
    return json.dumps({"rationale": "first", "winner": "A"})


def _evaluate(script, pairs, **options):
    judge = Judge(FakeBackend(script), use_cache=False)

    async def go():
        try:
            return await aevaluate(pairs, judge, **options)
        finally:
            await judge.aclose()

    run = asyncio.run(go())
    return run, summarize(run.records())[run.config]


def test_perfect_judge_has_accuracy_and_consistency_one() -> None:
    run, m = _evaluate(perfect, _pairs("AABBBT"))
    assert (m["accuracy"], m["accuracy_strict"], m["consistency"], m["coverage"]) == (1.0, 1.0, 1.0, 1.0)
    assert m["n"] == 6 and m["ties"] == 1 and m["kappa"] == pytest.approx(1.0)
    assert m["confusion"]["A"]["A"] == 2 and m["confusion"]["tie"]["tie"] == 1
    assert m["per_subset"]["s"]["accuracy"] == 1.0


def test_always_a_judge_single_order_accuracy_is_share_of_gold_a() -> None:
    pairs = _pairs("AAABBBBB")  # 3 of 8 gold A
    _, m = _evaluate(always_a, pairs, swap=False)
    assert m["accuracy"] == pytest.approx(3 / 8)
    assert m["consistency"] is None  # one order: nothing to be consistent with


def test_always_a_judge_is_never_consistent_in_both_orders() -> None:
    pairs = _pairs("AAABBBBB")
    _, m = _evaluate(always_a, pairs)
    assert m["consistency"] == 0.0 and m["n_both_orders"] == 8
    assert m["accuracy_ab"] == pytest.approx(3 / 8) and m["accuracy_ba"] == pytest.approx(5 / 8)
    # The two orders cancel: every pair ties, which the tie policy gives half credit (strict: none).
    assert m["ties"] == 8 and m["accuracy"] == 0.5 and m["accuracy_strict"] == 0.0
    assert m["probes"] == {}


def test_position_probe_of_always_a_judge_flips_every_pair() -> None:
    _, m = _evaluate(always_a, _pairs("AABB"), probes=["position"])
    position = m["probes"]["position"]
    assert position["rate"] == 1.0 and position["n"] == 4 and position["first_rate"] == 1.0


def test_failed_judgments_are_errors_not_wrong_or_ties() -> None:
    def flaky(request) -> str:
        first, _ = _shown(request)
        return "no idea" if "answer 0" in first else perfect(request)

    _, m = _evaluate(flaky, _pairs("AABB"))
    assert m["errors"] == 1 and m["coverage"] == 0.75 and m["accuracy"] == 1.0
    assert m["failed_judgments"] == 2 and m["n_judged"] == 3


def test_credit_tie_policy() -> None:
    assert credit("A", "A") == 1 and credit("B", "A") == 0 and credit("tie", "A") == 0.5
    assert credit("tie", "A", strict=True) == 0 and credit("tie", "tie") == 1 and credit("A", "tie") == 0
    assert credit(None, "A") is None


def test_bootstrap_interval_matches_direct_numpy_percentile_bootstrap() -> None:
    values = [1, 0, 1, 1, 0.5, 0, 1, 1, 1, 0]
    rng = np.random.default_rng(7)
    data = np.asarray(values, dtype=float)
    means = [data[rng.integers(0, 10, size=10)].mean() for _ in range(500)]
    expected = (np.percentile(means, 2.5), np.percentile(means, 97.5))
    assert bootstrap_interval(values, resamples=500, seed=7) == pytest.approx(expected)
    assert bootstrap_interval(values, resamples=500, seed=7) == bootstrap_interval(values, resamples=500, seed=7)
    assert bootstrap_interval([]) is None


def test_ece_against_a_hand_computed_example() -> None:
    # bin [0.1,0.2): p 0.1, 0.15 -> conf 0.125, outcomes 0,1 -> freq 0.5 -> |diff| 0.375, weight 2/5
    # bin [0.9,1.0]: p 0.9, 0.95, 1.0 -> conf 0.95, outcomes 1,1,0 -> freq 2/3 -> |diff| 0.28333, weight 3/5
    result = reliability([0.1, 0.15, 0.9, 0.95, 1.0], [0, 1, 1, 1, 0], bins=10)
    assert result["ece"] == pytest.approx(2 / 5 * 0.375 + 3 / 5 * (0.95 - 2 / 3))
    assert [b["n"] for b in result["bins"]] == [0, 2, 0, 0, 0, 0, 0, 0, 0, 3]


def test_cohen_kappa_known_values() -> None:
    assert cohen_kappa(["A", "B", "A", "B"], ["A", "B", "A", "B"]) == pytest.approx(1.0)
    # observed 0.5, expected 0.5 -> 0
    assert cohen_kappa(["A", "A", "B", "B"], ["A", "B", "A", "B"]) == pytest.approx(0.0)
    assert cohen_kappa([], []) is None


def test_graded_labels_give_rank_correlations() -> None:
    rows = [{"label": "A", "winner": "A", "margin": m, "gold_score": g, "consistent": True}
            for m, g in [(0.1, 1), (0.5, 2), (0.9, 3), (0.3, 1.5)]]
    graded = pair_metrics(rows)["graded"]
    assert graded["spearman"] == pytest.approx(1.0) and graded["kendall"] == pytest.approx(1.0)


def test_metrics_document_has_flat_headline_keys_first_and_configs() -> None:
    rows = [{"type": "pair", "config": c, "label": "A", "winner": "A", "consistent": True, "subset": "x"}
            for c in ("none", "rubric:r")]
    document = metrics_document(summarize(rows))
    assert list(document)[:5] == ["accuracy", "consistency", "n", "ties", "coverage"]
    assert set(document["configs"]) == {"none", "rubric:r"} and "per_subset" in document
    assert "tie" in document["tie_policy"]


def test_rubric_pairwise_and_pointwise_modes_on_a_perfect_judge() -> None:
    rubric = Rubric(id="good", criteria=[Criterion(id="is-good", text="The response is GOOD.")])

    def script(request) -> str:
        text = request.messages[-1].content
        if "<response_a>" in text:
            return perfect(request)
        response = re.search(r"<response>\n(.*?)\n</response>", text, re.S).group(1)
        return json.dumps({"rationale": "x", "verdict": "met" if "GOOD" in response else "unmet"})

    for mode in ("pairwise", "pointwise"):
        run, m = _evaluate(script, _pairs("ABAB"), rubric=rubric, rubric_mode=mode)
        assert m["accuracy"] == 1.0 and run.config == "rubric:good"
