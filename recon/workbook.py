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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import IO, Any
from zipfile import ZIP_DEFLATED, ZipFile, ZipInfo

from openpyxl import Workbook, load_workbook
from openpyxl.cell.cell import ERROR_CODES, ILLEGAL_CHARACTERS_RE, Cell, WriteOnlyCell
from openpyxl.chart import BarChart, Reference
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter, quote_sheetname
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

_HEADER_FILL = "D9E1F2"
_WIDTH_SAMPLE = 2_000  # rows looked at to size the columns
_ZIP_MIN_TIME = (1980, 1, 1, 0, 0, 0)


def _col(headers: Sequence[str], name: str) -> str:
    return get_column_letter(headers.index(name) + 1)


# Reconciliation columns the Summary formulas read.
_CURRENCY_COL = _col(RECONCILIATION_HEADERS, "Currency")
_REQUESTED_COL = _col(RECONCILIATION_HEADERS, "Requested amount")
_CAPTURED_COL = _col(RECONCILIATION_HEADERS, "Captured amount")
_DIFFERENCE_COL = _col(RECONCILIATION_HEADERS, "Difference")
_FEE_COL = _col(RECONCILIATION_HEADERS, "Fee amount")
_OUTCOME_COL = _col(RECONCILIATION_HEADERS, "Outcome")


def safe_text(value: str) -> str:
    """Text an .xlsx cell can hold: XML-illegal characters replaced, long text cut visibly."""
    text = ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    if len(text) > MAX_CELL_CHARS:
        marker = f"…[cut: {len(text)} chars]"
        text = text[: MAX_CELL_CHARS - len(marker)] + marker
    return text


@lru_cache(maxsize=256)
def amount_format(currency: str) -> str:
    """Number format with the currency's decimals (two when the code is not a currency)."""
    try:
        decimals = currency_decimals(currency)
    except (ValueError, KeyError, TypeError):
        decimals = 2
    return "#,##0." + "0" * decimals if decimals else "#,##0"


@dataclass(frozen=True)
class Amount:
    """A Decimal shown with a given currency's decimals."""

    value: Decimal
    currency: str


@dataclass(frozen=True)
class Formula:
    """A formula cell; only the writer makes these, never data."""

    text: str
    number_format: str = "General"


CellValue = str | int | float | Decimal | Amount | Formula | None


class _Cells:
    """Styled cells, one per (column, style), filled again for every row.

    openpyxl writes a row out as soon as it is appended, so a cell object can be refilled for the
    next row. Building and styling a fresh cell for each of two million cells costs more than all
    the rest of the writing.
    """

    def __init__(self, ws: Worksheet) -> None:
        self._ws = ws
        self._cache: dict[tuple[int, str, str | None, bool, bool], Cell] = {}

    def cell(
        self, col: int, number_format: str, fill: str | None, quote: bool, bold: bool = False
    ) -> Cell:
        key = (col, number_format, fill, quote, bold)
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
            if bold:
                cell.font = Font(bold=True)
            self._cache[key] = cell
        return cell

    def row(self, values: Iterable[CellValue], fill: str | None = None) -> list[object]:
        """The cells of one row; plain values where openpyxl's own handling is already right."""
        out: list[object] = []
        for col, value in enumerate(values):
            if value is None or value == "":
                out.append(None if fill is None else self._blank(col, fill))
            elif isinstance(value, str):
                text = safe_text(value)
                risky = text.startswith(FORMULA_TRIGGERS) or text in ERROR_CODES
                if fill is None and not risky:
                    out.append(text)  # openpyxl writes a plain str as an inline string
                    continue
                cell = self.cell(col, "General", fill, risky)
                cell.value = text
                # Always a literal string (inlineStr): openpyxl would make "=..." a formula and
                # "#N/A" an error value.
                cell.data_type = "s"
                out.append(cell)
            elif isinstance(value, Amount):
                cell = self.cell(col, amount_format(value.currency), fill, False)
                cell.value = value.value
                out.append(cell)
            elif isinstance(value, Formula):
                cell = self.cell(col, value.number_format, fill, False)
                cell.value = value.text
                cell.data_type = "f"
                out.append(cell)
            elif fill is None:
                out.append(value)
            else:
                cell = self.cell(col, "General", fill, False)
                cell.value = value
                out.append(cell)
        return out

    def _blank(self, col: int, fill: str) -> Cell:
        cell = self.cell(col, "General", fill, False)
        cell.value = None
        return cell

    def header(self, headers: Sequence[str]) -> list[Cell]:
        out: list[Cell] = []
        for col, text in enumerate(headers):
            cell = self.cell(col, "General", _HEADER_FILL, False, bold=True)
            cell.value = text
            cell.data_type = "s"
            out.append(cell)
        return out


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


def _print_setup(ws: Worksheet) -> None:
    """A4 landscape, as wide as the page: auditors print these."""
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = Worksheet.PAPERSIZE_A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)


def _setup_table_sheet(
    ws: Worksheet, headers: Sequence[str], widths: Sequence[int], rows: int
) -> None:
    """Frozen, filterable header; A4 landscape, fit to width, header on every printed page.

    Everything here goes before the first append: write-only sheets write views and columns
    at the top of the file.
    """
    ws.freeze_panes = "A2"
    last = get_column_letter(len(headers))
    ws.auto_filter.ref = f"A1:{last}{rows + 1}"
    for i, width in enumerate(widths, 1):
        ws.column_dimensions[get_column_letter(i)].width = width
    ws.print_title_rows = "1:1"
    _print_setup(ws)


def _widths(table: _Table) -> list[int]:
    widths = [len(h) + 3 for h in table.headers]
    for n, (values, _fill) in enumerate(table.rows()):
        if n >= _WIDTH_SAMPLE:
            break
        for i, value in enumerate(values):
            widths[i] = max(widths[i], _text_width(value) + 2)
    return [min(w, 60) for w in widths]


def _write_table(wb: Workbook, table: _Table, max_rows: int) -> list[str]:
    """Write a list sheet, continuing on `Name (2)`, ... past `max_rows`; return sheet names."""
    names = _part_names(table.name, table.count, max_rows)
    per_sheet = max_rows - 1
    widths = _widths(table)
    rows = table.rows()
    for index, name in enumerate(names):
        ws = wb.create_sheet(name)
        in_part = min(per_sheet, table.count - index * per_sheet)
        _setup_table_sheet(ws, table.headers, widths, max(in_part, 0))
        cells = _Cells(ws)
        ws.append(cells.header(table.headers))
        for _ in range(max(in_part, 0)):
            values, fill = next(rows)
            ws.append(cells.row(values, fill))
    return names


def _criterion(value: str) -> str:
    """A COUNTIFS/SUMIFS criterion that matches `value` exactly, as a formula string literal."""
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


def _write_summary(wb: Workbook, report: Report, parts: Sequence[str]) -> None:
    """Run evidence, then totals per currency and outcome: formula and tool total side by side."""
    ws = wb.create_sheet("Summary")
    ws.column_dimensions["A"].width = 26
    for letter in "BCDEFGHIJKLM":
        ws.column_dimensions[letter].width = 18
    _print_setup(ws)
    cells = _Cells(ws)
    run = report.run
    row_no = 0

    def put(values: Sequence[CellValue], heading: bool = False) -> int:
        nonlocal row_no
        ws.append(cells.header([str(v) for v in values]) if heading else cells.row(values))
        row_no += 1
        return row_no

    put(["Run evidence"], heading=True)
    evidence: list[tuple[str, CellValue]] = [
        ("Run ID", run.run_id),
        ("Input file", run.input_name),
        ("Input size (bytes)", run.input_size),
        ("Input SHA-256", run.input_sha256),
        ("Rows read", run.rows_read),
        ("Rows sent", run.rows_sent),
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
        put([label, value])
    put([])
    put(
        [
            "Formula columns add up the Reconciliation sheet"
            + (f" ({len(parts)} parts)" if len(parts) > 1 else "")
            + "; the (tool total) columns beside them are what recon computed. They should agree."
        ]
    )
    put([])

    # Totals per currency.
    put(["Totals per currency"], heading=True)
    measures = ("Orders", "Requested", "Captured", "Difference", "Fees", "Net")
    put(["Currency", *(f"{m}{suffix}" for m in measures for suffix in ("", " (tool total)"))], True)
    first_currency_row = row_no + 1
    for total in report.currencies:
        fmt = amount_format(total.currency)
        by_currency = [(_CURRENCY_COL, total.currency)]
        r = row_no + 1
        captured_ref, fees_ref = f"F{r}", f"J{r}"
        put(
            [
                total.currency,
                Formula(_ifs("COUNTIFS", parts, None, by_currency), "#,##0"),
                total.orders,
                Formula(_ifs("SUMIFS", parts, _REQUESTED_COL, by_currency), fmt),
                Amount(total.requested, total.currency),
                Formula(_ifs("SUMIFS", parts, _CAPTURED_COL, by_currency), fmt),
                Amount(total.captured, total.currency),
                Formula(_ifs("SUMIFS", parts, _DIFFERENCE_COL, by_currency), fmt),
                Amount(total.difference, total.currency),
                Formula(_ifs("SUMIFS", parts, _FEE_COL, by_currency), fmt),
                Amount(total.fees, total.currency),
                Formula(f"={captured_ref}-{fees_ref}", fmt),
                Amount(total.net, total.currency),
            ]
        )
    last_currency_row = row_no
    put([])

    # Rows per outcome.
    put(["Rows per outcome"], heading=True)
    put(["Outcome", "Rows", "Rows (tool total)"], heading=True)
    first_outcome_row = row_no + 1
    for outcome_total in report.outcomes:
        by_outcome = [(_OUTCOME_COL, str(outcome_total.outcome))]
        put(
            [
                str(outcome_total.outcome),
                Formula(_ifs("COUNTIFS", parts, None, by_outcome), "#,##0"),
                outcome_total.count,
            ]
        )
    last_outcome_row = row_no
    put([])

    # Amounts per outcome and currency: amounts in different currencies never share a sum.
    put(["Amounts per outcome and currency"], heading=True)
    put(
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
        heading=True,
    )
    for (outcome, currency), (count, requested, captured) in _outcome_currency_totals(report):
        fmt = amount_format(currency)
        criteria = [(_OUTCOME_COL, outcome), (_CURRENCY_COL, currency)]
        put(
            [
                outcome,
                currency,
                Formula(_ifs("COUNTIFS", parts, None, criteria), "#,##0"),
                count,
                Formula(_ifs("SUMIFS", parts, _REQUESTED_COL, criteria), fmt),
                Amount(requested, currency),
                Formula(_ifs("SUMIFS", parts, _CAPTURED_COL, criteria), fmt),
                Amount(captured, currency),
            ]
        )

    # Charts read the tool totals: plain numbers draw even where nothing recalculates.
    if report.currencies:
        chart = BarChart()
        chart.title = "Requested vs captured per currency (tool totals)"
        chart.y_axis.title = "Amount"
        for col in (5, 7):  # Requested (tool total), Captured (tool total)
            data = Reference(
                ws, min_col=col, min_row=first_currency_row - 1, max_row=last_currency_row
            )
            chart.add_data(data, titles_from_data=True)
        cats = Reference(ws, min_col=1, min_row=first_currency_row, max_row=last_currency_row)
        chart.set_categories(cats)
        chart.width, chart.height = 16, 8
        ws.add_chart(chart, "O2")
    if report.outcomes:
        chart = BarChart()
        chart.title = "Rows per outcome (tool totals)"
        chart.legend = None
        data = Reference(ws, min_col=3, min_row=first_outcome_row - 1, max_row=last_outcome_row)
        chart.add_data(data, titles_from_data=True)
        cats = Reference(ws, min_col=1, min_row=first_outcome_row, max_row=last_outcome_row)
        chart.set_categories(cats)
        chart.width, chart.height = 16, 8
        ws.add_chart(chart, "O20")


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
