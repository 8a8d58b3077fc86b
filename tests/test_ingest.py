"""read_table over the corpus in tests/data: exactly what each real-world-shaped file yields."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from recon.errors import InputError, ReconError
from recon.ingest import RawTable, read_table
from recon.schema import Batch, validate

DATA = Path(__file__).parent / "data"
POS = "123e4567-e89b-12d3-a456-426614174000"
POS2 = "9b2f1c3e-0d4a-4e5b-8c6d-7e8f9a0b1c2d"


def read(name: str, sheet: str | None = None) -> RawTable:
    return read_table(DATA / name, sheet)


def cells(table: RawTable) -> dict[str, list[str]]:
    return {str(k): list(v) for k, v in table.frame.to_dict("list").items()}


# --- encodings and delimiters ------------------------------------------------------------------


def test_utf8_comma_all_columns() -> None:
    table = read("utf8_comma.csv")
    assert (table.encoding, table.delimiter) == ("utf-8", ",")
    assert table.source_rows == (2, 3, 4)
    assert cells(table) == {
        "order_id": ["A-1", "A-2", "A-3"],
        "order_currency": ["EUR", "USD", "JPY"],
        "charge_amount": ["80.10", "", "1500"],
        "comment": ["first order", "whole hold", ""],
        "server_url": ["https://shop.example.com/hook", "", ""],
        "pos_id": [POS, POS2, ""],
    }
    data = (DATA / "utf8_comma.csv").read_bytes()
    assert table.name == "utf8_comma.csv"
    assert table.size == len(data)
    assert table.sha256 == hashlib.sha256(data).hexdigest()
    assert table.warnings == () and table.issues == ()


def test_utf8_bom_semicolon_decimal_comma() -> None:
    table = read("utf8_bom_semicolon.csv")
    assert (table.encoding, table.delimiter) == ("utf-8-sig", ";")
    assert list(table.frame.columns) == ["order_id", "order_currency", "charge_amount", "comment"]
    assert cells(table)["charge_amount"] == ["1 234,50", "99,9"]
    assert cells(table)["comment"] == ["Zahlung für Bestellung", ""]


def test_cp1251_with_cyrillic_comment() -> None:
    table = read("cp1251_semicolon.csv")
    assert (table.encoding, table.delimiter) == ("cp1251", ";")
    assert cells(table)["comment"] == ["Оплата заказа №1", "Возврат"]
    assert cells(table)["order_currency"] == ["RUB", "UAH"]


def test_utf16_with_bom_and_tabs() -> None:
    table = read("utf16_tab.csv")
    assert (table.encoding, table.delimiter) == ("utf-16", "\t")
    assert cells(table)["comment"] == ["Unicode text from Excel ✓", "zażółć"]
    assert cells(table)["charge_amount"] == ["12.5", "7"]


def test_tab_delimited_utf8() -> None:
    table = read("utf8_tab.txt")
    assert (table.encoding, table.delimiter) == ("utf-8", "\t")
    assert cells(table)["order_id"] == ["T-1", "T-2"]


def test_quoted_fields_keep_delimiters_quotes_and_line_breaks() -> None:
    table = read("quoted_fields.csv")
    assert cells(table)["charge_amount"] == ["1,234.50", "5", "6", "7"]
    assert cells(table)["comment"] == [
        "Smith, John",
        'He said "capture it"',
        "line one\r\nline two\r\nline three",
        "after the multi-line record",
    ]
    # The record after a three-line record starts on line 7: rows are where a person finds them.
    assert table.source_rows == (2, 3, 4, 7)


# --- layout ------------------------------------------------------------------------------------


def test_title_rows_above_the_header() -> None:
    table = read("title_rows.csv")
    assert table.source_rows == (5, 6)
    assert cells(table)["order_id"] == ["R-1", "R-2"]


def test_blank_rows_are_skipped_and_rows_keep_their_line_numbers() -> None:
    table = read("blank_rows.csv")
    assert table.source_rows == (3, 6)
    assert cells(table)["order_id"] == ["B-1", "B-2"]


def test_aliases_any_case_spaces_and_unknown_columns_warned() -> None:
    table = read("aliases.csv")
    assert list(table.frame.columns) == [
        "order_id",
        "order_currency",
        "charge_amount",
        "comment",
        "server_url",
        "pos_id",
    ]
    assert cells(table)["order_currency"] == ["usd"]
    assert table.warnings == ("column 'Customer' is not one recon knows; it is ignored",)


def test_leading_zeros_kept_and_surrounding_spaces_trimmed() -> None:
    assert cells(read("leading_zeros.csv"))["order_id"] == ["00123", "0042"]


def test_a_row_longer_than_the_header_is_an_issue_of_that_row() -> None:
    table = read("ragged_row.csv")
    assert table.issues == (
        (
            2,
            "(row)",
            "234.50",
            "the row has 4 cells but the header has 3: a value may hold an unquoted delimiter",
        ),
    )


# --- Excel ---------------------------------------------------------------------------------------


def test_excel_numbers_read_as_excel_shows_them() -> None:
    table = read("excel_numbers.xlsx")
    assert table.source_rows == (2, 3, 4, 5, 6, 7)
    assert cells(table)["order_id"] == ["123", "456", "007", "E-4", "E-5", "E-6"]
    assert cells(table)["charge_amount"] == ["80.1", "0.3", "1234.5", "1500", "1.234", ""]
    assert table.numeric_amounts == frozenset({0, 1, 2, 3, 4})
    assert (table.delimiter, table.encoding) == ("", "")


def test_excel_sheet_by_name_with_title_and_blank_rows() -> None:
    table = read("excel_layout.xlsx", sheet="Orders")
    assert table.source_rows == (4, 6, 8)
    assert cells(table) == {
        "order_id": ["W-1", "W-2", "W-3"],
        "order_currency": ["EUR", "EUR", "EUR"],
        "charge_amount": ["1 234,50", "99,5", "12"],
    }
    assert table.warnings == ("column 'Customer' is not one recon knows; it is ignored",)


def test_excel_first_sheet_is_the_default() -> None:
    with pytest.raises(InputError) as caught:
        read("excel_layout.xlsx")
    assert str(caught.value) == (
        "excel_layout.xlsx: required columns order_id and order_currency are missing "
        "(columns found: 'This sheet is not the orders')"
    )


def test_excel_missing_sheet_lists_the_sheets() -> None:
    with pytest.raises(InputError) as caught:
        read("excel_layout.xlsx", sheet="Capture")
    assert str(caught.value) == (
        "excel_layout.xlsx: there is no sheet 'Capture' (sheets: 'Notes', 'Orders')"
    )


# --- files that cannot be read -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.csv", "empty.csv: the file is empty"),
        ("header_only.csv", "header_only.csv: there are no order rows under the header"),
        (
            "missing_column.csv",
            "missing_column.csv: required column order_currency is missing "
            "(columns found: 'order_id', 'amount', 'comment')",
        ),
        ("garbage.csv", "garbage.csv: holds NUL bytes: it is binary, or UTF-16 without a BOM"),
        ("not_zip.xlsx", "not_zip.xlsx: is not an Excel .xlsx workbook (not a zip file)"),
        (
            "huge_cell.csv",
            "huge_cell.csv: line 2 is longer than 65,536 characters; this is not a sheet of orders",
        ),
        (
            "huge_quoted_cell.csv",
            "huge_quoted_cell.csv: line 2 cannot be read as CSV "
            "(field larger than field limit (131072))",
        ),
        (
            "excel_doctype.xlsx",
            "excel_doctype.xlsx: xl/worksheets/sheet1.xml declares a DOCTYPE or ENTITY; "
            "refused as unsafe XML",
        ),
        (
            "excel_ratio_bomb.xlsx",
            "excel_ratio_bomb.xlsx: xl/media/padding.bin is compressed more than 100 to 1; "
            "refused as a possible zip bomb",
        ),
        (
            "excel_size_bomb.xlsx",
            "excel_size_bomb.xlsx: unpacks to 201 MB, more than 200 MB; "
            "refused as a possible zip bomb",
        ),
    ],
)
def test_unreadable_files_raise_input_error_naming_file_and_reason(name: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        read(name)
    assert str(caught.value) == message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^nope\.csv: cannot be read \(No such file"):
        read_table(tmp_path / "nope.csv")


def test_hundred_megabyte_line_fails_fast(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_bytes(b"order_id,order_currency\nA,EUR," + b"z" * 100_000_000 + b"\n")
    with pytest.raises(InputError, match="long.csv: line 2 is longer than 65,536 characters"):
        read_table(path)


def test_a_million_columns_fail_fast(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("order_id,order_currency," + ",".join(["c"] * 1_000_000) + "\nA,EUR\n")
    with pytest.raises(InputError, match="wide.csv: line 1 is longer than 65,536 characters"):
        read_table(path)


def test_too_many_short_columns(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("order_id,order_currency\nA,EUR" + "," * 300 + "\n")
    with pytest.raises(
        InputError, match="wide.csv: line 2 has 302 cells; an order sheet has at most 256"
    ):
        read_table(path)


def test_duplicate_column_meaning(tmp_path: Path) -> None:
    path = tmp_path / "twice.csv"
    path.write_text("order,order_id,currency\nA,A,EUR\n")
    with pytest.raises(InputError, match="columns 'order' and 'order_id' both mean order_id"):
        read_table(path)


def test_sheet_option_on_csv_is_refused() -> None:
    with pytest.raises(InputError, match="--sheet applies to .xlsx workbooks"):
        read("utf8_comma.csv", sheet="Orders")


def test_a_zip_named_csv(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_bytes((DATA / "excel_numbers.xlsx").read_bytes())
    with pytest.raises(
        InputError, match="this is a zip file \\(an Excel workbook\\?\\), not a CSV"
    ):
        read_table(path)


# Pieces of a hostile or broken order sheet: delimiters, quotes, line ends, amounts of every
# style, ids, pos ids in any case, encodings' marks.
_PIECES = [
    "order_id",
    "currency",
    "amount",
    "pos_id",
    "comment",
    "server_url",
    ",",
    ";",
    "\t",
    '"',
    '""',
    "\n",
    "\r\n",
    "\r",
    " ",
    "A1",
    "EUR",
    "usd",
    "JPY",
    "XXX",
    "",
    "1,234",
    "1.000",
    "1 234,50",
    "1,234.50",
    "12,50",
    "0",
    "1e3",
    "-5",
    "NaN",
    "é",
    "\ufeff",
    "\x00",
    "https://x.example/cb",
    "123E4567-E89B-12D3-A456-426614174000",
    "not-a-uuid",
]
_HEADER_NAMES = ["order_id", "order_currency", "charge_amount", "comment", "server_url", "pos_id"]
# Cells of a sheet that decodes: no NUL or other control characters (nor a bare CR, which csv
# refuses outside quotes), so most rows get through csv, the header search and validate.
_TEXT_PIECES = [piece for piece in _PIECES if piece not in ("\x00", "\r")]
_CELL = st.one_of(
    st.sampled_from(_TEXT_PIECES),
    st.lists(st.sampled_from(_TEXT_PIECES), max_size=6).map("".join),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12),
)


@st.composite
def _delimiter_heavy_csv(draw: st.DrawFn) -> bytes:
    """A valid header line, then random rows of cells joined by any delimiter, quote, line end."""
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    optional = draw(st.lists(st.sampled_from(_HEADER_NAMES[2:]), unique=True))
    names = draw(st.permutations(["order_id", "order_currency", *optional]))
    ends = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [delimiter.join(names)]
    size = len(lines[0])
    for _ in range(draw(st.integers(min_value=0, max_value=80))):
        joiner = draw(st.sampled_from([delimiter, delimiter, ",", ";", "\t", '"', "\n"]))
        line = joiner.join(draw(st.lists(_CELL, max_size=len(names) + 3)))
        lines.append(line)
        size += len(line) + len(ends)
        if size >= 4096:
            break
    text = ends.join(lines)[:4096]
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1251"]))
    return text.encode(encoding, errors="replace")


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.one_of(
        st.binary(max_size=4096),
        st.lists(st.sampled_from(_PIECES), max_size=600).map(
            lambda parts: "".join(parts)[:4096].encode("utf-8")
        ),
        _delimiter_heavy_csv(),
    )
)
def test_any_bytes_give_a_batch_or_an_input_error(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "orders.csv"
    path.write_bytes(data)
    try:
        batch = validate(read_table(path), default_pos_id=POS)
    except ReconError as exc:
        assert isinstance(exc, InputError)
        event(re.sub(r"line [0-9]+", "line N", str(exc).split(": ", 1)[-1])[:30])
        return
    event("Batch")
    assert isinstance(batch, Batch)
    assert len(batch.orders) + len(batch.rejected) >= 1
    assert all(o.pos_id == o.pos_id.lower() for o in batch.orders)


def test_classic_mac_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "mac.csv"
    path.write_bytes(b"order_id,order_currency\rA,EUR\rB,USD\r")
    table = read_table(path)
    assert cells(table)["order_id"] == ["A", "B"]
    assert table.source_rows == (2, 3)


def test_a_long_line_far_below_the_header_is_named(tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    rows = "".join(f"R{i},EUR\n" for i in range(100))
    path.write_text("order_id,order_currency\n" + rows + "X,EUR," + "y" * 70_000 + "\n")
    with pytest.raises(InputError, match="^late.csv: line 102 is longer than 65,536 characters"):
        read_table(path)


def test_control_characters_mean_not_a_text_file(tmp_path: Path) -> None:
    path = tmp_path / "ctl.csv"
    path.write_bytes(b"order_id,order_currency\nA\x07,EUR\n")
    with pytest.raises(InputError, match="^ctl.csv: holds control characters"):
        read_table(path)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_named_xlsx_give_an_input_error(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "orders.xlsx"
    path.write_bytes(data)
    with pytest.raises(InputError):
        read_table(path)


def test_a_damaged_workbook_gives_an_input_error(tmp_path: Path) -> None:
    good = (DATA / "excel_numbers.xlsx").read_bytes()
    path = tmp_path / "cut.xlsx"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match="^cut.xlsx: "):
        read_table(path)
