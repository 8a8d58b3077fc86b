"""Pacing in virtual time: a tiny scheduler runs the coroutines and jumps the clock to the next
wake-up, so a minute of traffic takes milliseconds and every run is exactly reproducible."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
import time
from collections import deque
from collections.abc import Coroutine, Generator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recon import pacing
from recon.pacing import RETRY_AFTER_CAP, RateLimiter, backoff, parse_retry_after


class _Wake:
    """What a sleeping coroutine yields up to the scheduler: when to resume it."""

    def __init__(self, at: float) -> None:
        self.at = at

    def __await__(self) -> Generator[_Wake, None, None]:
        yield self


class VirtualTime:
    """A clock and a sleep for `RateLimiter`, and the loop that runs coroutines against them."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._queue: list[tuple[float, int, Coroutine[Any, Any, Any]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    def sleep(self, delay: float) -> _Wake:
        return _Wake(self.now + max(delay, 0.0))

    def spawn(self, coro: Coroutine[Any, Any, Any], at: float | None = None) -> None:
        heapq.heappush(self._queue, (self.now if at is None else at, next(self._seq), coro))

    def run(self) -> None:
        while self._queue:
            at, _, coro = heapq.heappop(self._queue)
            self.now = max(self.now, at)
            try:
                wake = coro.send(None)
            except StopIteration:
                continue
            assert isinstance(wake, _Wake), f"coroutine awaited {wake!r}, not virtual sleep"
            heapq.heappush(self._queue, (wake.at, next(self._seq), coro))


def limiter(vt: VirtualTime, rate: float, **kwargs: Any) -> RateLimiter:
    """A limiter on virtual time where every 429 is news (no noise filter, and a provider that
    keeps up is not assumed) unless a test says otherwise."""
    kwargs.setdefault("noise", 1)
    kwargs.setdefault("keeping_up", math.inf)
    kwargs.setdefault("warmup", 0.0)
    return RateLimiter(rate, clock=vt.clock, sleep=vt.sleep, **kwargs)


def max_in_window(times: list[float]) -> int:
    """The most starts in any half-open one-second window [t, t+1)."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - 1:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def run_acquirers(
    rate: float, workers: int, per_worker: int, stagger: float = 0.0
) -> dict[int, list[float]]:
    """`workers` tasks each acquiring `per_worker` times; the grant times of each."""
    vt = VirtualTime()
    lim = limiter(vt, rate)
    grants: dict[int, list[float]] = {w: [] for w in range(workers)}

    async def worker(w: int) -> None:
        for _ in range(per_worker):
            await lim.acquire()
            grants[w].append(vt.now)

    for w in range(workers):
        vt.spawn(worker(w), at=vt.now + w * stagger)
    vt.run()
    return grants


# --- the window property -------------------------------------------------------------------


@pytest.mark.parametrize("rate", [1, 7, 10, 200])
@pytest.mark.parametrize("workers", [1, 8, 50])
def test_no_window_holds_more_than_rate(rate: int, workers: int) -> None:
    grants = run_acquirers(rate, workers, per_worker=max(3 * rate // workers, 3))
    times = [t for ts in grants.values() for t in ts]
    assert max_in_window(times) == min(rate, len(times))


@settings(max_examples=60, deadline=None)
@given(
    rate=st.integers(min_value=1, max_value=300),
    workers=st.integers(min_value=1, max_value=40),
    per_worker=st.integers(min_value=1, max_value=20),
    stagger=st.floats(min_value=0.0, max_value=0.3),
)
def test_window_property_holds_for_any_mix(
    rate: int, workers: int, per_worker: int, stagger: float
) -> None:
    grants = run_acquirers(rate, workers, per_worker, stagger)
    assert max_in_window([t for ts in grants.values() for t in ts]) <= rate


@settings(max_examples=40, deadline=None)
@given(rate=st.floats(min_value=0.2, max_value=250.0))
def test_fractional_rate_never_exceeds_its_ceiling(rate: float) -> None:
    grants = run_acquirers(rate, 8, per_worker=max(int(rate), 2))
    assert max_in_window([t for ts in grants.values() for t in ts]) <= math.ceil(rate)


def test_idle_time_is_not_saved_up_as_burst() -> None:
    vt = VirtualTime()
    lim = limiter(vt, 10)
    times: list[float] = []

    async def go() -> None:
        for _ in range(5):
            await lim.acquire()
            times.append(vt.now)
        await vt.sleep(30)  # a long quiet spell
        for _ in range(20):
            await lim.acquire()
            times.append(vt.now)

    vt.spawn(go())
    vt.run()
    assert max_in_window(times[5:]) == 10
    assert times[6] - times[5] == pytest.approx(0.1)


# --- throughput and fairness --------------------------------------------------------------


@pytest.mark.parametrize("rate", [1, 7, 10, 200])
def test_steady_throughput_is_the_rate(rate: int) -> None:
    grants = run_acquirers(rate, workers=8, per_worker=10 * rate)
    times = sorted(t for ts in grants.values() for t in ts)
    assert (len(times) - 1) / (times[-1] - times[0]) == pytest.approx(rate, rel=1e-6)


def test_first_slot_is_immediate() -> None:
    grants = run_acquirers(10, workers=1, per_worker=1)
    assert grants[0] == [1000.0]


def test_concurrent_waiters_share_slots_evenly_and_in_order() -> None:
    grants = run_acquirers(20, workers=10, per_worker=30)
    # Slots go out in call order: worker 0 takes the free slot at once and calls again before
    # the others, then the ten take turns, each every tenth slot (0.5 s at 20/s).
    order = sorted((t, w) for w, ts in grants.items() for t in ts)
    assert [w for _, w in order[:11]] == [0, 0, *range(1, 10)]
    for ts in grants.values():
        assert {round(b - a, 6) for a, b in itertools.pairwise(ts[1:-1])} == {0.5}
    finish = [ts[-1] for ts in grants.values()]
    assert max(finish) - min(finish) < 1.0  # nobody gets ahead by more than a round


def test_real_event_loop_smoke() -> None:
    """With the default clock and sleep: 20 starts at 400/s take about 47.5 ms."""

    async def go() -> float:
        lim = RateLimiter(400)
        start = time.monotonic()
        await asyncio.gather(*(lim.acquire() for _ in range(20)))
        return time.monotonic() - start

    assert asyncio.run(go()) >= 19 / 400


def test_real_event_loop_cancelled_waiter_gives_way() -> None:
    async def go() -> list[float]:
        lim = RateLimiter(100, noise=1, warmup=0.0)
        times: list[float] = []

        async def one() -> None:
            await lim.acquire()
            times.append(time.monotonic())

        tasks = [asyncio.create_task(one()) for _ in range(5)]
        await asyncio.sleep(0.005)
        tasks[3].cancel()
        lim.on_throttled(0.05)  # nothing measured: 22.5/s from now on
        await asyncio.gather(*tasks, return_exceptions=True)
        return times

    times = asyncio.run(go())
    assert len(times) == 4
    assert min(b - a for a, b in itertools.pairwise(times[1:])) >= 1 / 22.5 - 0.002


def test_bad_rate_is_refused() -> None:
    for rate in (0, -1, math.inf, math.nan):
        with pytest.raises(ValueError):
            RateLimiter(rate)


# --- adaptation on 429 --------------------------------------------------------------------


def steady(vt: VirtualTime, lim: RateLimiter, seconds: float, share: float = 1.0) -> Any:
    """Send for `seconds` at the limiter's pace; the provider lets `share` of them through."""

    async def go() -> None:
        end, n = vt.now + seconds, 0
        while vt.now < end:
            await lim.acquire()
            n += 1
            if n * share >= math.floor((n - 1) * share) + 1:
                lim.on_success()

    return go()


def test_a_burst_of_429_slows_down_once() -> None:
    vt = VirtualTime()
    lim = limiter(vt, 100)

    async def go() -> None:
        await steady(vt, lim, 2.0)
        for _ in range(8):  # eight requests in flight come back 429 together
            lim.on_throttled(None)

    vt.spawn(go())
    vt.run()
    assert lim.current_rate == pytest.approx(0.9 * 100)


def test_the_cut_starts_from_what_the_provider_let_through() -> None:
    vt = VirtualTime()
    lim = limiter(vt, 100)

    async def go() -> None:
        await steady(vt, lim, 2.0, share=0.6)
        lim.on_throttled(None)

    vt.spawn(go())
    vt.run()
    assert lim.current_rate == pytest.approx(0.9 * 60, abs=1)


def test_one_cut_takes_at_most_three_quarters_off() -> None:
    vt = VirtualTime()
    lim = limiter(vt, 100)

    async def go() -> None:
        await lim.acquire()
        lim.on_throttled(None)  # no success seen yet: nothing measured

    vt.spawn(go())
    vt.run()
    assert lim.current_rate == pytest.approx(0.9 * 100 / 4)


def test_429s_within_a_second_are_echoes_later_ones_are_news() -> None:
    vt = VirtualTime()
    lim = limiter(vt, 100)

    async def go() -> None:
        await steady(vt, lim, 2.0)
        lim.on_throttled(None)
        await vt.sleep(0.9)
        lim.on_throttled(None)
        assert lim.current_rate == pytest.approx(90)
        await steady(vt, lim, 0.2)
        lim.on_throttled(None)
        assert lim.current_rate < 0.9 * 90

    vt.spawn(go())
    vt.run()


def test_a_cut_respaces_the_requests_already_waiting() -> None:
    vt = VirtualTime()
    lim = limiter(vt, 10)
    grants: list[float] = []

    async def worker() -> None:
        for _ in range(3):
            await lim.acquire()
            grants.append(vt.now)

    async def throttle() -> None:
        await vt.sleep(0.05)
        lim.on_throttled(None)  # nothing measured: 2.25/s from now, for those queued too

    for _ in range(10):
        vt.spawn(worker())
    vt.spawn(throttle())
    vt.run()
    assert grants[0] == 1000.0
    assert {round(b - a, 6) for a, b in itertools.pairwise(grants[1:])} == {round(1 / 2.25, 6)}


def test_retry_after_slows_the_batch_but_does_not_pause_it() -> None:
    """Pausing everyone for every Retry-After measured about 40 % of the provider's limit: the
    refused request waits its Retry-After (the caller re-queues it), the rest only slow down."""
    vt = VirtualTime()
    lim = limiter(vt, 10)
    grants: list[float] = []

    async def first() -> None:
        await lim.acquire()
        await vt.sleep(0.05)
        lim.on_throttled(2.0)  # at 1000.05: the rate drops to 2.25/s, nothing is held 2 s

    async def other() -> None:
        await lim.acquire()  # reserved 1000.1 and 1000.2 before the 429 arrived
        grants.append(vt.now)

    vt.spawn(first())
    vt.spawn(other())
    vt.spawn(other())
    vt.run()
    assert grants[0] < 1000.6
    assert grants[1] - grants[0] == pytest.approx(1 / 2.25)


def test_429s_until_the_retry_after_are_echoes_of_the_same_burst() -> None:
    vt = VirtualTime()
    lim = limiter(vt, 10)

    async def go() -> None:
        await lim.acquire()
        await lim.acquire()
        lim.on_throttled(3.0)
        cut = lim.current_rate
        await vt.sleep(2.0)
        lim.on_throttled(None)  # still within Retry-After + 1 s: the same burst
        assert lim.current_rate >= cut

    vt.spawn(go())
    vt.run()


def test_rate_recovers_fast_then_probes_slowly_and_never_passes_the_configured_rate() -> None:
    vt = VirtualTime()
    lim = limiter(vt, 100, decrease=0.9, recover=0.1, increase=0.001)
    seen: list[tuple[float, float]] = []

    async def go() -> None:
        await lim.acquire()
        lim.on_throttled(None)  # nothing measured: the limit is taken as 100/4, rate 22.5
        start = vt.now
        while vt.now - start < 60:
            await lim.acquire()
            lim.on_success()
            seen.append((vt.now - start, lim.current_rate))

    vt.spawn(go())
    vt.run()
    rates = [r for _, r in seen]
    assert rates == sorted(rates)
    rate_at = {round(t): r for t, r in seen}
    knee = pacing._KNEE * 25
    assert rate_at[1] == pytest.approx(knee + 0.15, abs=0.05)  # +10/s per s to the knee, then
    assert rate_at[11] - rate_at[1] == pytest.approx(10 * 0.1, abs=0.02)  # +0.1/s per s
    assert max(rates) == 100  # well above the old limit: fast again, but never above the rate
    assert rate_at[55] == 100


def test_rate_never_falls_below_the_floor() -> None:
    vt = VirtualTime()
    lim = limiter(vt, 50, min_rate=2)

    async def go() -> None:
        for _ in range(20):
            await lim.acquire()
            lim.on_throttled(None)
            await vt.sleep(1.5)

    vt.spawn(go())
    vt.run()
    assert lim.current_rate == 2


@settings(max_examples=60, deadline=None)
@given(
    rate=st.integers(min_value=1, max_value=200),
    workers=st.integers(min_value=1, max_value=30),
    answers=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=0.3), st.sampled_from(["ok", "429", "wait"])),
        min_size=1,
        max_size=60,
    ),
)
def test_window_property_holds_while_the_rate_moves(
    rate: int, workers: int, answers: list[tuple[float, str]]
) -> None:
    vt = VirtualTime()
    lim = limiter(vt, rate)
    grants: list[float] = []
    script = iter(answers * 4)

    async def worker() -> None:
        for delay, answer in script:
            await lim.acquire()
            grants.append(vt.now)
            await vt.sleep(delay)
            if answer == "ok":
                lim.on_success()
            elif answer == "429":
                lim.on_throttled(None)
            else:
                lim.on_throttled(delay * 3)

    for _ in range(workers):
        vt.spawn(worker())
    vt.run()
    assert max_in_window(grants) <= rate
    assert lim.current_rate <= rate


# --- a provider with a hidden limit -------------------------------------------------------


@dataclass
class SimResult:
    accepted: int
    throttled: int
    seconds: float
    settled_rate: float  # accepted per second over the second half

    @property
    def throughput(self) -> float:
        return self.accepted / self.seconds

    @property
    def throttled_share(self) -> float:
        return self.throttled / (self.accepted + self.throttled)


def simulate(
    rate: float,
    limit: int,
    *,
    workers: int = 16,
    seconds: float = 60.0,
    latency: tuple[float, float] = (0.005, 0.03),
    retry_after: str = "none",
    provider: str = "sliding",
    seed: int = 1,
) -> SimResult:
    """Workers send through the limiter to a provider that accepts at most `limit` requests in
    any one-second window and answers 429 past it; a 429 is retried. `retry_after` is what the
    provider says: "none", "exact" (seconds until a request would pass), "whole" (those
    seconds rounded up, as an integer header would). `provider` is how it counts: "sliding"
    (any one-second window) or "fixed" (per clock second, so up to twice `limit` across a
    boundary)."""
    vt = VirtualTime()
    lim = RateLimiter(rate, clock=vt.clock, sleep=vt.sleep)  # the default noise filter
    rng = random.Random(seed)
    window: deque[float] = deque()
    log: list[float] = []
    throttled = 0
    end = vt.now + seconds

    async def worker() -> None:
        nonlocal throttled
        while True:
            await lim.acquire()
            if vt.now >= end:
                return
            await vt.sleep(rng.uniform(*latency))  # on the way
            arrived = vt.now
            if provider == "sliding":  # keep (arrived - 1, arrived]
                while window and window[0] <= arrived - 1:
                    window.popleft()
            else:  # keep [floor(arrived), arrived]
                while window and window[0] < math.floor(arrived):
                    window.popleft()
            ok = len(window) < limit
            if ok:
                window.append(arrived)
                log.append(arrived)
            else:
                throttled += 1
                start = window[0] if provider == "sliding" else math.floor(arrived)
                wait = start + 1 - arrived
            await vt.sleep(rng.uniform(*latency))  # on the way back
            if ok:
                lim.on_success()
            elif retry_after == "none":
                lim.on_throttled(None)
            elif retry_after == "exact":
                lim.on_throttled(wait)
            else:
                lim.on_throttled(float(math.ceil(wait)))

    start = vt.now
    for _ in range(workers):
        vt.spawn(worker())
    vt.run()
    half = start + seconds / 2
    settled = sum(1 for t in log if half <= t < end) / (seconds / 2)
    return SimResult(len(log), throttled, seconds, settled)


@pytest.mark.parametrize("provider", ["sliding", "fixed"])
@pytest.mark.parametrize("retry_after", ["none", "exact", "whole"])
@pytest.mark.parametrize("rate", [10, 50, 200])
def test_settles_near_a_provider_limit_30_percent_below_the_rate(
    rate: int, retry_after: str, provider: str
) -> None:
    limit = round(rate * 0.7)
    result = simulate(rate, limit, retry_after=retry_after, provider=provider)
    assert result.throughput >= 0.85 * limit  # over the whole minute, start-up included
    assert result.throttled_share <= 0.05


@pytest.mark.parametrize("provider", ["sliding", "fixed"])
@pytest.mark.parametrize("retry_after", ["none", "exact", "whole"])
def test_keeps_full_speed_when_the_provider_limit_is_just_above_the_rate(
    retry_after: str, provider: str
) -> None:
    result = simulate(200, 206, retry_after=retry_after, provider=provider)
    assert result.throughput >= 0.97 * 200
    assert result.throttled_share <= 0.005


def test_finds_a_limit_far_below_the_rate() -> None:
    result = simulate(100, 30, retry_after="none")
    assert result.throughput >= 0.85 * 30
    assert result.throttled_share <= 0.05


# --- Retry-After ----------------------------------------------------------------------------

NOW = datetime(2026, 12, 4, 20, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("100000", RETRY_AFTER_CAP),
        (format_datetime(NOW + timedelta(seconds=42), usegmt=True), 42.0),
        ("Fri, 04 Dec 2026 20:01:00 GMT", 60.0),
        ("Friday, 04-Dec-26 20:01:00 GMT", 60.0),  # obsolete RFC 850 form
        ("Fri, 04 Dec 2026 19:59:00 GMT", 0.0),  # in the past
        ("Fri, 04 Dec 2026 20:00:10 -0000", 10.0),  # no zone: UTC
    ],
)
def test_parse_retry_after(value: str, seconds: float) -> None:
    assert parse_retry_after(value, NOW) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [None, "", "soon", "1e3", "nan", "inf", "1_000", "12 s", "--1", "Fri, 04 Dec 99999 20:00 GMT"],
)
def test_unreadable_retry_after_is_none(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


def test_retry_after_date_against_a_naive_now_takes_it_as_utc() -> None:
    naive = NOW.replace(tzinfo=None)
    assert parse_retry_after("Fri, 04 Dec 2026 20:01:00 GMT", naive) == 60.0


def test_retry_after_date_defaults_to_the_current_time() -> None:
    future = datetime.now(UTC) + timedelta(seconds=30)
    assert 25 <= (parse_retry_after(format_datetime(future, usegmt=True)) or 0) <= 30


# --- back-off ---------------------------------------------------------------------------------


def test_backoff_grows_with_equal_jitter_and_a_cap() -> None:
    rng = random.Random(7)
    for attempt, full in [(0, 0.5), (1, 1.0), (3, 4.0), (6, 30.0), (10_000, 30.0)]:
        delays = [backoff(attempt, rng=rng) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full / 4  # it really is jittered


def test_backoff_is_reproducible_with_a_seeded_rng() -> None:
    assert backoff(2, rng=random.Random(1)) == backoff(2, rng=random.Random(1))


def test_a_lone_429_is_noise_not_a_reason_to_slow_down() -> None:
    vt = VirtualTime()
    lim = RateLimiter(200, clock=vt.clock, sleep=vt.sleep)
    lim.on_throttled(1.0)
    assert lim.current_rate == 200  # one 429 at 200/s: jitter, the caller retries that request
    lim.on_throttled(1.0)
    assert lim.current_rate < 200  # two within a second: a burst, slow down


def test_429s_while_the_provider_keeps_up_are_bunching_not_a_limit() -> None:
    vt = VirtualTime()
    lim = RateLimiter(100, clock=vt.clock, sleep=vt.sleep, noise=1)

    async def go() -> None:
        await steady(vt, lim, 2.0)  # everything we sent passed
        lim.on_throttled(None)
        assert lim.current_rate == 100
        for _ in range(3):  # then the provider starts refusing a third: a real limit
            await lim.acquire()
            lim.on_throttled(None)
        await vt.sleep(1.0)
        lim.on_throttled(None)
        assert lim.current_rate < 100

    vt.spawn(go())
    vt.run()


def test_in_the_first_second_a_burst_cuts_from_the_pace_not_from_a_partial_count() -> None:
    vt = VirtualTime()
    lim = RateLimiter(200, clock=vt.clock, sleep=vt.sleep, noise=1)

    async def go() -> None:
        await steady(vt, lim, 0.4)  # 80 answers so far: not a second's worth
        lim.on_throttled(None)
        assert lim.current_rate == pytest.approx(0.9 * 200)

    vt.spawn(go())
    vt.run()
