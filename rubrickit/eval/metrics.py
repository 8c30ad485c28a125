"""Agreement metrics of a judge with gold pairwise labels: accuracy (stated tie policy), both-orders consistency,
Cohen's κ, seeded percentile-bootstrap intervals, rank correlations for graded labels, and calibration of P(A).

Definitions (also in docs/evaluation.md):

- **credit** of one judged pair (the tie policy, :data:`TIE_POLICY`): gold A/B — 1 for the gold winner, 0.5 for a
  predicted ``tie``, 0 for the other response; gold ``tie`` — 1 for a predicted tie, 0 otherwise. ``accuracy`` is the
  mean credit; ``accuracy_strict`` counts a predicted tie as wrong (credit 0) against a gold winner.
- Pairs where every judgment failed (``winner`` ``None``) are **not** counted as wrong, right or tied: they are
  excluded from the accuracies and counted in ``errors``; ``coverage`` = judged / n.
- **consistency**: among pairs judged in both orders, the share whose winner with A shown first equals the winner
  with B shown first (mapped back to the original letters). A judge that always answers "the first one" scores 0.
- **per-order accuracy** (``accuracy_ab``/``accuracy_ba``): the credit of each order's winner alone.
- **Cohen's κ** between the judge's winner and the gold label over judged pairs (categories A, B, tie).
- **bootstrap 95% interval**: ``resamples`` draws with replacement of the per-pair credits from
  ``numpy.random.default_rng(seed)``, the 2.5th and 97.5th percentiles of the resampled means.
- **ECE** of P(A) (one-token judgments with probabilities): pairs with a gold A/B label, ``bins`` equal-width bins of
  the predicted P(A) (mean of the two orders); ECE = Σ_b (n_b / N) · |mean P(A) in b − share of gold A in b|.
- **Spearman / Kendall** (graded gold scores, e.g. a gold margin): rank correlation of the judge's margin with the
  gold score.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "TIE_POLICY",
    "accuracy_metrics",
    "bootstrap_interval",
    "cohen_kappa",
    "credit",
    "pair_metrics",
    "rank_correlations",
    "reliability",
]

TIE_POLICY = ("a predicted tie earns half credit against a gold winner (accuracy); accuracy_strict counts it as "
              "wrong; a gold tie is right only when the judge says tie; failed pairs are excluded and counted in "
              "errors")
"""The tie policy, stated in every metrics.json."""

LABELS = ("A", "B", "tie")


def credit(winner: str | None, label: str | None, *, strict: bool = False) -> float | None:
    """The credit of one judged pair under the tie policy (``None`` when unjudged or without a gold label)."""
    if winner is None or label is None:
        return None
    if label == "tie":
        return 1.0 if winner == "tie" else 0.0
    if winner == "tie":
        return 0.0 if strict else 0.5
    return 1.0 if winner == label else 0.0


def bootstrap_interval(values: Sequence[float], *, resamples: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of ``values`` (``None`` for no values)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def cohen_kappa(predicted: Sequence[str], gold: Sequence[str]) -> float | None:
    """Cohen's κ of two label sequences (``None`` when empty or chance agreement is 1)."""
    n = len(predicted)
    if n == 0:
        return None
    observed = sum(p == g for p, g in zip(predicted, gold, strict=True)) / n
    first, second = Counter(predicted), Counter(gold)
    expected = sum(first[c] * second[c] for c in set(first) | set(second)) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def reliability(probabilities: Sequence[float], outcomes: Sequence[int], *, bins: int = 10) -> dict[str, Any]:
    """Reliability diagram bins and ECE of probability predictions of a binary outcome (1 = happened)."""
    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(outcomes, dtype=float)
    rows = []
    ece = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = (p >= low) & ((p < high) if b < bins - 1 else (p <= high))
        count = int(inside.sum())
        if count == 0:
            rows.append({"low": low, "high": high, "n": 0, "confidence": None, "frequency": None})
            continue
        confidence, frequency = float(p[inside].mean()), float(y[inside].mean())
        ece += count / max(1, p.size) * abs(confidence - frequency)
        rows.append({"low": low, "high": high, "n": count, "confidence": confidence, "frequency": frequency})
    return {"n": int(p.size), "ece": float(ece) if p.size else None, "bins": rows}


def rank_correlations(predicted: Sequence[float], gold: Sequence[float]) -> dict[str, Any]:
    """Spearman ρ and Kendall τ-b of the judge's margins with graded gold scores."""
    from scipy import stats

    if len(predicted) < 3 or len(set(predicted)) < 2 or len(set(gold)) < 2:
        return {"n": len(predicted), "spearman": None, "kendall": None}
    spearman = stats.spearmanr(predicted, gold).statistic
    kendall = stats.kendalltau(predicted, gold).statistic
    return {"n": len(predicted), "spearman": float(spearman), "kendall": float(kendall)}


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def accuracy_metrics(records: Sequence[Mapping[str, Any]], *, resamples: int = 1000,
                     seed: int = 0) -> dict[str, Any]:
    """The headline metrics of pair records (each with ``label``, ``winner``, ``winner_ab``, ``winner_ba``,
    ``consistent``, ``p_a``, ``margin``, ``gold_score``, ``status``)."""
    n = len(records)
    judged = [r for r in records if r.get("winner") is not None]
    labelled = [r for r in judged if r.get("label") is not None]
    credits = [credit(r["winner"], r["label"]) for r in labelled]
    strict = [credit(r["winner"], r["label"], strict=True) for r in labelled]
    both = [r for r in judged if r.get("consistent") is not None]
    per_order = {order: [c for r in records if r.get("label") is not None
                         and (c := credit(r.get(f"winner_{order}"), r["label"])) is not None]
                 for order in ("ab", "ba")}
    consistency = [1.0 if r["consistent"] else 0.0 for r in both]
    winners = Counter(r["winner"] for r in judged)
    metrics: dict[str, Any] = {
        "accuracy": _mean(credits),  # type: ignore[arg-type]
        "consistency": _mean(consistency),
        "n": n,
        "ties": winners.get("tie", 0),
        "coverage": len(judged) / n if n else None,
        "accuracy_strict": _mean(strict),  # type: ignore[arg-type]
        "accuracy_ci95": bootstrap_interval(credits, resamples=resamples, seed=seed),  # type: ignore[arg-type]
        "accuracy_strict_ci95": bootstrap_interval(strict, resamples=resamples, seed=seed),  # type: ignore[arg-type]
        "consistency_ci95": bootstrap_interval(consistency, resamples=resamples, seed=seed),
        "n_judged": len(judged),
        "n_labelled": len(labelled),
        "n_both_orders": len(both),
        "accuracy_ab": _mean(per_order["ab"]),
        "accuracy_ba": _mean(per_order["ba"]),
        "kappa": cohen_kappa([r["winner"] for r in labelled], [r["label"] for r in labelled]),
        "errors": sum(1 for r in records if r.get("winner") is None and r.get("status") != "abstained"),
        "abstentions": sum(1 for r in records if r.get("status") == "abstained"),
        "failed_judgments": sum(int(r.get("errors") or 0) for r in records),
        "winners": {label: winners.get(label, 0) for label in LABELS},
        "confusion": _confusion(labelled),
    }
    calibrated = [r for r in judged if r.get("p_a") is not None and r.get("label") in ("A", "B")]
    if calibrated:
        metrics["calibration"] = reliability([r["p_a"] for r in calibrated],
                                             [int(r["label"] == "A") for r in calibrated])
    graded = [r for r in judged if r.get("gold_score") is not None and r.get("margin") is not None]
    if graded:
        metrics["graded"] = rank_correlations([r["margin"] for r in graded], [r["gold_score"] for r in graded])
    return metrics


def _confusion(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """gold label → predicted winner → count."""
    table: dict[str, dict[str, int]] = {g: dict.fromkeys(LABELS, 0) for g in LABELS}
    for r in records:
        table[r["label"]][r["winner"]] += 1
    return table


def pair_metrics(records: Sequence[Mapping[str, Any]], *, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """:func:`accuracy_metrics` overall, plus ``per_subset`` (and ``per_dataset`` when records name several)."""
    metrics = accuracy_metrics(records, resamples=resamples, seed=seed)
    metrics["tie_policy"] = TIE_POLICY
    metrics["bootstrap"] = {"resamples": resamples, "seed": seed, "method": "percentile", "level": 0.95}
    for key, field in (("per_subset", "subset"), ("per_dataset", "dataset")):
        groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for r in records:
            groups[str(r.get(field) or "-")].append(r)
        if key == "per_dataset" and len(groups) < 2:
            continue
        metrics[key] = {name: _compact(accuracy_metrics(rows, resamples=resamples, seed=seed))
                        for name, rows in sorted(groups.items())}
    return metrics


def _compact(metrics: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("accuracy", "accuracy_ci95", "accuracy_strict", "consistency", "n", "ties", "coverage", "kappa",
            "errors", "accuracy_ab", "accuracy_ba")
    return {k: metrics[k] for k in keep}
