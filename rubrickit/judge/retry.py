"""Retries with exponential backoff, jitter and ``Retry-After``, for backend calls.

What is retried: :class:`~rubrickit.backends.base.RetryableBackendError` (429, 5xx, dropped connections, malformed
bodies) and time-outs (``TimeoutError`` / ``asyncio.TimeoutError`` raised by the call). Everything else —
:class:`~rubrickit.backends.base.FatalBackendError` (400/401/404), programming errors, cancellation — propagates at
once. After ``max_attempts`` attempts the last retryable error propagates unchanged.

The wait before retry *n* (``n`` = the attempt that just failed, from 1) is::

    backoff = min(max_delay, base_delay * 2 ** (n - 1)) * (1 - jitter * U[0, 1))
    delay   = max(backoff, min(retry_after, max_retry_after))    # retry_after only when the server sent one

so a server's ``Retry-After`` is a floor, never shortened by jitter, and never longer than ``max_retry_after``.
Waits go through an injectable ``sleep`` so tests run without real waiting.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ..backends.base import RetryableBackendError

__all__ = ["RetryPolicy", "call_with_retries", "is_retryable"]

T = TypeVar("T")

_RETRYABLE: tuple[type[BaseException], ...] = (RetryableBackendError, TimeoutError, asyncio.TimeoutError)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a failing backend call."""

    max_attempts: int = 6
    """Total attempts including the first (1 = never retry)."""
    base_delay: float = 0.5
    """Seconds before the first retry; doubles with each further retry."""
    max_delay: float = 30.0
    """Upper bound on the exponential backoff, in seconds."""
    jitter: float = 0.5
    """Fraction of the backoff drawn at random, in [0, 1]: 0 waits exactly the backoff, 1 is "full jitter"
    (uniform between 0 and the backoff). Spreads the retries of many concurrent calls apart."""
    max_retry_after: float = 120.0
    """Cap, in seconds, on a server's ``Retry-After`` (a quota reset hours away must not stall a run for hours)."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be at least 1, got {self.max_attempts}")
        for name in ("base_delay", "max_delay", "max_retry_after"):
            value = getattr(self, name)
            if not value >= 0:  # also rejects NaN
                raise ValueError(f"RetryPolicy.{name} must be a non-negative number of seconds, got {value!r}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"RetryPolicy.jitter must be in [0, 1], got {self.jitter!r}")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """The jittered exponential wait after failed attempt number ``attempt`` (from 1)."""
        # Cap the exponent first: 2 ** 10_000 would overflow a float long before max_delay matters.
        exponential = self.base_delay * 2.0 ** min(max(attempt - 1, 0), 64)
        ceiling = min(self.max_delay, exponential)
        return ceiling * (1.0 - self.jitter * rng.random())

    def delay(self, attempt: int, error: BaseException | None, rng: random.Random) -> float:
        """The wait after failed attempt ``attempt``: the backoff, raised to the server's capped ``Retry-After``."""
        wait = self.backoff(attempt, rng)
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, (int, float)) and math.isfinite(retry_after) and retry_after > 0:
            wait = max(wait, min(float(retry_after), self.max_retry_after))
        return wait


def is_retryable(error: BaseException) -> bool:
    """Whether the engine retries this error (a retryable backend error or a time-out)."""
    return isinstance(error, _RETRYABLE)


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    rng: random.Random | None = None,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Await ``fn()``, retrying retryable failures under ``policy``; return its result or raise its last error.

    ``on_retry(attempt, error, delay)`` is called before each wait (``attempt`` is the number of the attempt that
    failed, from 1), so the caller can count retries. ``rng`` makes the jitter reproducible.
    """
    rng = rng if rng is not None else random.Random()
    attempt = 1
    while True:
        try:
            return await fn()
        except _RETRYABLE as error:
            if attempt >= policy.max_attempts:
                raise
            wait = policy.delay(attempt, error, rng)
            if on_retry is not None:
                on_retry(attempt, error, wait)
        await sleep(wait)
        attempt += 1
