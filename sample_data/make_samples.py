"""Write the demo batch: orders.csv, orders.xlsx (same rows), holds.csv and expected.csv.

Run `python sample_data/make_samples.py` from the repository root. The output is deterministic,
byte for byte (the .xlsx too), so the files in git are exactly what this script writes. Every
order row is valid input: the demo's exceptions come from the provider (the sandbox), not from the
schema.

- orders.csv / orders.xlsx: the batch a merchant would hand to `recon capture`.
- holds.csv: the sandbox ledger behind them (`recon.sandbox.ledger.load_holds`).
- expected.csv: the outcome each order must end with (DESIGN.md, Outcomes), the amount captured
  (0 where nothing was) and the fee, worked out here by hand from the rules, and checked against
  the sandbox by tests/test_sandbox.py.
"""

from __future__ import annotations

import csv
import re
import sys
import zipfile
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from openpyxl import Workbook

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from recon.money import quantize  # noqa: E402
from recon.sandbox.app import SANDBOX_OTHER_POS_ID, SANDBOX_POS_ID  # noqa: E402
from recon.sandbox.ledger import Hold, write_holds  # noqa: E402

ORDER_COLUMNS = ("order_id", "order_currency", "charge_amount", "comment", "server_url", "pos_id")
EXPECTED_COLUMNS = ("order_id", "outcome", "captured_amount", "fee_amount", "scenario")
HOOK = "https://merchant.example/hooks/finline"
D = Decimal


@dataclass(frozen=True)
class Case:
    """One input row, the hold behind it, and what must come of it."""

    order_id: str
    currency: str
    charge: str  # as written in the file; "" = whole hold
    hold: Decimal | None  # None: the sandbox has no such order
    scenario: str
    comment: str = ""
    server_url: str = ""
    pos_id: str = ""  # "" = the default FINLINE_POS_ID (SANDBOX_POS_ID)
    fee_percent: Decimal | None = None
    hold_currency: str = ""  # "" = the order's currency
    auth_status: str = "success"
    quirk: str = ""

    @property
    def pos(self) -> str:
        return self.pos_id or SANDBOX_POS_ID


def cases() -> list[Case]:
    c: list[Case] = [
        # The provider's own example: asks 80 of a 100 hold, the answer says 100.
        Case(
            "123",
            "UAH",
            "80",
            D(100),
            "provider example: answer shows the whole hold",
            comment="10101",
            server_url="https://callback.blackhole.com/callback/capture",
            quirk="answer_hold_amount",
        ),
        Case("ORD-2026-0001", "UAH", "", D("1500.00"), "whole hold, fee", fee_percent=D("1.5")),
        Case("ORD-2026-0002", "EUR", "", D("89.90"), "whole hold, no fee"),
        Case("ORD-2026-0003", "USD", "", D("240.00"), "whole hold, fee", fee_percent=D("2.75")),
        Case(
            "ORD-2026-0004",
            "UAH",
            "",
            D("349"),
            "whole hold, Cyrillic comment",
            comment="Оплата замовлення №4, дякуємо! Доставка: Київ",
            fee_percent=D("1.5"),
        ),
        Case(
            "00042",
            "UAH",
            "",
            D("42.00"),
            "whole hold, id with leading zeros",
            fee_percent=D("1.5"),
        ),
        Case(
            "ORD-2026-0006",
            "EUR",
            "",
            D("1200.50"),
            "whole hold, explicit POS",
            pos_id=SANDBOX_POS_ID,
            fee_percent=D("1.9"),
        ),
        Case(
            "ORD-2026-0007",
            "USD",
            "",
            D("15.00"),
            "whole hold, other POS",
            pos_id=SANDBOX_OTHER_POS_ID,
        ),
        Case(
            "INV/2026#7 ?%",
            "UAH",
            "",
            D("77.70"),
            "whole hold, id with URL characters",
            fee_percent=D("1.5"),
        ),
        Case(
            "ORD-2026-0009",
            "UAH",
            "",
            D("5000"),
            "whole hold, webhook URL",
            server_url=HOOK,
            fee_percent=D("1.5"),
        ),
        Case(
            "ORD-2026-0010",
            "USD",
            "",
            D("0.99"),
            "whole hold, tiny amount, fee rounds",
            fee_percent=D("1.5"),
        ),
        # Partial captures: less than the hold, exactly as asked.
        Case("ORD-2026-0011", "UAH", "80", D(100), "partial of the hold"),
        Case("ORD-2026-0012", "UAH", "250.50", D("300.00"), "partial, fee", fee_percent=D("1.5")),
        Case("ORD-2026-0013", "EUR", "19.99", D("49.99"), "partial, no fee"),
        Case(
            "ORD-2026-0014", "USD", "1234.56", D("2000.00"), "partial, fee", fee_percent=D("2.75")
        ),
        Case(
            "ORD-2026-0015",
            "UAH",
            "3.00",
            D("10.00"),
            "partial, fee 0.045 rounds half-up",
            fee_percent=D("1.5"),
        ),
        Case(
            "ORD-2026-0016",
            "EUR",
            "0.01",
            D("5.00"),
            "partial, smallest amount, fee 0",
            fee_percent=D("1.5"),
        ),
        Case(
            "ORD-2026-0017",
            "UAH",
            "999.99",
            D("1000.00"),
            "partial, one kopiyka short",
            comment="Часткове списання: товар повернуто",
            fee_percent=D("1.5"),
        ),
        Case(
            "ORD-2026-0018",
            "USD",
            "50",
            D("75.25"),
            "partial, other POS",
            pos_id=SANDBOX_OTHER_POS_ID,
            fee_percent=D("2.75"),
        ),
        Case(
            "ORD-2026-0019",
            "UAH",
            "100.00",
            D("100.00"),
            "amount equal to the hold",
            fee_percent=D("1.5"),
        ),
        Case(
            "ORD-2026-0020",
            "EUR",
            "12.30",
            D("20"),
            "partial, formula-like comment",
            comment="=SUM(A1:A9) is just text",
        ),
        # Above the hold, within the project's 25 %.
        Case(
            "ORD-2026-0021",
            "UAH",
            "240.00",
            D("200.00"),
            "above the hold by 20 %",
            fee_percent=D("1.5"),
        ),
        Case("ORD-2026-0022", "UAH", "125", D(100), "above the hold by exactly 25 %"),
        Case(
            "ORD-2026-0023",
            "EUR",
            "110.00",
            D("100.00"),
            "above the hold by 10 %, fee",
            fee_percent=D("1.9"),
        ),
        Case(
            "ORD-2026-0024",
            "USD",
            "60.00",
            D("50.00"),
            "above by 20 %, project allows 30 %",
            fee_percent=D("2.75"),
        ),
        # Above the hold beyond the allowance: refused (4139).
        Case("ORD-2026-0025", "UAH", "125.01", D(100), "above the hold by 25.01 %: refused"),
        Case(
            "ORD-2026-0026",
            "EUR",
            "80.00",
            D("50.00"),
            "above the hold by 60 %: refused",
            fee_percent=D("1.9"),
        ),
        Case(
            "ORD-2026-0027",
            "USD",
            "11",
            D("10"),
            "above by 10 %, project allows 0 %",
            fee_percent=D("2.75"),
        ),
        # The provider refuses for other reasons.
        Case("ORD-GHOST-0028", "UAH", "", None, "unknown order: 404"),
        Case("ORD-GHOST-0029", "EUR", "10.00", None, "unknown order with amount: 404"),
        Case(
            "ORD-2026-0030",
            "UAH",
            "",
            D("700.00"),
            "hold whose auth failed (4150)",
            auth_status="failure",
        ),
        Case(
            "ORD-2026-0031",
            "UAH",
            "150",
            D("150.00"),
            "auth failed, partial asked",
            auth_status="failure",
            fee_percent=D("1.5"),
        ),
        Case(
            "ORD-2026-0032",
            "EUR",
            "",
            D("300.00"),
            "currency differs from the hold (4124)",
            hold_currency="UAH",
        ),
        Case(
            "ORD-2026-0033",
            "USD",
            "20.00",
            D("20.00"),
            "currency differs from the hold",
            hold_currency="EUR",
        ),
        # The provider's answer differs from the request.
        Case(
            "ORD-2026-0034",
            "UAH",
            "110",
            D(100),
            "answer shows the hold: less than asked",
            quirk="answer_hold_amount",
            fee_percent=D("1.5"),
        ),
        Case(
            "ORD-2026-0035",
            "EUR",
            "25.00",
            D("40.00"),
            "answer shows the hold: more than asked",
            quirk="answer_hold_amount",
            fee_percent=D("1.9"),
        ),
        Case(
            "ORD-2026-0036",
            "UAH",
            "",
            D("640.00"),
            "whole hold with the quirk: as asked",
            quirk="answer_hold_amount",
            fee_percent=D("1.5"),
        ),
    ]
    # Plain rows a busy day is mostly made of.
    currencies = ("UAH", "EUR", "USD")
    for i in range(37, 51):
        cur = currencies[i % 3]
        hold = D(10 * i + i % 7) + D(i % 4) / 4
        whole = i % 3 == 0
        charge = "" if whole else str((hold * D("0.8")).quantize(D("0.01")))
        c.append(
            Case(
                f"ORD-2026-{i:04d}",
                cur,
                charge,
                hold,
                "routine whole hold" if whole else "routine partial",
                comment=f"Замовлення {i}" if i % 5 == 0 else "",
                server_url=HOOK if i % 4 == 0 else "",
                pos_id=SANDBOX_POS_ID if i % 6 == 0 else "",
                fee_percent=D("1.5") if i % 2 == 0 else None,
            )
        )
    return c


OVER_PERCENT = {"ORD-2026-0024": D(30), "ORD-2026-0027": D(0)}


def hold_of(case: Case) -> Hold | None:
    if case.hold is None:
        return None
    return Hold(
        order_id=case.order_id,
        pos_id=case.pos,
        currency=case.hold_currency or case.currency,
        amount=case.hold,
        auth_status=case.auth_status,
        fee_percent=case.fee_percent,
        over_percent=OVER_PERCENT.get(case.order_id, D(25)),
        quirk=case.quirk,
    )


def expected(case: Case) -> tuple[str, Decimal, Decimal | None]:
    """(outcome, captured, fee) by the rules of API.md and DESIGN.md, worked out independently."""
    hold = hold_of(case)
    if hold is None or hold.auth_status != "success" or hold.currency != case.currency:
        return "failed", D(0), None
    charge = D(case.charge) if case.charge else None
    if charge is not None and charge > hold.amount * (1 + hold.over_percent / 100):
        return "failed", D(0), None
    captured = hold.amount if charge is None or hold.quirk else charge
    fee = None
    if hold.fee_percent is not None:
        fee = (captured * hold.fee_percent / 100).quantize(D("0.01"), ROUND_HALF_UP)
    if charge is None or captured == charge:
        return "captured", captured, fee
    return ("partial" if captured < charge else "over"), captured, fee


FIXED_TIME = datetime(2026, 12, 1, 9, 0, 0)
STAMP = FIXED_TIME.strftime("%Y-%m-%dT%H:%M:%SZ")


def _pin_zip_times(path: Path) -> None:
    """Rewrite the .xlsx with fixed entry times, so regenerating it changes no byte."""
    with zipfile.ZipFile(path) as src:
        entries = [(info, src.read(info)) for info in src.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info, data in entries:
            if info.filename == "docProps/core.xml":  # openpyxl stamps "modified" on save
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>" + STAMP.encode(), data)
            pinned = zipfile.ZipInfo(info.filename, date_time=FIXED_TIME.timetuple()[:6])
            pinned.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(pinned, data)


def main() -> None:
    rows = cases()
    assert 40 <= len(rows) <= 60, len(rows)
    assert len({r.order_id for r in rows}) == len(rows)

    with open(HERE / "orders.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(ORDER_COLUMNS)
        for r in rows:
            writer.writerow([r.order_id, r.currency, r.charge, r.comment, r.server_url, r.pos_id])

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Orders"
    ws.append(list(ORDER_COLUMNS))
    for n, r in enumerate(rows, start=2):
        amount = D(r.charge) if r.charge else None
        values = [r.order_id, r.currency, amount, r.comment, r.server_url, r.pos_id]
        for col, value in enumerate(values, start=1):
            if value is None or value == "":
                continue  # a blank cell, not an empty text
            cell = ws.cell(row=n, column=col, value=value)
            if isinstance(value, str):
                cell.data_type = "s"  # text, even "=SUM(...)" and "00042"
                cell.number_format = "@"
            elif isinstance(value, Decimal):
                cell.number_format = "0.00"
    wb.properties.created = wb.properties.modified = FIXED_TIME
    wb.save(HERE / "orders.xlsx")
    _pin_zip_times(HERE / "orders.xlsx")

    write_holds(HERE / "holds.csv", (h for h in map(hold_of, rows) if h is not None))

    with open(HERE / "expected.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(EXPECTED_COLUMNS)
        for r in rows:
            outcome, captured, fee = expected(r)
            shown = str(quantize(captured, r.currency))
            writer.writerow(
                [r.order_id, outcome, shown, "" if fee is None else str(fee), r.scenario]
            )


if __name__ == "__main__":
    main()
