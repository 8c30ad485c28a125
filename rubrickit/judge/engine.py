"""The judge engine: :class:`Judge` turns rubrics and responses into score records (and pairs into pair records).

Every path is written once, async; ``score``/``score_many``/``compare``/``compare_many`` are small sync facades that
run it on a private event-loop thread (so they work inside and outside a running loop, and a backend's connection
pool stays on one loop). Per call the engine: builds the request (:mod:`.tasks`), deduplicates identical requests
in flight and recently finished (one call, the answer fanned out), looks it up in the persistent cache, waits for a
concurrency slot and the rate limits, calls the backend with retries (batched for a
:class:`~rubrickit.backends.base.BatchBackend`), re-asks a bounded number of times when the reply cannot be read,
and records every failure as an ``error`` verdict — never as met, unmet or 0.

This module holds :class:`Judge` (its public API and the path of one call: dedup, cache, limits, retries, re-asks);
beside it, :mod:`.options` has :class:`JudgeOptions`, :mod:`.loop` the per-loop state and the sync facades' loop
thread, and :mod:`.streaming` the bounded window of ``ascore_many``/``acompare_many``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from rubrickit.data.items import DataItem, PairItem, coerce_items, coerce_pairs
from rubrickit.rubric.aggregation import score_record

from ..backends.base import Backend, ChoiceScorer, Completion, CompletionRequest
from ..rubric import Fingerprints, Rubric, RubricSet, ScoreRecord
from .accounting import Accounting, Plan, estimate_tokens
from .breaker import CircuitBreaker, is_outage
from .cache import JudgeCache, cache_identity, default_cache_dir, templates_hash
from .journal import Journal
from .loop import LoopState, Runner
from .modes import (
    ChoiceScoring,
    ConditionalOutcome,
    Failure,
    OwnerGone,
    TraceWriter,
    failure_of,
    partial_errors,
    read_reply,
    task_verdicts,
)
from .options import JudgeModeError, JudgeOptions
from .parse import ParseError
from .prompts import PromptLibrary
from .retry import RetryPolicy, call_with_retries
from .streaming import check_journal, jobs_left, stream_jobs
from .tasks import Call, Task, TaskBuilder, assign_rubrics, build_plan

__all__ = ["Judge", "JudgeModeError", "JudgeOptions", "set_run_announcer"]

_announcer: Callable[[str], object] | None = None


def set_run_announcer(announce: Callable[[str], object] | None) -> None:
    """Have every new :class:`Judge` report its :meth:`Judge.describe` line to ``announce`` (the CLI prints it as
    the run's header on standard error; ``None``, the default for library use, turns it off)."""
    global _announcer
    _announcer = announce


T = TypeVar("T")
Rubrics = Rubric | RubricSet | Sequence[Rubric]

_MEMO_LIMIT = 4096
"""Answers kept in memory to deduplicate identical requests of a run: the most recent ones (calls in flight and just
finished, where repeats come from: a condition shared by criteria, the orders of a pair). An older repeat is answered
by the persistent cache (or asked again with the cache off). Bounded so a long job's memory stays flat
(bench/RESULTS-memory.md); 50,000 held about 1 KiB per finished call."""
_timeout = getattr(asyncio, "timeout", None)  # Python 3.11+


class Judge(ChoiceScoring):
    """Scores responses against rubrics (and compares pairs) with one backend.

    ``judge`` is a spec string (``openai:gpt-4.1-mini``, ``hf:Qwen/…``, ``fake:x``), a backend object, or ``None``
    for the embedded judge. Options come from ``options`` with ``option_overrides`` applied
    (``Judge("openai:gpt-4.1-mini", mode="logprob", concurrency=32)``); ``backend_options`` go to the backend's
    factory. A backend created here is closed by :meth:`close`/:meth:`aclose`; a backend object passed in is not.
    """

    def __init__(self, judge: str | Backend | None = None, *, base_url: str | None = None,
                 options: JudgeOptions | None = None, backend_options: dict[str, Any] | None = None,
                 **option_overrides: Any):
        from ..backends.registry import get_backend

        base = options or JudgeOptions()
        if option_overrides:
            base = JudgeOptions.model_validate({**dict(base), **option_overrides})
        self.options: JudgeOptions = base
        """The options in force."""
        self._owns_backend = judge is None or isinstance(judge, str)
        backend_options = dict(backend_options or {})
        kind = judge.partition(":")[0].strip().lower() if isinstance(judge, str) else None
        if base.timeout is not None and kind in ("openai", "litellm"):
            backend_options.setdefault("timeout", base.timeout)
        if base.transport is not None and kind == "openai":
            backend_options.setdefault("transport", base.transport)
        if kind == "openai":  # the structured-output form a server accepts is remembered beside the judge cache
            backend_options.setdefault("capabilities_dir", (base.cache_dir or default_cache_dir()) if base.use_cache
                                       else False)
        self.backend: Backend = get_backend(judge, base_url=base_url, **backend_options)
        """The backend that answers."""
        self.mode_defaulted = base.mode is None
        """Whether the mode is the backend's default (no mode was chosen)."""
        if base.mode is None:
            base = base.model_copy(update={"mode": getattr(self.backend.capabilities, "default_mode",
                                                           "per_criterion")})
            self.options = base
        if _announcer is not None:
            _announcer(self.describe())
        self.library = PromptLibrary(base.templates_dir)
        """The prompt templates."""
        self.accounting = Accounting(judge=self.backend.spec)
        """Calls, tokens, cache hits, retries, errors and cost so far."""
        self.duplicates = 0
        """Requests answered by an identical request of the same run (deduplicated, no call)."""
        self._scorer = isinstance(self.backend, ChoiceScorer)
        self.builder = TaskBuilder(self.library, self.backend.capabilities, mode=base.mode,
                                   max_tokens=base.max_tokens, temperature=base.temperature,
                                   choice_scorer=self._scorer)
        """Builds the tasks and requests."""
        self._cache = JudgeCache(base.cache_dir or default_cache_dir()) if base.use_cache else None
        self._identity = cache_identity(self.backend, templates_hash(base.templates_dir))
        self.retry_policy: RetryPolicy = (base.retry if base.max_retries is None
                                          else dataclasses.replace(base.retry, max_attempts=base.max_retries + 1))
        """The retry policy in force (``max_retries`` applied)."""
        self._trace = TraceWriter(base.trace_path) if base.trace_path is not None else None
        self._state: LoopState | None = None
        self._runner: Runner | None = None
        # Waits and time of retries and rate limits (tests inject fakes so they never sleep).
        self._sleep: Callable[[float], Awaitable[object]] = asyncio.sleep
        self._clock: Callable[[], float] = time.monotonic
        self.breaker = CircuitBreaker(spec=self.backend.spec, max_outage=base.max_outage)
        """Pauses calls while the judge is unreachable, and stops the run when it stays so."""
        self._closed = False

    @property
    def spec(self) -> str:
        """The judge's spec string (stamped on every record)."""
        return self.backend.spec

    def summary(self) -> dict[str, Any]:
        """The accounting of the run so far, with the number of deduplicated requests."""
        return {**self.accounting.as_dict(), "duplicates": self.duplicates}

    def describe(self) -> str:
        """One line for a run's header: the judge and its mode, and whether the mode is the backend's default."""
        why = " (this judge's default; choose another with --mode)" if self.mode_defaulted else ""
        return f"judge {self.spec}, mode {self.options.mode}{why}"

    def check_mode(self) -> None:
        """Raise :class:`JudgeModeError` up front when the backend cannot do the mode."""
        if self.options.mode == "logprob" and not self.builder.probabilities:
            raise JudgeModeError(
                f"judge {self.spec!r} returns no token probabilities, which logprob mode needs; use a backend with "
                "logprobs (openai: with a model that returns them, vllm:, hf:, embedded) or --mode per_criterion "
                "(--judge-mode per_criterion in generate, refine and weight)")

    # ------------------------------------------------------------------ one call

    def _loop_state(self) -> LoopState:
        loop = asyncio.get_running_loop()
        if self._state is None or self._state.loop is not loop:
            self._state = LoopState(self)
        return self._state

    def _on_retry(self, attempt: int, error: BaseException, delay: float) -> None:
        self.accounting.record_retry()

    def cache_key(self, request: CompletionRequest, salt: str = "") -> str:
        """The cache (and dedup) key of ``request``: its content under this judge's identity."""
        return JudgeCache.key(self._identity, request, salt=salt)

    async def _send(self, request: CompletionRequest) -> Completion:
        """One attempt, through the circuit breaker and the time-out.

        An outage failure while the breaker is open does not use up the call's retries: the call waits for the
        breaker, which probes the judge and either lets the calls go on or stops the run."""
        while True:
            probe = await self.breaker.admit()
            try:
                timeout = self.options.timeout
                if timeout is None:
                    completion = await self._send_once(request)
                elif _timeout is not None:  # Python 3.11+: a deadline on this task, no task of its own per call
                    async with _timeout(timeout):
                        completion = await self._send_once(request)
                else:
                    completion = await asyncio.wait_for(self._send_once(request), timeout)
            except asyncio.CancelledError:
                if probe:
                    self.breaker.release_probe()  # the probe's run went away; another attempt may probe
                raise
            except Exception as error:
                self.breaker.record(error, probe=probe)
                if self.breaker.is_open and is_outage(error):
                    continue
                raise
            self.breaker.record(None, probe=probe)
            return completion

    async def _send_once(self, request: CompletionRequest) -> Completion:
        state = self._loop_state()
        if state.batcher is not None:
            return await state.batcher.submit(request)
        return await self.backend.complete(request)

    async def _fetch(self, key: str, request: CompletionRequest) -> tuple[Completion, str]:
        """Answer from the cache, else from the backend (concurrency slot, rate limits, retries)."""
        if self._cache is not None:
            hit = self._cache.get(key)
            if hit is not None:
                self.accounting.record_completion(hit, from_cache=True)
                return hit, "cache"
        state = self._loop_state()
        async with state.semaphore:
            estimate = (estimate_tokens(request.prompt_text()) + request.max_tokens) if state.limiter.tpm else 0
            if estimate or state.limiter.rpm:
                await state.limiter.acquire(estimate)
            completion = await call_with_retries(lambda: self._send(request), self.retry_policy,
                                                 sleep=self._sleep, on_retry=self._on_retry)
            if estimate:
                used = completion.usage.input_tokens + completion.usage.output_tokens
                state.limiter.correct(estimate, used or estimate)
        self.accounting.record_completion(completion, from_cache=False)
        if self._cache is not None:
            self._cache.put(key, completion, spec=self.spec)
        return completion, "backend"

    def _claim(self, key: str) -> tuple[asyncio.Future, bool]:
        """The future of ``key``: an identical request's (under way or done; ``False``), or a new one the caller
        now owns and must settle (``True``)."""
        state = self._loop_state()
        future = state.memo.get(key)
        if future is not None:
            state.memo.move_to_end(key)
            self.duplicates += 1
            return future, False
        future = state.memo[key] = state.loop.create_future()
        while len(state.memo) > _MEMO_LIMIT:
            state.memo.popitem(last=False)
        return future, True

    def _settle(self, key: str, future: asyncio.Future, result: Completion | BaseException) -> None:
        if isinstance(result, BaseException):
            # A failure is not remembered: a later identical request tries again.
            state = self._loop_state()
            if state.memo.get(key) is future:
                del state.memo[key]
        if future.done():
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
            future.exception()  # retrieved here, so an unawaited failure is not reported as "never retrieved"
        else:
            future.set_result(result)

    async def send(self, request: CompletionRequest, salt: str = "") -> tuple[Completion, str]:
        """One request through dedup, cache, limits and retries; returns the completion and where it came from
        (``backend``, ``cache`` or ``duplicate``). Raises the backend's error after the retries."""
        key = self.cache_key(request, salt)
        while True:
            future, owned = self._claim(key)
            if owned:
                break
            try:
                return await asyncio.shield(future), "duplicate"
            except OwnerGone:
                continue
        try:
            completion, source = await self._fetch(key, request)
        except asyncio.CancelledError:
            self._settle(key, future, OwnerGone())
            raise
        except Exception as error:
            self._settle(key, future, error)
            raise
        self._settle(key, future, completion)
        return completion, source

    async def run_call(self, call: Call, context: Mapping[str, Any]) -> Any:
        """Send a call and read its reply, re-asking up to ``reasks`` times; a :class:`Failure` when it fails."""
        request = call.request
        reason, raw = "", ""
        for attempt in range(self.options.reasks + 1):
            try:
                completion, source = await self.send(request, call.salt)
            except Exception as error:
                failure = failure_of(error, self.retry_policy)
                self.accounting.record_error(failure.kind)
                self._record(context, request, None, "error", failure.describe())
                return failure
            self._record(context, request, completion, source)
            try:
                answer = read_reply(call, completion)
            except ParseError as error:
                reason, raw = error.reason, completion.text
                if self._cache is not None:
                    # An unreadable reply is no answer: a later run (--resume) asks again instead of reading it back.
                    self._cache.delete(self.cache_key(request, call.salt))
            else:
                if attempt and self._cache is not None and source == "backend":
                    # Readable only after a re-ask: keep it under the first request too, so a later run (a resumed
                    # item) reads this answer instead of asking the first question again.
                    self._cache.put(self.cache_key(call.request, call.salt), completion, spec=self.spec)
                return answer
            if attempt < self.options.reasks:
                # The conversation grows (each re-ask follows the last reply), so every re-ask is a new request
                # rather than a cache hit of the previous one.
                messages = self.library.reask(request.messages, raw, reason, call.contract)
                request = request.model_copy(update={"messages": messages})
        self.accounting.record_error("parse")
        return Failure("parse", f"unreadable reply after {self.options.reasks} re-ask(s): {reason}", raw=raw)

    def _record(self, context: Mapping[str, Any], request: CompletionRequest, completion: Completion | None,
                source: str, error: str | None = None) -> None:
        if self._trace is not None:
            self._trace.write(context, request, completion, source, error)

    # ------------------------------------------------------------------ tasks → verdicts → records

    async def run_tasks(self, tasks: Sequence[Task], context: Mapping[str, Any]) -> list[Any]:
        """The outcome of every task (``None`` for checks; a :class:`ConditionalOutcome` for a task with a condition
        question). For a choice scorer, the one-token calls of the tasks (one response's) that share a choice set go
        to one ``score_choices`` call — a criterion's condition and criterion questions in the same one when both
        are Yes/No; the other calls are sent concurrently (batched on a batching backend)."""
        slots: list[tuple[Call, dict[str, Any]]] = []  # every call with its trace context
        positions: list[list[int]] = []  # each task's slots: (condition,) criterion call
        for task in tasks:
            positions.append([])
            for call in task.calls:
                ctx = {**context, "criteria": [c.id for c in task.criteria]}
                if call.question == "condition":
                    ctx["question"] = "condition"
                positions[-1].append(len(slots))
                slots.append((call, ctx))
        singles: list[int] = []
        groups: dict[tuple[str, ...], list[int]] = {}
        for n, (call, _) in enumerate(slots):
            if self._scorer and call.choices:
                groups.setdefault(call.choices, []).append(n)
            else:
                singles.append(n)
        jobs = [self.run_call(*slots[n]) for n in singles]
        jobs += [self.choice_group([slots[n][0] for n in members], [slots[n][1] for n in members])
                 for members in groups.values()]
        results = await asyncio.gather(*jobs)
        answers: list[Any] = [None] * len(slots)
        for n, result in zip(singles, results[: len(singles)], strict=True):
            answers[n] = result
        for members, group in zip(groups.values(), results[len(singles):], strict=True):
            for n, result in zip(members, group, strict=True):
                answers[n] = result
        outcomes: list[Any] = [None] * len(tasks)
        for index, task in enumerate(tasks):
            found = [answers[n] for n in positions[index]]
            if task.condition is not None:
                outcomes[index] = ConditionalOutcome(condition=found[0], criterion=found[1])
            elif found:
                outcomes[index] = found[0]
        return outcomes

    async def ascore(self, rubric: Rubric | RubricSet, item: DataItem | Mapping[str, Any], *,
                     repeat: int = 0) -> ScoreRecord:
        """Judge one response under a rubric (a rubric set picks by the item's ``prompt_id``)."""
        (data,) = coerce_items([item])
        self.check_mode()
        ((_, chosen),) = assign_rubrics(rubric, [data])
        return await self._score(data, chosen, repeat)

    async def _score(self, item: DataItem, rubric: Rubric, repeat: int,
                     fingerprints: dict[int, tuple[Rubric, Fingerprints]] | None = None) -> ScoreRecord:
        tasks = self.builder.item_tasks(rubric, item, repeat)
        context = {"item_id": item.id, "rubric_id": rubric.id, "repeat": repeat}
        outcomes = await self.run_tasks(tasks, context)
        verdicts = []
        for task, outcome in zip(tasks, outcomes, strict=True):
            for _ in range(partial_errors(task, outcome)):
                self.accounting.record_error("parse")
            verdicts.extend(task_verdicts(task, outcome))
        if self.options.mode == "holistic" and rubric.aggregation != "holistic":
            rubric = rubric.model_copy(update={"aggregation": "holistic"})
        stamps = None
        if fingerprints is not None:  # one run: the rubric's fingerprints are computed once, not per record
            known = fingerprints.get(id(rubric))
            if known is None or known[0] is not rubric:
                known = fingerprints[id(rubric)] = (rubric, Fingerprints.of(rubric))
            stamps = known[1]
        record = score_record(rubric, verdicts, item_id=item.id, judge=self.spec, fingerprints=stamps)
        if repeat:
            record.repeat = repeat
        return record

    async def ascore_many(self, rubrics: Rubrics, items: Iterable[DataItem | Mapping[str, Any]], *,
                          journal: Journal | None = None) -> AsyncIterator[ScoreRecord]:
        """Judge many responses, yielding each record as its item finishes (not in input order).

        Every item gets each rubric that applies (a rubric set picks by ``prompt_id``; a missing rubric is a
        :class:`RubricError` before any call), ``repeat`` times. With a ``journal``, finished (item, rubric,
        repeat) keys are skipped and each record is appended as it finishes.
        """
        self.check_mode()
        check_journal(journal, "item_id", "DEFAULT_KEY_FIELDS")
        assigned = assign_rubrics(rubrics, coerce_items(items))
        repeats = self.options.repeat
        done = journal.done if journal is not None else frozenset()

        def jobs() -> Iterator[tuple]:
            for item, rubric in assigned:
                for r in range(repeats):
                    if (item.id, rubric.id, r) not in done:
                        yield item, rubric, r

        memo: dict[int, tuple[Rubric, Fingerprints]] = {}

        async def run(item: DataItem, rubric: Rubric, repeat: int) -> ScoreRecord:
            return await self._score(item, rubric, repeat, memo)

        total = jobs_left(assigned, repeats, len(done))
        async for record in stream_jobs(jobs(), run, journal, "Judging", self.options, total=total,
                                        calls=lambda job: self.builder.calls_per_item(job[1])):
            yield record


    async def acompare(self, rubric: Rubric | RubricSet | None, pair: PairItem | Mapping[str, Any], *,
                       repeat: int = 0) -> Any:
        """Compare two responses: per criterion in both orders (margin Σ w·(a−b)), or directly without a rubric."""
        from .pairwise import compare_pair

        (data,) = coerce_pairs([pair])
        ((_, chosen),) = assign_rubrics(rubric, [data], optional=True)
        return await compare_pair(self, chosen, data, repeat)

    async def acompare_many(self, rubrics: Rubrics | None, pairs: Iterable[PairItem | Mapping[str, Any]], *,
                            journal: Journal | None = None) -> AsyncIterator[Any]:
        """Compare many pairs, yielding each :class:`PairRecord` as it finishes (journal as in ascore_many)."""
        from .pairwise import compare_pair

        check_journal(journal, "pair_id", "PAIR_KEY_FIELDS (or ('pair_id', 'repeat') for direct comparisons)")
        assigned = assign_rubrics(rubrics, coerce_pairs(pairs), optional=True)
        repeats = self.options.repeat

        def jobs() -> Iterator[tuple]:
            for pair, rubric in assigned:
                for r in range(repeats):
                    probe = {"pair_id": pair.id, "rubric_id": rubric.id if rubric else None, "repeat": r}
                    if journal is None or journal.key(probe) not in journal.done:
                        yield rubric, pair, r

        async def run(rubric: Rubric | None, pair: PairItem, repeat: int) -> Any:
            return await compare_pair(self, rubric, pair, repeat)

        total = jobs_left(assigned, repeats, len(journal.done) if journal is not None else 0)
        # Both orders of every criterion (a direct comparison: both orders of one question).
        async for record in stream_jobs(jobs(), run, journal, "Comparing", self.options, total=total,
                                        calls=lambda job: 2 * (self.builder.calls_per_item(job[0]) if job[0] else 1)):
            yield record

    # ------------------------------------------------------------------ sync facades

    def _sync(self, awaitable: Awaitable[T]) -> T:
        if self._runner is None:
            self._runner = Runner()
        return self._runner.run(awaitable)

    def _sync_iter(self, agen: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._sync(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._sync(agen.aclose())  # type: ignore[attr-defined]

    def score(self, rubric: Rubric | RubricSet, item: DataItem | Mapping[str, Any], *, repeat: int = 0) -> ScoreRecord:
        """Sync :meth:`ascore` (works inside a running event loop too)."""
        return self._sync(self.ascore(rubric, item, repeat=repeat))

    def score_many(self, rubrics: Rubrics, items: Iterable[DataItem | Mapping[str, Any]], *,
                   journal: Journal | None = None) -> Iterator[ScoreRecord]:
        """Sync :meth:`ascore_many`: an iterator that yields records as items finish."""
        return self._sync_iter(self.ascore_many(rubrics, items, journal=journal))

    def compare(self, rubric: Rubric | RubricSet | None, pair: PairItem | Mapping[str, Any], *,
                repeat: int = 0) -> Any:
        """Sync :meth:`acompare`."""
        return self._sync(self.acompare(rubric, pair, repeat=repeat))

    def compare_many(self, rubrics: Rubrics | None, pairs: Iterable[PairItem | Mapping[str, Any]], *,
                     journal: Journal | None = None) -> Iterator[Any]:
        """Sync :meth:`acompare_many`."""
        return self._sync_iter(self.acompare_many(rubrics, pairs, journal=journal))

    # ------------------------------------------------------------------ plans

    def plan(self, rubrics: Rubrics, items: Iterable[DataItem | Mapping[str, Any]]) -> Plan:
        """What :meth:`ascore_many` would do and spend (``--dry-run``), without calling the backend.

        ``tasks`` counts item × criterion × repeat judgments; ``duplicates`` and ``cached`` count requests that an
        identical request or the cache would answer; ``calls`` the requests left to send (re-asks not included).
        """
        self.check_mode()
        assigned = list(assign_rubrics(rubrics, coerce_items(items)))
        tasks: list[Task] = []
        for item, rubric in assigned:
            for r in range(self.options.repeat):
                tasks.extend(self.builder.item_tasks(rubric, item, r))
        criteria = {(rubric.id, c.id) for _, rubric in assigned for c in rubric.criteria}
        calls = [call for t in tasks for call in t.calls]
        return build_plan(calls, **self._plan_context(), items=len(assigned), criteria=len(criteria),
                          tasks=sum(len(t.criteria) or 1 for t in tasks),
                          programmatic=sum(1 for t in tasks if t.kind == "check"))

    def plan_compare(self, rubrics: Rubrics | None, pairs: Iterable[PairItem | Mapping[str, Any]]) -> Plan:
        """What :meth:`acompare_many` would do (tie-break judgments, which depend on the answers, not included)."""
        from .pairwise import pair_calls

        assigned = list(assign_rubrics(rubrics, coerce_pairs(pairs), optional=True))
        calls, checks, criteria = [], 0, set()
        for pair, rubric in assigned:
            for r in range(self.options.repeat):
                found, local = pair_calls(self, rubric, pair, r)
                calls.extend(found)
                checks += local
            if rubric is not None:
                criteria.update((rubric.id, c.id) for c in rubric.criteria)
        return build_plan(calls, **self._plan_context(), items=len(assigned), criteria=len(criteria),
                          tasks=len(calls) + checks, programmatic=checks)

    def _plan_context(self) -> dict[str, Any]:
        return {"spec": self.spec, "mode": self.options.mode, "cache": self._cache, "identity": self._identity}

    # ------------------------------------------------------------------ lifetime

    async def aclose(self) -> None:
        """Close the backend (when created here), the cache and the trace file."""
        if self._closed:
            return
        self._closed = True
        if self._owns_backend:
            await self.backend.aclose()
        if self._cache is not None:
            self._cache.close()
        if self._trace is not None:
            self._trace.close()

    def close(self) -> None:
        """Sync :meth:`aclose`; also stops the private loop thread of the sync facades."""
        if self._runner is not None:
            try:
                self._runner.run(self.aclose())
            finally:
                self._runner.stop()
                self._runner = None
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self.aclose())
            return
        runner = Runner()
        try:
            runner.run(self.aclose())
        finally:
            runner.stop()

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Judge:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
