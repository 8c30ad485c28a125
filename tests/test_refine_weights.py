"""Weighting: uniform, category maps, whitened uniform (duplicates share weight), learned from labelled pairs."""

from __future__ import annotations

import numpy as np
import pytest

from rubrickit.errors import RubrickitError
from rubrickit.refine import (
    apply_report,
    category_weights,
    fit_pairwise_logistic,
    learned_weights,
    uniform_weights,
    whitened_rubric_weights,
)
from rubrickit.rubric import Criterion, Rubric


def _rubric(n: int, weights=None, categories=None) -> Rubric:
    weights = weights or [1.0] * n
    categories = categories or [None] * n
    return Rubric(id="r", criteria=[Criterion(id=f"c{i}", text=f"Statement {i}.", weight=weights[i],
                                              category=categories[i]) for i in range(n)])


def test_uniform_keeps_the_sign() -> None:
    new, report = uniform_weights(_rubric(3, [3.0, -5.0, 0.5]))
    assert new == {"c0": 1.0, "c1": -1.0, "c2": 1.0}
    assert {r["id"] for r in report.reweighted} == {"c0", "c1", "c2"}


def test_rar_category_map_and_pitfall_stays_negative() -> None:
    rubric = _rubric(5, [3, 2, 1, 5, 4], ["essential", "Important", "optional", "pitfall", None])
    new, report = category_weights(rubric)
    assert new == {"c0": 1.0, "c1": 0.7, "c2": 0.3, "c3": -0.9}
    assert report.parameters["map"] == "rar" and report.stats["unmapped_kept"] == ["c4"]
    refined = apply_report(rubric, report, weights=new)
    assert [c.weight for c in refined.criteria] == [1.0, 0.7, 0.3, -0.9, 4]
    assert refined.provenance.history[-1]["reweighted"][0] == {"id": "c0", "from": 3, "to": 1.0,
                                                               "detail": "category essential"}


def test_openrs_map_is_chosen_by_the_categories_found() -> None:
    rubric = _rubric(3, [1, 1, -1], ["core", "highlight", "important"])
    new, report = category_weights(rubric)
    assert report.parameters["map"] == "openrs"
    assert new == {"c0": 5.0, "c1": 1.0, "c2": -2.0}  # a penalty keeps its sign
    with pytest.raises(RubrickitError, match="unknown category map"):
        category_weights(rubric, "nope")


def _satisfaction(seed: int = 0, n: int = 400) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, 3)) < [0.5, 0.4, 0.6]).astype(float)


def test_whitened_weights_discount_a_duplicated_criterion() -> None:
    base = _satisfaction()
    single, _ = whitened_rubric_weights(_rubric(3), base, ridge=0.01)
    doubled_matrix = np.column_stack([base[:, 0], base[:, 0], base[:, 1], base[:, 2]])
    doubled, _ = whitened_rubric_weights(_rubric(4), doubled_matrix, ridge=0.01)
    share_single = single["c0"] / (single["c1"] + single["c2"])
    share_pair = (doubled["c0"] + doubled["c1"]) / (doubled["c2"] + doubled["c3"])
    # uniform weights double a duplicated criterion's share (x2); Σ^{-1/2}·1 gives each copy 1/√2 of the single
    # weight, so the pair together gets √2 ≈ 1.41 of it: about half the excess weight of the doubling is removed
    assert share_pair / share_single == pytest.approx(np.sqrt(2), rel=0.1)
    assert share_pair / share_single < 0.75 * 2
    assert doubled["c0"] == pytest.approx(doubled["c1"], rel=1e-6)


def test_whitened_penalty_keeps_its_sign_and_missing_cells_are_imputed_and_counted() -> None:
    X = _satisfaction()
    X[0, 1] = np.nan
    X[5, 2] = np.nan
    new, report = whitened_rubric_weights(_rubric(3, [1, -2, 1]), X)
    assert new["c1"] < 0 < new["c0"] and new["c2"] > 0
    assert report.stats["imputed_cells"] == 2
    assert sum(abs(v) for v in new.values()) == pytest.approx(3.0, rel=1e-4)  # mean magnitude 1


def test_whitened_needs_two_responses() -> None:
    new, report = whitened_rubric_weights(_rubric(2), np.array([[1.0, 0.0]]))
    assert new == {} and "at least 2" in report.unchanged


def _planted_pairs(seed: int = 1, n: int = 600) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Verdicts of response pairs whose label follows Bradley–Terry with planted weights."""
    rng = np.random.default_rng(seed)
    planted = np.array([2.0, 1.0, 0.5, -1.5, 0.0])
    a = (rng.random((n, 5)) < 0.5).astype(float)
    b = (rng.random((n, 5)) < 0.5).astype(float)
    p_a = 1 / (1 + np.exp(-(a - b) @ planted))
    a_wins = rng.random(n) < p_a
    better = np.where(a_wins[:, None], a, b)
    worse = np.where(a_wins[:, None], b, a)
    return planted, better, worse


def test_learned_weights_recover_planted_weights() -> None:
    planted, better, worse = _planted_pairs()
    rubric = _rubric(5)
    new, report, fit = learned_weights(rubric, better, worse, l2=1.0)
    learned = np.array([new[f"c{i}"] for i in range(5)])
    assert np.corrcoef(learned, planted)[0, 1] > 0.9
    assert np.sign(learned[:4]).tolist() == np.sign(planted[:4]).tolist()
    assert np.argsort(-learned[:4]).tolist() == np.argsort(-planted[:4]).tolist()
    assert report.stats["sign_flipped"] == ["c3"]  # a learned negative weight turns c3 into a penalty
    assert fit.folds == 5 and 0.6 < fit.cv_accuracy <= 1.0
    refined = apply_report(rubric, report, weights=new)
    assert refined.criterion("c3").weight < 0
    assert any(r["id"] == "c3" and "now a penalty" in r["detail"] for r in refined.provenance.history[-1]["reweighted"])


def test_learned_cross_validation_is_deterministic_and_counts_ties_wrong() -> None:
    D = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    fit = fit_pairwise_logistic(D, folds=2)
    assert fit.cv_ties == 2 and fit.cv_accuracy == pytest.approx(0.5)
    assert fit_pairwise_logistic(D, folds=2).fold_accuracies == fit.fold_accuracies


def test_learned_with_no_signal_keeps_the_weights() -> None:
    same = np.ones((4, 2))
    new, report, _ = learned_weights(_rubric(2), same, same)
    assert new == {} and "every learned coefficient is 0" in report.unchanged
