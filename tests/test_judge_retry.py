"""Retries: exponential backoff within jitter bounds, Retry-After, what is and is not retried, the attempt cap."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rubrickit.backends.base import FatalBackendError, RetryableBackendError
from rubrickit.judge.retry import RetryPolicy, call_with_retries, is_retryable


class FakeSleep:
    """Records requested waits instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def failing(errors: list[BaseException], result: str = "ok"):
    """An async callable that raises each error in turn, then returns ``result``; counts its calls."""
    state = {"calls": 0}

    async def fn() -> str:
        state["calls"] += 1
        if errors:
            raise errors.pop(0)
        return result

    return fn, state


def run(coro):
    return asyncio.run(coro)


def test_success_first_time_does_not_sleep():
    sleep = FakeSleep()
    fn, state = failing([])
    assert run(call_with_retries(fn, RetryPolicy(), sleep=sleep)) == "ok"
    assert state["calls"] == 1
    assert sleep.delays == []


def test_retryable_errors_are_retried_until_success():
    sleep = FakeSleep()
    fn, state = failing([RetryableBackendError("503", status=503), RetryableBackendError("429", status=429)])
    assert run(call_with_retries(fn, RetryPolicy(), sleep=sleep, rng=random.Random(1))) == "ok"
    assert state["calls"] == 3
    assert len(sleep.delays) == 2


def test_delays_grow_exponentially_without_jitter():
    sleep = FakeSleep()
    fn, _ = failing([RetryableBackendError("x") for _ in range(5)])
    policy = RetryPolicy(max_attempts=6, base_delay=0.5, max_delay=30.0, jitter=0.0)
    run(call_with_retries(fn, policy, sleep=sleep))
    assert sleep.delays == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_delays_are_capped_at_max_delay():
    sleep = FakeSleep()
    fn, _ = failing([RetryableBackendError("x") for _ in range(7)])
    policy = RetryPolicy(max_attempts=8, base_delay=1.0, max_delay=5.0, jitter=0.0)
    run(call_with_retries(fn, policy, sleep=sleep))
    assert sleep.delays == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0]


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), jitter=st.floats(0.0, 1.0))
def test_jittered_delays_stay_within_bounds(seed: int, jitter: float):
    sleep = FakeSleep()
    fn, _ = failing([RetryableBackendError("x") for _ in range(5)])
    policy = RetryPolicy(max_attempts=6, base_delay=0.5, max_delay=30.0, jitter=jitter)
    run(call_with_retries(fn, policy, sleep=sleep, rng=random.Random(seed)))
    for attempt, delay in enumerate(sleep.delays, start=1):
        ceiling = 0.5 * 2 ** (attempt - 1)
        assert ceiling * (1 - jitter) - 1e-12 <= delay <= ceiling


def test_jitter_is_reproducible_with_a_seeded_rng_and_varies_across_seeds():
    def delays(seed: int) -> list[float]:
        sleep = FakeSleep()
        fn, _ = failing([RetryableBackendError("x") for _ in range(3)])
        run(call_with_retries(fn, RetryPolicy(jitter=1.0), sleep=sleep, rng=random.Random(seed)))
        return sleep.delays

    assert delays(7) == delays(7)
    assert delays(7) != delays(8)


def test_retry_after_is_a_floor_for_the_delay():
    sleep = FakeSleep()
    fn, _ = failing([RetryableBackendError("429", status=429, retry_after=7.0)])
    run(call_with_retries(fn, RetryPolicy(jitter=0.5), sleep=sleep, rng=random.Random(0)))
    assert sleep.delays == [7.0]


def test_retry_after_shorter_than_backoff_keeps_the_backoff():
    sleep = FakeSleep()
    fn, _ = failing([RetryableBackendError("429", retry_after=0.1)])
    run(call_with_retries(fn, RetryPolicy(base_delay=2.0, jitter=0.0), sleep=sleep))
    assert sleep.delays == [2.0]


def test_retry_after_is_capped():
    sleep = FakeSleep()
    fn, _ = failing([RetryableBackendError("quota", retry_after=86_400.0)])
    run(call_with_retries(fn, RetryPolicy(max_retry_after=120.0, jitter=0.0), sleep=sleep))
    assert sleep.delays == [120.0]


@pytest.mark.parametrize("bogus", [float("nan"), float("inf"), -3.0, 0.0])
def test_nonsensical_retry_after_is_ignored(bogus: float):
    sleep = FakeSleep()
    fn, _ = failing([RetryableBackendError("x", retry_after=bogus)])
    run(call_with_retries(fn, RetryPolicy(base_delay=1.0, jitter=0.0), sleep=sleep))
    assert sleep.delays == [1.0]


def test_fatal_errors_are_not_retried():
    sleep = FakeSleep()
    fatal = FatalBackendError("401 unauthorized", status=401)
    fn, state = failing([fatal])
    with pytest.raises(FatalBackendError) as info:
        run(call_with_retries(fn, RetryPolicy(), sleep=sleep))
    assert info.value is fatal
    assert state["calls"] == 1
    assert sleep.delays == []


@pytest.mark.parametrize("error", [ValueError("bug"), KeyError("k"), RuntimeError("boom")])
def test_other_exceptions_propagate_at_once(error: BaseException):
    sleep = FakeSleep()
    fn, state = failing([error])
    with pytest.raises(type(error)):
        run(call_with_retries(fn, RetryPolicy(), sleep=sleep))
    assert state["calls"] == 1


@pytest.mark.parametrize("error", [TimeoutError("slow"), asyncio.TimeoutError()])
def test_timeouts_are_retried(error: BaseException):
    sleep = FakeSleep()
    fn, state = failing([error])
    assert run(call_with_retries(fn, RetryPolicy(), sleep=sleep)) == "ok"
    assert state["calls"] == 2


def test_attempts_are_capped_and_the_last_error_propagates():
    sleep = FakeSleep()
    errors = [RetryableBackendError(f"fail {i}") for i in range(10)]
    last_expected = errors[3]
    fn, state = failing(list(errors))
    with pytest.raises(RetryableBackendError) as info:
        run(call_with_retries(fn, RetryPolicy(max_attempts=4), sleep=sleep))
    assert info.value is last_expected
    assert state["calls"] == 4
    assert len(sleep.delays) == 3


def test_single_attempt_policy_never_retries():
    fn, state = failing([RetryableBackendError("x")])
    with pytest.raises(RetryableBackendError):
        run(call_with_retries(fn, RetryPolicy(max_attempts=1), sleep=FakeSleep()))
    assert state["calls"] == 1


def test_on_retry_reports_attempt_error_and_delay():
    sleep = FakeSleep()
    first, second = RetryableBackendError("a", retry_after=3.0), TimeoutError("b")
    fn, _ = failing([first, second])
    seen: list[tuple[int, BaseException, float]] = []
    run(call_with_retries(fn, RetryPolicy(jitter=0.0), sleep=sleep, on_retry=lambda *a: seen.append(a)))
    assert seen == [(1, first, 3.0), (2, second, 1.0)]
    assert [delay for _, _, delay in seen] == sleep.delays


def test_cancellation_is_not_retried():
    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        run(call_with_retries(cancelled, RetryPolicy(), sleep=FakeSleep()))


def test_default_sleep_really_waits_between_attempts():
    fn, state = failing([RetryableBackendError("x")])
    policy = RetryPolicy(base_delay=0.001, jitter=0.0)
    assert run(call_with_retries(fn, policy)) == "ok"
    assert state["calls"] == 2


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"base_delay": -1}, {"max_delay": float("nan")}, {"jitter": 1.5}, {"max_retry_after": -1}],
)
def test_invalid_policies_are_rejected(kwargs: dict):
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**kwargs)


def test_is_retryable_classifies_errors():
    assert is_retryable(RetryableBackendError("x"))
    assert is_retryable(TimeoutError())
    assert not is_retryable(FatalBackendError("x"))
    assert not is_retryable(ValueError())
