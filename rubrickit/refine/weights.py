"""Criterion weights (DESIGN §8): uniform, category maps, whitened uniform, and weights learned from labels.

- **uniform**: every weight becomes ±1 (the sign, i.e. quality or penalty, is kept).
- **category** maps: Rubrics as Rewards (RaR) — essential 1.0, important 0.7, optional 0.3, pitfall 0.9 (a pitfall
  is always a penalty, −0.9); OpenRubrics (OpenRS) — core 5, important 2, highlight 1. ``map`` picks one; by default
  OpenRS when a ``core``/``highlight`` category is present, else RaR. A criterion without a mapped category keeps
  its weight (reported). Other categories keep their weight's sign.
- **whitened** uniform (RRD, Recursive Rubric Decomposition): w ∝ Σ^{-1/2}·1 from the response × criterion
  satisfaction matrix (:func:`rubrickit.refine.whiten.whitened_weights`, ridge, negatives clipped). A penalty's
  column is taken as 1 − satisfaction (its "good" direction) and keeps its negative sign. Correlated criteria share
  their weight: a criterion written twice gets 1/√2 of its single weight per copy (√2 together, not 2).
  Unassessed cells are imputed by the column mean and counted. Weights are scaled so that their mean magnitude
  is 1 (uniform stays 1).
- **learned** (logistic regression / Bradley–Terry without intercept): on labelled pairs, P(A ≻ B) = σ(w·d) with
  d = v(A) − v(B) the per-criterion verdict differences, L2-regularised (``l2``), fitted by Newton's method. Held-out
  accuracy comes from deterministic k-fold cross-validation (fold = pair index mod k; a tie w·d = 0 counts as
  wrong). The written weight is the coefficient (scaled to mean magnitude 1): a learned negative weight turns the
  criterion into a penalty, and the report says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import RubrickitError
from ..rubric import Rubric
from .filters import StepReport

__all__ = [
    "CATEGORY_MAPS",
    "LearnedFit",
    "category_map_for",
    "category_weights",
    "fit_pairwise_logistic",
    "learned_weights",
    "uniform_weights",
    "whitened_rubric_weights",
]

CATEGORY_MAPS: dict[str, dict[str, float]] = {
    "rar": {"essential": 1.0, "important": 0.7, "optional": 0.3, "pitfall": -0.9},
    "openrs": {"core": 5.0, "important": 2.0, "highlight": 1.0},
}
"""Category → weight maps (a negative value makes the criterion a penalty whatever its old sign)."""

METHODS = ("uniform", "category", "whitened", "learned")


def _round(value: float) -> float:
    value = round(float(value), 6)
    return 0.0 if value == 0 else value


def _reweight(report: StepReport, rubric: Rubric, new: dict[str, float], details: dict[str, str] | None = None
              ) -> dict[str, float]:
    details = details or {}
    for criterion in rubric.criteria:
        if criterion.id in new and new[criterion.id] != criterion.weight:
            entry: dict[str, Any] = {"id": criterion.id, "from": criterion.weight, "to": new[criterion.id]}
            if criterion.id in details:
                entry["detail"] = details[criterion.id]
            report.reweighted.append(entry)
    return new


def uniform_weights(rubric: Rubric) -> tuple[dict[str, float], StepReport]:
    """±1 for every criterion (sign kept)."""
    report = StepReport("weight", rubric.id, parameters={"method": "uniform"})
    new = {c.id: -1.0 if c.weight < 0 else 1.0 for c in rubric.criteria}
    return _reweight(report, rubric, new), report


def category_map_for(rubric: Rubric) -> str:
    """``openrs`` when a criterion is ``core`` or ``highlight``, else ``rar``."""
    found = {(c.category or "").strip().lower() for c in rubric.criteria}
    return "openrs" if found & {"core", "highlight"} else "rar"


def category_weights(rubric: Rubric, map_name: str | None = None) -> tuple[dict[str, float], StepReport]:
    """Weights from the criteria's categories (see the module docs)."""
    name = (map_name or category_map_for(rubric)).lower()
    if name not in CATEGORY_MAPS:
        raise RubrickitError(f"unknown category map {map_name!r}; use one of: {', '.join(CATEGORY_MAPS)}")
    table = CATEGORY_MAPS[name]
    report = StepReport("weight", rubric.id, parameters={"method": "category", "map": name, "table": table})
    new: dict[str, float] = {}
    unmapped = []
    for c in rubric.criteria:
        category = (c.category or "").strip().lower()
        if category not in table:
            unmapped.append(c.id)
            continue
        value = table[category]
        new[c.id] = value if value < 0 else (-value if c.weight < 0 else value)
    if unmapped:
        report.stats["unmapped_kept"] = unmapped
    details = {c.id: f"category {c.category}" for c in rubric.criteria if c.id in new}
    return _reweight(report, rubric, new, details), report


def whitened_rubric_weights(rubric: Rubric, satisfaction: Any, *, ridge: float = 0.1
                            ) -> tuple[dict[str, float], StepReport]:
    """Whitened-uniform weights from a (responses × criteria) satisfaction matrix with NaN where unassessed."""
    import numpy as np

    from .verdicts import impute_column_mean
    from .whiten import whitened_weights

    X = np.asarray(satisfaction, dtype=np.float64).reshape(-1, len(rubric.criteria))
    report = StepReport("weight", rubric.id, parameters={"method": "whitened", "ridge": ridge})
    filled, imputed = impute_column_mean(X)
    signs = np.array([-1.0 if c.weight < 0 else 1.0 for c in rubric.criteria])
    oriented = np.where(signs < 0, 1.0 - filled, filled)
    report.stats = {"responses": int(X.shape[0]), "imputed_cells": imputed}
    if X.shape[0] < 2:
        report.unchanged = f"needs verdicts on at least 2 responses, got {X.shape[0]}"
        return {}, report
    w = whitened_weights(oriented, ridge=ridge) * len(rubric.criteria)
    new = {c.id: _round(signs[k] * w[k]) for k, c in enumerate(rubric.criteria)}
    details = {c.id: "clipped to 0 (negative whitened weight)" for k, c in enumerate(rubric.criteria) if w[k] == 0}
    constant = [c.id for k, c in enumerate(rubric.criteria) if float(np.ptp(filled[:, k])) == 0.0]
    for cid in constant:  # zero variance: only the ridge bounds its weight, which cannot change any ranking
        details[cid] = "constant over the responses: its weight cannot change a ranking (consider removing it)"
    if constant:
        report.stats["constant_columns"] = constant
    return _reweight(report, rubric, new, details), report


@dataclass
class LearnedFit:
    """A pairwise logistic (Bradley–Terry) fit."""

    weights: Any
    """Coefficients per criterion (numpy), on the scale of the fit."""
    pairs: int
    """Labelled pairs used."""
    l2: float
    """The L2 penalty."""
    train_accuracy: float | None
    """Accuracy on the pairs it was fitted on."""
    cv_accuracy: float | None
    """Held-out accuracy (k-fold); ``None`` with fewer than 2 pairs."""
    folds: int
    """k of the cross-validation (0 when not run)."""
    cv_ties: int = 0
    """Held-out pairs where w·d = 0 (counted as wrong)."""
    fold_accuracies: list[float] = field(default_factory=list)


def _newton(D: Any, l2: float, iterations: int = 50) -> Any:
    import numpy as np

    n, k = D.shape
    w = np.zeros(k)
    for _ in range(iterations):
        z = D @ w
        p = 1.0 / (1.0 + np.exp(-z))  # P(better ≻ worse)
        grad = -D.T @ (1.0 - p) + l2 * w
        hess = (D * (p * (1.0 - p))[:, None]).T @ D + l2 * np.eye(k)
        step = np.linalg.solve(hess + 1e-9 * np.eye(k), grad)
        w = w - step
        if float(np.abs(step).max(initial=0.0)) < 1e-8:
            break
    return w


def _accuracy(D: Any, w: Any) -> tuple[float, int]:
    import numpy as np

    scores = D @ w
    ties = int((np.abs(scores) < 1e-12).sum())
    return float((scores > 1e-12).mean()) if len(scores) else math.nan, ties


def fit_pairwise_logistic(differences: Any, *, l2: float = 1.0, folds: int = 5) -> LearnedFit:
    """Fit σ(w·d) on rows d = v(preferred) − v(other) (every row's label is "first wins"; the mirrored rows add
    nothing to a model without intercept). Held-out accuracy from ``folds``-fold CV (fold = row index mod k)."""
    import numpy as np

    D = np.asarray(differences, dtype=np.float64)
    n = D.shape[0]
    if n == 0:
        raise RubrickitError("learned weights need at least one labelled pair with verdicts")
    w = _newton(D, l2)
    train, _ = _accuracy(D, w)
    k = min(folds, n) if n >= 2 else 0
    cv = None
    ties = 0
    per_fold: list[float] = []
    if k >= 2:
        index = np.arange(n)
        correct = 0
        for fold in range(k):
            test = index % k == fold
            wf = _newton(D[~test], l2)
            scores = D[test] @ wf
            ties += int((np.abs(scores) < 1e-12).sum())
            hits = int((scores > 1e-12).sum())
            correct += hits
            per_fold.append(hits / int(test.sum()))
        cv = correct / n
    return LearnedFit(w, n, l2, train, cv, k, ties, per_fold)


def learned_weights(rubric: Rubric, better: Any, worse: Any, *, l2: float = 1.0, folds: int = 5
                    ) -> tuple[dict[str, float], StepReport, LearnedFit | None]:
    """Weights learned from labelled pairs: ``better``/``worse`` are (pairs × criteria) verdict values on the
    gold-preferred and the other response, NaN where unassessed (imputed by the column mean over both, counted)."""
    import numpy as np

    from .verdicts import impute_column_mean

    k = len(rubric.criteria)
    B = np.asarray(better, dtype=np.float64).reshape(-1, k)
    W = np.asarray(worse, dtype=np.float64).reshape(-1, k)
    report = StepReport("weight", rubric.id, parameters={"method": "learned", "model": "logistic (Bradley-Terry)",
                                                         "l2": l2, "folds": folds})
    if B.shape[0] < 2:
        report.unchanged = f"needs at least 2 labelled pairs with verdicts, got {B.shape[0]}"
        return {}, report, None
    stacked, imputed = impute_column_mean(np.vstack([B, W]))
    D = stacked[: B.shape[0]] - stacked[B.shape[0]:]
    fit = fit_pairwise_logistic(D, l2=l2, folds=folds)
    report.stats = {"pairs": fit.pairs, "imputed_cells": imputed,
                    "train_accuracy": None if fit.train_accuracy is None else round(fit.train_accuracy, 4),
                    "cv_accuracy": None if fit.cv_accuracy is None else round(fit.cv_accuracy, 4),
                    "cv_folds": fit.folds, "cv_ties_counted_wrong": fit.cv_ties,
                    "coefficients": {c.id: round(float(fit.weights[i]), 6) for i, c in enumerate(rubric.criteria)}}
    scale = float(np.abs(fit.weights).mean())
    if not math.isfinite(scale) or scale < 1e-12:
        report.unchanged = "every learned coefficient is 0 (the verdicts do not separate the pairs)"
        return {}, report, fit
    new = {c.id: _round(fit.weights[i] / scale) for i, c in enumerate(rubric.criteria)}
    details = {}
    flipped = []
    for c in rubric.criteria:
        if (c.weight < 0) != (new[c.id] < 0) and new[c.id] != 0:
            flipped.append(c.id)
            details[c.id] = "sign flipped: now a penalty" if new[c.id] < 0 else "sign flipped: now a quality"
    if flipped:
        report.stats["sign_flipped"] = flipped
    return _reweight(report, rubric, new, details), report, fit
