"""Client-side rate limits: requests per minute and tokens per minute, as token buckets.

Each budget is a bucket whose capacity is the per-minute budget and which refills continuously at budget/60 per
second (the way Anthropic and OpenAI describe their own limits). A call takes one request and its estimated
tokens; afterwards :meth:`RateLimiter.correct` swaps the estimate for the real count. So over any window of ``T``
seconds at most ``budget + budget * T / 60`` is spent (a full bucket may burst once), and the long-run rate never
exceeds the budget.

Waiters are served strictly first come, first served: they queue on one ``asyncio.Lock`` (which wakes waiters in
order), and only the head of the queue sleeps until its share has refilled — no thundering herd of tasks waking to
race for the same tokens. A request bigger than the whole token budget is let through once the bucket is full and
leaves the bucket in debt, which later requests wait out; it never deadlocks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["RateLimiter"]

# Refill arithmetic in floats can land a hair short of a whole token after sleeping exactly the computed wait.
_EPSILON = 1e-9


class _Bucket:
    """One token bucket; the level may go negative (debt) after an oversized take or an upward correction."""

    def __init__(self, per_minute: float, now: float):
        if not per_minute > 0:
            raise ValueError(f"a rate limit must be a positive number per minute, got {per_minute!r}")
        self.capacity = float(per_minute)
        self.rate = self.capacity / 60.0
        self.level = self.capacity
        self.updated = now

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = max(self.updated, now)

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` (at most the capacity) is available; 0 when it already is."""
        need = min(amount, self.capacity)
        missing = need - self.level
        return 0.0 if missing <= _EPSILON else missing / self.rate

    def adjust(self, delta: float) -> None:
        self.level = min(self.capacity, self.level + delta)


class RateLimiter:
    """Requests-per-minute and tokens-per-minute budgets for one backend (``None`` = unlimited)."""

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ):
        self.rpm = rpm
        """Requests per minute, or ``None`` for no request limit."""
        self.tpm = tpm
        """Tokens (prompt + generated) per minute, or ``None`` for no token limit."""
        self._clock = clock
        self._sleep = sleep
        now = clock()
        self._requests = _Bucket(rpm, now) if rpm is not None else None
        self._tokens = _Bucket(tpm, now) if tpm is not None else None
        self._lock = asyncio.Lock()

    @property
    def unlimited(self) -> bool:
        """Whether neither budget is set (``acquire`` then returns at once)."""
        return self._requests is None and self._tokens is None

    def _refill(self) -> None:
        now = self._clock()
        for bucket in (self._requests, self._tokens):
            if bucket is not None:
                bucket.refill(now)

    def _wait_time(self, tokens: int) -> float:
        wait = 0.0
        if self._requests is not None:
            wait = max(wait, self._requests.wait_for(1))
        if self._tokens is not None and tokens > 0:
            wait = max(wait, self._tokens.wait_for(tokens))
        return wait

    async def acquire(self, tokens: int = 0) -> None:
        """Wait until one request and ``tokens`` (estimated) tokens fit in the budgets, then take them.

        Callers are served in arrival order. ``tokens`` larger than the whole per-minute token budget proceed once
        the bucket is full.
        """
        if self.unlimited:
            return
        async with self._lock:
            while True:
                self._refill()
                wait = self._wait_time(tokens)
                if wait <= 0:
                    break
                await self._sleep(wait)
            if self._requests is not None:
                self._requests.adjust(-1)
            if self._tokens is not None and tokens > 0:
                self._tokens.adjust(-tokens)

    def correct(self, estimated: int, actual: int) -> None:
        """After a call, replace the ``estimated`` tokens taken by ``acquire`` with the ``actual`` count.

        Over-estimates are refunded (up to the capacity); under-estimates are charged, possibly into debt, so the
        long-run token rate stays within the budget.
        """
        if self._tokens is None or estimated == actual:
            return
        self._refill()
        self._tokens.adjust(estimated - actual)
