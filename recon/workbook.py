"""The reconciliation workbook, written with openpyxl in write-only mode.

Write-only mode streams each row to a temporary file as it is appended, so a 100,000-row run
never holds the sheet in memory. The sheets, headers and cell rules are the workbook contract of
DESIGN.md; the Summary totals are live formulas over the Reconciliation sheet(s), each with the
Decimal total the tool computed beside it, so an auditor can see that the two agree.

The file is reproducible: the same Report gives the same bytes (document dates come from the run,
zip entries carry a fixed timestamp), so `recon report` and `recon verify` can compare SHA-256s.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shutil
import tempfile
import textwrap
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import IO, Any
from zipfile import ZIP_DEFLATED, ZipFile, ZipInfo

from openpyxl import Workbook, load_workbook
from openpyxl.cell.cell import ERROR_CODES, ILLEGAL_CHARACTERS_RE, Cell, WriteOnlyCell
from openpyxl.chart import BarChart, Reference, Series
from openpyxl.chart.marker import DataPoint
from openpyxl.chart.shapes import GraphicalProperties
from openpyxl.chart.text import RichText, Text
from openpyxl.chart.title import Title
from openpyxl.drawing.text import (
    CharacterProperties,
    Paragraph,
    ParagraphProperties,
    RegularTextRun,
)
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.worksheet.page import PageMargins
from openpyxl.worksheet.properties import PageSetupProperties
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.writer.excel import ExcelWriter

from recon import __version__
from recon.money import currency_decimals
from recon.reconcile import Outcome, ReconRow, Report

# Excel's limits: rows per sheet, characters per cell.
MAX_ROWS = 1_048_576
MAX_CELL_CHARS = 32_767

RECONCILIATION = "Reconciliation"
RECONCILIATION_HEADERS: tuple[str, ...] = (
    "Source row",
    "Order ID",
    "POS ID",
    "Currency",
    "Mode",
    "Requested amount",
    "Captured amount",
    "Difference",
    "Fee amount",
    "Fee currency",
    "Status",
    "Status code",
    "Status description",
    "Outcome",
    "Operation ID",
    "Payment ID",
    "Transaction ID",
    "Created at",
    "Processing time",
    "Attempts",
    "Comment",
)
EXCEPTION_HEADERS: tuple[str, ...] = (*RECONCILIATION_HEADERS, "Reason")
REJECTED_HEADERS: tuple[str, ...] = ("Source row", "Column", "Value", "Problem")
CODES_HEADERS: tuple[str, ...] = ("Status code", "Meaning", "Rows")

# One background colour per outcome that needs a look; captured rows stay white.
EXCEPTION_FILLS: dict[Outcome, str] = {
    Outcome.PARTIAL: "FFF2CC",  # yellow: less than asked
    Outcome.OVER: "FCE4D6",  # peach: more than asked
    Outcome.FAILED: "FFC7CE",  # red: refused
    Outcome.PENDING: "DDEBF7",  # blue: still moving
    Outcome.UNKNOWN: "F4B084",  # orange: a person must check
    Outcome.DUPLICATE: "E4DFEC",  # lavender: another run has it
    Outcome.REJECTED: "D9D9D9",  # grey: invalid row
    Outcome.NOT_SENT: "EDEDED",  # light grey: never sent
}

# A text starting with one of these is a formula (or DDE payload) to some spreadsheet program.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")

_CAPTURED_COLOUR = "A9D08E"  # green, for the captured bar of the outcome chart only
_HEADER_FILL = "D9E1F2"
_MAX_DECIMALS = 10  # most decimals an amount is shown with
_WIDTH_SAMPLE = 2_000  # rows looked at to size the columns
_MAX_WIDTH = 60  # widest column, in characters; longer free text wraps
# Characters an A4 landscape page holds across at 100 % with the margins below; a wide sheet
# prints on as many pages across as keeps it near that size, rather than shrunk to one page.
_CHARS_PER_WIDTH = 1.2  # text characters per unit of column width (Calibri is narrow)
_LINE_HEIGHT = 15.0  # points: one line of Calibri 11
_MAX_ROW_HEIGHT = 409.0  # points: Excel's tallest row
_TWO_LINES = 30.0  # points: the height of a two-line header row
_FONT = "Calibri"  # the workbook's default font; a style without a name falls back to a serif

# Cell looks, by role. Body cells keep the default look unless their column says otherwise.
_HEADER_FONT = Font(name=_FONT, bold=True)
_TITLE_FONT = Font(name=_FONT, bold=True, size=13)
_HEADER_ALIGN = Alignment(horizontal="center", vertical="center", wrap_text=True)
_INDENT = Alignment(horizontal="left", indent=1)  # text right after a right-aligned number
_WRAP = Alignment(wrap_text=True)  # free text: reasons, comments, problems
_WRAP_INDENT = Alignment(horizontal="left", indent=1, wrap_text=True)
_LEFT = Alignment(horizontal="left")
_TOP = Alignment(vertical="top")

# Free-text columns, wrapped rather than cut off at the column edge.
_WRAPPED = frozenset({"Status description", "Comment", "Reason", "Value", "Problem", "Meaning"})
# Columns holding numbers (right-aligned): text in the column after one is indented.
_NUMERIC = frozenset(
    {
        "Source row",
        "Requested amount",
        "Captured amount",
        "Difference",
        "Fee amount",
        "Attempts",
        "Rows",
    }
)
_ZIP_MIN_TIME = (1980, 1, 1, 0, 0, 0)


def _col(headers: Sequence[str], name: str) -> str:
    return get_column_letter(headers.index(name) + 1)


# Reconciliation columns the Summary formulas read.
_CURRENCY_COL = _col(RECONCILIATION_HEADERS, "Currency")
_REQUESTED_COL = _col(RECONCILIATION_HEADERS, "Requested amount")
_CAPTURED_COL = _col(RECONCILIATION_HEADERS, "Captured amount")
_DIFFERENCE_COL = _col(RECONCILIATION_HEADERS, "Difference")
_FEE_COL = _col(RECONCILIATION_HEADERS, "Fee amount")
_FEE_CURRENCY_COL = _col(RECONCILIATION_HEADERS, "Fee currency")
_OUTCOME_COL = _col(RECONCILIATION_HEADERS, "Outcome")
NOT_REJECTED = "<>" + Outcome.REJECTED.value


def safe_text(value: str) -> str:
    """Text an .xlsx cell can hold: XML-illegal characters replaced, long text cut visibly."""
    text = ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    if len(text) > MAX_CELL_CHARS:
        marker = f"…[cut: {len(text)} chars]"
        text = text[: MAX_CELL_CHARS - len(marker)] + marker
    return text


@lru_cache(maxsize=256)
def _decimals(currency: str) -> int:
    try:
        return currency_decimals(currency)
    except (ValueError, KeyError, TypeError):
        return 2


@lru_cache(maxsize=32)
def _decimal_format(decimals: int) -> str:
    return "#,##0." + "0" * decimals if decimals else "#,##0"


def amount_format(currency: str) -> str:
    """Number format with the currency's decimals (two when the code is not a currency)."""
    return _decimal_format(_decimals(currency))


def shown_format(amount: Amount) -> str:
    """The currency's format, or more decimals where the amount has them (a rejected 12.345 USD).

    Rounding 12.345 to 12.35 on screen would hide the very thing that made the row invalid.
    """
    decimals = _decimals(amount.currency)
    exponent = amount.value.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > decimals:
        if amount.value != round(amount.value, decimals):
            return _decimal_format(min(-exponent, _MAX_DECIMALS))
    return _decimal_format(decimals)


@dataclass(frozen=True)
class Amount:
    """A Decimal shown with a given currency's decimals."""

    value: Decimal
    currency: str


@dataclass(frozen=True)
class Count:
    """A whole number shown with thousands separators."""

    value: int


@dataclass(frozen=True)
class Formula:
    """A formula cell; only the writer makes these, never data."""

    text: str
    number_format: str = "General"


CellValue = str | int | float | Decimal | Amount | Count | Formula | None


class _Cells:
    """Styled cells, one per (column, look), filled again for every row.

    openpyxl writes a row out as soon as it is appended, so a cell object can be refilled for the
    next row. Building and styling a fresh cell for each of two million cells costs more than all
    the rest of the writing.

    `text_align` gives a column's text cells an alignment (indent, wrap); numbers keep theirs.
    """

    def __init__(
        self,
        ws: Worksheet,
        text_align: dict[int, Alignment] | None = None,
        default: Alignment | None = None,
    ) -> None:
        self._ws = ws
        self._text_align = text_align or {}
        self._default = default  # every other non-blank cell's alignment
        self._cache: dict[
            tuple[int, str, str | None, bool, Font | None, Alignment | None], Cell
        ] = {}

    def cell(
        self,
        col: int,
        number_format: str,
        fill: str | None,
        quote: bool,
        font: Font | None = None,
        align: Alignment | None = None,
    ) -> Cell:
        key = (col, number_format, fill, quote, font, align)
        cell = self._cache.get(key)
        if cell is None:
            cell = WriteOnlyCell(self._ws)
            if number_format != "General":
                cell.number_format = number_format
            if fill is not None:
                cell.fill = PatternFill("solid", start_color=fill, end_color=fill)
            if quote:
                # Excel and Calc keep a quote-prefixed cell text even when someone edits it.
                cell.quotePrefix = True
            if font is not None:
                cell.font = font
            if align is not None:
                cell.alignment = align
            self._cache[key] = cell
        return cell

    def row(
        self,
        values: Iterable[CellValue],
        fill: str | None = None,
        align: Alignment | None = None,
    ) -> list[object]:
        """The cells of one row; plain values where openpyxl's own handling is already right.

        `align` sets every non-blank cell's alignment (the Summary's evidence values).
        """
        out: list[object] = []
        align = align or self._default
        for col, value in enumerate(values):
            if value is None or value == "":
                out.append(None if fill is None else self._blank(col, fill))
            elif isinstance(value, str):
                text = safe_text(value)
                risky = text.startswith(FORMULA_TRIGGERS) or text in ERROR_CODES
                text_align = self._text_align.get(col) or align
                if fill is None and not risky and text_align is None:
                    out.append(text)  # openpyxl writes a plain str as an inline string
                    continue
                cell = self.cell(col, "General", fill, risky, align=text_align)
                cell.value = text
                # Always a literal string (inlineStr): openpyxl would make "=..." a formula and
                # "#N/A" an error value.
                cell.data_type = "s"
                out.append(cell)
            elif isinstance(value, Amount):
                cell = self.cell(col, shown_format(value), fill, False, align=align)
                cell.value = value.value
                out.append(cell)
            elif isinstance(value, Count):
                cell = self.cell(col, "#,##0", fill, False, align=align)
                cell.value = value.value
                out.append(cell)
            elif isinstance(value, Formula):
                cell = self.cell(col, value.number_format, fill, False, align=align)
                cell.value = value.text
                cell.data_type = "f"
                out.append(cell)
            elif fill is None and align is None:
                out.append(value)
            else:
                cell = self.cell(col, "General", fill, False, align=align)
                cell.value = value
                out.append(cell)
        return out

    def _blank(self, col: int, fill: str) -> Cell:
        cell = self.cell(col, "General", fill, False)
        cell.value = None
        return cell

    def header(self, headers: Sequence[str]) -> list[Cell]:
        """A table's header row: bold, shaded, centred, wrapped where the column is narrow."""
        out: list[Cell] = []
        for col, text in enumerate(headers):
            cell = self.cell(col, "General", _HEADER_FILL, False, _HEADER_FONT, _HEADER_ALIGN)
            cell.value = text
            cell.data_type = "s"
            out.append(cell)
        return out

    def title(self, text: str) -> list[Cell]:
        """A section title: larger bold text, no shading, so it does not read as a header."""
        cell = self.cell(0, "General", None, False, _TITLE_FONT)
        cell.value = text
        cell.data_type = "s"
        return [cell]


def _amount(value: Decimal | None, currency: str) -> Amount | None:
    return None if value is None else Amount(value, currency)


def reconciliation_values(row: ReconRow) -> tuple[CellValue, ...]:
    """The cells of one Reconciliation row, in header order."""
    return (
        row.source_row,
        row.order_id,
        row.pos_id,
        row.currency,
        row.mode,
        _amount(row.requested, row.currency),
        _amount(row.captured, row.currency),
        _amount(row.difference, row.currency),
        _amount(row.fee_amount, row.fee_currency or row.currency),
        row.fee_currency,
        row.status,
        row.status_code,
        row.status_description,
        str(row.outcome),
        row.operation_id,
        row.payment_id,
        row.transaction_id,
        row.created_at,
        row.processing_time,
        row.attempts,
        row.comment,
    )


def _text_width(value: CellValue) -> int:
    if value is None:
        return 0
    if isinstance(value, Amount):
        return len(f"{value.value:,}") + 1
    if isinstance(value, Count):
        return len(f"{value.value:,}")
    if isinstance(value, Formula):
        return 0  # sized by the tool total beside it
    return len(str(value))


@dataclass(frozen=True)
class _Table:
    """A list sheet: its name, headers, rows (each with its fill) and how many rows there are."""

    name: str
    headers: tuple[str, ...]
    rows: Callable[[], Iterator[tuple[tuple[CellValue, ...], str | None]]]
    count: int


def _part_names(name: str, count: int, max_rows: int) -> list[str]:
    """Sheet names for a table of `count` rows: `Name`, `Name (2)`, ... (a header on each)."""
    per_sheet = max_rows - 1
    parts = max(1, -(-count // per_sheet))
    return [name if i == 1 else f"{name} ({i})" for i in range(1, parts + 1)]


def _print_setup(ws: Worksheet, pages_wide: int = 1) -> None:
    """A4 landscape, `pages_wide` pages across; sheet name and page number in the footer."""
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = Worksheet.PAPERSIZE_A4
    ws.page_setup.fitToWidth = pages_wide
    ws.page_setup.fitToHeight = 0
    # All columns of a block of rows first, then the next rows: a row's pages come together.
    ws.page_setup.pageOrder = "overThenDown"
    ws.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)
    ws.page_margins = PageMargins(left=0.4, right=0.4, top=0.6, bottom=0.75, footer=0.3)
    footer = ws.oddFooter  # openpyxl always makes one; the type says it may not
    if footer is not None:
        footer.left.text = "&A"
        footer.right.text = "Page &P of &N"


def _text_alignments(headers: Sequence[str]) -> dict[int, Alignment]:
    """Per column: wrap free text; indent text that follows a right-aligned number column."""
    out: dict[int, Alignment] = {}
    for i, name in enumerate(headers):
        indent = i > 0 and headers[i - 1] in _NUMERIC and name not in _NUMERIC
        if name in _WRAPPED:
            out[i] = _WRAP_INDENT if indent else _WRAP
        elif indent:
            out[i] = _INDENT
    return out


def _setup_table_sheet(
    ws: Worksheet, headers: Sequence[str], widths: Sequence[int], rows: int
) -> None:
    """Frozen, filterable header; A4 landscape, header on every printed page.

    Everything here goes before the first append: write-only sheets write views and columns at
    the top of the file.
    """
    ws.freeze_panes = "A2"
    last = get_column_letter(len(headers))
    ws.auto_filter.ref = f"A1:{last}{rows + 1}"
    for i, width in enumerate(widths, 1):
        ws.column_dimensions[get_column_letter(i)].width = width
    ws.print_title_rows = "1:1"
    _print_setup(ws)  # fit to width, as the contract asks: one page across, rows run down


def _widths(table: _Table) -> list[int]:
    """Column widths from the header and the first rows, up to a cap past which text wraps."""
    widths = [len(h) + 3 for h in table.headers]
    for n, (values, _fill) in enumerate(table.rows()):
        if n >= _WIDTH_SAMPLE:
            break
        for i, value in enumerate(values):
            widths[i] = max(widths[i], _text_width(value) + 2)
    indented = {i for i, a in _text_alignments(table.headers).items() if a.indent}
    return [min(w + (2 if i in indented else 0), _MAX_WIDTH) for i, w in enumerate(widths)]


def _write_table(wb: Workbook, table: _Table, max_rows: int) -> list[str]:
    """Write a list sheet, continuing on `Name (2)`, ... past `max_rows`; return sheet names."""
    names = _part_names(table.name, table.count, max_rows)
    per_sheet = max_rows - 1
    widths = _widths(table)
    align = _text_alignments(table.headers)
    # Wrapped columns and the characters a line of each holds (an indent takes about two).
    wrapped = [
        (i, max(int((widths[i] - (3 if a.indent else 1)) * _CHARS_PER_WIDTH), 1))
        for i, a in align.items()
        if a.wrap_text
    ]
    rows = table.rows()
    for index, name in enumerate(names):
        ws = wb.create_sheet(name)
        in_part = min(per_sheet, table.count - index * per_sheet)
        _setup_table_sheet(ws, table.headers, widths, max(in_part, 0))
        cells = _Cells(ws, align)
        # Rows of more than one line: every cell at the top, beside the wrapped text's first line.
        tall_cells = _Cells(ws, {i: _top(a) for i, a in align.items()}, _TOP)
        ws.append(cells.header(table.headers))
        for row_no in range(2, max(in_part, 0) + 2):
            values, fill = next(rows)
            lines = _lines(values, wrapped)
            if lines > 1:
                # A row written with no height stays one line high in some programs and the
                # wrapped text runs over the next row; the writer sends each row out as it is
                # appended, so the height is dropped again right after.
                ws.row_dimensions[row_no].height = min(_LINE_HEIGHT * lines, _MAX_ROW_HEIGHT)
                ws.append(tall_cells.row(values, fill))
                del ws.row_dimensions[row_no]
            else:
                ws.append(cells.row(values, fill))
    return names


def _top(align: Alignment) -> Alignment:
    return Alignment(
        horizontal=align.horizontal, indent=align.indent, wrap_text=align.wrap_text, vertical="top"
    )


def _lines(values: Sequence[CellValue], wrapped: Sequence[tuple[int, int]]) -> int:
    """Lines the tallest wrapped cell of a row takes, breaking at spaces as a spreadsheet does."""
    lines = 1
    for col, chars in wrapped:
        value = values[col]
        if not isinstance(value, str) or (len(value) <= chars and "\n" not in value):
            continue
        count = sum(
            len(textwrap.wrap(part, chars, break_on_hyphens=False)) or 1
            for part in value.split("\n")
        )
        lines = max(lines, count)
    return lines


def _criterion(value: str) -> str:
    """A COUNTIFS/SUMIFS criterion that matches `value` exactly, as a formula string literal
    (`NOT_REJECTED` is the one criterion that excludes instead)."""
    if value == NOT_REJECTED:
        return f'"{value}"'
    if not re.fullmatch(r"[A-Za-z0-9_]+", value):
        value = "=" + re.sub(r"([*?~])", r"~\1", value)
    return '"' + value.replace('"', '""') + '"'


def _ifs(
    func: str,
    parts: Sequence[str],
    target: str | None,
    criteria: Sequence[tuple[str, str]],
) -> str:
    """COUNTIFS or SUMIFS over every part of the Reconciliation sheet, added up."""
    terms = []
    for part in parts:
        sheet = quote_sheetname(part)
        args = [f"{sheet}!${target}:${target}"] if target else []
        for column, value in criteria:
            args += [f"{sheet}!${column}:${column}", _criterion(value)]
        terms.append(f"{func}({','.join(args)})")
    return "=" + "+".join(terms)


class _Lines:
    """The Summary's rows, kept until all are known: column widths go before the first row."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, Sequence[CellValue]]] = []

    @property
    def row(self) -> int:
        """The sheet row number of the last line added."""
        return len(self.lines)

    def add(self, kind: str, values: Sequence[CellValue] = ()) -> int:
        self.lines.append((kind, values))
        return self.row

    def widths(self, columns: int) -> list[int]:
        """Widths that show every number in a table whole, and every header word on one line."""
        widths = [10] * columns
        for kind, values in self.lines:
            for i, value in enumerate(values):
                if kind == "header":
                    longest = max((len(word) for word in str(value).split()), default=0)
                    widths[i] = max(widths[i], longest + 3)
                elif kind == "table":
                    if isinstance(value, Formula) and i + 1 < len(values):
                        value = values[i + 1]  # shows what the tool total beside it shows
                    widths[i] = max(widths[i], _text_width(value) + 2)
        return [min(w, _MAX_WIDTH) for w in widths]


def _write_summary(wb: Workbook, report: Report, parts: Sequence[str]) -> None:
    """Run evidence, then totals per currency and outcome: formula and tool total side by side.

    Two charts of the tool totals sit below the last table, side by side, clear of every table.
    """
    ws = wb.create_sheet("Summary")
    run = report.run
    out = _Lines()

    out.add("title", ["Run evidence"])
    evidence: list[tuple[str, CellValue]] = [
        ("Run ID", run.run_id),
        ("Input file", run.input_name),
        ("Input size (bytes)", Count(run.input_size)),
        ("Input SHA-256", run.input_sha256),
        ("Rows read", Count(run.rows_read)),
        ("Rows sent", Count(run.rows_sent)),
        ("Started (UTC)", run.started_at),
        ("Finished (UTC)", run.finished_at),
        ("Tool version", run.tool_version),
        ("Base URL", run.base_url),
        ("POS IDs", ", ".join(run.pos_ids)),
        ("Rate (requests/s)", run.rate),
        ("User", f"{run.user}@{run.host}"),
        ("Workbook written by", f"recon {__version__}"),
    ]
    for label, value in evidence:
        out.add("evidence", [label, value])
    out.add("blank")
    out.add(
        "note",
        [
            "Formula columns add up the Reconciliation sheet"
            + (f" ({len(parts)} parts)" if len(parts) > 1 else "")
            + "; the (tool total) columns beside them are what recon computed. They should agree."
        ],
    )
    out.add("blank")

    # Totals per currency.
    out.add("title", ["Totals per currency"])
    measures = ("Orders", "Requested", "Captured", "Difference", "Fees", "Net")
    out.add(
        "header",
        ["Currency", *(f"{m}{suffix}" for m in measures for suffix in ("", " (tool total)"))],
    )
    first_currency_row = out.row + 1
    for total in report.currencies:
        fmt = amount_format(total.currency)
        # Rejected rows were never sent: they count in the outcomes, not in the money.
        by_currency = [(_CURRENCY_COL, total.currency), (_OUTCOME_COL, NOT_REJECTED)]
        r = out.row + 1
        captured_ref, fees_ref = f"F{r}", f"J{r}"
        out.add(
            "table",
            [
                total.currency,
                Formula(_ifs("COUNTIFS", parts, None, by_currency), "#,##0"),
                Count(total.orders),
                Formula(_ifs("SUMIFS", parts, _REQUESTED_COL, by_currency), fmt),
                Amount(total.requested, total.currency),
                Formula(_ifs("SUMIFS", parts, _CAPTURED_COL, by_currency), fmt),
                Amount(total.captured, total.currency),
                Formula(_ifs("SUMIFS", parts, _DIFFERENCE_COL, by_currency), fmt),
                Amount(total.difference, total.currency),
                # a fee charged in another currency does not add to this one's
                Formula(
                    _ifs(
                        "SUMIFS",
                        parts,
                        _FEE_COL,
                        [*by_currency, (_FEE_CURRENCY_COL, total.currency)],
                    ),
                    fmt,
                ),
                Amount(total.fees, total.currency),
                Formula(f"={captured_ref}-{fees_ref}", fmt),
                Amount(total.net, total.currency),
            ],
        )
    last_currency_row = out.row
    out.add("blank")

    # Rows per outcome.
    out.add("title", ["Rows per outcome"])
    out.add("header", ["Outcome", "Rows", "Rows (tool total)"])
    first_outcome_row = out.row + 1
    for outcome_total in report.outcomes:
        by_outcome = [(_OUTCOME_COL, str(outcome_total.outcome))]
        out.add(
            "table",
            [
                str(outcome_total.outcome),
                Formula(_ifs("COUNTIFS", parts, None, by_outcome), "#,##0"),
                Count(outcome_total.count),
            ],
        )
    last_outcome_row = out.row
    out.add("blank")

    # Amounts per outcome and currency: amounts in different currencies never share a sum.
    out.add("title", ["Amounts per outcome and currency"])
    out.add(
        "header",
        [
            "Outcome",
            "Currency",
            "Rows",
            "Rows (tool total)",
            "Requested",
            "Requested (tool total)",
            "Captured",
            "Captured (tool total)",
        ],
    )
    for (outcome, currency), (count, requested, captured) in _outcome_currency_totals(report):
        fmt = amount_format(currency)
        criteria = [(_OUTCOME_COL, outcome), (_CURRENCY_COL, currency)]
        out.add(
            "table",
            [
                outcome,
                currency,
                Formula(_ifs("COUNTIFS", parts, None, criteria), "#,##0"),
                Count(count),
                Formula(_ifs("SUMIFS", parts, _REQUESTED_COL, criteria), fmt),
                Amount(requested, currency),
                Formula(_ifs("SUMIFS", parts, _CAPTURED_COL, criteria), fmt),
                Amount(captured, currency),
            ],
        )

    columns = 1 + 2 * len(measures)
    widths = out.widths(columns)
    # Column A holds the evidence labels; the values beside them may run on over empty cells.
    widths[0] = max(widths[0], *(len(label) + 2 for label, _ in evidence))
    for i, width in enumerate(widths, 1):
        ws.column_dimensions[get_column_letter(i)].width = width
    _print_setup(ws)
    cells = _Cells(ws)
    for row_no, (kind, values) in enumerate(out.lines, 1):
        if kind == "title":
            ws.append(cells.title(str(values[0])))
        elif kind == "header":
            if any(len(str(v)) + 3 > w for v, w in zip(values, widths, strict=False)):
                # Two lines: a spreadsheet does not grow a row for wrapped text by itself.
                ws.row_dimensions[row_no].height = _TWO_LINES
            ws.append(cells.header([str(v) for v in values]))
        elif kind == "evidence":
            ws.append(cells.row(values, align=_LEFT))
        elif kind == "table":
            ws.append(cells.row(_formats_as_tool_totals(values)))
        else:
            ws.append(cells.row(values))

    _add_charts(
        ws,
        report,
        widths,
        anchor_row=out.row + 2,
        currency_rows=(first_currency_row, last_currency_row),
        outcome_rows=(first_outcome_row, last_outcome_row),
    )


def _formats_as_tool_totals(values: Sequence[CellValue]) -> list[CellValue]:
    """Each formula shown with the decimals of the tool total beside it, so the two look alike."""
    out = list(values)
    for i, value in enumerate(out[:-1]):
        neighbour = out[i + 1]
        if isinstance(value, Formula) and isinstance(neighbour, Amount):
            out[i] = Formula(value.text, shown_format(neighbour))
    return out


def _add_charts(
    ws: Worksheet,
    report: Report,
    widths: Sequence[int],
    anchor_row: int,
    currency_rows: tuple[int, int],
    outcome_rows: tuple[int, int],
) -> None:
    """Requested vs captured per currency, and rows per outcome, below the tables.

    The charts read the tool totals: plain numbers draw even where nothing recalculates.
    """
    width_cm, height_cm = 15.0, 8.5
    # The second chart starts in the column after the one where the first one ends.
    col, covered = 0, 0.0
    while covered < width_cm and col < len(widths):
        covered += _column_cm(widths[col])
        col += 1
    second = get_column_letter(col + 1)

    if report.currencies:
        first, last = currency_rows
        chart = BarChart()
        chart.title = _chart_title("Requested and captured (tool totals)")
        chart.x_axis.title = "Currency"
        chart.y_axis.title = "Amount, in each currency"
        chart.y_axis.numFmt = "#,##0"
        for col_no, name in ((5, "Requested"), (7, "Captured")):
            values = Reference(ws, min_col=col_no, min_row=first, max_row=last)
            chart.series.append(Series(values, title=name))
        chart.set_categories(Reference(ws, min_col=1, min_row=first, max_row=last))
        chart.legend.position = "b"
        _finish_chart(chart, width_cm, height_cm)
        ws.add_chart(chart, f"A{anchor_row}")
    if report.outcomes:
        first, last = outcome_rows
        chart = BarChart()
        chart.type = "bar"  # horizontal: the outcome names read across, not slanted
        chart.title = _chart_title("Rows per outcome (tool totals)")
        chart.x_axis.title = "Outcome"
        chart.x_axis.scaling.orientation = "maxMin"  # first outcome at the top, as in the table
        chart.y_axis.title = "Rows"
        chart.y_axis.numFmt = "#,##0"
        chart.y_axis.crosses = "max"  # the count axis at the bottom, under the last bar
        chart.y_axis.majorGridlines = None
        chart.legend = None
        series = Series(Reference(ws, min_col=3, min_row=first, max_row=last), title="Rows")
        # Each bar in its outcome's row colour, as on the Reconciliation sheet.
        for index, outcome_total in enumerate(report.outcomes):
            colour = EXCEPTION_FILLS.get(outcome_total.outcome, _CAPTURED_COLOUR)
            point = DataPoint(idx=index)
            point.graphicalProperties = GraphicalProperties(solidFill=colour)
            point.graphicalProperties.line.solidFill = "7F7F7F"
            series.dPt.append(point)
        chart.series.append(series)
        chart.set_categories(Reference(ws, min_col=1, min_row=first, max_row=last))
        _finish_chart(chart, width_cm, height_cm)
        ws.add_chart(chart, f"{second if report.currencies else 'A'}{anchor_row}")


def _column_cm(width: float) -> float:
    """A column's width on screen, in cm (Calibri 11: about 7 px a character, 5 px padding)."""
    return (width * 7 + 5) / 96 * 2.54


def _chart_title(text: str) -> Title:
    """A 12 pt bold title: the default size wraps a title over two lines of a small chart."""
    font = CharacterProperties(sz=1200, b=True)
    paragraph = Paragraph(
        pPr=ParagraphProperties(defRPr=font), r=[RegularTextRun(rPr=font, t=text)]
    )
    return Title(tx=Text(rich=RichText(p=[paragraph])), overlay=False)


def _finish_chart(chart: BarChart, width_cm: float, height_cm: float) -> None:
    chart.width, chart.height = width_cm, height_cm  # type: ignore[assignment]
    chart.x_axis.delete = False  # openpyxl 3.1 leaves this unset: Excel then hides the axes
    chart.y_axis.delete = False


def _outcome_currency_totals(
    report: Report,
) -> list[tuple[tuple[str, str], tuple[int, Decimal, Decimal]]]:
    """Rows, requested and captured per (outcome, currency), in Decimal, in first-seen order."""
    totals: dict[tuple[str, str], tuple[int, Decimal, Decimal]] = {}
    for row in report.rows:
        key = (str(row.outcome), row.currency)
        count, requested, captured = totals.get(key, (0, Decimal(0), Decimal(0)))
        totals[key] = (
            count + 1,
            requested + (row.requested or Decimal(0)),
            captured + (row.captured or Decimal(0)),
        )
    return list(totals.items())


def _document_time(report: Report) -> dt.datetime:
    """The run's finish (or start) as naive UTC: the same report gives the same file."""
    for text in (report.run.finished_at, report.run.started_at):
        try:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            continue
        if moment.tzinfo is not None:
            moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
        return max(moment, dt.datetime(*_ZIP_MIN_TIME)).replace(microsecond=0)
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


class _StableZip(ZipFile):
    """A ZipFile whose entries all carry one timestamp, so equal content gives equal bytes."""

    def __init__(self, file: IO[bytes], moment: dt.datetime) -> None:
        super().__init__(file, "w", ZIP_DEFLATED, allowZip64=True)
        self._date_time = moment.timetuple()[:6]

    def _info(self, name: str) -> ZipInfo:
        info = ZipInfo(name, date_time=self._date_time)
        info.compress_type = ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        return info

    def writestr(  # type: ignore[override]
        self, zinfo_or_arcname: str | ZipInfo, data: str | bytes, *args: Any, **kwargs: Any
    ) -> None:
        if isinstance(zinfo_or_arcname, str):
            zinfo_or_arcname = self._info(zinfo_or_arcname)
        super().writestr(zinfo_or_arcname, data, *args, **kwargs)

    def write(  # type: ignore[override]
        self, filename: str, arcname: str | None = None, *args: Any, **kwargs: Any
    ) -> None:
        info = self._info(arcname or os.path.basename(filename))
        with open(filename, "rb") as src, self.open(info, "w", force_zip64=True) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_workbook(report: Report, path: Path, *, max_rows: int = MAX_ROWS) -> str:
    """Write the five sheets of the workbook contract; return the file's SHA-256.

    `max_rows` is Excel's row limit, lowered in tests to see the Reconciliation sheet continue.
    The file appears whole or not at all: written next to `path`, then renamed over it.
    """
    if max_rows < 2:
        raise ValueError("max_rows must leave room for a header and a row")
    moment = _document_time(report)
    wb = Workbook(write_only=True)
    wb.properties.creator = f"recon {__version__}"
    wb.properties.title = f"Reconciliation of {safe_text(report.run.input_name)}"
    wb.properties.subject = f"recon run {safe_text(report.run.run_id)}"
    wb.properties.created = moment
    wb.properties.modified = moment

    rows = report.rows
    exceptions = [r for r in rows if r.outcome != Outcome.CAPTURED]
    tables = [
        _Table(
            RECONCILIATION,
            RECONCILIATION_HEADERS,
            lambda: ((reconciliation_values(r), EXCEPTION_FILLS.get(r.outcome)) for r in rows),
            len(rows),
        ),
        _Table(
            "Exceptions",
            EXCEPTION_HEADERS,
            lambda: (
                ((*reconciliation_values(r), r.reason), EXCEPTION_FILLS.get(r.outcome))
                for r in exceptions
            ),
            len(exceptions),
        ),
        _Table(
            "Rejected",
            REJECTED_HEADERS,
            lambda: (
                ((j.source_row, j.column, j.value, j.problem), None) for j in report.rejections
            ),
            len(report.rejections),
        ),
        _Table(
            "Codes",
            CODES_HEADERS,
            lambda: (((c.code, c.meaning, c.count), None) for c in report.codes),
            len(report.codes),
        ),
    ]
    _write_summary(wb, report, _part_names(RECONCILIATION, len(rows), max_rows))
    for table in tables:
        _write_table(wb, table, max_rows)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w+b") as tmp:
            ExcelWriter(wb, _StableZip(tmp, moment)).save()
            tmp.flush()
            os.fsync(tmp.fileno())
            os.fchmod(tmp.fileno(), 0o666 & ~_umask())  # mkstemp made it owner-only
            tmp.seek(0)
            digest = hashlib.sha256()
            for chunk in iter(lambda: tmp.read(1 << 20), b""):
                digest.update(chunk)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return digest.hexdigest()


_PART_RE = re.compile(rf"^{RECONCILIATION}( \((\d+)\))?$")


def reconciliation_sheets(names: Iterable[str]) -> list[str]:
    """The Reconciliation sheet and its continuations, in part order."""
    found = [(int(m.group(2) or 1), n) for n in names if (m := _PART_RE.match(n))]
    return [n for _, n in sorted(found)]


def read_reconciliation(path: Path) -> list[list[object]]:
    """Cell values of the Reconciliation sheet(s) as read back: one header, then every row."""
    wb = load_workbook(path, read_only=True, data_only=False)
    try:
        out: list[list[object]] = []
        for index, name in enumerate(reconciliation_sheets(wb.sheetnames)):
            ws = wb[name]
            ws.reset_dimensions()
            for n, values in enumerate(ws.iter_rows(values_only=True)):
                if n == 0 and index > 0:
                    continue  # each continuation repeats the header
                row: list[object] = list(values)
                row += [None] * (len(RECONCILIATION_HEADERS) - len(row))
                out.append(row)
        return out
    finally:
        wb.close()
