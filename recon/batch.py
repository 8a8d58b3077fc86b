"""Drives orders through the journal and the client: send, record, and settle every doubt.

Work is a small agenda of timed items, taken by `concurrency` workers:
- send:    acquire a slot, commit "sending", POST /capture, record the answer;
- resolve: an answer was lost; look the capture up. Found: record it. Not found by a look-up made
           after the request's deadline plus a grace period: safe to send again. Otherwise keep
           looking, and after `max_lookups` failures leave the order `unknown` for a person;
- poll:    the capture is pending; look it up again with back-off until the settle time.
Orders left "sending" by a crash are resolved before anything else is sent.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from recon.api import Client, Reply, ReplyKind
from recon.errors import StoppedEarly, Unauthorized
from recon.journal import Journal, Settlement, State
from recon.pacing import RateLimiter, backoff, parse_retry_after
from recon.schema import Order

log = logging.getLogger("recon.batch")


class Step(StrEnum):
    RESOLVE = "resolve"  # sorts first: doubts are settled before new money moves
    POLL = "poll"
    SEND = "send"


_PRIORITY = {Step.RESOLVE: 0, Step.POLL: 1, Step.SEND: 2}


@dataclass(frozen=True)
class BatchOptions:
    concurrency: int = 8
    timeout: float = 30.0  # seconds per request; the deadline recorded with each capture
    settle_timeout: float = 120.0  # how long a pending capture is looked up again
    grace: float = 5.0  # after a deadline, before "no capture found" is believed
    max_lookups: int = 8  # failed look-ups before an order is left `unknown`
    max_resends: int = 3  # sends of one order after look-ups proved the earlier ones absent
    max_unreachable: int = 6  # connection failures in a row before the batch stops
    max_throttled: int = 50  # 429s for one order before the batch stops
    backoff: float = 0.5  # first delay between look-ups of a pending or doubtful capture


@dataclass
class Counts:
    """Progress of this run: orders settled so far (for the progress bar)."""

    total: int = 0
    settled: int = 0
    by_state: dict[str, int] = field(default_factory=dict)


def settlement_of(reply: Reply) -> Settlement:
    """The order state an answer justifies (kinds that do not settle anything → PLANNED)."""
    op = reply.operation
    if reply.kind is ReplyKind.OPERATION and op is not None:
        return Settlement(
            state=State.ANSWERED if op.final else State.PENDING,
            http_status=reply.http_status,
            code=op.status_code,
            message=op.status_description,
            operation=op,
        )
    states = {ReplyKind.REFUSED: State.REFUSED, ReplyKind.IN_DOUBT: State.IN_DOUBT}
    return Settlement(
        state=states.get(reply.kind, State.PLANNED),
        http_status=reply.http_status,
        code=reply.code,
        message=reply.message,
    )


class Agenda:
    """Timed work items for a pool of workers; ends when empty and no worker can add more."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, Step, int]] = []
        self._tick = itertools.count()
        self._changed = asyncio.Event()
        self.active = 0
        self.closed = False

    def put(self, step: Step, seq: int, delay: float = 0.0) -> None:
        at = time.monotonic() + delay
        heapq.heappush(self._heap, (at, _PRIORITY[step], next(self._tick), step, seq))
        self._changed.set()

    def close(self) -> None:
        self.closed = True
        self._changed.set()

    def done(self) -> None:
        self.active -= 1
        self._changed.set()

    def __len__(self) -> int:
        return len(self._heap)

    async def get(self) -> tuple[Step, int] | None:
        while not self.closed:
            timeout: float | None = None
            if self._heap:
                at = self._heap[0][0]
                now = time.monotonic()
                if at <= now:
                    _, _, _, step, seq = heapq.heappop(self._heap)
                    self.active += 1
                    return step, seq
                timeout = at - now
            elif self.active == 0:
                return None
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
            except TimeoutError:
                pass
        return None


class Runner:
    """One run of the batch over the journal; `stop()` makes it finish in-flight work and end."""

    def __init__(
        self,
        journal: Journal,
        run_id: str,
        client: Client,
        limiter: RateLimiter,
        options: BatchOptions = BatchOptions(),
        on_progress: Callable[[Counts], None] | None = None,
    ) -> None:
        self.journal = journal
        self.run_id = run_id
        self.client = client
        self.limiter = limiter
        self.options = options
        self.on_progress = on_progress
        self.agenda = Agenda()
        self.orders: dict[int, Order] = {}
        self.counts = Counts()
        self.stopping = False
        self.stop_reason: StoppedEarly | None = None
        self._answered = False  # the first HTTP answer proves the credentials work
        self._lookups: dict[int, int] = {}
        self._doubts: dict[int, str] = {}  # why an order's answer was not believed
        self._throttled: dict[int, int] = {}
        self._resends: dict[int, int] = {}
        self._unreachable = 0

    def stop(self, reason: StoppedEarly | None = None) -> None:
        """Send nothing new; in-flight requests finish and are recorded."""
        self.stopping = True
        if reason is not None and self.stop_reason is None:
            self.stop_reason = reason
        self.agenda.close()

    async def run(self) -> Counts:
        self._plan()
        # One request alone first: a wrong credential then costs one 401, not `concurrency` of them.
        while not self._answered and not self.stopping:
            item = await self.agenda.get()
            if item is None:
                break
            await self._work(item)
        if not self.stopping:
            await asyncio.gather(*(self._worker() for _ in range(self.options.concurrency)))
        if self.stop_reason is not None:
            raise self.stop_reason
        if self.stopping:
            raise StoppedEarly(
                "stopped before every order had its turn; run the same command again"
            )
        return self.counts

    def _plan(self) -> None:
        for record in self.journal.records(self.run_id):
            self.orders[record.seq] = record.order
            step = {
                State.PLANNED: Step.SEND,
                State.SENDING: Step.RESOLVE,
                State.IN_DOUBT: Step.RESOLVE,
                State.UNKNOWN: Step.RESOLVE,
                State.PENDING: Step.POLL,
            }.get(record.state)
            if step is not None:
                self.agenda.put(step, record.seq)
                self.counts.total += 1
        self._report()

    async def _worker(self) -> None:
        while (item := await self.agenda.get()) is not None:
            await self._work(item)

    async def _work(self, item: tuple[Step, int]) -> None:
        step, seq = item
        try:
            if step is Step.SEND:
                await self._send(seq)
            elif step is Step.RESOLVE:
                await self._look_up(seq, pending=False)
            else:
                await self._look_up(seq, pending=True)
        finally:
            self.agenda.done()

    def _settled(self, state: State) -> None:
        self.counts.settled += 1
        self.counts.by_state[state] = self.counts.by_state.get(state, 0) + 1
        self._report()

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.counts)

    async def _send(self, seq: int) -> None:
        order = self.orders[seq]
        await self.limiter.acquire()
        if self.stopping:
            return  # stays planned: the same command sends it next time
        attempt = self.journal.mark_sending(self.run_id, seq, order, self.options.timeout)
        if isinstance(attempt, State):  # a duplicate, or no longer planned: never sent twice
            self._settled(attempt)
            return
        reply = await self.client.capture(order)
        settlement = settlement_of(reply)
        self._record(seq, attempt, reply, settlement)
        if self._not_processed(seq, reply, Step.SEND):
            return
        if settlement.state is State.IN_DOUBT:
            self._doubts[seq] = reply.message
            self.agenda.put(Step.RESOLVE, seq)  # look at once: a quick "found" settles it
        elif settlement.state is State.PENDING:
            self.agenda.put(Step.POLL, seq, backoff(1, self.options.backoff))
        else:
            self._settled(settlement.state)

    async def _look_up(self, seq: int, *, pending: bool) -> None:
        order = self.orders[seq]
        await self.limiter.acquire()
        if self.stopping:
            return
        sent_at = time.time()
        attempt = self.journal.start_lookup(self.run_id, seq, self.options.timeout)
        reply = await self.client.lookup_capture(order)
        step = Step.POLL if pending else Step.RESOLVE
        if reply.kind in (ReplyKind.UNAUTHORIZED, ReplyKind.THROTTLED, ReplyKind.NOT_SENT):
            self._record(seq, attempt, reply, None)
            self._not_processed(seq, reply, step)
            return
        self._heard()
        if reply.kind is ReplyKind.OPERATION:
            settlement = settlement_of(reply)
            self._record(seq, attempt, reply, settlement)
            if settlement.state is State.ANSWERED:
                self._settled(State.ANSWERED)
            elif self._past_settle_time(seq):
                self._settled(State.PENDING)  # reported `pending`: the provider has not finished
            else:
                self.agenda.put(
                    Step.POLL, seq, backoff(self._count(self._lookups, seq), self.options.backoff)
                )
            return
        # "No capture" proves nothing for an order the provider has already reported an
        # operation for (pending, say): only a look-up that finds it, or a person, settles it.
        if reply.kind is ReplyKind.NOT_FOUND and not pending and not self._had_operation(seq):
            deadline = self.journal.last_deadline(self.run_id, seq) or 0.0
            proof_from = deadline + self.options.grace
            if (
                sent_at >= proof_from
                and self._count(self._resends, seq) <= self.options.max_resends
            ):
                # Asked after the last request could still commit: no capture happened.
                self._record(
                    seq, attempt, reply, Settlement(State.PLANNED, 404, message=reply.message)
                )
                self.agenda.put(Step.SEND, seq)
            elif sent_at >= proof_from:
                self._give_up(seq, attempt, reply, "sent and lost too often; look-ups find nothing")
            else:
                self._record(seq, attempt, reply, None)
                self.agenda.put(step, seq, proof_from - sent_at)
            return
        self._record(seq, attempt, reply, None)
        if self._count(self._lookups, seq) >= self.options.max_lookups:
            self._give_up(seq, attempt, reply, f"look-ups failed: {reply.message or reply.kind}")
        else:
            self.agenda.put(step, seq, backoff(self._lookups[seq], self.options.backoff))

    def _had_operation(self, seq: int) -> bool:
        return self.journal.had_operation(self.run_id, seq)

    def _heard(self) -> None:
        """An answer that was not 401, 429 or a failure to connect: the provider is there."""
        self._answered = True
        self._unreachable = 0
        self.limiter.on_success()

    def _not_processed(self, seq: int, reply: Reply, step: Step) -> bool:
        """Handle the answers that mean "nothing happened": 401, 429, not sent. True if handled."""
        if reply.kind is ReplyKind.UNAUTHORIZED:
            self.stop(
                Unauthorized(
                    "the provider answered 401: check FINLINE_API_KEY, "
                    "FINLINE_API_SECRET and FINLINE_ENDPOINTS_KEY"
                )
            )
            return True
        if reply.kind is ReplyKind.THROTTLED:
            self._answered = True
            retry_after = parse_retry_after(reply.retry_after)
            self.limiter.on_throttled(retry_after)
            throttled = self._count(self._throttled, seq)
            if throttled > self.options.max_throttled:
                self.stop(
                    StoppedEarly(f"the provider refused one order {throttled} times with 429")
                )
            else:  # refused, not processed: send again after its Retry-After, or back off
                wait = retry_after if retry_after is not None else backoff(throttled, 0.5)
                self.agenda.put(step, seq, wait)
            return True
        if reply.kind is ReplyKind.NOT_SENT:
            self._unreachable += 1
            if self._unreachable >= self.options.max_unreachable:
                self.stop(StoppedEarly(f"cannot reach the provider: {reply.message}"))
            else:
                self.agenda.put(step, seq, backoff(self._unreachable, self.options.backoff))
            return True
        self._heard()
        return False

    def _record(self, seq: int, attempt: int, reply: Reply, settlement: Settlement | None) -> None:
        self.journal.settle(
            self.run_id, seq, attempt, settlement,
            reply=reply.kind, http_status=reply.http_status, body=reply.body,
            message=reply.message,
        )  # fmt: skip
        log.info("order %s: %s", self.orders[seq].order_id, reply.kind)

    def _give_up(self, seq: int, attempt: int, reply: Reply, why: str) -> None:
        doubt = self._doubts.get(seq)
        why = f"{doubt}; {why}" if doubt else why  # what made it doubtful, for the Exceptions
        self._record(seq, attempt, reply, Settlement(State.UNKNOWN, reply.http_status, message=why))
        self._settled(State.UNKNOWN)

    def _past_settle_time(self, seq: int) -> bool:
        first = self.journal.first_sent(self.run_id, seq)
        return first is None or time.time() - first >= self.options.settle_timeout

    @staticmethod
    def _count(counter: dict[int, int], seq: int) -> int:
        counter[seq] = counter.get(seq, 0) + 1
        return counter[seq]


async def run_batch(
    journal: Journal,
    run_id: str,
    client: Client,
    limiter: RateLimiter,
    options: BatchOptions = BatchOptions(),
    on_progress: Callable[[Counts], None] | None = None,
    runner_ready: Callable[[Runner], None] | None = None,
) -> Counts:
    runner = Runner(journal, run_id, client, limiter, options, on_progress)
    if runner_ready is not None:
        runner_ready(runner)
    return await runner.run()
