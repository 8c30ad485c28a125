"""Where the engine's async code runs: :class:`LoopState`, what belongs to one event loop (the concurrency slots,
the rate limiter, the in-memory dedup of identical requests, the :class:`Batcher` of a batching backend), and
:class:`Runner`, the private event-loop thread the sync facades (``Judge.score`` …) run on.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from ..backends.base import BatchBackend, Completion, CompletionRequest, FatalBackendError
from .limits import RateLimiter

if TYPE_CHECKING:
    from .engine import Judge

__all__ = ["Batcher", "LoopState", "Runner"]

T = TypeVar("T")


class Batcher:
    """Collects concurrent requests into ``complete_batch`` calls (a batch closes when no more arrive)."""

    def __init__(self, backend: Any, size: int):
        self.backend = backend
        self.size = size
        self.queue: list[tuple[CompletionRequest, asyncio.Future]] = []
        self.flusher: asyncio.Task | None = None

    async def submit(self, request: CompletionRequest) -> Completion:
        future = asyncio.get_running_loop().create_future()
        self.queue.append((request, future))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.ensure_future(self._flush())
        return await future

    async def _flush(self) -> None:
        while self.queue:
            size = -1
            while size != len(self.queue) and len(self.queue) < self.size:
                size = len(self.queue)
                await asyncio.sleep(0)  # let the other ready tasks add their requests
            batch, self.queue = self.queue[: self.size], self.queue[self.size:]
            try:
                results = await self.backend.complete_batch([request for request, _ in batch])
            except Exception as error:  # the whole batch failed: every request gets the error (and its retries)
                results = [error] * len(batch)
            if len(results) != len(batch):
                wrong = FatalBackendError(f"complete_batch returned {len(results)} results for {len(batch)} requests")
                results = [wrong] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)


class LoopState:
    """What belongs to one event loop: the concurrency slots, rate limiter, in-memory dedup and batcher."""

    def __init__(self, judge: Judge):
        options = judge.options
        self.loop = asyncio.get_running_loop()
        self.semaphore = asyncio.Semaphore(options.concurrency)
        self.limiter = RateLimiter(options.rpm, options.tpm, clock=judge._clock, sleep=judge._sleep)
        self.memo: OrderedDict[str, asyncio.Future] = OrderedDict()
        backend = judge.backend
        self.batcher = None
        if backend.capabilities.batch and isinstance(backend, BatchBackend):
            self.batcher = Batcher(backend, options.batch_size or options.concurrency)


class Runner:
    """A private event loop on a daemon thread, for the sync facades."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="rubrickit-judge", daemon=True)
        self.thread.start()

    def run(self, awaitable: Awaitable[T]) -> T:
        if threading.current_thread() is self.thread:
            raise RuntimeError("a sync Judge method was called from the judge's own loop; await the a… method")
        future = asyncio.run_coroutine_threadsafe(_await(awaitable), self.loop)
        try:
            return future.result()
        except BaseException:
            # Ctrl-C (or another interruption) in the calling thread: cancel the coroutine and wait until it has
            # really unwound on the loop, so that what runs next (closing an async generator, the backend) does not
            # find it still running.
            finished = threading.Event()
            self.loop.call_soon_threadsafe(_cancel_all_and_signal, self.loop, finished)
            future.cancel()
            finished.wait(timeout=30)
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _cancel_all_and_signal(loop: asyncio.AbstractEventLoop, finished: threading.Event) -> None:
    """Cancel every task on ``loop`` and set ``finished`` once they have all ended."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if not tasks:
        finished.set()
        return
    waiter = asyncio.gather(*tasks, return_exceptions=True)
    waiter.add_done_callback(lambda _: finished.set())
