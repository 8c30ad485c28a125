"""Label-based criterion filters (DESIGN §8) and the report every refiner returns.

- **Misalignment** (RRD's misalignment rejection; OpenRubrics' preference-label consistency at criterion level):
  on labelled pairs, a criterion's *edge* is μ_k = E[a_k − b_k | label], a_k its verdict on the gold-preferred
  response and b_k on the other, signed by its weight's polarity (a penalty's edge is E[b_k − a_k]). A criterion
  with μ_k ≤ ``min_edge`` (default 0) favours the rejected response, or neither, and is removed. Pairs where either
  verdict is unassessed (error, not applicable, missing) are left out of that criterion's mean and counted.
- **Label consistency** (OpenRubrics): the labelled pairs are compared with the rubric in both orders
  (:meth:`Judge.acompare`); a rubric of a rubric set whose accuracy (winner = gold; ties and failures are wrong) is
  below ``min_accuracy`` is dropped, and inside a kept rubric a criterion whose pairwise preference does not point
  to the gold response on average (edge ≤ ``min_edge``) is removed.
- **Non-discriminative** (RRD's "satisfied by none" and Chasing the Tail's discrimination): a criterion met by every
  response of a pool, or by none, cannot rank responses; it is removed. Unassessed cells are ignored; a criterion
  with fewer than two assessed responses is kept (no evidence) and reported.

A step that would remove every criterion keeps the rubric unchanged and says so: a rubric needs ≥ 1 criterion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ..rubric import Provenance, Rubric

__all__ = [
    "StepReport",
    "apply_report",
    "consistency_filter",
    "criterion_edges",
    "misalignment_filter",
    "nondiscriminative_filter",
]


@dataclass
class StepReport:
    """What one refinement step did to one rubric, and why (recorded in ``provenance.history``)."""

    step: str
    """``dedup``, ``consistency``, ``misaligned``, ``nondiscriminative``, ``select``, ``structure``, ``weight``."""
    rubric_id: str
    """The rubric the step ran on."""
    parameters: dict[str, Any] = field(default_factory=dict)
    """The step's parameters, as used."""
    removed: list[dict[str, Any]] = field(default_factory=list)
    """``{id, reason, detail}`` for every criterion removed."""
    reweighted: list[dict[str, Any]] = field(default_factory=list)
    """``{id, from, to, detail?}`` for every criterion whose weight changed."""
    stats: dict[str, Any] = field(default_factory=dict)
    """Step statistics (edges, accuracy, imputed cells, judged items, …)."""
    unchanged: str | None = None
    """Why the rubric was kept as it was although the step asked for changes (e.g. it would remove everything)."""
    drop_rubric: str | None = None
    """Set when the whole rubric is dropped from a rubric set (label consistency), with the reason."""
    criteria: list[Any] | None = None
    """Replacement criteria (structuring), when the step rewrites the list instead of removing from it."""

    def remove(self, criterion_id: str, reason: str, detail: str) -> None:
        """Record one removal."""
        self.removed.append({"id": criterion_id, "reason": reason, "detail": detail})

    def as_history(self) -> dict[str, Any]:
        """The ``provenance.history`` entry (plain JSON)."""
        entry: dict[str, Any] = {"step": self.step, "date": date.today().isoformat(), "parameters": self.parameters,
                                 "removed": self.removed, "reweighted": self.reweighted}
        if self.stats:
            entry["stats"] = self.stats
        if self.unchanged:
            entry["unchanged"] = self.unchanged
        if self.drop_rubric:
            entry["dropped_rubric"] = self.drop_rubric
        return entry


def apply_report(rubric: Rubric, report: StepReport, *, weights: dict[str, float] | None = None) -> Rubric:
    """The rubric after ``report``: removed criteria dropped (or ``report.criteria`` put in), ``weights`` applied,
    and the step appended to ``provenance.history``. Removing every criterion leaves the criteria unchanged and sets
    ``report.unchanged``."""
    gone = {r["id"] for r in report.removed}
    if report.criteria is not None:
        criteria = list(report.criteria)
    else:
        criteria = [c for c in rubric.criteria if c.id not in gone]
    if not criteria:
        report.unchanged = (f"would remove every criterion ({len(rubric.criteria)}); a rubric needs at least one, "
                            "so this step changed nothing")
        report.stats["would_remove"] = [r["id"] for r in report.removed]
        report.removed = []
        criteria = list(rubric.criteria)
    if weights:
        criteria = [c.model_copy(update={"weight": weights[c.id]}) if c.id in weights else c for c in criteria]
    provenance = rubric.provenance.model_copy(deep=True) if rubric.provenance else Provenance()
    provenance.history.append(report.as_history())
    data = rubric.model_dump()
    data.update(criteria=[c.model_dump() for c in criteria], provenance=provenance.model_dump())
    return Rubric.model_validate(data)  # validated: a refiner never produces an invalid rubric


def _polarity(weight: float) -> float:
    return -1.0 if weight < 0 else 1.0


def criterion_edges(rubric: Rubric, differences: Any) -> list[tuple[float | None, int]]:
    """Per criterion: (μ_k, pairs used). ``differences`` is (pairs × criteria) a − b with NaN where unassessed; μ_k
    is signed by the weight's polarity; ``None`` when no pair has both verdicts."""
    import numpy as np

    D = np.asarray(differences, dtype=np.float64).reshape(-1, len(rubric.criteria))
    out: list[tuple[float | None, int]] = []
    for k, criterion in enumerate(rubric.criteria):
        column = D[:, k]
        usable = column[~np.isnan(column)]
        if usable.size == 0:
            out.append((None, 0))
        else:
            out.append((float(_polarity(criterion.weight) * usable.mean()), int(usable.size)))
    return out


def misalignment_filter(rubric: Rubric, differences: Any, *, min_edge: float = 0.0) -> StepReport:
    """Remove criteria whose edge μ_k on labelled pairs is ≤ ``min_edge`` (see the module docs)."""
    report = StepReport("misaligned", rubric.id, parameters={"min_edge": min_edge})
    edges = criterion_edges(rubric, differences)
    unjudged = []
    for criterion, (edge, used) in zip(rubric.criteria, edges, strict=True):
        if edge is None:
            unjudged.append(criterion.id)
        elif edge <= min_edge:
            side = "favours the rejected response" if edge < 0 else "does not separate the responses"
            report.remove(criterion.id, "misaligned", f"edge μ={edge:+.3f} over {used} pair(s) ≤ {min_edge:g}: {side}")
    pairs = int(len(differences)) if hasattr(differences, "__len__") else 0
    report.stats = {"pairs": pairs, "edges": {c.id: None if e is None else round(e, 4)
                                               for c, (e, _) in zip(rubric.criteria, edges, strict=True)}}
    if unjudged:
        report.stats["no_evidence_kept"] = unjudged
    return report


def nondiscriminative_filter(rubric: Rubric, hard_values: Any) -> StepReport:
    """Remove criteria met by every assessed response of the pool, or by none (``hard_values``: responses ×
    criteria of 0/1 with NaN where unassessed)."""
    import numpy as np

    X = np.asarray(hard_values, dtype=np.float64).reshape(-1, len(rubric.criteria))
    report = StepReport("nondiscriminative", rubric.id, parameters={"responses": int(X.shape[0])})
    rates: dict[str, float | None] = {}
    thin = []
    for k, criterion in enumerate(rubric.criteria):
        column = X[:, k]
        usable = column[~np.isnan(column)]
        if usable.size < 2:
            rates[criterion.id] = None
            thin.append(criterion.id)
            continue
        rate = float((usable >= 0.5).mean())
        rates[criterion.id] = round(rate, 4)
        if rate in (0.0, 1.0):
            who = "every" if rate == 1.0 else "no"
            report.remove(criterion.id, "non-discriminative",
                          f"met by {who} response of the pool ({usable.size} assessed)")
    report.stats = {"met_rate": rates, "unassessed_cells": int(np.isnan(X).sum())}
    if thin:
        report.stats["no_evidence_kept"] = thin
    return report


def consistency_filter(rubric: Rubric, records: Sequence[Any], *, min_accuracy: float = 0.5, min_edge: float = 0.0,
                       in_set: bool = False) -> StepReport:
    """Label consistency from pair records (:class:`~rubrickit.judge.pairwise.PairRecord` with ``label`` set).

    Accuracy counts ties and failed comparisons as wrong. In a rubric set (``in_set``) a rubric below
    ``min_accuracy`` is dropped whole; otherwise criteria whose pairwise edge is ≤ ``min_edge`` are removed.
    """
    report = StepReport("consistency", rubric.id, parameters={"min_accuracy": min_accuracy, "min_edge": min_edge})
    labelled = [r for r in records if r.label in ("A", "B")]
    correct = sum(1 for r in labelled if r.winner is not None and r.winner == r.label)
    failed = sum(1 for r in labelled if r.winner is None)
    ties = sum(1 for r in labelled if r.winner == "tie")
    accuracy = correct / len(labelled) if labelled else None
    report.stats = {"pairs": len(labelled), "correct": correct, "ties": ties, "failed": failed,
                    "accuracy": None if accuracy is None else round(accuracy, 4)}
    if accuracy is None:
        report.unchanged = "no labelled pair for this rubric"
        return report
    if in_set and accuracy < min_accuracy:
        report.drop_rubric = (f"accuracy {accuracy:.2f} on {len(labelled)} labelled pair(s) < {min_accuracy:g} "
                              f"(ties {ties}, failed {failed} count as wrong)")
        return report
    sums: dict[str, list[float]] = {}
    for record in labelled:
        gold = 1.0 if record.label == "A" else -1.0
        for detail in record.details:
            if detail.preference is not None and detail.criterion_id != "_direct":
                sums.setdefault(detail.criterion_id, []).append(gold * detail.preference)
    edges: dict[str, float | None] = {}
    for criterion in rubric.criteria:
        values = sums.get(criterion.id)
        if not values:
            edges[criterion.id] = None
            continue
        edge = _polarity(criterion.weight) * math.fsum(values) / len(values)
        edges[criterion.id] = round(edge, 4)
        if edge <= min_edge:
            report.remove(criterion.id, "inconsistent",
                          f"pairwise edge {edge:+.3f} over {len(values)} pair(s) ≤ {min_edge:g}: does not recover "
                          "the labels")
    report.stats["edges"] = edges
    return report
