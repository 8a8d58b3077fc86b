"""validate over the corpus: typed Orders for good rows, a Rejection per problem for bad ones."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from recon.errors import UsageError
from recon.ingest import RawTable, read_table
from recon.schema import Batch, Order, Rejection, validate, write_rejections_csv

DATA = Path(__file__).parent / "data"
POS = "123e4567-e89b-12d3-a456-426614174000"
POS2 = "9b2f1c3e-0d4a-4e5b-8c6d-7e8f9a0b1c2d"
DEFAULT = "0f0e0d0c-0b0a-4909-8807-060504030201"


def check(name: str, default: str | None = DEFAULT, decimal: str | None = None, **kw: str) -> Batch:
    return validate(read_table(DATA / name, **kw), default, decimal)


def amounts(batch: Batch) -> list[Decimal | None]:
    return [o.amount for o in batch.rows]


def problems(batch: Batch) -> list[tuple[int, str, str, str]]:
    return [(r.source_row, r.column, r.value, r.problem) for r in batch.rejections]


def table(**columns: list[str]) -> RawTable:
    n = len(next(iter(columns.values())))
    return RawTable(
        frame=pd.DataFrame(columns, dtype=object),
        source_rows=tuple(range(2, n + 2)),
        name="t.csv",
        size=0,
        sha256="",
    )


def test_good_file_gives_typed_orders() -> None:
    batch = check("utf8_comma.csv")
    assert batch.rejections == () and batch.rejected == ()
    assert batch.orders == (
        Order(
            2,
            "A-1",
            POS,
            "EUR",
            Decimal("80.10"),
            "first order",
            "https://shop.example.com/hook",
            "80.10",
        ),
        Order(3, "A-2", POS2, "USD", None, "whole hold", "", ""),
        Order(4, "A-3", DEFAULT, "JPY", Decimal("1500"), "", "", "1500"),
    )


def test_without_default_pos_a_row_without_pos_id_is_rejected() -> None:
    batch = check("utf8_comma.csv", default=None)
    assert [o.order_id for o in batch.orders] == ["A-1", "A-2"]
    assert problems(batch) == [
        (4, "pos_id", "", "pos_id is blank and no default POS is set (FINLINE_POS_ID)")
    ]
    assert batch.rejected == (Order(4, "A-3", "", "JPY", Decimal("1500"), "", "", "1500"),)


def test_no_pos_column_uses_the_default() -> None:
    assert check("no_pos.csv").orders == (Order(2, "N-1", DEFAULT, "EUR", None),)


def test_one_pos_in_two_letter_cases_is_one_pos() -> None:
    # An upper-case POS id once counted as another POS: the journal then let an order be
    # captured a second time. Every POS id is held in the canonical lower-case UUID form.
    batch = check("pos_case.csv", default=POS.upper())
    assert batch.rejections == ()
    assert [o.pos_id for o in batch.orders] == [POS, POS, POS]
    assert {o.pos_id for o in check("pos_case.csv").orders} == {POS, DEFAULT}


def test_pos_ids_are_canonical_and_broken_ones_kept_as_written() -> None:
    raw = table(
        order_id=["A", "B", "C", "D"],
        order_currency=["EUR"] * 4,
        pos_id=[POS2.upper(), "9B2F1C3E-0d4a-4E5B-8c6d-7E8F9A0B1C2D", "NOT-A-UUID", ""],
    )
    batch = validate(raw, DEFAULT.upper())
    assert [o.pos_id for o in batch.rows] == [POS2, POS2, "NOT-A-UUID", DEFAULT]
    assert problems(batch) == [
        (
            4,
            "pos_id",
            "NOT-A-UUID",
            "'NOT-A-UUID' is not a UUID (like 123e4567-e89b-12d3-a456-426614174000)",
        )
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("utf8_bom_semicolon.csv", ["1234.50", "99.9"]),
        ("cp1251_semicolon.csv", ["1234.5", "10"]),
        ("utf16_tab.csv", ["12.5", "7"]),
        ("quoted_fields.csv", ["1234.50", "5", "6", "7"]),
        ("amounts_dot.csv", ["1234.5", "1234.50", "1234.50", "1234", "0.5", "1234567", "100"]),
        ("amounts_comma.csv", ["1234.5", "1234.50", "1234.50", "1234.50", "1234.50", "0.99"]),
        ("excel_numbers.xlsx", ["80.1", "0.3", "1234.5", "1500", "1.234", None]),
    ],
)
def test_amount_styles(name: str, expected: list[str | None]) -> None:
    assert amounts(check(name)) == [None if e is None else Decimal(e) for e in expected]


def test_jpy_trailing_zeros_are_held_without_decimals() -> None:
    order = check("amounts_dot.csv").orders[-1]
    assert (order.currency, str(order.amount), order.amount_text) == ("JPY", "100", "100.00")


def test_bad_amounts_each_named() -> None:
    batch = check("amounts_bad.csv")
    assert batch.orders == ()
    assert problems(batch) == [
        (
            2,
            "charge_amount",
            "1e3",
            "'1e3' is in scientific notation; write the amount in full digits",
        ),
        (3, "charge_amount", "NaN", "'NaN' is not a number"),
        (4, "charge_amount", "inf", "'inf' is not a number"),
        (5, "charge_amount", "$5", "'$5' has a currency sign; write only the number"),
        (6, "charge_amount", "5 €", "'5 €' has a currency sign; write only the number"),
        (7, "charge_amount", "-5", "'-5' is negative; the amount must be greater than zero"),
        (8, "charge_amount", "0", "'0' is zero; the amount must be greater than zero"),
        (9, "charge_amount", "0.00", "'0.00' is zero; the amount must be greater than zero"),
        (10, "charge_amount", "12 34", "'12 34' has thousands separators in the wrong places"),
        (11, "charge_amount", "1.2.3", "'1.2.3' has thousands separators in the wrong places"),
        (
            12,
            "charge_amount",
            "1234.005",
            "'1234.005' has 3 decimals; USD allows at most 2 decimals",
        ),
        (13, "charge_amount", "100.5", "'100.5' has 1 decimal; JPY allows no decimals"),
        (14, "charge_amount", "five", "'five' is not a number like 1234.50"),
    ]
    by_id = {o.order_id: o for o in batch.rejected}
    assert by_id["X-1"].amount is None and by_id["X-1"].amount_text == "1e3"
    assert by_id["X-11"].amount == Decimal("1234.005")  # parsed, refused only for its decimals


def ambiguous(value: str, sep: str, readings: str) -> str:
    return (
        f"{value!r} could be read with {sep!r} as thousands or as decimal separator ({readings}); "
        "write it unambiguously or say which separator is decimal with --decimal . or --decimal ,"
    )


def test_ambiguous_amount_is_an_error_unless_decimal_is_given() -> None:
    assert problems(check("ambiguous.csv")) == [
        (2, "charge_amount", "1,234", ambiguous("1,234", ",", "1234 or 1.234"))
    ]
    assert amounts(check("ambiguous.csv", decimal=".")) == [Decimal("1234"), Decimal("15")]
    comma = check("ambiguous.csv", decimal=",")
    assert problems(comma) == [
        (2, "charge_amount", "1,234", "'1,234' has 3 decimals; USD allows at most 2 decimals")
    ]


def test_other_rows_never_settle_an_ambiguous_amount() -> None:
    # `2,345.50` says "." is decimal, but `1,234` stays ambiguous: each value is read alone.
    batch = check("ambiguous_settled.csv")
    assert problems(batch) == [
        (2, "charge_amount", "1,234", ambiguous("1,234", ",", "1234 or 1.234"))
    ]
    assert [o.amount for o in batch.orders] == [Decimal("2345.50")]
    assert amounts(check("ambiguous_settled.csv", decimal=".")) == [
        Decimal("1234"),
        Decimal("2345.50"),
    ]


def test_a_thousand_is_never_read_as_one() -> None:
    # The review's file: `12,50` once made "," the file's decimal, so `1,000` passed as 1 EUR
    # (its three zeros dropped before the decimals were counted) and `2.500` as 2500.
    batch = check("ambiguous_mixed.csv")
    assert problems(batch) == [
        (3, "charge_amount", "1,000", ambiguous("1,000", ",", "1000 or 1.000")),
        (4, "charge_amount", "2.500", ambiguous("2.500", ".", "2500 or 2.500")),
    ]
    assert [(o.order_id, o.amount) for o in batch.orders] == [
        ("AM-1", Decimal("12.50")),
        ("AM-4", Decimal("1234.50")),
    ]
    assert all(o.amount is None for o in batch.rejected)


def test_decimal_comma_reads_the_mixed_file_as_the_user_says() -> None:
    batch = check("ambiguous_mixed.csv", decimal=",")
    assert batch.rejections == ()
    # `1,000` with "," decimal is one euro: three trailing zeros, held with EUR's two decimals.
    assert [str(o.amount) for o in batch.orders] == ["12.50", "1.00", "2500", "1234.50"]


def test_decimal_dot_reads_the_mixed_file_as_the_user_says() -> None:
    batch = check("ambiguous_mixed.csv", decimal=".")
    assert problems(batch) == [
        (2, "charge_amount", "12,50", "'12,50' does not use the decimal separator '.'"),
        (5, "charge_amount", "1.234,50", "'1.234,50' does not use the decimal separator '.'"),
    ]
    assert [str(o.amount) for o in batch.orders] == ["1000", "2.50"]


@pytest.mark.parametrize(("decimal", "expected"), [(None, None), (".", "1.00"), (",", "1000")])
def test_one_with_three_zeros_needs_decimal(decimal: str | None, expected: str | None) -> None:
    batch = validate(
        table(order_id=["A"], order_currency=["EUR"], charge_amount=["1.000"]), DEFAULT, decimal
    )
    if expected is None:
        assert problems(batch) == [
            (2, "charge_amount", "1.000", ambiguous("1.000", ".", "1000 or 1.000"))
        ]
    else:
        assert [str(o.amount) for o in batch.orders] == [expected]


def test_an_unambiguous_amount_is_read_alike_in_any_file() -> None:
    texts = ["1 234,50", "1,234.50", "1.234,50", "1234,5", "1234.50", "0,99", "12"]
    batch = validate(
        table(
            order_id=[f"U-{i}" for i in range(len(texts))],
            order_currency=["EUR"] * len(texts),
            charge_amount=texts,
        ),
        DEFAULT,
    )
    assert batch.rejections == ()
    assert [str(o.amount) for o in batch.orders] == [
        "1234.50",
        "1234.50",
        "1234.50",
        "1234.5",
        "1234.50",
        "0.99",
        "12",
    ]


def test_excel_number_cells_are_never_ambiguous() -> None:
    batch = check("excel_numbers.xlsx")
    assert problems(batch) == [
        (6, "charge_amount", "1.234", "'1.234' has 3 decimals; EUR allows at most 2 decimals")
    ]
    assert [o.order_id for o in batch.orders] == ["123", "456", "007", "E-4", "E-6"]
    assert batch.orders[2].currency == "USD"  # upper-cased


def test_excel_text_amounts_and_numbers_mixed() -> None:
    batch = check("excel_layout.xlsx", sheet="Orders")
    assert [(o.source_row, o.order_id, o.amount) for o in batch.orders] == [
        (4, "W-1", Decimal("1234.50")),
        (6, "W-2", Decimal("99.5")),
        (8, "W-3", Decimal("12")),
    ]


def test_duplicates_reject_both_rows() -> None:
    batch = check("duplicates.csv")
    assert [o.order_id for o in batch.orders] == ["OK-1"]
    assert [o.source_row for o in batch.rejected] == [2, 4]
    assert problems(batch) == [
        (2, "order_id", "DUP", "order_id 'DUP' appears more than once in the file (also row 4)"),
        (4, "order_id", "DUP", "order_id 'DUP' appears more than once in the file (also row 2)"),
    ]


def test_every_field_rule_at_once() -> None:
    batch = check("invalid_fields.csv")
    assert problems(batch) == [
        (2, "order_id", "L" * 33, "order_id has 33 characters; at most 32 are allowed"),
        (
            3,
            "order_currency",
            "EURO",
            "'EURO' is not an ISO 4217 payment currency code (such as EUR or USD)",
        ),
        (
            4,
            "order_currency",
            "",
            "order_currency is blank; an ISO 4217 code such as EUR is needed",
        ),
        (5, "comment", "c" * 2049, "comment has 2049 characters; at most 2048 are allowed"),
        (6, "server_url", "ftp://example.org/x", "'ftp://example.org/x' is not an http(s) URL"),
        (
            7,
            "pos_id",
            "not-a-uuid",
            "'not-a-uuid' is not a UUID (like 123e4567-e89b-12d3-a456-426614174000)",
        ),
        (8, "order_id", "", "order_id is blank"),
    ]
    assert batch.orders == (
        Order(9, "F-8", POS, "USD", None, "fine", "https://example.org/hook?x=1", ""),
    )
    assert len(batch.rows) == 8


def test_ragged_row_is_rejected() -> None:
    batch = check("ragged_row.csv")
    assert [o.order_id for o in batch.orders] == ["G-2"]
    assert problems(batch) == [
        (
            2,
            "(row)",
            "234.50",
            "the row has 4 cells but the header has 3: a value may hold an unquoted delimiter",
        )
    ]


def test_order_id_with_a_line_break() -> None:
    batch = validate(table(order_id=["A\nB"], order_currency=["EUR"]), DEFAULT)
    assert problems(batch) == [
        (2, "order_id", "A\nB", "order_id holds a line break or another control character")
    ]


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://shop.example.com/hook", True),
        ("HTTP://example.org:8080/a?b=c#d", True),
        ("http://[::1]:8000/cb", True),
        ("http://localhost", True),
        ("javascript:alert(1)", False),
        ("https://", False),
        ("https://exa mple.com", False),
        ("example.com/hook", False),
    ],
)
def test_server_url(url: str, ok: bool) -> None:
    batch = validate(table(order_id=["A"], order_currency=["EUR"], server_url=[url]), DEFAULT)
    assert (batch.rejections == ()) is ok


def test_settings_that_cannot_work_are_usage_errors() -> None:
    good = table(order_id=["A"], order_currency=["EUR"])
    with pytest.raises(UsageError, match="decimal separator must be '.' or ','"):
        validate(good, DEFAULT, ";")
    with pytest.raises(UsageError, match="FINLINE_POS_ID\\) 'pos-1' is not a UUID"):
        validate(good, "pos-1")


def test_write_rejections_csv_neutralises_formulas(tmp_path: Path) -> None:
    path = tmp_path / "errors.csv"
    write_rejections_csv(
        [
            Rejection(2, "order_id", '=HYPERLINK("x")', "bad"),
            Rejection(3, "comment", 'Оплата, "quoted"', "too long"),
        ],
        path,
    )
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    with path.open(encoding="utf-8-sig", newline="") as f:
        assert list(csv.reader(f)) == [
            ["source_row", "column", "value", "problem"],
            ["2", "order_id", '\'=HYPERLINK("x")', "bad"],
            ["3", "comment", 'Оплата, "quoted"', "too long"],
        ]


def test_rows_are_in_input_order() -> None:
    batch = check("duplicates.csv")
    assert [o.source_row for o in batch.rows] == [2, 3, 4]


def test_a_hand_built_frame_with_missing_values() -> None:
    raw = RawTable(
        frame=pd.DataFrame({"order_id": ["A", None], "order_currency": ["EUR", "EUR"]}),
        source_rows=(2, 3),
        name="t.csv",
        size=0,
        sha256="",
    )
    assert problems(validate(raw, DEFAULT)) == [(3, "order_id", "", "order_id is blank")]
