"""The simulator's rules: which captures Financial Line accepts, and what it answers.

Plain Python over Decimal money, no HTTP: `app.py` puts this behind the API's routes and
faults. Every rule cites API.md; where the provider is silent the ledger picks the reading that is
hardest on the client (see `refuse_repeat`). Answers are dicts holding `Decimal` amounts; `to_json`
writes them as exact JSON numbers, so no float touches money from the ledger to the client.
"""

from __future__ import annotations

import csv
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recon.money import allowed_decimals, is_currency, json_number

if TYPE_CHECKING:
    from recon.schema import Order

Answer = tuple[int, dict[str, Any]]

HOLD_COLUMNS = (
    "order_id",
    "pos_id",
    "currency",
    "amount",
    "auth_status",
    "fee_percent",
    "over_percent",
    "quirk",
)
QUIRKS = frozenset({"", "answer_hold_amount"})
MADE_UP_HOLD = Decimal(100)  # the hold behind a whole-hold row of an arbitrary --sandbox input
MADE_UP_FEE_PERCENT = Decimal("1.5")
MAX_ORDER_ID = 32
MAX_COMMENT = 2048

# Fixed namespace so every run of the sandbox gives the same ids for the same orders.
_ID_NAMESPACE = uuid.UUID("6c1f3a52-7f0e-4d4e-9b8a-0d5a1e7c2b91")
_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)

DESCRIPTIONS = {
    "1000": "Transaction is successful.",
    "1002": "Amount successfully blocked.",
    "2119": "Processing.",
    "4000": "Required fields missing.",
    "4124": "Invalid currency.",
    "4139": "Invalid transaction amount.",
    "4150": "Invalid operation.",
    "4151": "Invalid input fields.",
    "4153": "Rejected.",
}


@dataclass
class Hold:
    """One auth operation (a hold) the sandbox knows, and how the provider treats its capture.

    `over_percent` is the merchant project's allowance above the hold (API.md: 25 % in the
    documented example). `fee_percent` None answers `fee: null`, as the provider's examples do.
    quirk `answer_hold_amount`: the answer's amount is the whole hold whatever was asked, as in the
    provider's own example (charge_amount 80, amount 100), so reconciliation must show it.
    """

    order_id: str
    pos_id: str
    currency: str
    amount: Decimal
    auth_status: str = "success"
    fee_percent: Decimal | None = None
    over_percent: Decimal = Decimal(25)
    quirk: str = ""

    def __post_init__(self) -> None:
        if self.quirk not in QUIRKS:
            raise ValueError(f"hold {self.order_id!r}: unknown quirk {self.quirk!r}")
        if self.auth_status not in ("success", "failure"):
            raise ValueError(f"hold {self.order_id!r}: auth_status must be success or failure")


def load_holds(path: str | Path) -> list[Hold]:
    """Holds from a CSV with the header of `HOLD_COLUMNS`; blank fee_percent means no fee."""
    holds = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = set(HOLD_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for row in reader:
            holds.append(
                Hold(
                    order_id=row["order_id"],
                    pos_id=row["pos_id"].strip(),
                    currency=row["currency"].strip(),
                    amount=Decimal(row["amount"].strip()),
                    auth_status=row["auth_status"].strip() or "success",
                    fee_percent=Decimal(row["fee_percent"]) if row["fee_percent"].strip() else None,
                    over_percent=Decimal(row["over_percent"].strip() or "25"),
                    quirk=row["quirk"].strip(),
                )
            )
    return holds


def write_holds(path: str | Path, holds: Iterable[Hold]) -> None:
    """The inverse of `load_holds` (used by sample_data/make_samples.py)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(HOLD_COLUMNS)
        for h in holds:
            fee = "" if h.fee_percent is None else str(h.fee_percent)
            writer.writerow(
                [h.order_id, h.pos_id, h.currency, str(h.amount), h.auth_status, fee]
                + [str(h.over_percent), h.quirk]
            )


def holds_for_orders(orders: Iterable[Order]) -> list[Hold]:
    """Made-up holds for any input run with `--sandbox`: each capture as asked succeeds.

    The hold is the requested amount (100 for a whole-hold row), auth success, fee 1.5 %; the first
    row of a repeated order id wins. Deterministic: the same input gives the same ledger.
    """
    holds: dict[tuple[str, str], Hold] = {}
    for order in orders:
        key = (order.pos_id, order.order_id)
        if key not in holds:
            holds[key] = Hold(
                order_id=order.order_id,
                pos_id=order.pos_id,
                currency=order.currency,
                amount=MADE_UP_HOLD if order.amount is None else order.amount,
                fee_percent=MADE_UP_FEE_PERCENT,
            )
    return list(holds.values())


def holds_for_batch(input_path: str | Path, orders: Iterable[Order]) -> list[Hold]:
    """The ledger for a `--sandbox` run: `holds.csv` beside the input if there is one, else made up.

    So `recon capture sample_data/orders.csv --sandbox` (or orders.xlsx) meets the demo's
    scenarios, and any other input gets holds that let each capture succeed as asked.
    """
    beside = Path(input_path).resolve().parent / "holds.csv"
    return load_holds(beside) if beside.is_file() else holds_for_orders(orders)


def fee_for(amount: Decimal, hold: Hold) -> Decimal | None:
    """amount × fee_percent / 100, rounded half-up to the decimals the currency may carry."""
    if hold.fee_percent is None:
        return None
    exact = amount * hold.fee_percent / 100
    return exact.quantize(Decimal(1).scaleb(-allowed_decimals(hold.currency)), ROUND_HALF_UP)


def timestamp(moment: datetime) -> str:
    """The provider's format: `2018-10-10T10:10:10.100`, milliseconds, no time zone."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def stable_uuid(*parts: str) -> str:
    """A UUID that depends only on its parts, so reruns of the sandbox answer the same ids."""
    return str(uuid.uuid5(_ID_NAMESPACE, "\x1f".join(parts)))


def error_body(code: str, message: str) -> dict[str, Any]:
    """The documented 4xx error body: `{"message": ..., "args": {"code": ...}}`."""
    return {"message": message, "args": {"code": code}}


def to_json(value: Any) -> str:
    """JSON text with every Decimal written as an exact number (`80.50` stays `80.50`).

    The standard encoder would need floats for numbers, and money never goes through float.
    """
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Decimal):
        return json_number(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{to_json(str(k))}: {to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(to_json(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as JSON: {value!r}")


@dataclass
class _Capture:
    """A committed capture: what the ledger holds, and the answer it was given."""

    answer: dict[str, Any]
    created: datetime
    settles_at: float  # clock() when a pending capture turns success; <= commit time otherwise
    pending_for: float


@dataclass
class _Account:
    hold: Hold
    opened: datetime
    captures: list[_Capture] = field(default_factory=list)
    requests: int = 0  # capture requests that reached the rules, committed or not


class Ledger:
    """The holds and the captures made on them; thread-safe, since one server serves many tasks.

    `refuse_repeat=False` lets a second capture of a captured hold commit again: API.md says a
    repeat "is not guaranteed to be refused", and `captures_committed` then proves a client never
    sent one. `clock` (monotonic seconds) and `now` (naive UTC) are parameters for tests.
    """

    def __init__(
        self,
        holds: Iterable[Hold],
        *,
        refuse_repeat: bool = True,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._now = now
        self.refuse_repeat = refuse_repeat
        opened = now()
        self._accounts: dict[tuple[str, str], _Account] = {}
        for hold in holds:
            key = (hold.pos_id.lower(), hold.order_id)
            if key in self._accounts:
                raise ValueError(f"two holds for order {hold.order_id!r} on POS {hold.pos_id}")
            self._accounts[key] = _Account(hold, opened)
        self._pos_ids = {pos for pos, _ in self._accounts}

    @property
    def holds(self) -> list[Hold]:
        return [a.hold for a in self._accounts.values()]

    # -- POST /capture ---------------------------------------------------------------------
    def capture(self, body: Any, *, pending_for: float = 0.0) -> Answer:
        """Apply one capture request; `pending_for` > 0 commits it as `pending` for that long.

        Returns the HTTP status and the JSON body: 400/404 error bodies for requests the provider
        refuses to consider, 200 with status `failure` for a capture it considered and refused.
        """
        if not isinstance(body, dict):
            return 400, error_body("4151", "The body must be a JSON object")
        body = dict(body)  # _check_request normalises charge_amount in place
        problem = _check_request(body)
        if problem is not None:
            return problem
        pos_id: str = body["pos_id"]
        order_id: str = body["order_id"]
        currency: str = body["order_currency"]
        charge: Decimal | None = body.get("charge_amount")
        with self._lock:
            account = self._accounts.get((pos_id.lower(), order_id))
            if account is None:
                if pos_id.lower() not in self._pos_ids:
                    return 404, error_body("4150", f"POS {pos_id} not found")
                return 404, error_body("4150", f"Payment for order {order_id} not found")
            account.requests += 1
            hold = account.hold
            if currency != hold.currency:
                return 400, error_body(
                    "4124", f"Currency {currency} does not match the order's {hold.currency}"
                )
            if charge is not None and -_exponent(charge.normalize()) > allowed_decimals(currency):
                return 400, error_body(
                    "4151", f"charge_amount has too many decimals for {currency}"
                )
            if hold.auth_status != "success":
                return 200, self._refusal(account, body, "4150")
            if account.captures and self.refuse_repeat:
                return 200, self._refusal(account, body, "4150")
            limit = hold.amount * (1 + hold.over_percent / 100)
            if charge is not None and charge > limit:
                return 200, self._refusal(account, body, "4139")
            captured = hold.amount if charge is None else charge
            if hold.quirk == "answer_hold_amount":
                captured = hold.amount
            created = self._now()
            seq = len(account.captures)
            answer = {
                "operation_id": stable_uuid("capture", pos_id.lower(), order_id, str(seq)),
                "payment_id": stable_uuid("auth", pos_id.lower(), order_id),
                "order_id": order_id,
                "transaction_id": stable_uuid("transaction", pos_id.lower(), order_id, str(seq)),
                "pos_id": pos_id,
                "mode": "direct",
                "method": "capture",
                "amount": captured,
                # As in the provider's examples: order_currency when full, currency when partial.
                ("order_currency" if charge is None else "currency"): hold.currency,
                "status": "success",
                "status_code": "1000",
                "status_description": DESCRIPTIONS["1000"],
                "created_at": timestamp(created),
                "processing_time": timestamp(created),
                "fee": _fee_object(captured, hold),
                "comment": body.get("comment", ""),
            }
            capture = _Capture(answer, created, self._clock() + pending_for, pending_for)
            account.captures.append(capture)
            return 200, self._view(capture)

    def _refusal(self, account: _Account, body: dict[str, Any], code: str) -> dict[str, Any]:
        """A considered and refused capture: answered, not committed, not in the look-ups."""
        hold = account.hold
        pos = hold.pos_id.lower()
        now = timestamp(self._now())
        charge = body.get("charge_amount")
        return {
            "operation_id": stable_uuid("refused", pos, hold.order_id, str(account.requests)),
            "payment_id": stable_uuid("auth", pos, hold.order_id),
            "order_id": hold.order_id,
            "transaction_id": stable_uuid("refused-tx", pos, hold.order_id, str(account.requests)),
            "pos_id": body["pos_id"],
            "mode": "direct",
            "method": "capture",
            # What was asked, not what was captured (nothing): a client reads `status` first.
            "amount": hold.amount if charge is None else charge,
            ("order_currency" if charge is None else "currency"): hold.currency,
            "status": "failure",
            "status_code": code,
            "status_description": DESCRIPTIONS[code],
            "created_at": now,
            "processing_time": now,
            "fee": None,
            "comment": body.get("comment", ""),
        }

    def _view(self, capture: _Capture) -> dict[str, Any]:
        """The capture as it stands now: pending until `settles_at`, then success."""
        view = dict(capture.answer)
        if self._clock() < capture.settles_at:
            view.update(
                status="pending", status_code="2119", status_description=DESCRIPTIONS["2119"]
            )
        elif capture.pending_for > 0:
            done = capture.created + timedelta(seconds=capture.pending_for)
            view["processing_time"] = timestamp(done)
        return view

    def _auth_view(self, account: _Account) -> dict[str, Any]:
        hold = account.hold
        pos = hold.pos_id.lower()
        ok = hold.auth_status == "success"
        code = "1002" if ok else "4153"
        opened = timestamp(account.opened)
        payment_id = stable_uuid("auth", pos, hold.order_id)
        return {
            "operation_id": payment_id,
            "payment_id": payment_id,
            "order_id": hold.order_id,
            "transaction_id": stable_uuid("auth-tx", pos, hold.order_id),
            "pos_id": hold.pos_id,
            "mode": "direct",
            "method": "auth",
            "amount": hold.amount,
            "order_currency": hold.currency,
            "status": hold.auth_status,
            "status_code": code,
            "status_description": DESCRIPTIONS[code],
            "created_at": opened,
            "processing_time": opened,
            "fee": None,
            "comment": "",
        }

    # -- look-ups ---------------------------------------------------------------------------
    def operations(
        self, pos_id: str, order_id: str
    ) -> tuple[int, list[dict[str, Any]] | dict[str, Any]]:
        """GET /pos/{pos}/orders/{order}: the auth operation and every committed capture."""
        with self._lock:
            account = self._accounts.get((pos_id.lower(), order_id))
            if account is None:
                return 404, error_body("4150", f"Order {order_id} not found")
            return 200, [self._auth_view(account)] + [self._view(c) for c in account.captures]

    def capture_operation(self, pos_id: str, order_id: str) -> Answer:
        """GET /pos/{pos}/orders/{order}/capture: the (latest) capture; 404 when there is none."""
        with self._lock:
            account = self._accounts.get((pos_id.lower(), order_id))
            if account is None:
                return 404, error_body("4150", f"Order {order_id} not found")
            if not account.captures:
                return 404, error_body("4150", f"No capture for order {order_id}")
            return 200, self._view(account.captures[-1])

    # -- evidence for tests -----------------------------------------------------------------
    def captures_committed(self, order_id: str, pos_id: str | None = None) -> int:
        """How many captures were committed for the order (on any POS unless one is named)."""
        with self._lock:
            return sum(
                len(a.captures)
                for (pos, oid), a in self._accounts.items()
                if oid == order_id and (pos_id is None or pos == pos_id.lower())
            )

    def capture_count_by_order(self) -> dict[str, int]:
        """Committed captures per order id, orders never captured included (as 0)."""
        counts: dict[str, int] = {}
        with self._lock:
            for (_, oid), a in self._accounts.items():
                counts[oid] = counts.get(oid, 0) + len(a.captures)
        return counts

    def capture_requests_by_order(self) -> dict[str, int]:
        """Capture requests per order that reached the rules, refused ones included."""
        counts: dict[str, int] = {}
        with self._lock:
            for (_, oid), a in self._accounts.items():
                counts[oid] = counts.get(oid, 0) + a.requests
        return counts


def _exponent(amount: Decimal) -> int:
    exponent = amount.as_tuple().exponent
    return exponent if isinstance(exponent, int) else 0


def _fee_object(amount: Decimal, hold: Hold) -> dict[str, Any] | None:
    fee = fee_for(amount, hold)
    return None if fee is None else {"amount": fee, "currency": hold.currency}


def _check_request(body: dict[str, Any]) -> Answer | None:
    """The request's shape: 4000 for a missing field, 4151 for a malformed one, 4124 currency."""
    missing = [f for f in ("pos_id", "order_id", "order_currency") if body.get(f) in (None, "")]
    if missing:
        return 400, error_body("4000", f"Required fields missing: {', '.join(missing)}")
    pos_id, order_id, currency = body["pos_id"], body["order_id"], body["order_currency"]
    if not isinstance(pos_id, str) or not _UUID_RE.match(pos_id):
        return 400, error_body("4151", "pos_id must be a UUID")
    if not isinstance(order_id, str) or len(order_id) > MAX_ORDER_ID:
        return 400, error_body("4151", f"order_id must be a string of at most {MAX_ORDER_ID}")
    if not isinstance(currency, str) or not is_currency(currency):
        return 400, error_body("4124", f"Invalid currency {currency!r}")
    if "charge_amount" in body:
        charge = body["charge_amount"]
        # Numbers arrive as Decimal (app.py parses with parse_float/parse_int=Decimal).
        if isinstance(charge, bool) or not isinstance(charge, Decimal | int):
            return 400, error_body("4151", "charge_amount must be a number")
        charge = Decimal(charge)
        if not charge.is_finite():
            return 400, error_body("4151", "charge_amount must be a number")
        if -_exponent(charge) > 2:
            return 400, error_body("4151", "charge_amount has more than 2 decimal places")
        if charge <= 0:
            return 400, error_body("4139", "charge_amount must be above zero")
        body["charge_amount"] = charge
    comment = body.get("comment", "")
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        return 400, error_body("4151", f"comment must be a string of at most {MAX_COMMENT}")
    server_url = body.get("server_url", "")
    if not isinstance(server_url, str):
        return 400, error_body("4151", "server_url must be a URL")
    return None
