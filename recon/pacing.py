"""Pacing: how fast requests go out, how the batch slows down on 429, how long to wait to retry.

- `RateLimiter` spaces request starts evenly (GCRA without burst) so that no one-second window
  ever holds more than `rate` starts, and adapts (AIMD) when the provider answers 429: the
  provider's limit is not published, so the batch has to find it.
- `parse_retry_after` reads a `Retry-After` header (seconds or an HTTP date).
- `backoff` is the jittered exponential delay between look-ups of a pending capture.

Everything takes its clock and its sleep as parameters, so tests run in virtual time.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["RateLimiter", "backoff", "parse_retry_after"]

RETRY_AFTER_CAP = 300.0
"""Longest `Retry-After` honoured, in seconds: a larger value is more likely a bug than a plan."""

# A hair added to every emission interval so that float rounding can never squeeze `rate + 1`
# starts into one second (0.1 added ten times is 0.9999999999999999).
_EPSILON = 1e-9


# The provider's limit is per second: its memory of our past requests lasts that long, so the
# 429s of the second after a slow-down still reflect the old pace, and the successes of the
# last second measure what it lets through.
_WINDOW = 1.0
# Recovery is fast up to this share of the last measured limit, then slow (probing). Below 1
# because network jitter bunches requests up: the provider sees more than we sent in a second.
_KNEE = 0.92
# Answers per second at or above this share of the pace mean the provider keeps up with it.
_KEEPING_UP = 0.97


class RateLimiter:
    """Paces request starts at `rate` per second and slows down when the provider says 429.

    Why not aiolimiter: its leaky bucket lets a burst of up to `max_rate` through on top of the
    steady flow (a full bucket at the start, then its drain: up to twice `rate` in one second),
    and a provider that counts requests in a sliding window answers that burst with 429s. Here
    each start gets its own slot `1 / rate` after the previous one (GCRA with zero burst
    tolerance), so any window [t, t+1) holds at most `rate` starts (at most `ceil(rate)` for a
    fractional rate), as far as the event loop wakes sleepers on time.

    Adaptation (AIMD, as TCP does): the first 429 of a burst sets the rate to `decrease` times
    what the provider let through in the last second (its limit, as far as we can see; at most
    the current rate, at least a quarter of it); the refused request waits its `Retry-After`,
    the others only slow down. Lone 429s are noise (see `on_throttled`), and the 429s of the
    second after a cut are echoes of the old pace and change nothing. Each
    success then raises the rate additively: by `recover` x `rate` per second back up to 92 % of
    the measured limit, by `increase` x `rate` per second from there on (probing, so the limit
    is hit again only about once a minute), quickly again once well above the old limit (it has
    gone up), never above `rate`. The batch so settles just under the provider's limit instead
    of pausing for every 429 or hammering the provider.

    Call `on_success` for every answer that was not a 429 and `on_throttled` for every 429.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        decrease: float = 0.9,
        increase: float = 0.001,
        recover: float = 0.1,
        min_rate: float | None = None,
        noise: int | None = None,
        keeping_up: float = _KEEPING_UP,
        warmup: float = _WINDOW,
    ) -> None:
        if not 0 < rate < math.inf:
            raise ValueError(f"rate must be a positive number of requests per second, not {rate}")
        if not 0 < decrease < 1:
            raise ValueError(f"decrease must be between 0 and 1, not {decrease}")
        self.rate = float(rate)
        self._clock = clock
        self._sleep = sleep
        self._decrease = decrease
        self._increase = increase
        self._recover = recover
        self._min_rate = min(rate, 1.0) if min_rate is None else min(min_rate, rate)
        self._current = self.rate
        self._interval = 1.0 / self._current + _EPSILON
        self._tat = -math.inf  # theoretical arrival time (GCRA): the next free slot
        self._last_granted = -math.inf
        self._starts: deque[float] = deque()  # actual start times within the last _WINDOW
        self._first_start = math.inf
        self._waiting: deque[_Ticket] = deque()  # in slot order
        self._ceiling = self.rate  # the provider's limit, as measured at the last 429 burst
        self._burst_until = -math.inf
        self._successes: deque[float] = deque()  # answer times within the last _WINDOW
        self._throttles: deque[float] = deque()  # 429 times within the last _WINDOW
        self._keeping_up = keeping_up
        self._warmup = warmup
        # 429s in one second that make a burst: 1 % of the rate, at least 2 (1 below 10/s).
        self._noise = noise if noise is not None else (1 if rate < 10 else max(2, int(rate / 100)))

    @property
    def current_rate(self) -> float:
        """The rate in force now: `rate`, or less after 429s."""
        return self._current

    async def acquire(self) -> None:
        """Wait for this request's slot; slots go out in call order (first come, first served)."""
        now = self._clock()
        # Reserve the slot before any await, so concurrent callers never share one. Idle time is
        # not saved up: after a pause the next slot is now, the one after is an interval later.
        ticket = _Ticket(max(now, self._tat))
        self._tat = ticket.slot + self._interval
        self._waiting.append(ticket)
        try:
            while True:
                while ticket.slot > now:  # a slow-down or a Retry-After may move it meanwhile
                    await self._sleep(ticket.slot - now)
                    now = self._clock()
                # Slots are a plan; starts are what the provider counts. After the event loop
                # stalls (a GC pause, a journal checkpoint) late slots start in a bunch, which
                # is fine unless the bunch puts more than `rate` starts in the last second.
                starts = self._starts
                while starts and starts[0] + _WINDOW <= now:  # the same sum as the slot below
                    starts.popleft()
                if len(starts) < max(1, math.ceil(self._current - _EPSILON)):
                    break
                ticket.slot = starts[0] + _WINDOW
            self._starts.append(now)
            self._first_start = min(self._first_start, now)
            self._last_granted = max(self._last_granted, ticket.slot)
        finally:
            self._waiting.remove(ticket)  # the first one but for a hair, or cancelled

    def on_throttled(self, retry_after: float | None = None) -> None:
        """A 429: slow down once per burst; 429s until `retry_after` (+1 s) are its echoes.

        The refused request itself waits its Retry-After (the caller re-queues it); the others
        only slow down: pausing the whole batch for every Retry-After measured about 40 % of
        the provider's limit.

        A lone 429 is noise, not news: jitter on the way bunches a few requests together now
        and then, and a batch running just under the provider's limit would otherwise pause and
        cut its rate for each one (measured: 81 % of the rate at 200/s against a limit of 206).
        Only `noise` 429s or more within one second count as a burst; the refused request itself
        is retried by the caller after its own Retry-After.
        """
        now = self._clock()
        self._throttles.append(now)
        while self._throttles and self._throttles[0] <= now - _WINDOW:
            self._throttles.popleft()
        if len(self._throttles) < self._noise:
            return
        if now < self._burst_until:
            return  # an echo of the burst already acted upon
        # Less than a second of answers says nothing about the provider's limit (measured: a
        # cut from the first half-second's 90 answers held 200/s at 80/s for a minute).
        passed = len(self._recent(now)) if now - self._first_start >= self._warmup else None
        if passed is not None and passed >= self._keeping_up * self._current:
            # The provider let through all we sent in the last second: these 429s are requests
            # bunched on the way, not a pace above its limit. Cutting here ratchets the rate
            # down burst after burst (measured: 200/s against a limit of 140 drifted to 102/s).
            return
        wait = retry_after if retry_after is not None and retry_after > 0 else 0.0
        self._burst_until = now + wait + _WINDOW
        measured = self._current if passed is None else passed
        self._ceiling = min(self._current, max(measured, self._current / 4))
        self._set_rate(self._ceiling * self._decrease)

    def on_success(self) -> None:
        """A non-429 answer: creep back toward `rate` (see the class docstring)."""
        now = self._clock()
        self._recent(now).append(now)
        if self._current < self.rate:
            knee = _KNEE * self._ceiling
            if self._current < knee:  # back up quickly, but not past the knee in one step
                self._set_rate(min(knee, self._current + self._recover * self.rate / self._current))
                return
            # Probe slowly near the last measured limit, quickly again once well above it.
            probing = self._current < self._ceiling / _KNEE
            per_second = (self._increase if probing else self._recover) * self.rate
            # One success is 1/current of a second of successes.
            self._set_rate(self._current + per_second / self._current)

    def _recent(self, now: float) -> deque[float]:
        while self._successes and self._successes[0] <= now - _WINDOW:
            self._successes.popleft()
        return self._successes

    def _set_rate(self, rate: float) -> None:
        """Change the pace. Slots that have come are kept. Waiting requests are spaced anew when
        that makes them later (a slower pace), still in order. On a faster pace they
        keep the slot they sleep until and only new requests speed up: a slot moved earlier
        would not wake its sleeper, and the next request would start too close behind it."""
        self._current = min(self.rate, max(self._min_rate, rate))
        interval = 1.0 / self._current + _EPSILON
        if interval > self._interval:
            now = self._clock()
            last = self._last_granted
            for ticket in self._waiting:
                if ticket.slot > now:
                    ticket.slot = last + interval
                last = ticket.slot
            self._tat = last + interval
        self._interval = interval


class _Ticket:
    """A request's place in the schedule: mutable, so a slow-down can move it."""

    __slots__ = ("slot",)

    def __init__(self, slot: float) -> None:
        self.slot = slot


_SECONDS = re.compile(r"-?\d+(\.\d*)?")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delay-seconds or an HTTP date (RFC 9110).

    Fractions are accepted (some servers send them), a date in the past or a negative number is
    0, anything unreadable is None (the caller then relies on slowing down alone), and the
    result is capped at `RETRY_AFTER_CAP`.
    """
    if value is None:
        return None
    text = value.strip()
    if _SECONDS.fullmatch(text):
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        now = now or datetime.now(UTC)
        # A date with "-0000" comes back naive; it means UTC (RFC 5322), as a naive `now` does.
        when, now = (d if d.tzinfo else d.replace(tzinfo=UTC) for d in (when, now))
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def backoff(
    attempt: int, base: float = 0.5, cap: float = 30.0, *, rng: random.Random | None = None
) -> float:
    """Seconds before look-up number `attempt` (0 first) of a pending capture.

    Exponential so a slow provider is not polled hard, capped so an order settles within the
    settle timeout, and "equal jitter" (half fixed, half random) so orders that went pending
    together do not come back in lockstep while each still waits at least half the delay.
    Not stamina: a pending status is an answer, not an exception, and the look-up must go
    through the rate limiter anyway.
    """
    delay = min(cap, base * 2.0 ** min(max(attempt, 0), 64))
    return delay / 2 + (rng or random).random() * delay / 2
