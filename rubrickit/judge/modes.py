"""From judge replies to verdicts, per mode: reading each reply contract and building :class:`Verdict` objects;
the one-token path of logprob/likert modes on a choice-scoring backend (:class:`ChoiceScoring`, mixed into the
engine); and the audit trace of every request and reply (:class:`TraceWriter`).

One-token answers (logprob mode's Yes/No, likert's level digit) are read from token probabilities when the
completion carries them — the first generated position's top alternatives, renormalised over the allowed answers
(:func:`~rubrickit.backends.base.choice_probabilities`) — and from the text otherwise. ``p_met`` is P(Yes); the
verdict is ``met`` when P(Yes) ≥ 0.5. A likert level is the probability-weighted expected level Σ p(l)·l.

A criterion with ``applies_if`` judged with one token has two questions (:class:`ConditionalOutcome`): the
condition's P(Yes) is p_applies; below 0.5 the verdict is ``not_applicable`` (``p_met`` ``None``: nothing was
assessed), otherwise the criterion's own answer decides (met/unmet with ``p_met``, or the level).

A failure (backend error after retries, or a reply still unreadable after the re-asks) becomes an ``error`` verdict
for every criterion the call was deciding, with the reason and (for parse failures) the start of the raw reply; for
a criterion with a condition question, a failure of either of its two questions does.
An error is never turned into met, unmet or 0.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rubrickit.rubric.aggregation import HOLISTIC_ID

from ..backends._redact import redact
from ..backends.base import (
    ChoiceScores,
    Completion,
    CompletionRequest,
    FatalBackendError,
    RetryableBackendError,
    TokenLogprob,
    Usage,
    choice_probabilities,
)
from ..errors import JudgeUnavailableError
from ..rubric import Criterion, Verdict
from . import parse
from .accounting import estimate_tokens
from .parse import LevelReply, ParseError, RatingReply, VerdictReply
from .retry import call_with_retries
from .tasks import AB, YES_NO, Call, Task

__all__ = [
    "ChoiceReply",
    "ChoiceScoring",
    "ConditionalOutcome",
    "DigitReply",
    "Failure",
    "OwnerGone",
    "TraceWriter",
    "YesNoReply",
    "failure_of",
    "partial_errors",
    "read_reply",
    "task_verdicts",
    "token_distribution",
]

RAW_REPLY_LIMIT = 500
"""Characters of an unreadable raw reply kept in the error verdict."""


@dataclass(frozen=True)
class YesNoReply:
    """A one-token Yes/No answer; ``p_met`` is P(Yes) when probabilities were available."""

    met: bool
    p_met: float | None = None


@dataclass(frozen=True)
class ChoiceReply:
    """A one-token pairwise answer (A or B, in the order shown); ``p_a`` is P(A) when probabilities were available."""

    winner: str
    p_a: float | None = None


@dataclass(frozen=True)
class DigitReply:
    """A one-digit level answer; ``level`` is the expected level when probabilities were available."""

    level: float
    probabilities: dict[str, float] | None = None


@dataclass(frozen=True)
class ConditionalOutcome:
    """The two answers of a criterion judged with a condition question (a task with ``condition``): whether the
    condition holds and the criterion's own answer, each a read reply or a :class:`Failure`."""

    condition: Any
    """The condition question's outcome (a :class:`YesNoReply` or a :class:`Failure`)."""
    criterion: Any
    """The criterion question's outcome (a :class:`YesNoReply`, a :class:`DigitReply` or a :class:`Failure`)."""


@dataclass(frozen=True)
class Failure:
    """Why a call produced no usable reply."""

    kind: str
    """``backend`` (retryable failure after the retries), ``timeout``, ``fatal``, ``parse`` or ``unexpected``."""
    message: str
    """The reason."""
    raw: str | None = None
    """The last raw reply, for parse failures."""

    def describe(self) -> str:
        """The text of the error verdict: kind, reason and the (truncated) raw reply."""
        text = f"{self.kind}: {self.message}"
        if self.raw is not None:
            raw = self.raw if len(self.raw) <= RAW_REPLY_LIMIT else self.raw[:RAW_REPLY_LIMIT] + "…"
            text += f"; raw reply: {raw!r}"
        return text


class OwnerGone(Exception):
    """The call an identical request was waiting for was cancelled (the waiter then makes the call itself)."""


_UNUSABLE_STATUS = {401, 403, 404}
"""Authentication failed, permission denied, model (or endpoint) not found: no call of the run can succeed."""
_MODEL_MISSING = re.compile(r"(?i)model\b.{0,120}\b(not found|does not exist|not exist|is not available)|"
                            r"model_not_found|could not load the model|insufficient quota")


def judge_unusable(error: BaseException) -> bool:
    """Whether ``error`` means the judge can answer no call at all (the run stops rather than record errors)."""
    if isinstance(error, JudgeUnavailableError):
        return True
    if not isinstance(error, FatalBackendError):
        return False
    return error.status in _UNUSABLE_STATUS or bool(_MODEL_MISSING.search(str(error)))


def failure_of(error: Exception, policy: Any) -> Failure:
    """The :class:`Failure` of a call that raised ``error`` (after the retries of ``policy``).

    Raises :class:`~rubrickit.errors.JudgeUnavailableError` instead when the error says that no call can succeed
    (authentication, unknown model, an outage past the limit): the run stops at once rather than fill its output
    with ``error`` verdicts."""
    if isinstance(error, JudgeUnavailableError):
        raise error
    # Backends redact their own messages; a third-party backend's, or an SDK exception no backend mapped, may
    # still quote a URL with credentials, and these messages go into verdicts, the journal and the trace.
    said = redact(str(error))
    if judge_unusable(error):
        raise JudgeUnavailableError(
            f"{said}. The run stopped: no call can succeed until this is fixed. Records finished so far are kept; "
            "then run the command again (score and compare: with --resume, to continue)") from None
    if isinstance(error, FatalBackendError):
        return Failure("fatal", f"{type(error).__name__}: {said}")
    if isinstance(error, RetryableBackendError):
        return Failure("backend", f"{type(error).__name__}: {said} (gave up after {policy.max_attempts} attempts)")
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        return Failure("timeout", f"timed out (gave up after {policy.max_attempts} attempts)")
    return Failure("unexpected", f"{type(error).__name__}: {said}")


def token_distribution(completion: Completion, choices: tuple[str, ...]) -> dict[str, float] | None:
    """Probabilities of ``choices`` at the first generated position, or ``None`` without usable logprobs."""
    if not completion.logprobs:
        return None
    first = completion.logprobs[0]
    top = dict(first.top)
    top.setdefault(first.token, first.logprob)
    return choice_probabilities(top, choices)


def _letter(text: str) -> str:
    """A one-letter ``A``/``B`` reply read as text (no probabilities): the first non-blank character alone."""
    return parse.parse_letter(text)


def read_reply(call: Call, completion: Completion) -> Any:
    """Read a completion under the call's reply contract; raises :class:`ParseError` when it does not fulfil it."""
    text = completion.text
    reader = call.reader
    if reader == "verdict":
        return parse.parse_verdict(text)
    if reader == "level":
        return parse.parse_level(text, call.low, call.high, allow_not_applicable=call.allow_na)
    if reader == "rating":
        return parse.parse_rating(text, call.low, call.high)
    if reader == "winner":
        return parse.parse_winner(text)
    if reader == "per_response":
        return parse.parse_per_response(text, dict(call.scales))
    if reader == "yes_no":
        probabilities = token_distribution(completion, YES_NO)
        if probabilities is not None:
            return YesNoReply(met=probabilities["Yes"] >= 0.5, p_met=probabilities["Yes"])
        return YesNoReply(met=parse.parse_yes_no(text))
    if reader == "ab":
        probabilities = token_distribution(completion, AB)
        if probabilities is not None:
            p_a = probabilities["A"]
            return ChoiceReply(winner="A" if p_a >= 0.5 else "B", p_a=p_a)
        return ChoiceReply(winner=_letter(text))
    if reader == "digit":
        choices = call.choices or tuple(str(level) for level in range(call.low, call.high + 1))
        probabilities = token_distribution(completion, choices)
        if probabilities is not None:
            expected = math.fsum(int(choice) * p for choice, p in probabilities.items())
            return DigitReply(level=expected, probabilities=probabilities)
        return DigitReply(level=float(parse.parse_digit(text, call.low, call.high)))
    raise ValueError(f"unknown reader {reader!r}")  # pragma: no cover - tasks only build the readers above


def _error(criterion_id: str, reason: str) -> Verdict:
    return Verdict(criterion_id=criterion_id, verdict="error", error=reason)


def _level_verdict(criterion: Criterion, level: float | None, rationale: str | None) -> Verdict:
    if level is None:
        return Verdict(criterion_id=criterion.id, verdict="not_applicable", rationale=rationale)
    # The level decides a scale criterion's score; the label only summarises it (upper half of the scale = met).
    label = "met" if criterion.level_fraction(level) >= 0.5 else "unmet"
    return Verdict(criterion_id=criterion.id, verdict=label, level=level, rationale=rationale)


def _entry_verdict(criterion: Criterion, entry: VerdictReply | LevelReply | ParseError) -> Verdict:
    if isinstance(entry, ParseError):
        return _error(criterion.id, f"parse: {entry.reason}")
    if isinstance(entry, LevelReply):
        return _level_verdict(criterion, entry.level, entry.rationale)
    return Verdict(criterion_id=criterion.id, verdict=entry.verdict, rationale=entry.rationale)


def _probability(p: float | None, answer: bool) -> str:
    return f"P(Yes) = {p:.3f}" if p is not None else f"answered {'Yes' if answer else 'No'}"


def _conditional_verdict(criterion: Criterion, outcome: ConditionalOutcome) -> Verdict:
    """A criterion judged with a condition question: ``not_applicable`` when P(Yes) of the condition < 0.5, else the
    criterion's own answer. A failure of either question is an ``error``, never met, unmet or not_applicable."""
    condition, judged = outcome.condition, outcome.criterion
    if isinstance(condition, Failure):
        failed = Failure(condition.kind, f"condition question: {condition.message}", raw=condition.raw)
        return _error(criterion.id, failed.describe())
    if isinstance(judged, Failure):
        return _error(criterion.id, judged.describe())
    assert isinstance(condition, YesNoReply)
    applies = _probability(condition.p_met, condition.met)
    if not condition.met:
        # p_met stays None: the criterion was not assessed, and p_met means "the statement holds" of an assessed one.
        return Verdict(criterion_id=criterion.id, verdict="not_applicable",
                       rationale=f"not applicable: the condition does not hold ({applies})")
    rationale = f"the condition holds ({applies})"
    if isinstance(judged, DigitReply):
        return _level_verdict(criterion, judged.level, rationale)
    assert isinstance(judged, YesNoReply)
    return Verdict(criterion_id=criterion.id, verdict="met" if judged.met else "unmet", p_met=judged.p_met,
                   rationale=rationale)


def task_verdicts(task: Task, outcome: Any) -> list[Verdict]:
    """The verdicts a task's outcome (a read reply, a :class:`Failure`, or for a task with a condition question a
    :class:`ConditionalOutcome`) gives its criteria."""
    if task.verdict is not None:
        return [task.verdict]
    if isinstance(outcome, ConditionalOutcome):
        return [_conditional_verdict(task.criteria[0], outcome)]
    if isinstance(outcome, Failure):
        ids = [HOLISTIC_ID] if task.kind == "holistic" else [c.id for c in task.criteria]
        return [_error(cid, outcome.describe()) for cid in ids]
    if task.kind == "holistic":
        assert isinstance(outcome, RatingReply)
        return [Verdict(criterion_id=HOLISTIC_ID, verdict="met", level=float(outcome.rating),
                        rationale=outcome.rationale)]
    if task.kind == "per_response":
        return [_entry_verdict(c, outcome[c.id]) for c in task.criteria]
    criterion = task.criteria[0]
    if isinstance(outcome, VerdictReply):
        return [Verdict(criterion_id=criterion.id, verdict=outcome.verdict, rationale=outcome.rationale)]
    if isinstance(outcome, LevelReply):
        return [_level_verdict(criterion, outcome.level, outcome.rationale)]
    if isinstance(outcome, DigitReply):
        return [_level_verdict(criterion, outcome.level, None)]
    if isinstance(outcome, YesNoReply):
        return [Verdict(criterion_id=criterion.id, verdict="met" if outcome.met else "unmet", p_met=outcome.p_met)]
    raise TypeError(f"no verdict for outcome {type(outcome).__name__}")  # pragma: no cover


def partial_errors(task: Task, outcome: Any) -> int:
    """Criteria a per-response reply left out or got wrong (each an error verdict, counted as a parse error)."""
    if task.kind != "per_response" or isinstance(outcome, Failure) or not isinstance(outcome, dict):
        return 0
    return sum(1 for entry in outcome.values() if isinstance(entry, ParseError))


class TraceWriter:
    """Appends one JSON line per judge request to an audit file: what was sent, what came back, from where.

    Each line: ``time``, the ``context`` (item or pair id, rubric id, criteria, repeat, order), ``source``
    (``backend``, ``cache``, ``duplicate`` or ``error``), the exact ``request`` (messages and sampling
    parameters), the raw ``reply`` with its ``finish_reason``/``usage``, and ``error`` for failures. Requests and
    replies never hold credentials: backends read keys from the environment and never put them in either.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        """The JSONL file (appended to)."""
        self._fh: Any = None

    def write(self, context: Mapping[str, Any], request: CompletionRequest, completion: Completion | None,
              source: str, error: str | None = None) -> None:
        """Append one line (and flush it)."""
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run
        line = {
            "time": round(time.time(), 3),
            "context": dict(context),
            "source": source,
            "request": request.model_dump(mode="json"),
            "reply": completion.text if completion is not None else None,
            "finish_reason": completion.finish_reason if completion is not None else None,
            "usage": completion.usage.model_dump() if completion is not None else None,
            "error": error,
        }
        self._fh.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        """Close the file."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _choice_completion(probabilities: Mapping[str, float], request: CompletionRequest, spec: str) -> Completion:
    """A :class:`ChoiceScorer` answer as a one-token completion (so it is cached and read like any other).

    The usage is the backend's when it reports one (a :class:`~rubrickit.backends.base.ChoiceScores`: exact prompt
    tokens and the prefix tokens it reused, as ``cached_tokens``), else an estimate with nothing cached.
    """
    best = max(probabilities, key=lambda choice: probabilities[choice])
    top = {choice: math.log(p) if p > 0 else -1e4 for choice, p in probabilities.items()}
    token = TokenLogprob(token=best, logprob=top[best], top=top)
    usage = probabilities.usage if isinstance(probabilities, ChoiceScores) else None
    if not isinstance(usage, Usage):
        usage = Usage(input_tokens=estimate_tokens(request.prompt_text()), output_tokens=1)
    return Completion(text=best, logprobs=(token,), usage=usage, finish_reason="stop", model=spec)


class ChoiceScoring:
    """The engine's one-token path for a :class:`~rubrickit.backends.base.ChoiceScorer` backend (logprob and likert
    modes): the calls of one response that share a choice set go to ``score_choices`` together — every Yes/No
    question of the response (criteria and conditions) in one call, every digit question of one level range in
    another — so a local backend computes their shared prefix (instructions, conversation, response) once. Prompts
    with different choice sets do not share that prefix (the scale prompt has its own instructions), so grouping
    them would only shorten the common prefix of the call. Each answer becomes a one-token completion with the
    choices' log-probabilities, cached and read like any other. Mixed into :class:`Judge`.
    """

    # Provided by the engine (Judge): identity, options, accounting, cache, and its per-call helpers.
    spec: str
    backend: Any
    options: Any
    accounting: Any
    _cache: Any
    _sleep: Any
    _loop_state: Any
    _claim: Any
    _settle: Any
    _on_retry: Any
    _record: Any
    retry_policy: Any
    cache_key: Any

    async def _score_choices(self, calls: Sequence[Call]) -> list[Any]:
        requests = [call.request for call in calls]
        state = self._loop_state()
        async with state.semaphore:
            estimate = sum(estimate_tokens(r.prompt_text()) + 1 for r in requests)
            await state.limiter.acquire(estimate)
            results = list(await call_with_retries(
                lambda: self.backend.score_choices(requests, calls[0].choices),  # type: ignore[attr-defined]
                self.retry_policy, sleep=self._sleep, on_retry=self._on_retry))
            used = sum(r.usage.input_tokens + r.usage.output_tokens for r in results
                       if isinstance(r, ChoiceScores) and isinstance(r.usage, Usage))
            state.limiter.correct(estimate, used or estimate)
            return results

    async def choice_group(self, calls: Sequence[Call],
                           context: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[Any]:
        """Calls sharing one choice set, sent to the backend's ``score_choices`` together (one shared prefix).

        ``context`` is the trace context of every call, or a sequence with one per call.
        """
        contexts = [context] * len(calls) if isinstance(context, Mapping) else list(context)
        keys = [self.cache_key(call.request, call.salt) for call in calls]
        answers: list[Any] = [None] * len(calls)
        sources = ["backend"] * len(calls)
        waiting: dict[int, asyncio.Future] = {}
        owned: dict[int, asyncio.Future] = {}
        for index, key in enumerate(keys):
            future, mine = self._claim(key)
            hit = self._cache.get(key) if mine and self._cache is not None else None
            if not mine:
                waiting[index], sources[index] = future, "duplicate"
            elif hit is not None:
                self.accounting.record_completion(hit, from_cache=True)
                answers[index], sources[index] = hit, "cache"
                self._settle(key, future, hit)
            else:
                owned[index] = future
        if owned:
            await self._fill_owned(calls, keys, owned, answers)
        for index, future in waiting.items():
            try:
                answers[index] = await asyncio.shield(future)
            except Exception as error:  # includes an owner that was cancelled
                answers[index] = error
        return [self._read_choice(call, answer, source, ctx)
                for call, answer, source, ctx in zip(calls, answers, sources, contexts, strict=True)]

    async def _fill_owned(self, calls: Sequence[Call], keys: Sequence[str], owned: dict[int, asyncio.Future],
                          answers: list[Any]) -> None:
        try:
            results = await self._score_choices([calls[i] for i in owned])
        except asyncio.CancelledError:
            for index, future in owned.items():
                self._settle(keys[index], future, OwnerGone())
            raise
        except Exception as error:
            results = [error] * len(owned)
        if len(results) != len(owned):
            wrong = FatalBackendError(f"score_choices returned {len(results)} results for {len(owned)} requests")
            results = [wrong] * len(owned)
        for (index, future), result in zip(owned.items(), results, strict=True):
            if isinstance(result, BaseException):
                answers[index] = result
                self._settle(keys[index], future, result)
                continue
            completion = _choice_completion(result, calls[index].request, self.spec)
            self.accounting.record_completion(completion, from_cache=False)
            if self._cache is not None:
                self._cache.put(keys[index], completion, spec=self.spec)
            answers[index] = completion
            self._settle(keys[index], future, completion)

    def _read_choice(self, call: Call, answer: Any, source: str, context: Mapping[str, Any]) -> Any:
        if isinstance(answer, Exception):
            failure = failure_of(answer, self.retry_policy)
            self.accounting.record_error(failure.kind)
            self._record(context, call.request, None, "error", failure.describe())
            return failure
        self._record(context, call.request, answer, source)
        try:
            return read_reply(call, answer)
        except ParseError as error:
            self.accounting.record_error("parse")
            return Failure("parse", error.reason, raw=answer.text)
