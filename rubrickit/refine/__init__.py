"""Refinement: filters, coding-rate selection, Theme-Tips structuring and weighting (DESIGN §8).

:func:`refine_file` / :func:`arefine` run the filters and selection (``rubrickit refine``); :func:`weight_file` /
:func:`aweight` set weights (``rubrickit weight``). docs/refinement.md describes each refiner.
"""

from __future__ import annotations

from .dedup import adedup, aoverlap, dedup_candidates, select_core
from .filters import (
    StepReport,
    apply_report,
    consistency_filter,
    criterion_edges,
    misalignment_filter,
    nondiscriminative_filter,
)
from .pipeline import WEIGHT_METHODS, RefineResult, arefine, aweight, refine_file, weight_file
from .selection import Selection, coding_rate, greedy_coding_rate
from .verdicts import VerdictStore, pair_item_ids
from .weights import (
    CATEGORY_MAPS,
    LearnedFit,
    category_weights,
    fit_pairwise_logistic,
    learned_weights,
    uniform_weights,
    whitened_rubric_weights,
)
from .whiten import whitened_weights

__all__ = [
    "CATEGORY_MAPS",
    "LearnedFit",
    "RefineResult",
    "Selection",
    "StepReport",
    "VerdictStore",
    "WEIGHT_METHODS",
    "adedup",
    "aoverlap",
    "apply_report",
    "arefine",
    "aweight",
    "category_weights",
    "coding_rate",
    "consistency_filter",
    "criterion_edges",
    "dedup_candidates",
    "fit_pairwise_logistic",
    "greedy_coding_rate",
    "learned_weights",
    "misalignment_filter",
    "nondiscriminative_filter",
    "pair_item_ids",
    "refine_file",
    "select_core",
    "uniform_weights",
    "weight_file",
    "whitened_rubric_weights",
    "whitened_weights",
]
