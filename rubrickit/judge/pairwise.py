"""Pairwise comparison: which of two responses is better, per criterion in both orders, or directly.

With a rubric, every criterion is judged A-vs-B twice: as shown (A first) and swapped (B first); the swapped answer
is mapped back to the original letters. The judge is asked *for which response the statement holds*, so each order
gives a preference p ∈ {+1 (A), 0 (tie), −1 (B)} about the statement, and the criterion's preference is the mean
of the two orders (a position-biased judge that always says "first" gives +1 and −1 → 0). A programmatic check runs
on both responses instead: p = met(A) − met(B). The margin is Σ w_k · p_k, so a penalty (negative weight) favours
the response where the flaw does *not* hold; the winner is the sign of the margin (``tie`` at 0).

In logprob mode on a backend with token probabilities (a choice scorer such as ``hf:``/``embedded``, or logprobs),
each order is one token A/B instead of a JSON reply (``pairwise_choice*.j2``): P(A) of each order, mapped back to
the original letters, is kept (``p_a_ab``/``p_a_ba``, for calibration) and the order's preference is 2·P(A) − 1, so
the mean of the two orders is a soft preference in [−1, 1] (``pref_ab``/``pref_ba`` stay the hard signs, for
consistency). On a choice scorer every one-token question of a pair goes to one ``score_choices`` call.

``compare_pair(..., swap=False)`` judges the order shown only (no consistency then).

When the margin ties and ``pairwise_fallback`` is on, a direct judgment ("which response is better?", both orders)
decides. Without a rubric the direct judgment in both orders is the whole comparison. A judgment that fails in one
order uses the other; failing in both leaves the criterion out (``errors`` counts it). Every judgment failing
gives ``winner: None`` — a failure is never turned into a tie or a win.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..rubric import Criterion, Rubric
from .modes import ChoiceReply, Failure
from .parse import WinnerReply
from .tasks import Call, check_verdict

if TYPE_CHECKING:
    from rubrickit.data.items import PairItem

    from .engine import Judge

__all__ = ["DIRECT_ID", "PairDetail", "PairRecord", "compare_pair", "pair_calls"]

DIRECT_ID = "_direct"
"""The ``criterion_id`` of the direct (no rubric) judgment in :attr:`PairRecord.details`."""

_CONFIG = ConfigDict(extra="forbid", use_attribute_docstrings=True)
_EPSILON = 1e-9


class PairDetail(BaseModel):
    """One criterion (or the direct judgment) of a comparison."""

    model_config = _CONFIG

    criterion_id: str
    """The criterion, or ``_direct`` for the direct judgment."""
    weight: float = 1.0
    """The criterion's weight (1 for the direct judgment)."""
    pref_ab: int | None = None
    """Preference with A shown first: +1 the statement holds for A (not B), −1 for B, 0 tie; ``None`` on error."""
    pref_ba: int | None = None
    """Preference with B shown first, mapped back to the original letters (+1 still means A)."""
    preference: float | None = None
    """Mean of the available orders, in [−1, 1]; ``None`` when both failed."""
    p_a_ab: float | None = None
    """One-token judgments: P(A) with A shown first (``None`` for JSON replies or without probabilities)."""
    p_a_ba: float | None = None
    """One-token judgments: P(A) with B shown first, mapped back to the original letters."""
    rationale: str | None = None
    """The judge's rationale with A first (or the checks' details)."""
    rationale_swapped: str | None = None
    """The judge's rationale with B first."""
    error: str | None = None
    """Why a judgment failed (either order)."""


class PairRecord(BaseModel):
    """The result of comparing one pair (one JSON object per line of ``rubrickit compare`` output)."""

    model_config = _CONFIG

    pair_id: str
    """The pair's ``id``."""
    rubric_id: str | None = None
    """The rubric used; ``None`` for a direct comparison."""
    rubric_fingerprint: str | None = None
    """The rubric's fingerprint."""
    winner: Literal["A", "B", "tie"] | None
    """The better response by the sign of the margin; ``None`` when every judgment failed."""
    margin: float | None
    """Σ w_k · preference_k over the criteria judged (the direct preference, in [−1, 1], without a rubric)."""
    consistent: bool | None
    """Whether the two orders agree on the winner taken alone; ``None`` when an order could not be judged."""
    method: Literal["rubric", "direct", "rubric+direct"]
    """How the winner was decided: the rubric margin, the direct judgment, or the direct tie-break of a tie."""
    details: list[PairDetail] = Field(default_factory=list)
    """Per criterion (rubric order), then the direct judgment when one was made."""
    label: Literal["A", "B", "tie"] | None = None
    """The gold label of the pair, when it had one."""
    correct: bool | None = None
    """Whether ``winner`` equals ``label`` (``None`` without a label or a winner)."""
    subset: str | None = None
    """The pair's subset, for per-subset reports."""
    judge: str | None = None
    """Spec of the judge."""
    errors: int = 0
    """Failed judgments (each order counts)."""
    repeat: int = 0
    """Repeat index under ``--repeat N``."""


def _sign(value: float) -> int:
    return 0 if abs(value) < _EPSILON else (1 if value > 0 else -1)


def _winner(value: float) -> Literal["A", "B", "tie"]:
    return {1: "A", -1: "B", 0: "tie"}[_sign(value)]  # type: ignore[return-value]


def _preference(outcome: Any, swapped: bool) -> int | None:
    if isinstance(outcome, ChoiceReply):
        value = _sign(2 * outcome.p_a - 1) if outcome.p_a is not None else (1 if outcome.winner == "A" else -1)
    elif isinstance(outcome, WinnerReply):
        value = {"A": 1, "B": -1, "tie": 0}[outcome.winner]
    else:
        return None
    return -value if swapped else value


def _p_a(outcome: Any, swapped: bool) -> float | None:
    """P(original A) of a one-token judgment with probabilities."""
    if not isinstance(outcome, ChoiceReply) or outcome.p_a is None:
        return None
    return 1.0 - outcome.p_a if swapped else outcome.p_a


def _soft(pref: int | None, p_a: float | None) -> float | None:
    return 2 * p_a - 1 if p_a is not None else (float(pref) if pref is not None else None)


def _detail(criterion_id: str, weight: float, shown: Any, swapped: Any) -> PairDetail:
    prefs = [_preference(shown, False), _preference(swapped, True)]
    probabilities = [_p_a(shown, False), _p_a(swapped, True)]
    known = [v for v in (_soft(p, q) for p, q in zip(prefs, probabilities, strict=True)) if v is not None]
    errors = [o.describe() for o in (shown, swapped) if isinstance(o, Failure)]
    return PairDetail(
        criterion_id=criterion_id, weight=weight, pref_ab=prefs[0], pref_ba=prefs[1],
        preference=math.fsum(known) / len(known) if known else None,
        p_a_ab=probabilities[0], p_a_ba=probabilities[1],
        rationale=getattr(shown, "rationale", None), rationale_swapped=getattr(swapped, "rationale", None),
        error="; ".join(errors) or None,
    )


def _check_detail(criterion: Criterion, pair: PairItem) -> PairDetail:
    a, b = check_verdict(criterion, pair.response_a), check_verdict(criterion, pair.response_b)
    if "error" in (a.verdict, b.verdict):
        return PairDetail(criterion_id=criterion.id, weight=criterion.weight, error=a.error or b.error)
    pref = int(a.verdict == "met") - int(b.verdict == "met")
    return PairDetail(criterion_id=criterion.id, weight=criterion.weight, pref_ab=pref, pref_ba=pref,
                      preference=float(pref), rationale=f"A: {a.rationale}; B: {b.rationale}")


def pair_calls(judge: Judge, rubric: Rubric | None, pair: PairItem, repeat: int) -> tuple[list[Call], int]:
    """The calls of one comparison (both orders of each judged criterion, or of the direct judgment) and the
    number of criteria decided by checks (for plans)."""
    builder = judge.builder
    if rubric is None:
        return [builder.pair_direct_call(pair, s, repeat) for s in (False, True)], 0
    calls = [builder.pair_criterion_call(c, pair, s, repeat) for c in rubric.criteria if c.check is None
             for s in (False, True)]
    return calls, sum(1 for c in rubric.criteria if c.check is not None)


async def _judge_calls(judge: Judge, calls: list[Call], contexts: list[dict[str, Any]]) -> list[Any]:
    """The read replies of ``calls``: for one-token calls on a choice scorer, one ``score_choices`` call per order
    (the calls of one order share instructions and both responses, computed once; a direct judgment's two calls go
    together), otherwise concurrent calls."""
    if calls and judge.builder.choice_scorer and all(call.choices for call in calls):
        if len(calls) <= 2:
            return await judge.choice_group(calls, contexts)
        orders: dict[str, list[int]] = {}
        for index, context in enumerate(contexts):
            orders.setdefault(str(context.get("order")), []).append(index)
        groups = list(orders.values())
        found = await asyncio.gather(*(judge.choice_group([calls[i] for i in g], [contexts[i] for i in g])
                                       for g in groups))
        answers: list[Any] = [None] * len(calls)
        for group, replies in zip(groups, found, strict=True):
            for index, reply in zip(group, replies, strict=True):
                answers[index] = reply
        return answers
    return list(await asyncio.gather(*(judge.run_call(c, ctx) for c, ctx in zip(calls, contexts, strict=True))))


def _order_calls(build: Any, swap: bool) -> list[Call]:
    return [build(False)] + ([build(True)] if swap else [])


async def _direct(judge: Judge, pair: PairItem, repeat: int, context: dict[str, Any], swap: bool = True) -> PairDetail:
    calls = _order_calls(lambda s: judge.builder.pair_direct_call(pair, s, repeat), swap)
    contexts = [{**context, "criteria": [DIRECT_ID], "order": order} for order in ("AB", "BA")[: len(calls)]]
    answers = await _judge_calls(judge, calls, contexts)
    return _detail(DIRECT_ID, 1.0, answers[0], answers[1] if swap else None)


async def _rubric_details(judge: Judge, rubric: Rubric, pair: PairItem, repeat: int,
                          context: dict[str, Any], swap: bool = True) -> list[PairDetail]:
    judged = [c for c in rubric.criteria if c.check is None]
    calls: list[Call] = []
    contexts: list[dict[str, Any]] = []
    for criterion in judged:
        found = _order_calls(lambda s, c=criterion: judge.builder.pair_criterion_call(c, pair, s, repeat), swap)
        calls.extend(found)
        contexts.extend({**context, "criteria": [criterion.id], "order": o} for o in ("AB", "BA")[: len(found)])
    answers = iter(await _judge_calls(judge, calls, contexts))
    found_details: dict[str, PairDetail] = {}
    for criterion in judged:
        shown = next(answers)
        swapped = next(answers) if swap else None
        found_details[criterion.id] = _detail(criterion.id, criterion.weight, shown, swapped)
    return [_check_detail(c, pair) if c.check is not None else found_details[c.id] for c in rubric.criteria]


def _consistent(details: list[PairDetail]) -> bool | None:
    """Whether the A-first and B-first judgments alone pick the same winner."""
    if not details or any(d.pref_ab is None or d.pref_ba is None for d in details):
        return None
    first = math.fsum(d.weight * d.pref_ab for d in details)  # type: ignore[operator]
    second = math.fsum(d.weight * d.pref_ba for d in details)  # type: ignore[operator]
    return _sign(first) == _sign(second)


def _margin(details: list[PairDetail]) -> float | None:
    judged = [d for d in details if d.preference is not None]
    return math.fsum(d.weight * d.preference for d in judged) if judged else None  # type: ignore[operator]


async def compare_pair(judge: Judge, rubric: Rubric | None, pair: PairItem, repeat: int = 0, *,
                       swap: bool = True) -> PairRecord:
    """Compare one pair with ``judge`` (see the module docs for the semantics); ``swap=False`` judges the order
    shown only."""
    context: dict[str, Any] = {"pair_id": pair.id, "rubric_id": rubric.id if rubric else None, "repeat": repeat}
    if rubric is None:
        details = [await _direct(judge, pair, repeat, context, swap)]
        method: Literal["rubric", "direct", "rubric+direct"] = "direct"
        margin = details[0].preference
        consistent = _consistent(details)
        decisive = margin
    else:
        details = await _rubric_details(judge, rubric, pair, repeat, context, swap)
        method, margin, consistent = "rubric", _margin(details), _consistent(details)
        decisive = margin
        if margin is not None and _sign(margin) == 0 and judge.options.pairwise_fallback:
            direct = await _direct(judge, pair, repeat, context, swap)
            details.append(direct)
            method = "rubric+direct"
            decisive = direct.preference if direct.preference is not None else margin
    winner = _winner(decisive) if decisive is not None else None
    errors = sum((d.pref_ab is None) + (d.pref_ba is None) for d in details if d.error is not None)
    return PairRecord(
        pair_id=pair.id, rubric_id=rubric.id if rubric else None,
        rubric_fingerprint=rubric.fingerprint if rubric else None, winner=winner, margin=margin,
        consistent=consistent, method=method, details=details, label=pair.label,
        correct=(winner == pair.label) if pair.label is not None and winner is not None else None,
        subset=pair.subset, judge=judge.spec, errors=errors, repeat=repeat,
    )
