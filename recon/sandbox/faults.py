"""What can go wrong between a client and Financial Line, as a plan the sandbox follows.

A `FaultPlan` says which capture request meets which fault. The draw for a request depends only
on the seed, the order id and the attempt number (the how-many-th capture request of that order
the sandbox has seen), never on arrival order, so a concurrent batch meets the same faults on
every run, and a retry of the same order draws again instead of meeting the same fault forever.

Spec grammar (`parse_faults`), items separated by commas, blanks ignored::

    spec   := item ("," item)*
    item   := KIND "=" FRACTION [":" SECONDS]      a fraction of capture requests, 0..1
            | "order:" ORDER_ID "=" step ("+" step)*
                                                  attempts 1, 2, ... of that order, in turn;
                                                  attempts past the list meet no fault
            | "lookup503=" FRACTION               a fraction of look-ups answered 503
            | "seed=" INT                         overrides the `seed` argument
    step   := (KIND | "ok") [":" SECONDS] ["*" COUNT]
                                                  "ok" is an attempt without fault; *COUNT repeats
    ORDER_ID is percent-decoded (write %2C for a comma, %25 for a percent sign); everything up
    to the last "=" belongs to it.

Kinds (the capture is the ledger's commit; see app.py):

    drop_after_commit      commit, then break the connection: the client gets no answer
    error500_after_commit  commit, then answer 500
    error503_before        answer 503 without committing
    slow[:S]               wait S seconds (default 3) then commit and answer: a client that
                           gave up earlier still finds the capture committed
    rate429[:S]            answer 429 with Retry-After S (default 1), not processed
    pending[:S]            commit as status pending (code 2119) for S seconds (default 5);
                           look-ups show pending until then, success after
    not_json               commit, then answer 200 with an HTML page instead of JSON

The fractions of one spec are bands of one draw, so a request meets at most one fault and they
must add up to at most 1. Example::

    drop_after_commit=0.02,error500_after_commit=0.02,error503_before=0.02,slow=0.02:3.0,
    rate429=0.01:2,pending=0.02:5,not_json=0.01,order:ABC=drop_after_commit
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from urllib.parse import unquote

# kind -> default seconds (0 where the kind takes none)
KINDS: dict[str, float] = {
    "drop_after_commit": 0.0,
    "error500_after_commit": 0.0,
    "error503_before": 0.0,
    "slow": 3.0,
    "rate429": 1.0,
    "pending": 5.0,
    "not_json": 0.0,
}
_TIMED = frozenset({"slow", "rate429", "pending"})


class FaultSpecError(ValueError):
    """The fault spec string does not follow the grammar of recon.sandbox.faults."""


@dataclass(frozen=True)
class Fault:
    """One fault a request meets; `seconds` for slow, rate429 (Retry-After) and pending."""

    kind: str
    seconds: float = 0.0


@dataclass(frozen=True)
class FaultPlan:
    """Which capture requests (and look-ups) meet which fault; see the module docstring."""

    fractions: tuple[tuple[Fault, float], ...] = ()
    per_order: dict[str, tuple[Fault | None, ...]] = field(default_factory=dict)
    lookup503: float = 0.0
    seed: int = 0

    def for_capture(self, order_id: str, attempt: int) -> Fault | None:
        """The fault for the `attempt`-th (from 1) capture request of this order, if any."""
        if order_id in self.per_order:
            steps = self.per_order[order_id]
            return steps[attempt - 1] if 0 < attempt <= len(steps) else None
        u = self._draw("capture", order_id, attempt)
        for fault, fraction in self.fractions:
            if u < fraction:
                return fault
            u -= fraction
        return None

    def for_lookup(self, order_id: str, attempt: int) -> bool:
        """Whether the `attempt`-th look-up of this order is answered 503."""
        return self._draw("lookup", order_id, attempt) < self.lookup503

    def _draw(self, what: str, order_id: str, attempt: int) -> float:
        key = f"{self.seed}\x1f{what}\x1f{order_id}\x1f{attempt}".encode()
        return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64


def parse_faults(spec: str, seed: int = 0) -> FaultPlan:
    """Parse the grammar of the module docstring; FaultSpecError says which item is wrong."""
    fractions: list[tuple[Fault, float]] = []
    per_order: dict[str, tuple[Fault | None, ...]] = {}
    lookup503 = 0.0
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        if item.startswith("order:"):
            order_text, eq, steps_text = item[len("order:") :].rpartition("=")
            if not eq or not order_text:
                raise FaultSpecError(f"{item!r}: expected order:ORDER_ID=KIND[+KIND...]")
            per_order[unquote(order_text)] = tuple(
                fault for step in steps_text.split("+") for fault in _step(step, item)
            )
            continue
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq:
            raise FaultSpecError(f"{item!r}: expected NAME=VALUE")
        if name == "seed":
            try:
                seed = int(value)
            except ValueError:
                raise FaultSpecError(f"{item!r}: the seed must be an integer") from None
            continue
        fraction_text, _, seconds_text = value.partition(":")
        fraction = _number(fraction_text, item)
        if not 0 <= fraction <= 1:
            raise FaultSpecError(f"{item!r}: a fraction is between 0 and 1")
        if name == "lookup503":
            lookup503 = fraction
            continue
        fractions.append((_fault(name, seconds_text, item), fraction))
    if sum(f for _, f in fractions) > 1 + 1e-9:
        raise FaultSpecError(f"{spec!r}: the fractions add up to more than 1")
    return FaultPlan(tuple(fractions), per_order, lookup503, seed)


def _step(text: str, item: str) -> list[Fault | None]:
    step, star, count_text = text.strip().partition("*")
    count = 1
    if star:
        try:
            count = int(count_text)
        except ValueError:
            raise FaultSpecError(f"{item!r}: *COUNT must be an integer") from None
        if count < 1:
            raise FaultSpecError(f"{item!r}: *COUNT must be at least 1")
    name, _, seconds_text = step.partition(":")
    fault = None if name.strip() == "ok" else _fault(name.strip(), seconds_text, item)
    return [fault] * count


def _fault(name: str, seconds_text: str, item: str) -> Fault:
    if name not in KINDS:
        raise FaultSpecError(f"{item!r}: unknown fault {name!r}; known: {', '.join(KINDS)}")
    if seconds_text and name not in _TIMED:
        raise FaultSpecError(f"{item!r}: {name} takes no seconds")
    seconds = _number(seconds_text, item) if seconds_text else KINDS[name]
    if seconds < 0:
        raise FaultSpecError(f"{item!r}: seconds cannot be negative")
    return Fault(name, seconds)


def _number(text: str, item: str) -> float:
    # Fractions and seconds are timing knobs, not money: float is right here.
    try:
        return float(text)  # ok: seconds or a fraction, never money
    except ValueError:
        raise FaultSpecError(f"{item!r}: {text!r} is not a number") from None
