"""Aggregation: verdicts → rewards, against hand-computed tables, HealthBench's reference and properties."""

from __future__ import annotations

import gzip
import json
import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rubrickit.errors import OutputExistsError, RubricError
from rubrickit.rubric import Criterion, Rubric, ScoreRecord, Verdict, VerdictRow
from rubrickit.rubric.aggregation import (
    HOLISTIC_ID,
    Aggregate,
    aggregate,
    aggregate_file,
    aggregate_rows,
    points_summary,
    read_verdict_rows,
    score_record,
)

# --------------------------------------------------------------------------- helpers


def crit(cid: str, weight: float = 1.0, **fields) -> Criterion:
    return Criterion(id=cid, text=f"Statement {cid}.", weight=weight, **fields)


def make_rubric(criteria: list[Criterion], **fields) -> Rubric:
    return Rubric(id=fields.pop("id", "r"), criteria=criteria, **fields)


def verdicts(labels: dict[str, str], **p_met: float) -> list[Verdict]:
    return [Verdict(criterion_id=cid, verdict=label, p_met=p_met.get(cid)) for cid, label in labels.items()]


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=0, abs_tol=1e-12)


# --------------------------------------------------------------------------- weighted_mean, points, sum

# a +3, b +2, c −4 (penalty), d +1.  "-" = no verdict.
TABLE_RUBRIC = [crit("a", 3), crit("b", 2), crit("c", -4), crit("d", 1)]

# columns: a, b, c, d | weighted_mean, weighted_mean raw, points, sum | coverage, errors
TABLE = [
    # Σw·m = 3+2+1 = 6; Σ positive w = 6 → 6/6
    (("met", "met", "unmet", "met"), 1.0, 1.0, 1.0, 6.0, 1.0, 0),
    # Σw·m = 3−4+1 = 0; pos 6 → 0/6
    (("met", "unmet", "met", "met"), 0.0, 0.0, 0.0, 0.0, 1.0, 0),
    # Σw·m = 3+2−4 = 1; pos 6 → 1/6
    (("met", "met", "met", "unmet"), 1 / 6, 1 / 6, 1 / 6, 1.0, 1.0, 0),
    # Σw·m = −4; pos 6 → −4/6 = −0.667, clipped to 0 (raw and points keep it)
    (("unmet", "unmet", "met", "unmet"), 0.0, -2 / 3, -2 / 3, -4.0, 1.0, 0),
    # b error, d n/a: assessed a, c. Σw·m = 3; pos = 3 (b's 2 and d's 1 leave the denominator) → 1; cov 2/4
    (("met", "error", "unmet", "not_applicable"), 1.0, 1.0, 1.0, 3.0, 0.5, 1),
    # d missing: assessed a, b, c. Σw·m = 3; pos = 3+2 = 5 → 0.6; cov 3/4
    (("met", "unmet", "unmet", "-"), 0.6, 0.6, 0.6, 3.0, 0.75, 0),
    # only the penalty assessed (met): no positive weight → 1 + (−4)/|−4| = 0; points: None (HealthBench)
    (("error", "error", "met", "not_applicable"), 0.0, 0.0, None, -4.0, 0.25, 2),
    # only the penalty assessed (unmet): 1 + 0/4 = 1; sum 0
    (("error", "-", "unmet", "error"), 1.0, 1.0, None, 0.0, 0.25, 2),
    # nothing assessed → None everywhere, coverage 0
    (("error", "error", "error", "error"), None, None, None, None, 0.0, 4),
    (("not_applicable", "-", "not_applicable", "-"), None, None, None, None, 0.0, 0),
]


@pytest.mark.parametrize(("labels", "wm", "wm_raw", "points", "total", "coverage", "errors"), TABLE)
def test_aggregations_match_hand_computed_table(labels, wm, wm_raw, points, total, coverage, errors):
    given_verdicts = verdicts({cid: lab for cid, lab in zip("abcd", labels, strict=True) if lab != "-"})
    expected = {"weighted_mean": wm, "points": points, "sum": total}
    for name, want in expected.items():
        result = aggregate(make_rubric(TABLE_RUBRIC, aggregation=name), given_verdicts)
        assert close(result.reward, want), (name, result.reward, want)
        assert result.coverage == coverage
        assert result.errors == errors
        assert result.total == 4
        assert result.assessed == round(coverage * 4)
        assert result.gates_failed == []
    raw = aggregate(make_rubric(TABLE_RUBRIC, raw=True), given_verdicts)
    assert close(raw.reward, wm_raw)


def test_error_verdict_is_never_counted_as_unmet():
    # If the error on b were read as unmet, the reward would be 3/5 = 0.6 instead of 3/3.
    result = aggregate(make_rubric(TABLE_RUBRIC), verdicts({"a": "met", "b": "error"}))
    assert result.reward == 1.0
    assert result.errors == 1
    assert result.coverage == 0.25


def test_all_error_verdicts_give_none_not_zero():
    for name in ("weighted_mean", "points", "sum", "holistic"):
        rubric = make_rubric(TABLE_RUBRIC, aggregation=name)
        labels = {c.id: "error" for c in TABLE_RUBRIC}
        if name == "holistic":
            labels[HOLISTIC_ID] = "error"
        result = aggregate(rubric, verdicts(labels))
        assert result.reward is None
        assert result.coverage == 0.0


def test_zero_weight_only_assessed_is_none_for_means_and_zero_for_sum():
    rubric = [crit("z", 0), crit("a", 2)]
    labels = verdicts({"z": "met", "a": "error"})
    # weighted_mean: Σ positive w = 0 and Σ|w| = 0 → no scale to place a reward on.
    assert aggregate(make_rubric(rubric), labels).reward is None
    assert aggregate(make_rubric(rubric, aggregation="points"), labels).reward is None
    assert aggregate(make_rubric(rubric, aggregation="sum"), labels).reward == 0.0


# --------------------------------------------------------------------------- soft

SOFT_RUBRIC = [crit("a", 2), crit("b", 1), crit("c", -1)]


@pytest.mark.parametrize(
    ("labels", "p_met", "aggregation", "expected"),
    [
        # soft: 2·0.9 + 1·0.2 − 1·0.3 = 1.7; pos 3 → 0.5667
        ({"a": "met", "b": "unmet", "c": "unmet"}, {"a": 0.9, "b": 0.2, "c": 0.3}, "weighted_mean", 1.7 / 3),
        ({"a": "met", "b": "unmet", "c": "unmet"}, {"a": 0.9, "b": 0.2, "c": 0.3}, "points", 1.7 / 3),
        ({"a": "met", "b": "unmet", "c": "unmet"}, {"a": 0.9, "b": 0.2, "c": 0.3}, "sum", 1.7),
        # b has no p_met → its label counts (1): 2·0.5 + 1·1 − 1·1.0 = 1; pos 3 → 1/3
        ({"a": "met", "b": "met", "c": "met"}, {"a": 0.5, "c": 1.0}, "weighted_mean", 1 / 3),
        # p_met 0 on a met label still counts as 0.0: 2·0 + 1·1 − 0 = 1 → 1/3
        ({"a": "met", "b": "met", "c": "unmet"}, {"a": 0.0}, "weighted_mean", 1 / 3),
    ],
)
def test_soft_uses_p_met(labels, p_met, aggregation, expected):
    rubric = make_rubric(SOFT_RUBRIC, aggregation=aggregation, soft=True)
    assert close(aggregate(rubric, verdicts(labels, **p_met)).reward, expected)


def test_soft_argument_overrides_rubric_setting():
    given_verdicts = verdicts({"a": "met", "b": "unmet", "c": "unmet"}, a=0.9, b=0.2, c=0.3)
    # hard labels: 2 / 3
    assert close(aggregate(make_rubric(SOFT_RUBRIC, soft=True), given_verdicts, soft=False).reward, 2 / 3)
    assert close(aggregate(make_rubric(SOFT_RUBRIC), given_verdicts, soft=True).reward, 1.7 / 3)
    assert close(aggregate(make_rubric(SOFT_RUBRIC), given_verdicts).reward, 2 / 3)


# --------------------------------------------------------------------------- gates

GATE_RUBRIC = [crit("h1", 1, kind="hard"), crit("h2", -2, kind="hard"), crit("p", 3)]


@pytest.mark.parametrize(
    ("labels", "failed", "wm", "points", "total"),
    [
        # all constraints kept: (1 + 3) / 4 = 1; sum 4
        ({"h1": "met", "h2": "unmet", "p": "met"}, [], 1.0, 1.0, 4.0),
        # h1 unmet: would be 3/4 = 0.75 → 0; sum min(3, 0) = 0
        ({"h1": "unmet", "h2": "unmet", "p": "met"}, ["h1"], 0.0, 0.0, 0.0),
        # h2 is a penalty: met is the violation. would be (1 − 2 + 3)/4 = 0.5 → 0; sum min(2, 0) = 0
        ({"h1": "met", "h2": "met", "p": "met"}, ["h2"], 0.0, 0.0, 0.0),
        # both violated: Σ = −2; wm clipped 0; points min(−2/4, 0) = −0.5; sum min(−2, 0) = −2 (never raised)
        ({"h1": "unmet", "h2": "met", "p": "unmet"}, ["h1", "h2"], 0.0, -0.5, -2.0),
        # error / not_applicable on hard criteria do not trip the gate: only p assessed → 3/3
        ({"h1": "error", "h2": "not_applicable", "p": "met"}, [], 1.0, 1.0, 3.0),
    ],
)
def test_hard_gates(labels, failed, wm, points, total):
    given_verdicts = verdicts(labels)
    for name, want in (("weighted_mean", wm), ("points", points), ("sum", total)):
        result = aggregate(make_rubric(GATE_RUBRIC, aggregation=name), given_verdicts)
        assert result.gates_failed == failed
        assert close(result.reward, want), (name, result.reward, want)


def test_gates_none_only_counts_hard_criteria():
    labels = {"h1": "unmet", "h2": "unmet", "p": "met"}
    result = aggregate(make_rubric(GATE_RUBRIC, gates="none"), verdicts(labels))
    assert result.gates_failed == []
    assert result.reward == 0.75  # 3 / (1 + 3)


def test_gate_is_decided_by_label_in_soft_mode():
    # p_met says 0.9 but the label is unmet: the gate trips.
    given_verdicts = verdicts({"h1": "unmet", "h2": "unmet", "p": "met"}, h1=0.9)
    result = aggregate(make_rubric(GATE_RUBRIC, soft=True), given_verdicts)
    assert result.gates_failed == ["h1"]
    assert result.reward == 0.0


def test_gate_never_raises_a_negative_raw_reward():
    # raw: (0 − 2 + 0) / 4 = −0.5 stays −0.5 under the gate.
    labels = {"h1": "unmet", "h2": "met", "p": "unmet"}
    result = aggregate(make_rubric(GATE_RUBRIC, raw=True), verdicts(labels))
    assert result.reward == -0.5


def test_hard_scale_criterion_is_not_a_gate():
    rubric = make_rubric([crit("s", 1, kind="hard", scale={1: "Bad.", 5: "Good."}), crit("p", 1)])
    result = aggregate(rubric, [Verdict(criterion_id="s", verdict="unmet", level=1), *verdicts({"p": "met"})])
    assert result.gates_failed == []
    assert result.reward == 0.5  # (1·0 + 1·1) / 2


def test_subscores_ignore_gates():
    rubric = make_rubric([crit("h", 1, kind="hard", tags=["t"]), crit("p", 1, tags=["t", "u"])])
    result = aggregate(rubric, verdicts({"h": "unmet", "p": "met"}))
    assert result.reward == 0.0
    assert result.subscores == {"t": 0.5, "u": 1.0}


# --------------------------------------------------------------------------- scale criteria

SCALE_RUBRIC = [crit("tone", 2, scale={1: "Rude.", 3: "Neutral.", 5: "Warm."}), crit("a", 1)]


@pytest.mark.parametrize(
    ("label", "level", "p_met", "expected", "coverage"),
    [
        # (4 − 1)/(5 − 1) = 0.75 → (2·0.75 + 1) / 3 = 0.8333
        ("met", 4, None, 2.5 / 3, 1.0),
        # the level decides, not the label: level 1 → 0 → 1/3
        ("unmet", 1, None, 1 / 3, 1.0),
        # probability-weighted level 3.4 → 0.6 → (1.2 + 1) / 3
        ("met", 3.4, None, 2.2 / 3, 1.0),
        # out-of-range levels are clipped: 7 → 1 → 3/3
        ("met", 7, None, 1.0, 1.0),
        # soft p_met does not apply to scale criteria: level 5 → 1
        ("met", 5, 0.1, 1.0, 1.0),
        # no level: unassessed (coverage 1/2), only a counts → 1/1
        ("met", None, None, 1.0, 0.5),
        ("error", 5, None, 1.0, 0.5),
    ],
)
def test_scale_criteria_contribute_level_fraction(label, level, p_met, expected, coverage):
    tone = Verdict(criterion_id="tone", verdict=label, level=level, p_met=p_met)
    result = aggregate(make_rubric(SCALE_RUBRIC, soft=True), [tone, *verdicts({"a": "met"})])
    assert close(result.reward, expected)
    assert result.coverage == coverage
    assert result.errors == (1 if label == "error" else 0)


# --------------------------------------------------------------------------- penalty-only rubric

PENALTY_RUBRIC = [crit("x", -1), crit("y", -3)]


@pytest.mark.parametrize(
    ("labels", "expected", "coverage"),
    [
        ({"x": "unmet", "y": "unmet"}, 1.0, 1.0),  # 1 + 0/4
        ({"x": "met", "y": "unmet"}, 0.75, 1.0),  # 1 − 1/4
        ({"x": "unmet", "y": "met"}, 0.25, 1.0),  # 1 − 3/4
        ({"x": "met", "y": "met"}, 0.0, 1.0),  # 1 − 4/4
        ({"x": "error", "y": "met"}, 0.0, 0.5),  # 1 − 3/3: Σ|w| over assessed only
        ({"x": "met", "y": "not_applicable"}, 0.0, 0.5),  # 1 − 1/1
    ],
)
def test_penalty_only_rubric_never_divides_by_zero(labels, expected, coverage):
    for raw in (False, True):
        result = aggregate(make_rubric(PENALTY_RUBRIC, raw=raw), verdicts(labels))
        assert close(result.reward, expected)
        assert result.coverage == coverage


def test_penalty_only_rubric_under_points_is_none_like_healthbench():
    assert aggregate(make_rubric(PENALTY_RUBRIC, aggregation="points"), verdicts({"x": "met"})).reward is None


# --------------------------------------------------------------------------- holistic


@pytest.mark.parametrize(
    ("label", "level", "expected", "coverage"),
    [
        ("met", 10, 1.0, 1.0),  # (10 − 1)/9
        ("met", 1, 0.0, 1.0),
        ("met", 5.5, 0.5, 1.0),  # (5.5 − 1)/9
        ("met", 7, 6 / 9, 1.0),
        ("met", 0, 0.0, 1.0),  # clipped
        ("met", None, None, 0.0),
        ("unmet", 8, None, 0.0),
        ("error", 8, None, 0.0),
    ],
)
def test_holistic_rating_maps_to_unit_interval(label, level, expected, coverage):
    rubric = make_rubric([crit("a", 1, tags=["t"]), crit("b", 2)], aggregation="holistic")
    result = aggregate(rubric, [Verdict(criterion_id=HOLISTIC_ID, verdict=label, level=level)])
    assert close(result.reward, expected)
    assert result.coverage == coverage
    assert (result.assessed, result.total) == (int(coverage), 1)
    assert result.subscores == {"t": None}


def test_holistic_rating_missing_is_none():
    result = aggregate(make_rubric([crit("a")], aggregation="holistic"), [])
    assert result.reward is None
    assert result.coverage == 0.0


def test_holistic_gate_from_a_hard_criterion_verdict():
    rubric = make_rubric([crit("h", kind="hard"), crit("b")], aggregation="holistic")
    rating = Verdict(criterion_id=HOLISTIC_ID, verdict="met", level=9)
    result = aggregate(rubric, [rating, *verdicts({"h": "unmet"})])
    assert result.gates_failed == ["h"]
    assert result.reward == 0.0


def test_holistic_rating_on_other_rubric_is_an_error():
    with pytest.raises(RubricError, match="holistic"):
        aggregate(make_rubric([crit("a")]), [Verdict(criterion_id=HOLISTIC_ID, verdict="met", level=5)])


# --------------------------------------------------------------------------- bad verdicts


def test_unknown_criterion_id_is_an_error_naming_it():
    with pytest.raises(RubricError) as info:
        aggregate(make_rubric(TABLE_RUBRIC), verdicts({"a": "met", "bb": "met"}))
    message = str(info.value)
    assert "'bb'" in message and "did you mean 'b'" in message and "a, b, c, d" in message


def test_two_verdicts_for_one_criterion_is_an_error():
    with pytest.raises(RubricError, match="'a' has more than one verdict"):
        aggregate(make_rubric(TABLE_RUBRIC), [*verdicts({"a": "met"}), *verdicts({"a": "unmet"})])


def test_verdict_judged_on_a_changed_criterion_is_refused():
    old = crit("a", 1)
    stale = Verdict(criterion_id="a", verdict="met", criterion_fingerprint=old.fingerprint)
    changed = Criterion(id="a", text="A different statement.", weight=1)
    with pytest.raises(RubricError, match="re-judge"):
        aggregate(make_rubric([changed]), [stale])
    # A reweighted criterion keeps its fingerprint: still fine.
    assert aggregate(make_rubric([crit("a", 5)]), [stale]).reward == 1.0


# --------------------------------------------------------------------------- subscores


def test_subscores_per_tag_in_first_seen_order():
    rubric = [
        crit("a", 2, tags=["axis:accuracy", "x"]),
        crit("b", 1, tags=["axis:accuracy"]),
        crit("c", -1, tags=["axis:safety"]),
        crit("d", 1, tags=["x"]),
        crit("e", 1, tags=["empty"]),
    ]
    given_verdicts = verdicts({"a": "met", "b": "unmet", "c": "met", "d": "unmet", "e": "error"})
    wm = aggregate(make_rubric(rubric), given_verdicts)
    assert list(wm.subscores) == ["axis:accuracy", "x", "axis:safety", "empty"]
    # accuracy: 2/3; x: 2/(2+1); safety, penalty only: 1 − 1/1 = 0; empty: nothing assessed
    want = {"axis:accuracy": 2 / 3, "x": 2 / 3, "axis:safety": 0.0, "empty": None}
    assert wm.subscores == pytest.approx(want)
    points = aggregate(make_rubric(rubric, aggregation="points"), given_verdicts)
    # HealthBench drops a tag with no positive points: None
    assert points.subscores["axis:safety"] is None
    total = aggregate(make_rubric(rubric, aggregation="sum"), given_verdicts)
    assert total.subscores == {"axis:accuracy": 2.0, "x": 2.0, "axis:safety": -1.0, "empty": None}


# --------------------------------------------------------------------------- properties

_LABELS = st.sampled_from(["met", "unmet", "error", "not_applicable", None])


@st.composite
def rubric_and_verdicts(draw):
    n = draw(st.integers(1, 8))
    weight = st.floats(-10, 10, allow_nan=False).map(lambda w: round(w, 3))
    weights = draw(st.lists(weight, min_size=n, max_size=n))
    kinds = draw(st.lists(st.sampled_from(["hard", "principle"]), min_size=n, max_size=n))
    criteria = [crit(f"c{i}", w, kind=k) for i, (w, k) in enumerate(zip(weights, kinds, strict=True))]
    given_verdicts = []
    for c in criteria:
        label = draw(_LABELS)
        if label is not None:
            p_met = draw(st.none() | st.floats(0, 1))
            given_verdicts.append(Verdict(criterion_id=c.id, verdict=label, p_met=p_met))
    soft = draw(st.booleans())
    return criteria, given_verdicts, soft


@settings(max_examples=300, deadline=None)
@given(rubric_and_verdicts())
def test_weighted_mean_reward_is_in_unit_interval(data):
    criteria, given_verdicts, soft = data
    result = aggregate(make_rubric(criteria, soft=soft), given_verdicts)
    assert result.reward is None or 0.0 <= result.reward <= 1.0
    assert 0.0 <= result.coverage <= 1.0
    assessed = {v.criterion_id for v in given_verdicts if v.verdict in ("met", "unmet")}
    # None exactly when no assessed criterion carries any weight
    assert (result.reward is None) == all(c.weight == 0 for c in criteria if c.id in assessed)


@settings(max_examples=300, deadline=None)
@given(rubric_and_verdicts(), st.sampled_from(["weighted_mean", "points", "sum"]), st.data())
def test_adding_an_error_verdict_changes_no_reward(data, aggregation, extra):
    criteria, given_verdicts, soft = data
    judged = {v.criterion_id for v in given_verdicts}
    missing = [c.id for c in criteria if c.id not in judged]
    if not missing:
        return
    target = extra.draw(st.sampled_from(missing))
    rubric = make_rubric(criteria, aggregation=aggregation, soft=soft)
    before = aggregate(rubric, given_verdicts)
    error = Verdict(criterion_id=target, verdict="error", error="timeout")
    after = aggregate(rubric, [*given_verdicts, error])
    assert after.reward == before.reward
    assert after.subscores == before.subscores
    assert after.coverage == before.coverage
    assert after.errors == before.errors + 1


@settings(max_examples=300, deadline=None)
@given(rubric_and_verdicts(), st.sampled_from(["weighted_mean", "points", "sum"]), st.randoms())
def test_permuting_criteria_does_not_change_the_reward(data, aggregation, rnd):
    criteria, given_verdicts, soft = data
    shuffled_criteria, shuffled_verdicts = list(criteria), list(given_verdicts)
    rnd.shuffle(shuffled_criteria)
    rnd.shuffle(shuffled_verdicts)
    before = aggregate(make_rubric(criteria, aggregation=aggregation, soft=soft), given_verdicts)
    after = aggregate(make_rubric(shuffled_criteria, aggregation=aggregation, soft=soft), shuffled_verdicts)
    assert after.reward == before.reward  # exactly: sums are correctly rounded (math.fsum)
    assert sorted(after.gates_failed) == sorted(before.gates_failed)


# --------------------------------------------------------------------------- HealthBench points


def _healthbench_reference_score(items: list[dict], met: list[bool]) -> float | None:
    """HealthBench's per-example formula, written out independently: achieved / total positive points."""
    possible = 0
    for item in items:
        if item["points"] > 0:
            possible += item["points"]
    if possible == 0:
        return None
    achieved = 0
    for item, is_met in zip(items, met, strict=True):
        if is_met:
            achieved += item["points"]
    return achieved / possible


def _healthbench_rows(shared_data: Path) -> list[dict]:
    path = shared_data / "rubrics" / "healthbench_sample.jsonl.gz"
    if not path.is_file():
        pytest.skip(f"HealthBench sample not found at {path}")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _healthbench_rubric(row: dict) -> Rubric:
    criteria = [
        Criterion(id=f"c{i}", text=item["criterion"], weight=item["points"], tags=item["tags"])
        for i, item in enumerate(row["rubrics"], start=1)
    ]
    return Rubric(id=row["prompt_id"], prompt_id=row["prompt_id"], aggregation="points", criteria=criteria)


def _pseudo_random_verdicts(row: dict, rng: random.Random) -> list[bool]:
    p = rng.random()  # a per-example "quality" so scores spread over the range
    return [rng.random() < p for _ in row["rubrics"]]


@pytest.mark.shared_data
def test_points_matches_healthbench_on_the_sample(shared_data):
    rows = _healthbench_rows(shared_data)
    rng = random.Random(20251122)
    rewards, reference = [], []
    for row in rows:
        met = _pseudo_random_verdicts(row, rng)
        rubric = _healthbench_rubric(row)
        given_verdicts = [
            Verdict(criterion_id=f"c{i}", verdict="met" if m else "unmet") for i, m in enumerate(met, start=1)
        ]
        record = score_record(rubric, given_verdicts, item_id=row["prompt_id"])
        want = _healthbench_reference_score(row["rubrics"], met)
        assert record.reward == want, row["prompt_id"]  # exact: integer points
        rewards.append(record.reward)
        reference.append(want)
        # rubric-level tag scores, as HealthBench computes them (tags without positive points dropped → None)
        for tag, value in record.subscores.items():
            chosen = [(item, m) for item, m in zip(row["rubrics"], met, strict=True) if tag in item["tags"]]
            assert value == _healthbench_reference_score([i for i, _ in chosen], [m for _, m in chosen])
    assert len(rewards) == len(rows) == 500
    assert min(rewards) < 0  # per-example scores are not clipped
    summary = points_summary(rewards)
    mean = sum(reference) / len(reference)
    assert summary["score"] == pytest.approx(min(1.0, max(0.0, mean)), abs=1e-12)
    assert summary["n_samples"] == 500 and summary["n_unscored"] == 0
    assert 0 < summary["bootstrap_std"] < 0.05


def test_points_summary_bootstrap_equals_healthbench_numpy_procedure():
    np = pytest.importorskip("numpy", reason="numpy is needed to run HealthBench's own bootstrap procedure")
    rng = random.Random(7)
    values = [rng.uniform(-0.6, 1.2) for _ in range(173)] + [None, None]
    kept = [v for v in values if v is not None]
    for seed in (0, 1, 1234):
        # HealthBench's _compute_clipped_stats, after seeding numpy's global generator
        np.random.seed(seed)
        samples = [np.random.choice(kept, len(kept)) for _ in range(1000)]
        want_std = float(np.std([np.clip(np.mean(s), 0, 1) for s in samples]))
        summary = points_summary(values, seed=seed)
        assert summary["bootstrap_std"] == pytest.approx(want_std, rel=1e-12)
        assert summary["score"] == pytest.approx(float(np.clip(np.mean(kept), 0, 1)), abs=1e-12)
        assert (summary["n_samples"], summary["n_unscored"]) == (173, 2)


def test_points_summary_bootstrap_behaves_like_a_standard_error():
    rng = random.Random(3)
    values = [rng.uniform(0.2, 0.8) for _ in range(400)]
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    summary = points_summary(values, seed=5)
    # bootstrap std of a mean ≈ sd / √n
    assert summary["bootstrap_std"] == pytest.approx(sd / math.sqrt(len(values)), rel=0.15)
    assert points_summary(values, seed=5) == summary  # deterministic
    assert points_summary(values, seed=6)["bootstrap_std"] != summary["bootstrap_std"]


@pytest.mark.parametrize(
    ("rewards", "score", "std"),
    [
        ([], None, None),
        ([None, None], None, None),
        ([0.4], 0.4, 0.0),
        ([1.5, 1.7], 1.0, 0.0),  # every resample mean > 1 clips to 1
        ([-0.5, -0.1, None], 0.0, 0.0),
    ],
)
def test_points_summary_edges(rewards, score, std):
    summary = points_summary(rewards)
    assert summary["score"] == score
    assert summary["bootstrap_std"] == std


def test_points_summary_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_bootstrap"):
        points_summary([0.5], n_bootstrap=0)
    with pytest.raises(ValueError, match="seed"):
        points_summary([0.5], seed=-1)


# --------------------------------------------------------------------------- score records


def test_score_record_fills_fingerprints_and_orders_verdicts():
    rubric = make_rubric(TABLE_RUBRIC, gates="hard")
    given_verdicts = verdicts({"d": "met", "a": "met", "b": "error"})
    record = score_record(rubric, given_verdicts, item_id="item-1", judge="openai:gpt-4.1-mini")
    assert isinstance(record, ScoreRecord)
    assert [v.criterion_id for v in record.verdicts] == ["a", "b", "d"]
    assert [v.criterion_fingerprint for v in record.verdicts] == [
        rubric.criteria[0].fingerprint, rubric.criteria[1].fingerprint, rubric.criteria[3].fingerprint,
    ]
    assert given_verdicts[0].criterion_fingerprint is None  # the caller's objects are not changed
    assert record.rubric_fingerprint == rubric.fingerprint
    assert (record.item_id, record.rubric_id, record.judge) == ("item-1", "r", "openai:gpt-4.1-mini")
    assert record.reward == 1.0  # (3 + 1) / (3 + 1)
    assert record.coverage == 0.5 and record.errors == 1


def test_aggregate_result_is_frozen():
    result = aggregate(make_rubric([crit("a")]), verdicts({"a": "met"}))
    assert isinstance(result, Aggregate)
    with pytest.raises(Exception, match="frozen"):
        result.reward = 0.0


# --------------------------------------------------------------------------- verdict rows


def _write_rows(path: Path, rows: list[dict | str]) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def row(item: str, cid: str, verdict: str = "met", rubric: str = "r", **extra) -> dict:
    return {"item_id": item, "rubric_id": rubric, "criterion_id": cid, "verdict": verdict, **extra}


def test_read_verdict_rows_names_file_line_and_field(tmp_path):
    path = _write_rows(tmp_path / "v.jsonl", [row("i1", "a"), "", row("i1", "b", verdict="yes")])
    rows = read_verdict_rows(path)
    assert next(rows).criterion_id == "a"
    with pytest.raises(RubricError) as info:
        next(rows)
    assert str(info.value) == (
        f"{path}:3: verdict: expected one of 'met', 'unmet', 'not_applicable' or 'error', got 'yes'"
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{not json", ":1: invalid JSON"),
        ("[1, 2]", ":1: expected a JSON object, got list"),
        (json.dumps(row("i", "a", confidence=1)), ":1: confidence: unknown key 'confidence'"),
        (json.dumps({"item_id": "i", "rubric_id": "r", "verdict": "met"}), ":1: criterion_id: missing"),
    ],
)
def test_read_verdict_rows_errors(tmp_path, line, expected):
    path = _write_rows(tmp_path / "v.jsonl", [line])
    with pytest.raises(RubricError, match=expected.replace("[", r"\[")):
        list(read_verdict_rows(path))


def test_read_verdict_rows_gzip_and_missing_file(tmp_path):
    path = _write_rows(tmp_path / "v.jsonl.gz", [row("i1", "a", p_met=0.25, level=None)])
    assert [r.p_met for r in read_verdict_rows(path)] == [0.25]
    with pytest.raises(RubricError, match="no such file"):
        list(read_verdict_rows(tmp_path / "absent.jsonl"))


def test_aggregate_rows_groups_by_item_and_rubric_in_first_seen_order():
    r1 = make_rubric([crit("a", 1), crit("b", 1)], id="r1")
    r2 = make_rubric([crit("x", 2)], id="r2", aggregation="sum")
    rows = [VerdictRow(**row(*args)) for args in [
        ("i2", "a", "met", "r1"),
        ("i1", "a", "unmet", "r1"),
        ("i2", "x", "met", "r2"),
        ("i1", "b", "met", "r1"),
        ("i2", "b", "met", "r1"),
    ]]
    records = list(aggregate_rows([r1, r2], rows))
    assert [(r.item_id, r.rubric_id) for r in records] == [("i2", "r1"), ("i1", "r1"), ("i2", "r2")]
    assert [r.reward for r in records] == [1.0, 0.5, 2.0]
    assert [[v.criterion_id for v in r.verdicts] for r in records] == [["a", "b"], ["a", "b"], ["x"]]
    assert all(r.judge is None for r in records)


def test_aggregate_rows_errors_name_the_item():
    rubric = make_rubric([crit("a")])
    with pytest.raises(RubricError, match="item 'i1': .*'a' has more than one verdict"):
        list(aggregate_rows([rubric], [VerdictRow(**row("i1", "a")), VerdictRow(**row("i1", "a", "unmet"))]))
    with pytest.raises(RubricError, match="item 'i1': rubric 'q' is not among"):
        list(aggregate_rows([rubric], [VerdictRow(**row("i1", "a", rubric="q"))]))


def test_aggregate_file_writes_records_and_reports_lines(tmp_path):
    rubric_path = tmp_path / "r.yaml"
    rubric_path.write_text("rubrickit: 1\nid: r\ncriteria:\n  - {id: a, text: A., weight: 3}\n"
                           "  - {id: b, text: B., weight: 1}\n")
    lines = [row("i1", "a"), row("i1", "b", "unmet"), row("i2", "b")]
    verdict_path = _write_rows(tmp_path / "v.jsonl", lines)
    out = tmp_path / "scores.jsonl"
    records = aggregate_file(rubric_path, verdict_path, out)
    assert [(r.item_id, r.reward, r.coverage) for r in records] == [("i1", 0.75, 1.0), ("i2", 1.0, 0.5)]
    written = [ScoreRecord.model_validate_json(line) for line in out.read_text().splitlines()]
    assert written == records
    with pytest.raises(OutputExistsError):
        aggregate_file(rubric_path, verdict_path, out)
    bad = _write_rows(tmp_path / "bad.jsonl", [row("i1", "a"), row("i1", "zz")])
    with pytest.raises(RubricError, match=r"bad\.jsonl:2: criterion_id: rubric 'r' has no criterion 'zz'"):
        aggregate_file(rubric_path, bad, None)
