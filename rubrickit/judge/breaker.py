"""The circuit breaker: a judge that stopped answering pauses the run, is probed, and stops it after a bound.

Retries alone cannot tell a flaky call from a dead server: against a wrong ``--base-url`` every call would burn its
whole retry budget (6 attempts with backoff), and the run would end with an output full of ``error`` verdicts. The
engine passes every backend attempt through one :class:`CircuitBreaker`:

- **closed** (normal): attempts go through; each outcome is recorded. *Outage* failures are connection errors,
  time-outs and HTTP 5xx; a rate limit (429) or a fatal error is neither an outage nor a success.
- **open**: when at least ``min_calls`` of the last ``window`` outcomes are known and the share of outage failures
  among them reaches ``threshold``. New attempts wait; one *probe* attempt goes through after ``probe_interval``
  seconds (doubling up to ``max_probe_interval`` while probes fail). A probe that succeeds closes the breaker and
  the waiting attempts go on.
- **tripped**: the breaker stayed open for ``max_outage`` seconds. Every waiting and later attempt raises
  :class:`~rubrickit.errors.JudgeUnavailableError` naming the last error, so the run stops with a non-zero exit;
  the records finished before stay in the output and ``--resume`` continues from them.

Waiting attempts do not count as retries: an outage costs wall time up to ``max_outage``, not verdicts.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from ..backends._redact import redact
from ..backends.base import RetryableBackendError
from ..errors import JudgeUnavailableError

__all__ = ["CircuitBreaker", "is_outage"]


def is_outage(error: BaseException) -> bool:
    """Whether a failed attempt says the judge is unreachable or broken (not merely busy or the request bad)."""
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        return True
    if isinstance(error, RetryableBackendError):
        status = error.status
        return status is None or status >= 500
    return False


class CircuitBreaker:
    """Counts recent attempt outcomes; pauses, probes and finally stops a run whose judge stopped answering."""

    def __init__(self, *, spec: str, max_outage: float = 120.0, window: int = 20, min_calls: int = 10,
                 threshold: float = 0.75, probe_interval: float = 1.0, max_probe_interval: float = 15.0,
                 clock: Callable[[], float] = time.monotonic):
        self.spec = spec
        self.max_outage = max_outage
        self.window = window
        self.min_calls = min(min_calls, window)
        self.threshold = threshold
        self.probe_interval = probe_interval
        self.max_probe_interval = max_probe_interval
        self._clock = clock
        self._outcomes: deque[bool] = deque(maxlen=window)  # True = outage failure
        self._opened_at: float | None = None
        self._next_probe = 0.0
        self._interval = probe_interval
        self._probing = False
        self._changed: asyncio.Event | None = None
        self.last_error = ""
        """The message of the last outage failure."""
        self.tripped: JudgeUnavailableError | None = None
        """Set once the outage lasted past ``max_outage``; every attempt then raises it."""
        self.openings = 0
        """How often the breaker opened during the run."""

    @property
    def is_open(self) -> bool:
        """Whether attempts are being held back."""
        return self._opened_at is not None

    async def admit(self) -> bool:
        """Wait until an attempt may go; ``True`` when it goes as the probe of an open breaker."""
        while True:
            if self.tripped is not None:
                raise self.tripped
            if self._opened_at is None:
                return False
            now = self._clock()
            if now - self._opened_at >= self.max_outage:
                self._trip(now)
                continue
            if not self._probing and now >= self._next_probe:
                self._probing = True
                return True
            wait = max(0.0, min(self._next_probe, self._opened_at + self.max_outage) - now)
            if self._probing:
                wait = max(wait, 0.05)
            event = self._event()
            try:
                await asyncio.wait_for(event.wait(), timeout=max(wait, 0.01))
            except asyncio.TimeoutError:
                pass

    def record(self, error: BaseException | None, *, probe: bool = False) -> None:
        """The outcome of one attempt (``None``: it succeeded)."""
        outage = error is not None and is_outage(error)
        if error is not None and not outage:
            if probe:  # a probe that got an answer that is not an outage (429, 4xx): the server is there
                self._close()
            return
        if outage:
            self.last_error = redact(str(error)) or type(error).__name__  # shown in the outage error
        if probe:
            self._probing = False
            if outage:
                self._interval = min(self._interval * 2, self.max_probe_interval)
                self._next_probe = self._clock() + self._interval
                self._notify()
            else:
                self._close()
            return
        self._outcomes.append(outage)
        if self._opened_at is None and len(self._outcomes) >= self.min_calls:
            if sum(self._outcomes) / len(self._outcomes) >= self.threshold:
                self._open()

    def release_probe(self) -> None:
        """The probe's attempt was cancelled (its run went away): it says nothing about the judge, so the breaker
        stays as it is and the next waiting attempt may probe."""
        self._probing = False
        self._notify()

    def _open(self) -> None:
        now = self._clock()
        self._opened_at = now
        self._interval = self.probe_interval
        self._next_probe = now + self._interval
        self._probing = False
        self.openings += 1

    def _close(self) -> None:
        self._opened_at = None
        self._probing = False
        self._outcomes.clear()
        self._notify()

    def _trip(self, now: float) -> None:
        waited = now - (self._opened_at or now)
        self.tripped = JudgeUnavailableError(
            f"judge {self.spec} is unreachable: most recent calls failed with connection errors, time-outs or "
            f"server errors, and it did not recover within {waited:.0f}s (last error: {self.last_error}); check "
            "the server and its base URL, then run the command again (score and compare: with --resume; "
            "--max-outage or RUBRICKIT_MAX_OUTAGE sets the wait)")
        self._notify()

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None
