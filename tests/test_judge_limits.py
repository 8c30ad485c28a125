"""Rate limits: RPM/TPM bounds over simulated time windows, FIFO fairness, oversized requests, corrections."""

from __future__ import annotations

import asyncio

import pytest

from rubrickit.judge.limits import RateLimiter


class FakeTime:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would


def limiter(time: FakeTime, **kwargs) -> RateLimiter:
    return RateLimiter(clock=time.clock, sleep=time.sleep, **kwargs)


def max_in_window(events: list[tuple[float, float]], window: float) -> float:
    """The largest sum of amounts over events whose times fall within any closed interval of length ``window``."""
    events = sorted(events)
    best, total, start = 0.0, 0.0, 0
    for time, amount in events:
        total += amount
        while events[start][0] < time - window - 1e-9:
            total -= events[start][1]
            start += 1
        best = max(best, total)
    return best


def test_unlimited_limiter_never_waits():
    time = FakeTime()
    rl = limiter(time)
    assert rl.unlimited

    async def main() -> None:
        for _ in range(1000):
            await rl.acquire(10_000)

    asyncio.run(main())
    assert time.sleeps == []


def test_rpm_bounds_requests_in_every_window():
    time = FakeTime()
    rl = limiter(time, rpm=120)
    stamps: list[float] = []

    async def main() -> None:
        for _ in range(600):
            await rl.acquire()
            stamps.append(time.now)

    asyncio.run(main())
    events = [(t, 1.0) for t in stamps]
    # A full bucket bursts once (120), then requests flow at 2 per second.
    assert stamps[119] == 0.0 and stamps[120] > 0.0
    for window in (1.0, 10.0, 30.0, 60.0, 120.0):
        assert max_in_window(events, window) <= 120 + 2 * window + 1
    # Steady state: after the burst, at most 120 per minute.
    steady = [(t, 1.0) for t in stamps if t > 0]
    assert max_in_window(steady, 60.0) <= 121
    assert stamps[-1] == pytest.approx((600 - 120) / 2, rel=1e-6)


def test_concurrent_waiters_are_served_in_arrival_order_without_a_herd():
    time = FakeTime()
    rl = limiter(time, rpm=60)
    order: list[int] = []
    stamps: list[float] = []

    async def worker(i: int) -> None:
        await rl.acquire()
        order.append(i)
        stamps.append(time.now)

    async def main() -> None:
        await asyncio.gather(*(worker(i) for i in range(200)))

    asyncio.run(main())
    assert order == list(range(200))
    assert max_in_window([(t, 1.0) for t in stamps], 60.0) <= 60 + 60 + 1
    assert max_in_window([(t, 1.0) for t in stamps if t > 0], 60.0) <= 61
    # Only the head of the queue sleeps: one wait per throttled request, not one per waiter per wake-up.
    assert len(time.sleeps) == 200 - 60


def test_tpm_bounds_tokens_in_every_window():
    time = FakeTime()
    rl = limiter(time, tpm=10_000)
    events: list[tuple[float, float]] = []

    async def worker(tokens: int) -> None:
        await rl.acquire(tokens)
        events.append((time.now, tokens))

    async def main() -> None:
        await asyncio.gather(*(worker(300 + (i * 37) % 500) for i in range(400)))

    asyncio.run(main())
    rate = 10_000 / 60
    for window in (1.0, 30.0, 60.0, 300.0):
        assert max_in_window(events, window) <= 10_000 + rate * window + 1
    total = sum(tokens for _, tokens in events)
    assert max(t for t, _ in events) >= (total - 10_000) / rate - 1e-6


def test_rpm_and_tpm_together_respect_the_tighter_budget():
    time = FakeTime()
    rl = limiter(time, rpm=600, tpm=1_000)
    stamps: list[float] = []

    async def main() -> None:
        for _ in range(50):
            await rl.acquire(100)
            stamps.append(time.now)

    asyncio.run(main())
    # 1,000 tokens per minute at 100 per request allow 10 at once, then one every 6 seconds.
    assert stamps[9] == 0.0
    assert stamps[10] == pytest.approx(6.0)
    assert stamps[-1] == pytest.approx(40 * 6.0)


def test_request_larger_than_the_token_budget_proceeds_when_full_and_leaves_debt():
    time = FakeTime()
    rl = limiter(time, tpm=600)  # 10 tokens per second

    async def main() -> list[float]:
        stamps = []
        await rl.acquire(5_000)  # bucket full: goes at once
        stamps.append(time.now)
        await rl.acquire(100)  # waits out the 4,400-token debt and its own 100
        stamps.append(time.now)
        return stamps

    assert asyncio.run(main()) == [0.0, pytest.approx(450.0)]


def test_oversized_request_waits_for_a_full_bucket_not_forever():
    time = FakeTime()
    rl = limiter(time, tpm=600)

    async def main() -> float:
        await rl.acquire(300)
        await rl.acquire(10_000)
        return time.now

    assert asyncio.run(asyncio.wait_for(main(), timeout=5)) == pytest.approx(30.0)


def test_big_waiter_is_not_overtaken_by_small_ones():
    time = FakeTime()
    rl = limiter(time, tpm=600)
    finished: list[tuple[str, float]] = []

    async def worker(name: str, tokens: int) -> None:
        await rl.acquire(tokens)
        finished.append((name, time.now))

    async def main() -> None:
        await rl.acquire(600)
        await asyncio.gather(worker("big", 500), worker("small", 10))

    asyncio.run(main())
    assert [name for name, _ in finished] == ["big", "small"]
    assert finished[0][1] == pytest.approx(50.0)
    assert finished[1][1] == pytest.approx(51.0)


def test_correct_refunds_overestimates_and_charges_underestimates():
    time = FakeTime()
    rl = limiter(time, tpm=1_000)

    async def main() -> list[float]:
        stamps = []
        await rl.acquire(900)
        rl.correct(900, 100)  # refund 800: level 900
        await rl.acquire(800)
        stamps.append(time.now)
        rl.correct(800, 1_000)  # charge 200 more: level -100
        await rl.acquire(100)  # needs 200 tokens of refill = 12 s
        stamps.append(time.now)
        return stamps

    assert asyncio.run(main()) == [0.0, pytest.approx(12.0)]


def test_refunds_never_overfill_the_bucket():
    time = FakeTime()
    rl = limiter(time, tpm=1_000)

    async def main() -> float:
        rl.correct(5_000, 0)
        await rl.acquire(1_000)
        await rl.acquire(1_000)
        return time.now

    assert asyncio.run(main()) == pytest.approx(60.0)


def test_cancelled_head_waiter_lets_the_queue_move_on():
    time = FakeTime()
    rl = limiter(time, rpm=60)

    async def main() -> list[str]:
        done: list[str] = []
        await rl.acquire()
        for _ in range(59):
            await rl.acquire()

        async def worker(name: str) -> None:
            await rl.acquire()
            done.append(name)

        head = asyncio.ensure_future(worker("head"))
        tail = asyncio.ensure_future(worker("tail"))
        await asyncio.sleep(0)
        head.cancel()
        await asyncio.gather(head, tail, return_exceptions=True)
        return done

    assert asyncio.run(main()) == ["tail"]


def test_real_clock_limiter_allows_a_burst_without_waiting():
    rl = RateLimiter(rpm=6_000, tpm=1_000_000)

    async def main() -> None:
        await asyncio.gather(*(rl.acquire(100) for _ in range(50)))

    asyncio.run(asyncio.wait_for(main(), timeout=5))


@pytest.mark.parametrize("kwargs", [{"rpm": 0}, {"tpm": -5}, {"rpm": float("nan")}])
def test_non_positive_budgets_are_rejected(kwargs: dict):
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(**kwargs)
