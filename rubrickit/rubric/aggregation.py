"""Turning verdicts into rewards (DESIGN §4); docs/aggregation.md has every formula with a worked example.

Vocabulary. A criterion is *assessed* when its verdict is ``met`` or ``unmet`` (and, for a scale
criterion, the verdict carries a ``level``). ``error`` and ``not_applicable`` verdicts, and criteria with no
verdict at all, are unassessed: they leave the numerator *and* the denominator and only lower ``coverage``
(assessed / criteria).
An ``error`` is never turned into met, unmet or 0. Each assessed criterion contributes m ∈ [0, 1]:

- ``met`` → 1, ``unmet`` → 0; in soft mode ``p_met`` where the verdict has one (else 1/0 from the label);
- a scale criterion → ``criterion.level_fraction(level)`` = (level − min) / (max − min), whatever the label.

Aggregations (``rubric.aggregation``), over the assessed criteria with weights w:

- ``weighted_mean``: Σ w·m / Σ positive w, clipped to [0, 1] unless ``rubric.raw``; penalty-only (no positive
  weight assessed): 1 + Σ w·m / Σ |w|.
- ``points``: HealthBench's ``calculate_score``: Σ w·m / Σ positive w, never clipped per example; ``None``
  when no positive weight was assessed. :func:`points_summary` gives HealthBench's dataset score and
  bootstrap std.
- ``sum``: Σ w·m.
- ``holistic``: one 1–10 rating, stored as the verdict of :data:`HOLISTIC_ID` with ``level``, mapped to
  (rating − 1) / 9.

Gates (``rubric.gates == "hard"``): a ``kind: hard`` criterion without a scale whose constraint is violated —
``unmet`` when its weight is ≥ 0, ``met`` when it is a penalty — makes the reward min(reward, 0).
"""

from __future__ import annotations

import difflib
import json
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from rubrickit._util.io import atomic_write_text, iter_jsonl_lines, loads_json, no_rows, refuse_existing
from rubrickit.errors import RubricError, format_location
from rubrickit.rubric.model import Criterion, Fingerprints, Rubric, ScoreRecord, Verdict, VerdictRow

__all__ = [
    "HOLISTIC_ID",
    "Aggregate",
    "aggregate",
    "aggregate_file",
    "aggregate_rows",
    "points_summary",
    "read_verdict_rows",
    "score_record",
]

HOLISTIC_ID = "_holistic"
"""The ``criterion_id`` of the single 1–10 rating verdict of a ``holistic`` rubric (not a valid slug, so it
cannot clash with a criterion id)."""

_ASSESSED_LABELS = ("met", "unmet")


class Aggregate(BaseModel):
    """The reward of one response under one rubric, with what it was computed from."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    reward: float | None
    """The aggregated reward; ``None`` when nothing was assessed (see docs/aggregation.md)."""
    coverage: float
    """assessed / total, in [0, 1]."""
    gates_failed: list[str]
    """Ids of hard criteria whose constraint was violated (the reward became min(reward, 0))."""
    subscores: dict[str, float | None]
    """Per tag, in first-seen rubric order: the same aggregation over the criteria with that tag, no gates."""
    errors: int
    """Number of ``error`` verdicts."""
    assessed: int
    """Number of criteria that entered the reward (for ``holistic``: 1 when the rating is usable, else 0)."""
    total: int
    """Number of criteria in the rubric (for ``holistic``: 1, the rating)."""


# --------------------------------------------------------------------------- one response


def _index_verdicts(rubric: Rubric, verdicts: Sequence[Verdict]) -> dict[str, Verdict]:
    """Map criterion id → verdict; refuse unknown or repeated ids and verdicts judged on another criterion."""
    criteria = {c.id: c for c in rubric.criteria}
    allowed = set(criteria) | ({HOLISTIC_ID} if rubric.aggregation == "holistic" else set())
    by_id: dict[str, Verdict] = {}
    for verdict in verdicts:
        cid = verdict.criterion_id
        if cid not in allowed:
            close = difflib.get_close_matches(cid, sorted(allowed), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            if cid == HOLISTIC_ID:
                hint = f"a {HOLISTIC_ID!r} rating only counts for 'aggregation: holistic' rubrics; "
            raise RubricError(
                f"rubric {rubric.id!r}: a verdict names criterion {cid!r}, which the rubric does not have; "
                f"{hint}its criteria are: {', '.join(criteria)}"
            )
        if cid in by_id:
            raise RubricError(
                f"rubric {rubric.id!r}: criterion {cid!r} has more than one verdict; "
                "give one verdict per criterion"
            )
        criterion = criteria.get(cid)
        stamp = verdict.criterion_fingerprint
        if criterion is not None and stamp is not None and stamp != criterion.fingerprint:
            raise RubricError(
                f"rubric {rubric.id!r}: the verdict for criterion {cid!r} was judged on fingerprint "
                f"{stamp}, but the criterion is now {criterion.fingerprint} (its text, kind, scale, check or "
                "applies_if changed); re-judge this criterion"
            )
        by_id[cid] = verdict
    return by_id


def _usable_level(verdict: Verdict) -> float | None:
    level = verdict.level
    return level if level is not None and math.isfinite(level) else None


def _contribution(criterion: Criterion, verdict: Verdict | None, soft: bool) -> float | None:
    """m ∈ [0, 1] for an assessed criterion, ``None`` when it is unassessed."""
    if verdict is None or verdict.verdict not in _ASSESSED_LABELS:
        return None
    if criterion.scale is not None:
        level = _usable_level(verdict)
        # A scale criterion is judged by its level; without one there is nothing to score.
        return None if level is None else criterion.level_fraction(level)
    if soft and verdict.p_met is not None:
        return verdict.p_met
    return 1.0 if verdict.verdict == "met" else 0.0


def _combine(rubric: Rubric, terms: Sequence[tuple[float, float]]) -> float | None:
    """The reward from ``(weight, m)`` of the assessed criteria (not for ``holistic``)."""
    if not terms:
        return None
    # fsum is correctly rounded, so the reward does not depend on criterion order; for integral weights
    # (HealthBench points) it equals HealthBench's plain left-to-right sum exactly.
    achieved = math.fsum(w * m for w, m in terms)
    if rubric.aggregation == "sum":
        return achieved
    positive = math.fsum(w for w, _ in terms if w > 0)
    if rubric.aggregation == "points":
        return achieved / positive if positive > 0 else None
    if positive > 0:
        reward = achieved / positive
        return reward if rubric.raw else min(1.0, max(0.0, reward))
    magnitude = math.fsum(abs(w) for w, _ in terms)
    if magnitude == 0:
        return None  # only zero-weight criteria were assessed: there is no scale to put a reward on
    return 1.0 + achieved / magnitude


def _gates_failed(rubric: Rubric, by_id: dict[str, Verdict]) -> list[str]:
    if rubric.gates != "hard":
        return []
    failed = []
    for criterion in rubric.criteria:
        verdict = by_id.get(criterion.id)
        if criterion.kind != "hard" or criterion.scale is not None or verdict is None:
            continue
        # The label decides (also in soft mode). A penalty's statement describes the violation itself.
        violated = "met" if criterion.is_penalty else "unmet"
        if verdict.verdict == violated:
            failed.append(criterion.id)
    return failed


def _tags(rubric: Rubric) -> list[str]:
    return list(dict.fromkeys(tag for criterion in rubric.criteria for tag in criterion.tags))


def _gated(reward: float | None, gates_failed: list[str]) -> float | None:
    # min(reward, 0): 0 for bounded rewards; a gate never raises a raw/points/sum reward that is already < 0.
    if reward is None or not gates_failed:
        return reward
    return min(reward, 0.0)


def _holistic(rubric: Rubric, by_id: dict[str, Verdict], errors: int) -> Aggregate:
    rating = by_id.get(HOLISTIC_ID)
    level = _usable_level(rating) if rating is not None and rating.verdict == "met" else None
    reward = None if level is None else min(1.0, max(0.0, (level - 1.0) / 9.0))
    gates = _gates_failed(rubric, by_id)
    return Aggregate(
        reward=_gated(reward, gates), coverage=0.0 if level is None else 1.0, gates_failed=gates,
        subscores=dict.fromkeys(_tags(rubric)), errors=errors, assessed=0 if level is None else 1, total=1,
    )


def aggregate(rubric: Rubric, verdicts: Sequence[Verdict], *, soft: bool | None = None) -> Aggregate:
    """Aggregate one response's verdicts into a reward under ``rubric.aggregation`` (DESIGN §4).

    ``soft`` overrides ``rubric.soft`` (use ``p_met`` instead of 0/1 where a verdict has one). Raises
    :class:`RubricError` for a verdict naming a criterion the rubric does not have, two verdicts for one
    criterion, or a verdict stamped with a criterion fingerprint that is not the criterion's current one.
    """
    by_id = _index_verdicts(rubric, verdicts)
    errors = sum(1 for v in by_id.values() if v.verdict == "error")
    if rubric.aggregation == "holistic":
        return _holistic(rubric, by_id, errors)
    use_soft = rubric.soft if soft is None else soft
    assessed: list[tuple[Criterion, float]] = []
    for criterion in rubric.criteria:
        m = _contribution(criterion, by_id.get(criterion.id), use_soft)
        if m is not None:
            assessed.append((criterion, m))
    gates = _gates_failed(rubric, by_id)
    reward = _gated(_combine(rubric, [(c.weight, m) for c, m in assessed]), gates)
    subscores = {
        tag: _combine(rubric, [(c.weight, m) for c, m in assessed if tag in c.tags]) for tag in _tags(rubric)
    }
    total = len(rubric.criteria)
    return Aggregate(
        reward=reward, coverage=len(assessed) / total, gates_failed=gates, subscores=subscores, errors=errors,
        assessed=len(assessed), total=total,
    )


def score_record(
    rubric: Rubric, verdicts: Sequence[Verdict], *, item_id: str, judge: str | None = None,
    fingerprints: Fingerprints | None = None,
) -> ScoreRecord:
    """The :class:`ScoreRecord` of one judged item: :func:`aggregate` plus the verdicts in rubric order.

    Each verdict's ``criterion_fingerprint`` is filled in from the rubric when missing; a holistic rating
    comes after the criteria. Criteria without a verdict have none in the record (they lower ``coverage``).
    ``fingerprints`` are the rubric's, when the caller computed them once for many records.
    """
    if fingerprints is None:
        fingerprints = Fingerprints.of(rubric)
    result = aggregate(rubric, verdicts)
    by_id = {v.criterion_id: v for v in verdicts}
    ordered: list[Verdict] = []
    for criterion in rubric.criteria:
        verdict = by_id.get(criterion.id)
        if verdict is None:
            continue
        if verdict.criterion_fingerprint is None:
            verdict = verdict.model_copy(update={"criterion_fingerprint": fingerprints.criteria[criterion.id]})
        ordered.append(verdict)
    if HOLISTIC_ID in by_id:
        ordered.append(by_id[HOLISTIC_ID])
    return ScoreRecord(
        item_id=item_id, rubric_id=rubric.id, rubric_fingerprint=fingerprints.rubric, reward=result.reward,
        coverage=result.coverage, gates_failed=result.gates_failed, judge=judge, verdicts=ordered,
        subscores=result.subscores, errors=result.errors,
    )


# --------------------------------------------------------------------------- a data set (HealthBench)


def points_summary(
    rewards: Sequence[float | None], *, n_bootstrap: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """HealthBench's data-set score from per-example ``points`` rewards.

    As simple-evals' ``_compute_clipped_stats``: ``score`` is the mean clipped to [0, 1]; ``bootstrap_std`` is
    the population std of the clipped means of ``n_bootstrap`` resamples (with replacement, of the same size).
    The resampling draws exactly the indices ``np.random.seed(seed); np.random.choice(values, len(values))``
    would, so the std equals HealthBench's after ``np.random.seed(seed)`` (HealthBench leaves the seed unset).
    ``None`` rewards are left out, as HealthBench leaves out ``None`` scores; ``n_unscored`` counts them.

    Returns ``{"score", "bootstrap_std", "n_samples", "n_unscored"}``; ``score`` and ``bootstrap_std`` are
    ``None`` when no reward is left.
    """
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be at least 1, got {n_bootstrap!r}")
    if not 0 <= seed <= 0xFFFFFFFF:
        raise ValueError(f"seed must be between 0 and 2**32 - 1 (as numpy's), got {seed!r}")
    values = [float(r) for r in rewards if r is not None]
    summary: dict[str, Any] = {
        "score": None, "bootstrap_std": None, "n_samples": len(values),
        "n_unscored": len(rewards) - len(values),
    }
    if not values:
        return summary
    summary["score"] = _clipped_mean(values)
    rng = _numpy_legacy_random(seed)
    n = len(values)
    means = [
        _clipped_mean([values[_numpy_legacy_index(rng, n)] for _ in range(n)]) for _ in range(n_bootstrap)
    ]
    centre = math.fsum(means) / len(means)
    summary["bootstrap_std"] = math.sqrt(math.fsum((x - centre) ** 2 for x in means) / len(means))
    return summary


def _clipped_mean(values: Sequence[float]) -> float:
    return min(1.0, max(0.0, math.fsum(values) / len(values)))


def _numpy_legacy_random(seed: int) -> random.Random:
    """A Mersenne Twister in the state ``numpy.random.seed(seed)`` leaves numpy's legacy generator in.

    Python's ``random`` runs the same MT19937; only the seeding differs (numpy seeds an integer with
    ``init_genrand``, Python with ``init_by_array``), so the state is built here and handed over.
    """
    key, state = [], seed & 0xFFFFFFFF
    for position in range(624):
        key.append(state)
        state = (1812433253 * (state ^ (state >> 30)) + position + 1) & 0xFFFFFFFF
    rng = random.Random()
    rng.setstate((3, (*key, 624), None))
    return rng


def _numpy_legacy_index(rng: random.Random, n: int) -> int:
    """One index in [0, n) as numpy's legacy ``randint(0, n)`` draws it: masked rejection on 32-bit words."""
    if n == 1:
        return 0  # numpy draws nothing for a one-value range
    highest = n - 1
    mask = (1 << highest.bit_length()) - 1
    while True:
        value = rng.getrandbits(32) & mask
        if value <= highest:
            return value


# --------------------------------------------------------------------------- verdict rows (the CLI's input)


def _row_problems(exc: ValidationError, path: str | Path, number: int) -> list[str]:
    from rubrickit.rubric.files import describe_error  # the loader's wording, so rubric and verdict files read alike

    problems = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or None
        allowed = list(VerdictRow.model_fields) if error["type"] == "extra_forbidden" else None
        problems.append(format_location(path, number, field, describe_error(error, allowed)))
    return problems


def _numbered_rows(path: str | Path) -> Iterator[tuple[int, VerdictRow]]:
    if not Path(path).exists():
        raise RubricError.at(path, None, None, "no such file; give the JSONL file of verdict rows")
    for number, text in iter_jsonl_lines(path):
        try:
            data = loads_json(text)
        except json.JSONDecodeError as exc:
            message = f"invalid JSON: {exc.msg} at column {exc.colno}"
            raise RubricError.at(path, number, None, message) from None
        if not isinstance(data, dict):
            raise RubricError.at(path, number, None, f"expected a JSON object, got {type(data).__name__}")
        try:
            row = VerdictRow.model_validate(data)
        except ValidationError as exc:
            raise RubricError(_row_problems(exc, path, number)) from None
        yield number, row


def read_verdict_rows(path: str | Path) -> Iterator[VerdictRow]:
    """Stream verdict rows from a JSONL (or ``.jsonl.gz``) file.

    Each line is ``{item_id, rubric_id, criterion_id, verdict, p_met?, level?}`` (plus any other
    :class:`Verdict` field: ``criterion_fingerprint``, ``rationale``, ``error``). A bad line raises
    :class:`RubricError` naming ``file:line: field: problem``.
    """
    for _, row in _numbered_rows(path):
        yield row


def _rubric_index(rubrics: Iterable[Rubric]) -> dict[str, Rubric]:
    index: dict[str, Rubric] = {}
    for rubric in rubrics:
        if rubric.id in index and index[rubric.id] is not rubric:
            raise RubricError(f"two rubrics have the id {rubric.id!r}; verdict rows cannot tell them apart")
        index[rubric.id] = rubric
    return index


def _unknown_rubric(rubric_id: str, index: dict[str, Rubric]) -> str:
    close = difflib.get_close_matches(rubric_id, list(index), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"rubric {rubric_id!r} is not among the {len(index)} rubric(s) given{hint}"


def aggregate_rows(rubrics: Iterable[Rubric], rows: Iterable[VerdictRow]) -> Iterator[ScoreRecord]:
    """Group verdict rows by ``(item_id, rubric_id)`` in first-seen order; yield one score record per group.

    All rows are read before the first record is yielded (a group's rows need not be adjacent). Records carry
    ``judge=None``. Errors (unknown rubric or criterion, repeated verdict) are :class:`RubricError` naming the
    item.
    """
    index = _rubric_index(rubrics)
    groups: dict[tuple[str, str], list[Verdict]] = {}
    fields = set(Verdict.model_fields)
    for row in rows:
        if row.rubric_id not in index:
            raise RubricError(f"item {row.item_id!r}: {_unknown_rubric(row.rubric_id, index)}")
        verdict = Verdict.model_validate(row.model_dump(include=fields))
        groups.setdefault((row.item_id, row.rubric_id), []).append(verdict)
    for (item_id, rubric_id), verdicts in groups.items():
        try:
            yield score_record(index[rubric_id], verdicts, item_id=item_id)
        except RubricError as exc:
            raise RubricError([f"item {item_id!r}: {problem}" for problem in exc.problems]) from None


def aggregate_file(
    rubric_path: str | Path,
    verdicts_path: str | Path,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    allow_empty: bool = False,
) -> list[ScoreRecord]:
    """``rubrickit aggregate``: recompute score records from a rubric (or rubric set) and a verdict-row file.

    Rows naming an unknown rubric or criterion are reported with ``file:line``. With ``out``, the records are
    written there as JSONL (atomically; an existing file only with ``overwrite``). A verdict file with no rows is
    an error unless ``allow_empty`` (then a warning, ``[]``, and nothing written).
    """
    from rubrickit.rubric.files import load_rubrics, model_to_jsonl

    if out is not None:
        refuse_existing(out, overwrite=overwrite)
    index = _rubric_index(load_rubrics(rubric_path))
    criterion_ids = {rid: {c.id for c in rubric.criteria} | {HOLISTIC_ID} for rid, rubric in index.items()}
    rows: list[VerdictRow] = []
    for number, row in _numbered_rows(verdicts_path):
        if row.rubric_id not in index:
            raise RubricError.at(verdicts_path, number, "rubric_id", _unknown_rubric(row.rubric_id, index))
        if row.criterion_id not in criterion_ids[row.rubric_id]:
            rubric = index[row.rubric_id]
            raise RubricError(format_location(
                verdicts_path, number, "criterion_id",
                f"rubric {rubric.id!r} has no criterion {row.criterion_id!r} "
                f"(it has: {', '.join(c.id for c in rubric.criteria)})",
            ))
        rows.append(row)
    if not rows:
        no_rows(verdicts_path, allow_empty=allow_empty)
        return []
    records = list(aggregate_rows(index.values(), rows))
    if out is not None:
        atomic_write_text(out, model_to_jsonl(records), overwrite=overwrite)
    return records
