"""Journal rows in, the reconciliation table and its totals out: pure functions, Decimal money."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from recon import money
from recon.api import code_meaning
from recon.journal import OrderRecord, RunInfo, State
from recon.schema import Rejection

ZERO = Decimal(0)


class Outcome(StrEnum):
    """Exactly one per input row (DESIGN.md, Outcomes)."""

    CAPTURED = "captured"
    PARTIAL = "partial"
    OVER = "over"
    FAILED = "failed"
    PENDING = "pending"
    UNKNOWN = "unknown"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    NOT_SENT = "not_sent"


@dataclass(frozen=True)
class ReconRow:
    """One row of the Reconciliation sheet; None is a blank cell."""

    source_row: int
    order_id: str
    pos_id: str
    currency: str
    mode: str  # "full" or "amount"
    requested: Decimal | None  # None for a whole-hold capture
    captured: Decimal | None  # 0 where nothing was captured, None where not known
    difference: Decimal | None  # captured - requested where both are known
    fee_amount: Decimal | None
    fee_currency: str
    status: str
    status_code: str
    status_description: str
    outcome: Outcome
    operation_id: str
    payment_id: str
    transaction_id: str
    created_at: str  # exactly as the provider sent it
    processing_time: str  # exactly as the provider sent it
    attempts: int
    comment: str
    reason: str  # plain words for the Exceptions sheet; "" when captured


@dataclass(frozen=True)
class CurrencyTotal:
    currency: str
    orders: int
    requested: Decimal
    captured: Decimal
    difference: Decimal
    fees: Decimal
    net: Decimal  # captured - fees


@dataclass(frozen=True)
class OutcomeTotal:
    outcome: Outcome
    count: int


@dataclass(frozen=True)
class CodeCount:
    code: str
    meaning: str
    count: int


@dataclass(frozen=True)
class Report:
    """Everything the workbook shows, computed once in Decimal."""

    run: RunInfo
    rows: tuple[ReconRow, ...]
    rejections: tuple[Rejection, ...]
    currencies: tuple[CurrencyTotal, ...]
    outcomes: tuple[OutcomeTotal, ...]
    codes: tuple[CodeCount, ...]


def _outcome(record: OrderRecord) -> tuple[Outcome, Decimal | None, str]:
    """(outcome, captured amount, reason in plain words) for one journal record."""
    order = record.order
    asked = "the whole hold" if order.amount is None else f"{_fmt(order.amount, order.currency)}"
    state, op = record.state, record.operation
    if state is State.REJECTED:
        return Outcome.REJECTED, ZERO, "not sent: the row is invalid (see Rejected)"
    if state is State.DUPLICATE:
        return (
            Outcome.DUPLICATE,
            ZERO,
            f"not sent: run {record.duplicate_of} captured this order, or may have",
        )
    if state is State.PLANNED:
        return Outcome.NOT_SENT, ZERO, "not sent: dry run, or the batch stopped before its turn"
    if state is State.REFUSED:
        code = f" {record.code}" if record.code else ""
        what = record.message or code_meaning(record.code)
        return Outcome.FAILED, ZERO, f"refused (HTTP {record.http_status}){code}: {what}"
    if state is State.PENDING:
        return Outcome.PENDING, None, f"provider still processing ({record.code}) at report time"
    if state is State.ANSWERED and op is not None:
        if op.status == "failure":
            meaning = op.status_description or code_meaning(op.status_code)
            return Outcome.FAILED, ZERO, f"refused: {op.status_code} {meaning}".strip()
        captured = op.amount if op.amount is not None else ZERO
        got = _fmt(captured, order.currency)
        if order.amount is None or captured == order.amount:
            return Outcome.CAPTURED, captured, ""
        if captured < order.amount:
            return Outcome.PARTIAL, captured, f"captured {got}, asked {asked}"
        return Outcome.OVER, captured, f"captured {got}, asked {asked}"
    if state is State.UNKNOWN:
        why = record.message or "look-ups could not settle it"
        return Outcome.UNKNOWN, None, f"not settled ({why}): check with the provider"
    # sending / in_doubt at report time: the run stopped before the doubt was settled
    why = record.message or "the run stopped while the request was in flight"
    return Outcome.UNKNOWN, None, f"answer lost ({why}); not yet looked up: run capture again"


def _fmt(amount: Decimal, currency: str) -> str:
    try:
        return f"{money.quantize(amount, currency):,f} {currency}"
    except (ArithmeticError, ValueError):  # not a currency, or an amount quantize cannot hold
        return f"{amount} {currency}"


def reconcile_row(record: OrderRecord) -> ReconRow:
    order = record.order
    outcome, captured, reason = _outcome(record)
    requested = order.amount
    difference = captured - requested if captured is not None and requested is not None else None
    op = record.operation if record.state in (State.ANSWERED, State.PENDING) else None
    return ReconRow(
        source_row=order.source_row,
        order_id=order.order_id,
        pos_id=order.pos_id,
        currency=order.currency,
        mode="full" if order.amount is None and not order.amount_text else "amount",
        requested=requested,
        captured=captured,
        difference=difference,
        fee_amount=op.fee_amount if op else None,
        fee_currency=op.fee_currency if op else "",
        status=op.status if op else "",
        status_code=op.status_code if op else record.code,
        status_description=op.status_description if op else record.message if record.code else "",
        outcome=outcome,
        operation_id=op.operation_id if op else "",
        payment_id=op.payment_id if op else "",
        transaction_id=op.transaction_id if op else "",
        created_at=op.created_at if op else "",
        processing_time=op.processing_time if op else "",
        attempts=record.attempts,
        comment=order.comment,
        reason=reason,
    )


def _sum(values: Iterable[Decimal | None]) -> Decimal:
    return sum((v for v in values if v is not None), ZERO)


def totals(rows: Iterable[ReconRow]) -> tuple[tuple[CurrencyTotal, ...], tuple[OutcomeTotal, ...]]:
    """Per-currency and per-outcome totals, in Decimal, as the Summary sheet's formulas compute."""
    rows = list(rows)
    currencies = []
    # Rejected rows were never sent (and may name no real currency): outcomes count them,
    # the money totals do not.
    sendable = [r for r in rows if r.outcome is not Outcome.REJECTED]
    for currency in sorted({r.currency for r in sendable}):
        mine = [r for r in sendable if r.currency == currency]
        captured = _sum(r.captured for r in mine)
        # a fee charged in another currency would mix currencies in Net: left out here, and
        # visible on its row (Fee currency)
        fees = _sum(r.fee_amount for r in mine if r.fee_currency == currency)
        currencies.append(
            CurrencyTotal(
                currency=currency,
                orders=len(mine),
                requested=_sum(r.requested for r in mine),
                captured=captured,
                difference=_sum(r.difference for r in mine),
                fees=fees,
                net=captured - fees,
            )
        )
    outcomes = tuple(OutcomeTotal(o, sum(1 for r in rows if r.outcome is o)) for o in Outcome)
    return tuple(currencies), outcomes


def code_counts(rows: Iterable[ReconRow]) -> tuple[CodeCount, ...]:
    seen: dict[str, int] = {}
    for row in rows:
        if row.status_code:
            seen[row.status_code] = seen.get(row.status_code, 0) + 1
    return tuple(CodeCount(code, code_meaning(code), n) for code, n in sorted(seen.items()))


def build_report(
    run: RunInfo, records: Iterable[OrderRecord], rejections: Iterable[Rejection]
) -> Report:
    """The whole reconciliation of one run: one row per input row, in input order."""
    rows = tuple(reconcile_row(r) for r in sorted(records, key=lambda r: r.seq))
    currencies, outcomes = totals(rows)
    return Report(
        run=run,
        rows=rows,
        rejections=tuple(rejections),
        currencies=currencies,
        outcomes=outcomes,
        codes=code_counts(rows),
    )


def exit_code(report: Report) -> int:
    """0 when every order was captured as asked, 1 when any row is an exception."""
    return 0 if all(r.outcome is Outcome.CAPTURED for r in report.rows) else 1
