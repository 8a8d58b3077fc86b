"""Reports for the workbook tests and benchmark: totals computed here in Decimal from the rows."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from recon.journal import RunInfo
from recon.reconcile import (
    CodeCount,
    Outcome,
    ReconRow,
    Report,
    totals,
)
from recon.schema import Rejection

HYPERLINK = '=HYPERLINK("http://x","y")'
AT_SUM = "@SUM(1)"

RUN = RunInfo(
    run_id="run-20261204-0001",
    input_name="orders.csv",
    input_size=12345,
    input_sha256="ab" * 32,
    rows_read=10,
    rows_sent=8,
    started_at="2026-12-04T20:00:00Z",
    finished_at="2026-12-04T20:01:30Z",
    tool_version="0.1.0",
    base_url="https://api.finline.io/api/v1",
    pos_ids=("0b9c3c4e-6f0e-4c1a-9a55-0f1f4b6c1d11",),
    rate=10.0,
    user="auditor",
    host="box",
)


def row(source_row: int, **changes: Any) -> ReconRow:
    """A captured UAH row; pass fields to change it."""
    fields: dict[str, Any] = dict(
        source_row=source_row,
        order_id=f"{source_row:06d}",
        pos_id="0b9c3c4e-6f0e-4c1a-9a55-0f1f4b6c1d11",
        currency="UAH",
        mode="amount",
        requested=Decimal("100.50"),
        captured=Decimal("100.50"),
        difference=Decimal("0.00"),
        fee_amount=Decimal("1.51"),
        fee_currency="UAH",
        status="success",
        status_code="1000",
        status_description="Approved",
        outcome=Outcome.CAPTURED,
        operation_id=f"op-{source_row}",
        payment_id=f"pay-{source_row}",
        transaction_id=f"tx-{source_row}",
        created_at="2026-12-04 20:00:01",
        processing_time="2026-12-04 20:00:02",
        attempts=1,
        comment="",
        reason="",
    )
    fields.update(changes)
    return ReconRow(**fields)


def report_from(
    rows: list[ReconRow],
    rejections: tuple[Rejection, ...] = (),
    codes: tuple[CodeCount, ...] = (),
    run: RunInfo = RUN,
) -> Report:
    """A Report whose totals are the ones reconcile computes for `rows`."""
    currency_totals, outcome_totals = totals(rows)
    outcomes = tuple(o for o in outcome_totals if o.count)
    return Report(
        run=run,
        rows=tuple(rows),
        rejections=rejections,
        currencies=currency_totals,
        outcomes=outcomes,
        codes=codes,
    )


def sample_report() -> Report:
    """Every outcome once or more, JPY beside UAH, and hostile text in comments and ids."""
    rows = [
        row(2, comment=HYPERLINK),
        row(3, comment=AT_SUM, order_id="-00123"),
        row(
            4,
            outcome=Outcome.PARTIAL,
            captured=Decimal("50.25"),
            difference=Decimal("-50.25"),
            reason="captured 50.25 of 100.50",
        ),
        row(
            5,
            currency="JPY",
            requested=Decimal("1500"),
            captured=Decimal("1600"),
            difference=Decimal("100"),
            fee_amount=Decimal("15"),
            fee_currency="JPY",
            outcome=Outcome.OVER,
            reason="captured more than requested",
        ),
        row(
            6,
            mode="full",
            requested=None,
            captured=Decimal("80.00"),
            difference=None,
            comment="+380501234567",
        ),
        row(
            7,
            status="failure",
            status_code="2001",
            status_description="Hold expired",
            captured=Decimal("0"),
            difference=Decimal("-100.50"),
            fee_amount=None,
            fee_currency="",
            outcome=Outcome.FAILED,
            reason="the provider refused: Hold expired",
            comment="\tcmd|' /C calc'!A0",
        ),
        row(
            8,
            status="pending",
            status_code="",
            status_description="",
            captured=None,
            difference=None,
            fee_amount=None,
            fee_currency="",
            outcome=Outcome.PENDING,
            reason="not finished at report time",
            processing_time="",
        ),
        row(
            9,
            status="",
            status_code="",
            status_description="",
            captured=None,
            difference=None,
            fee_amount=None,
            fee_currency="",
            outcome=Outcome.UNKNOWN,
            reason="answer lost; look it up by hand",
            operation_id="",
            payment_id="",
            transaction_id="",
            created_at="",
            processing_time="",
            attempts=2,
            comment="#N/A",
        ),
        row(
            10,
            currency="JPY",
            requested=Decimal("700"),
            captured=Decimal("0"),
            difference=Decimal("-700"),
            fee_amount=None,
            fee_currency="",
            status="",
            status_code="",
            status_description="",
            outcome=Outcome.DUPLICATE,
            reason="captured by run run-20261203-0007",
            operation_id="",
            payment_id="",
            transaction_id="",
            created_at="",
            processing_time="",
            attempts=0,
        ),
        row(
            11,
            order_id="=1+1",
            captured=Decimal("0"),
            difference=Decimal("-100.50"),
            fee_amount=None,
            fee_currency="",
            status="",
            status_code="",
            status_description="",
            outcome=Outcome.REJECTED,
            reason="invalid row: see Rejected",
            operation_id="",
            payment_id="",
            transaction_id="",
            created_at="",
            processing_time="",
            attempts=0,
        ),
        row(
            12,
            captured=Decimal("0"),
            difference=Decimal("-100.50"),
            fee_amount=None,
            fee_currency="",
            status="",
            status_code="",
            status_description="",
            outcome=Outcome.NOT_SENT,
            reason="dry run",
            operation_id="",
            payment_id="",
            transaction_id="",
            created_at="",
            processing_time="",
            attempts=0,
        ),
    ]
    rejections = (
        Rejection(11, "order_id", "=1+1", "order_id: not a valid id"),
        Rejection(11, "amount", "1e3", "amount: not a number"),
    )
    codes = (
        CodeCount("1000", "Approved", 4),
        CodeCount("2001", "Hold expired", 1),
    )
    return report_from(rows, rejections, codes)


def synthetic_report(n: int, seed: int = 7) -> Report:
    """`n` rows in three currencies, about one in ten an exception: the benchmark's load."""
    rng = random.Random(seed)
    rows = []
    exceptions = [o for o in Outcome if o is not Outcome.CAPTURED]
    for i in range(n):
        currency = ("UAH", "USD", "JPY")[i % 3]
        requested = (
            Decimal(rng.randint(100, 10_000_000)).scaleb(-2)
            if currency != "JPY"
            else Decimal(rng.randint(1, 200_000))
        )
        outcome = Outcome.CAPTURED if rng.random() < 0.9 else rng.choice(exceptions)
        captured: Decimal | None = requested
        if outcome in (Outcome.PENDING, Outcome.UNKNOWN):
            captured = None
        elif outcome in (Outcome.FAILED, Outcome.DUPLICATE, Outcome.REJECTED, Outcome.NOT_SENT):
            captured = Decimal(0)
        elif outcome is Outcome.PARTIAL:
            captured = requested - requested / 4 if currency != "JPY" else requested - 1
            captured = captured.quantize(requested)
        elif outcome is Outcome.OVER:
            captured = requested + (Decimal("0.01") if currency != "JPY" else Decimal(1))
        rows.append(_bench_row(i, currency, requested, captured, outcome))
    return report_from(rows, run=RUN)


def _bench_row(
    i: int, currency: str, requested: Decimal, captured: Decimal | None, outcome: Outcome
) -> ReconRow:
    return row(
        i + 2,
        order_id=f"ORD-{i:010d}",
        currency=currency,
        requested=requested,
        captured=captured,
        difference=None if captured is None else captured - requested,
        fee_amount=None if not captured else (captured / 100).quantize(requested),
        fee_currency=currency if captured else "",
        outcome=outcome,
        reason="" if outcome is Outcome.CAPTURED else f"{outcome} in the benchmark",
        comment=f"benchmark row {i}" if i % 5 == 0 else "",
    )
