"""The micro-batcher of the reward server and of OpenRLHF's ``reward_func`` file: it coalesces the samples of
concurrent requests (one sample each, many at once) into :meth:`~rubrickit.rewards.RewardScorer.ascore` batches,
bounds the samples waiting, and says when to retry once they are too many (:class:`Overloaded`,
:class:`RequestTooLarge`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import JudgeUnavailableError, RubrickitError
from ..rewards.core import RewardDetail, RewardError, RewardScorer
from .openrlhf_protocol import QueryError

__all__ = ["BatchStats", "MicroBatcher", "Overloaded", "RequestTooLarge"]

log = logging.getLogger("rubrickit.serve")


class RequestTooLarge(RubrickitError):
    """One request holds more samples than the batcher's queue (the server answers 413)."""


class Overloaded(RubrickitError):
    """The batcher's queue is full (the server answers 503 with ``Retry-After``)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after
        """Seconds after which a retry is likely to be admitted."""


@dataclass
class BatchStats:
    """What the batcher did: batches, their sizes, samples, and the recent rate (for ``Retry-After``)."""

    batches: int = 0
    samples: int = 0
    scored: int = 0
    unscored: int = 0
    failed: int = 0
    """Samples whose batch raised (judge unavailable, …)."""
    sizes: Counter = field(default_factory=Counter)
    """Batch size → how many batches had it."""
    max_size: int = 0
    recent: deque = field(default_factory=lambda: deque(maxlen=64))
    """(finish time, samples) of the last batches."""

    def rate(self, now: float) -> float | None:
        """Samples per second over the recent batches (``None`` before there are two)."""
        if len(self.recent) < 2:
            return None
        span = now - self.recent[0][0]
        return sum(n for _, n in list(self.recent)[1:]) / span if span > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.batches, "samples": self.samples, "scored": self.scored, "unscored": self.unscored,
                "failed": self.failed, "mean_size": self.samples / self.batches if self.batches else 0.0,
                "max_size": self.max_size, "sizes": {str(k): v for k, v in sorted(self.sizes.items())}}


@dataclass
class _Entry:
    sample: dict[str, Any]
    future: asyncio.Future
    arrived: float
    request: int


class MicroBatcher:
    """Coalesces the samples of concurrent requests into :meth:`RewardScorer.ascore` batches.

    A batch leaves when it holds ``max_batch`` samples or ``window`` seconds after its first sample arrived,
    whichever comes first, and as soon as one of ``max_batches`` batch slots is free (while all are busy, samples
    wait and the next batch is bigger). At most ``max_queue`` samples wait; beyond that :meth:`submit` raises
    :class:`Overloaded`. The scorer must not normalise by group (batches are arbitrary) and should keep its
    failure policy at ``none`` (each request applies its own).

    A batch answers all its requests when its last sample is scored, so batches are kept small (``max_batch`` 8)
    and many (``max_batches``; default: enough for twice the judge's concurrency in samples, at least 4): while
    one batch finishes and its clients send their next requests, the others keep the judge busy, and a request
    waits for at most 7 other samples. bench/bench_reward_server.py measures both settings (bench/RESULTS.md).
    """

    def __init__(self, scorer: RewardScorer, *, max_batch: int = 8, window: float = 0.01, max_queue: int = 4096,
                 max_batches: int | None = None):
        if scorer.options.group_key is not None:
            raise RewardError("group_key does not apply to a reward server: each request holds one sample, and "
                              "batches are formed by arrival time")
        if max_batches is None:
            max_batches = max(4, math.ceil(2 * scorer.judge.options.concurrency / max(1, max_batch)))
        if max_batch < 1 or max_queue < 1 or max_batches < 1 or window < 0:
            raise ValueError("max_batch, max_queue and max_batches must be at least 1, window at least 0")
        self.scorer = scorer
        self.max_batch, self.window, self.max_queue, self.max_batches = max_batch, window, max_queue, max_batches
        self.stats = BatchStats()
        self._queue: deque[_Entry] = deque()
        self._more = asyncio.Event()
        self._slots = asyncio.Semaphore(max_batches)
        self._tasks: set[asyncio.Task] = set()
        self._runner: asyncio.Task | None = None
        self._closing = False
        self._requests = 0
        self.in_flight = 0
        """Samples in batches being scored."""

    @property
    def queued(self) -> int:
        """Samples waiting for a batch."""
        return len(self._queue)

    def start(self) -> None:
        """Start dispatching (on the running loop)."""
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._dispatch(), name="rubrickit-batcher")

    async def close(self) -> None:
        """Refuse new samples, finish every admitted one, then stop."""
        self._closing = True
        self._more.set()
        if self._runner is not None:
            await self._runner
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained (1–60)."""
        rate = self.stats.rate(time.monotonic())
        if not rate:
            return 1
        return int(min(60, max(1, math.ceil(len(self._queue) / rate))))

    async def submit(self, samples: Sequence[dict[str, Any]]) -> list[RewardDetail]:
        """Score ``samples`` (one request's) in the next batches; details in order."""
        if self._closing:
            raise Overloaded("the server is shutting down", retry_after=5)
        for index, sample in enumerate(samples):
            try:  # a sample without a rubric, a bad inline rubric: refused before it can fail a whole batch
                self.scorer._item(sample, index)  # noqa: SLF001 - the scorer's own sample check
            except RubrickitError as exc:
                raise QueryError(index, str(exc).removeprefix(f"sample {index}: ")) from None
        if len(samples) > self.max_queue:
            raise RequestTooLarge(f"{len(samples)} samples in one request, more than the queue holds "
                              f"({self.max_queue}); send fewer per request or raise --max-queue")
        if len(self._queue) + len(samples) > self.max_queue:
            raise Overloaded(f"overloaded: {len(self._queue)} samples are waiting (--max-queue {self.max_queue})",
                             retry_after=self.retry_after())
        if self._runner is None:
            self.start()
        loop = asyncio.get_running_loop()
        self._requests += 1
        now = loop.time()
        entries = [_Entry(dict(s), loop.create_future(), now, self._requests) for s in samples]
        self._queue.extend(entries)
        self._more.set()
        return list(await asyncio.gather(*(e.future for e in entries)))

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._more.clear()
                await self._more.wait()
            await self._slots.acquire()
            while len(self._queue) < self.max_batch and not self._closing and self._queue:
                remaining = self._queue[0].arrived + self.window - loop.time()
                if remaining <= 0:
                    break
                self._more.clear()
                try:
                    await asyncio.wait_for(self._more.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch: list[_Entry] = []
            while self._queue and len(batch) < self.max_batch:
                entry = self._queue.popleft()
                if not entry.future.done():  # a request whose client went away
                    batch.append(entry)
            if not batch:
                self._slots.release()
                continue
            self.in_flight += len(batch)
            task = loop.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _run(self, batch: list[_Entry]) -> None:
        started = time.monotonic()
        try:
            details = await self._score(batch)
        finally:
            self.in_flight -= len(batch)
        done = time.monotonic()
        self.stats.batches += 1
        self.stats.samples += len(batch)
        self.stats.sizes[len(batch)] += 1
        self.stats.max_size = max(self.stats.max_size, len(batch))
        self.stats.recent.append((done, len(batch)))
        scored = 0
        for entry, detail in zip(batch, details, strict=True):
            if isinstance(detail, BaseException):
                self.stats.failed += 1
                if not entry.future.done():
                    entry.future.set_exception(detail)
                continue
            scored += detail.scored
            if not entry.future.done():
                entry.future.set_result(detail)
        self.stats.scored += scored
        self.stats.unscored += len(batch) - scored - sum(isinstance(d, BaseException) for d in details)
        log.debug("batch %d: %d samples from %d requests, %d scored, %.3f s", self.stats.batches, len(batch),
                  len({e.request for e in batch}), scored, done - started)

    async def _score(self, batch: list[_Entry]) -> list[RewardDetail | BaseException]:
        try:
            return list((await self.scorer.ascore([e.sample for e in batch])).details)
        except JudgeUnavailableError as exc:
            return [exc] * len(batch)
        except RubrickitError as exc:
            requests = sorted({e.request for e in batch})
            if len(requests) == 1:
                return [exc] * len(batch)
            # One request's sample broke the whole batch: score each request alone, so only it fails.
            parts = [[e for e in batch if e.request == request] for request in requests]
            outcomes = await asyncio.gather(*(self.scorer.ascore([e.sample for e in part]) for part in parts),
                                            return_exceptions=True)
            results: dict[int, RewardDetail | BaseException] = {}
            for part, outcome in zip(parts, outcomes, strict=True):
                details = [outcome] * len(part) if isinstance(outcome, BaseException) else outcome.details
                results.update({id(e): d for e, d in zip(part, details, strict=True)})
            return [results[id(e)] for e in batch]
        except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch, and logged by them
            return [exc] * len(batch)
