"""The workbook contract (DESIGN.md): sheets, headers, cells, formula safety, splitting."""

from __future__ import annotations

import gc
import hashlib
import re
import zipfile
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.writer.excel import ExcelWriter
from workbook_fixtures import AT_SUM, HYPERLINK, report_from, row, sample_report

from recon import __version__, workbook
from recon.reconcile import Outcome, Report
from recon.schema import Rejection
from recon.workbook import (
    CODES_HEADERS,
    EXCEPTION_FILLS,
    EXCEPTION_HEADERS,
    MAX_CELL_CHARS,
    RECONCILIATION_HEADERS,
    REJECTED_HEADERS,
    read_reconciliation,
    safe_text,
    write_workbook,
)

CONTRACT_HEADERS = [
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
]
COL = {name: i for i, name in enumerate(CONTRACT_HEADERS)}


@pytest.fixture
def report() -> Report:
    return sample_report()


@pytest.fixture
def book(tmp_path: Path, report: Report) -> Path:
    path = tmp_path / "out.xlsx"
    write_workbook(report, path)
    return path


def sheet(path: Path, name: str) -> Worksheet:
    ws = load_workbook(path)[name]
    assert isinstance(ws, Worksheet)
    return ws


def values(path: Path, name: str) -> list[list[object]]:
    return [list(r) for r in sheet(path, name).iter_rows(values_only=True)]


def by_source_row(path: Path) -> dict[object, list[object]]:
    return {r[0]: r for r in read_reconciliation(path)[1:]}


def test_returns_the_sha256_of_the_file(book: Path, report: Report, tmp_path: Path) -> None:
    digest = write_workbook(report, tmp_path / "again.xlsx")
    assert digest == hashlib.sha256((tmp_path / "again.xlsx").read_bytes()).hexdigest()


def test_same_report_same_bytes(report: Report, tmp_path: Path) -> None:
    assert write_workbook(report, tmp_path / "a.xlsx") == write_workbook(
        report, tmp_path / "b.xlsx"
    )


def test_no_temporary_file_left_behind(book: Path) -> None:
    assert sorted(p.name for p in book.parent.iterdir()) == ["out.xlsx"]


def test_sheets_in_contract_order(book: Path) -> None:
    assert load_workbook(book).sheetnames == [
        "Summary",
        "Reconciliation",
        "Exceptions",
        "Rejected",
        "Codes",
    ]


def test_headers_in_contract_order(book: Path) -> None:
    assert list(RECONCILIATION_HEADERS) == CONTRACT_HEADERS
    assert values(book, "Reconciliation")[0] == CONTRACT_HEADERS
    assert values(book, "Exceptions")[0] == [*CONTRACT_HEADERS, "Reason"]
    assert values(book, "Rejected")[0] == list(REJECTED_HEADERS)
    assert values(book, "Rejected")[0] == ["Source row", "Column", "Value", "Problem"]
    assert values(book, "Codes")[0] == list(CODES_HEADERS)
    assert EXCEPTION_HEADERS[-1] == "Reason"


def test_one_row_per_recon_row_in_order(book: Path, report: Report) -> None:
    rows = read_reconciliation(book)
    assert rows[0] == CONTRACT_HEADERS
    assert [r[0] for r in rows[1:]] == [r.source_row for r in report.rows]
    assert [r[COL["Order ID"]] for r in rows[1:]] == [r.order_id for r in report.rows]
    assert [r[COL["Outcome"]] for r in rows[1:]] == [str(r.outcome) for r in report.rows]


def test_blanks_and_zeros_as_design_says(book: Path) -> None:
    rows = by_source_row(book)
    requested, captured, difference = (
        COL["Requested amount"],
        COL["Captured amount"],
        COL["Difference"],
    )
    # Whole-hold capture: requested blank, difference blank, captured known.
    assert rows[6][requested] is None and rows[6][difference] is None
    assert rows[6][captured] == 80
    # Nothing captured (refused, duplicate, rejected, not sent): 0, not blank.
    for source_row in (7, 10, 11, 12):
        assert rows[source_row][captured] == 0, source_row
        assert rows[source_row][difference] is not None
    # Not known (pending, unknown): blank, not 0.
    for source_row in (8, 9):
        assert rows[source_row][captured] is None, source_row
        assert rows[source_row][difference] is None
    assert rows[4][difference] == pytest.approx(-50.25)


def test_amounts_are_numbers_with_the_currency_decimals(book: Path) -> None:
    ws = sheet(book, "Reconciliation")
    uah = ws.cell(row=2, column=COL["Requested amount"] + 1)
    jpy = ws.cell(row=5, column=COL["Requested amount"] + 1)
    assert uah.data_type == "n" and uah.number_format == "#,##0.00"
    assert jpy.data_type == "n" and jpy.number_format == "#,##0"
    assert ws.cell(row=5, column=COL["Fee amount"] + 1).number_format == "#,##0"


def test_ids_codes_and_timestamps_are_text(book: Path) -> None:
    rows = by_source_row(book)
    assert rows[2][COL["Order ID"]] == "000002"  # leading zeros kept
    assert rows[3][COL["Order ID"]] == "-00123"
    assert rows[2][COL["Status code"]] == "1000"
    assert rows[2][COL["Created at"]] == "2026-12-04 20:00:01"
    assert rows[2][COL["Source row"]] == 2 and rows[9][COL["Attempts"]] == 2


def test_text_cells_are_never_formulas(book: Path) -> None:
    rows = by_source_row(book)
    assert rows[2][COL["Comment"]] == HYPERLINK
    assert rows[3][COL["Comment"]] == AT_SUM
    assert rows[6][COL["Comment"]] == "+380501234567"
    assert rows[7][COL["Comment"]] == "\tcmd|' /C calc'!A0"
    assert rows[9][COL["Comment"]] == "#N/A"
    assert rows[11][COL["Order ID"]] == "=1+1"
    for name in ("Reconciliation", "Exceptions", "Rejected", "Codes"):
        for line in sheet(book, name).iter_rows():
            for cell in line:
                assert cell.data_type in ("s", "n"), (name, cell.coordinate, cell.value)


def test_no_formula_element_outside_the_summary(book: Path) -> None:
    with zipfile.ZipFile(book) as z:
        names = [n for n in z.namelist() if n.startswith("xl/worksheets/sheet")]
        assert len(names) == 5
        formulas = {n: z.read(n).count(b"<f>") for n in names}
    assert formulas.pop("xl/worksheets/sheet1.xml") > 0  # Summary
    assert set(formulas.values()) == {0}


def test_risky_text_is_quote_prefixed(book: Path) -> None:
    ws = sheet(book, "Reconciliation")
    assert ws.cell(row=2, column=COL["Comment"] + 1).quotePrefix
    assert ws.cell(row=3, column=COL["Comment"] + 1).quotePrefix
    assert not ws.cell(row=2, column=COL["Order ID"] + 1).quotePrefix


def test_illegal_xml_characters_replaced(tmp_path: Path) -> None:
    path = tmp_path / "x.xlsx"
    write_workbook(report_from([row(2, comment="bell\x07 and nul\x00 end")]), path)
    assert read_reconciliation(path)[1][COL["Comment"]] == "bell\ufffd and nul\ufffd end"


def test_long_text_cut_with_a_visible_marker(tmp_path: Path) -> None:
    path = tmp_path / "x.xlsx"
    write_workbook(report_from([row(2, comment="x" * 40_000)]), path)
    comment = read_reconciliation(path)[1][COL["Comment"]]
    assert isinstance(comment, str)
    assert len(comment) == MAX_CELL_CHARS
    assert comment.endswith("…[cut: 40000 chars]")
    assert safe_text("short") == "short"


def test_exceptions_are_the_non_captured_rows_with_a_reason(book: Path, report: Report) -> None:
    rows = values(book, "Exceptions")[1:]
    expected = [r for r in report.rows if r.outcome is not Outcome.CAPTURED]
    assert [r[0] for r in rows] == [r.source_row for r in expected]
    assert [r[-1] for r in rows] == [r.reason for r in expected]


def test_fills_on_non_captured_rows_only(book: Path) -> None:
    ws = sheet(book, "Reconciliation")
    for line in ws.iter_rows(min_row=2):
        outcome = Outcome(str(line[COL["Outcome"]].value))
        colours = {c.fill.fgColor.rgb if c.fill.fill_type else None for c in line}
        if outcome is Outcome.CAPTURED:
            assert colours == {None}
        else:  # the whole row, blank cells included
            assert colours == {"00" + EXCEPTION_FILLS[outcome]}, outcome
    assert set(EXCEPTION_FILLS) == set(Outcome) - {Outcome.CAPTURED}
    assert len(set(EXCEPTION_FILLS.values())) == len(EXCEPTION_FILLS)


def test_rejected_and_codes(book: Path, report: Report) -> None:
    assert values(book, "Rejected")[1:] == [
        [j.source_row, j.column, j.value, j.problem] for j in report.rejections
    ]
    assert values(book, "Codes")[1:] == [[c.code, c.meaning, c.count] for c in report.codes]


def column_widths(ws: Worksheet) -> list[float]:
    return [
        float(ws.column_dimensions[get_column_letter(i)].width) for i in range(1, ws.max_column + 1)
    ]


def test_sheet_view_filter_and_print_setup(book: Path) -> None:
    for name in ("Reconciliation", "Exceptions", "Rejected", "Codes"):
        ws = sheet(book, name)
        assert ws.freeze_panes == "A2"
        assert ws.auto_filter.ref == f"A1:{get_column_letter(ws.max_column)}{ws.max_row}"
        assert ws.page_setup.orientation == "landscape"
        assert ws.page_setup.paperSize == int(ws.PAPERSIZE_A4)
        assert ws.sheet_properties.pageSetUpPr is not None
        assert ws.sheet_properties.pageSetUpPr.fitToPage
        assert ws.page_setup.fitToHeight == 0
        assert ws.print_title_rows == "$1:$1"
        assert ws.column_dimensions["B"].width > 8
        assert ws.oddFooter.left.text == "&A"
        assert ws.oddFooter.right.text == "Page &P of &N"


def test_every_list_sheet_prints_fit_to_width(book: Path) -> None:
    for name in ("Reconciliation", "Exceptions", "Rejected", "Codes"):
        assert sheet(book, name).page_setup.fitToWidth == 1


def test_headers_bold_in_the_body_font_shaded_and_centred(book: Path) -> None:
    for name in ("Summary", "Reconciliation", "Exceptions", "Rejected", "Codes"):
        ws = sheet(book, name)
        headers = [
            c
            for line in ws.iter_rows()
            for c in line
            if c.fill.fill_type and c.fill.fgColor.rgb == "00" + workbook._HEADER_FILL
        ]
        assert headers, name
        for cell in headers:
            # A font with no name falls back to a serif face in LibreOffice.
            assert cell.font.b and cell.font.name == "Calibri", (name, cell.coordinate)
            assert cell.alignment.horizontal == "center" and cell.alignment.wrap_text


def test_text_after_a_number_is_indented_and_free_text_wraps(book: Path) -> None:
    ws = sheet(book, "Exceptions")
    headers = [c.value for c in ws[1]]
    line = ws[2]
    # "2" right-aligned beside "000002" left-aligned reads as "2000002" without a gap.
    for name in ("Order ID", "Fee currency"):
        cell = line[headers.index(name)]
        assert cell.alignment.horizontal == "left" and cell.alignment.indent == 1, name
    for name in ("Status description", "Reason"):
        assert line[headers.index(name)].alignment.wrap_text, name
    # After Attempts, a number; row 2's comment is also quote-prefixed hostile text.
    comment = sheet(book, "Reconciliation").cell(2, COL["Comment"] + 1)
    assert comment.alignment.indent == 1 and comment.alignment.wrap_text and comment.quotePrefix
    rejected = sheet(book, "Rejected")
    assert rejected["B2"].alignment.indent == 1
    assert rejected["D2"].alignment.wrap_text


def test_long_text_gets_a_taller_row_with_every_cell_at_the_top(tmp_path: Path) -> None:
    reason = "refused (HTTP 400) 4124: " + "the currency does not match the order " * 4
    report = report_from(
        [
            row(2, outcome=Outcome.FAILED, reason="refused"),
            row(3, outcome=Outcome.FAILED, reason=reason, comment="first\nsecond"),
        ],
        rejections=(Rejection(4, "charge_amount", "1e3", "short"),),
    )
    path = tmp_path / "tall.xlsx"
    write_workbook(report, path)
    ws = sheet(path, "Exceptions")
    reason_col = len(EXCEPTION_HEADERS)
    width = ws.column_dimensions[get_column_letter(reason_col)].width
    assert width <= 60
    assert ws.row_dimensions[2].height is None  # one line: the program's own height
    height = ws.row_dimensions[3].height
    assert height is not None and height >= 2 * 15
    assert ws.cell(3, reason_col).alignment.vertical == "top"
    assert ws.cell(3, reason_col).alignment.wrap_text
    assert ws.cell(3, 1).alignment.vertical == "top"  # the source row beside it
    assert ws.cell(2, 1).alignment.vertical is None
    assert sheet(path, "Rejected").row_dimensions[2].height is None
    # The heights are written into the file, not kept in memory for every row.
    assert write_workbook(report, tmp_path / "again.xlsx") == write_workbook(
        report, tmp_path / "again2.xlsx"
    )


def test_amounts_with_more_decimals_than_the_currency_show_them(tmp_path: Path) -> None:
    # A rejected USD 12.345 must not be shown as 12.35: that hides why it was rejected.
    rows = [
        row(
            2,
            currency="USD",
            requested=Decimal("12.345"),
            captured=Decimal(0),
            difference=None,
            outcome=Outcome.REJECTED,
        ),
        row(3, currency="USD", requested=Decimal("12.300"), captured=Decimal("12.3")),
        row(4, currency="JPY", requested=Decimal("1500"), captured=Decimal("1500")),
    ]
    path = tmp_path / "dec.xlsx"
    write_workbook(report_from(rows), path)
    ws = sheet(path, "Reconciliation")
    requested = COL["Requested amount"] + 1
    assert ws.cell(2, requested).number_format == "#,##0.000"
    assert ws.cell(3, requested).number_format == "#,##0.00"
    assert ws.cell(4, requested).number_format == "#,##0"
    summary = sheet(path, "Summary")
    usd = next(line for line in summary.iter_rows() if line[0].value == "USD")
    # The formula shows what the tool total beside it shows; the rejected 12.345 is not in it.
    assert usd[3].number_format == usd[4].number_format == "#,##0.00"


def test_document_properties(book: Path, report: Report) -> None:
    props = load_workbook(book).properties
    assert props.creator == f"recon {__version__}"
    assert props.title is not None and report.run.input_name in props.title
    assert props.subject is not None and report.run.run_id in props.subject
    assert props.created is not None and props.created.isoformat() == "2026-12-04T20:01:30"


def summary_rows(path: Path) -> list[list[object]]:
    return values(path, "Summary")


def find(rows: list[list[object]], first: object) -> list[object]:
    return next(r for r in rows if r and r[0] == first)


def test_summary_run_evidence(book: Path, report: Report) -> None:
    rows = summary_rows(book)
    run = report.run
    assert find(rows, "Run ID")[1] == run.run_id
    assert find(rows, "Input file")[1] == run.input_name
    assert find(rows, "Input size (bytes)")[1] == run.input_size
    assert find(rows, "Input SHA-256")[1] == run.input_sha256
    assert find(rows, "Rows read")[1] == run.rows_read
    assert find(rows, "Rows sent")[1] == run.rows_sent
    assert find(rows, "Started (UTC)")[1] == run.started_at
    assert find(rows, "Finished (UTC)")[1] == run.finished_at
    assert find(rows, "Tool version")[1] == run.tool_version
    assert find(rows, "Base URL")[1] == run.base_url
    assert find(rows, "POS IDs")[1] == ", ".join(run.pos_ids)
    assert find(rows, "User")[1] == "auditor@box"


def test_summary_formulas_beside_tool_totals(book: Path, report: Report) -> None:
    rows = summary_rows(book)
    header = find(rows, "Currency")
    assert header[1:] == [
        f"{m}{s}"
        for m in ("Orders", "Requested", "Captured", "Difference", "Fees", "Net")
        for s in ("", " (tool total)")
    ]
    for total in report.currencies:
        line = find(rows, total.currency)
        sent = "'Reconciliation'!$N:$N,\"<>rejected\""  # rejected rows carry no money
        by_currency = f"'Reconciliation'!$D:$D,\"{total.currency}\",{sent}"
        assert line[1] == f"=COUNTIFS({by_currency})"
        assert line[5] == f"=SUMIFS('Reconciliation'!$G:$G,{by_currency})"
        assert str(line[11]).startswith("=F") and "-J" in str(line[11])
        tool = [line[2], line[4], line[6], line[8], line[10], line[12]]
        expected = [
            total.orders,
            total.requested,
            total.captured,
            total.difference,
            total.fees,
            total.net,
        ]
        assert [Decimal(str(v)) for v in tool] == expected
    outcomes = find(rows, "Outcome")
    assert outcomes[:3] == ["Outcome", "Rows", "Rows (tool total)"]
    for outcome_total in report.outcomes:
        line = find(rows, str(outcome_total.outcome))
        assert line[1] == f"=COUNTIFS('Reconciliation'!$N:$N,\"{outcome_total.outcome}\")"
        assert line[2] == outcome_total.count


def test_summary_charts(book: Path) -> None:
    with zipfile.ZipFile(book) as z:
        charts = sorted(n for n in z.namelist() if n.startswith("xl/charts/chart"))
        xml = [z.read(n).decode() for n in charts]
    assert len(charts) == 2
    for text in xml:
        assert text.count("<title>") == 3  # the chart's and both axes'
        assert text.count('<delete val="0"/>') == 2  # Excel hides axes openpyxl leaves unset
    assert "Requested and captured" in xml[0] and "Amount" in xml[0]
    assert "Rows per outcome" in xml[1] and 'barDir val="bar"' in xml[1]


def test_summary_charts_sit_below_every_table_side_by_side(book: Path) -> None:
    with zipfile.ZipFile(book) as z:
        drawing = z.read("xl/drawings/drawing1.xml").decode()
    anchors = re.findall(r"<from><col>(\d+)</col>.*?<row>(\d+)</row>", drawing)
    assert len(anchors) == 2
    (col1, row1), (col2, row2) = [(int(c), int(r)) for c, r in anchors]
    last_row = sheet(book, "Summary").max_row
    assert row1 == row2 >= last_row  # zero-based: the first row after a blank one
    widths = column_widths(sheet(book, "Summary"))
    covered = sum(workbook._column_cm(w) for w in widths[col1:col2])
    assert covered >= 15.0  # the first chart (15 cm wide) ends before the second starts


def test_summary_looks(book: Path, report: Report) -> None:
    ws = sheet(book, "Summary")
    cells = {c.value: c for line in ws.iter_rows() for c in line if c.value is not None}
    for title in ("Run evidence", "Totals per currency", "Rows per outcome"):
        assert cells[title].font.b and cells[title].font.sz > 11
        assert not cells[title].fill.fill_type  # a title, not a table header
    # Evidence values all start at the left edge, numbers too.
    for line in ws.iter_rows(min_row=2, max_row=15):
        assert line[1].alignment.horizontal == "left", line[0].value
    size = next(line[1] for line in ws.iter_rows() if line[0].value == "Input size (bytes)")
    assert size.number_format == "#,##0"
    # Header rows whose labels wrap are two lines high.
    header_row = next(line[0].row for line in ws.iter_rows() if line[0].value == "Currency")
    assert ws.row_dimensions[header_row].height == 30
    # Every amount fits its column (no ####).
    widths = column_widths(ws)
    for line in ws.iter_rows(min_row=header_row + 1):
        for cell in line[1:]:
            if isinstance(cell.value, int | float):
                assert len(f"{cell.value:,.2f}") < widths[cell.column - 1], cell.coordinate


def test_splits_past_max_rows_and_formulas_sum_every_part(tmp_path: Path) -> None:
    report = report_from([row(i, currency="UAH") for i in range(2, 12)])  # 10 rows
    path = tmp_path / "split.xlsx"
    write_workbook(report, path, max_rows=4)  # a header and 3 rows per sheet
    names = load_workbook(path).sheetnames
    assert names == [
        "Summary",
        "Reconciliation",
        "Reconciliation (2)",
        "Reconciliation (3)",
        "Reconciliation (4)",
        "Exceptions",
        "Rejected",
        "Codes",
    ]
    for name in names[1:5]:
        assert values(path, name)[0] == CONTRACT_HEADERS
        assert len(values(path, name)) <= 4
    rows = read_reconciliation(path)
    assert rows[0] == CONTRACT_HEADERS
    assert [r[0] for r in rows[1:]] == list(range(2, 12))
    orders = find(summary_rows(path), "UAH")[1]
    assert isinstance(orders, str)
    for part in names[1:5]:
        assert f"COUNTIFS('{part}'!$D:$D,\"UAH\",'{part}'!$N:$N,\"<>rejected\")" in orders
    captured = find(summary_rows(path), "UAH")[5]
    assert isinstance(captured, str) and captured.count("SUMIFS(") == 4


def test_exact_fit_does_not_add_an_empty_part(tmp_path: Path) -> None:
    path = tmp_path / "fit.xlsx"
    write_workbook(report_from([row(i) for i in range(2, 8)]), path, max_rows=4)  # 6 rows
    assert load_workbook(path).sheetnames[1:4] == [
        "Reconciliation",
        "Reconciliation (2)",
        "Exceptions",
    ]


def test_empty_report_still_has_every_sheet(tmp_path: Path) -> None:
    path = tmp_path / "empty.xlsx"
    write_workbook(report_from([]), path)
    assert load_workbook(path).sheetnames == [
        "Summary",
        "Reconciliation",
        "Exceptions",
        "Rejected",
        "Codes",
    ]
    assert read_reconciliation(path) == [CONTRACT_HEADERS]


def test_max_rows_must_leave_room(tmp_path: Path, report: Report) -> None:
    with pytest.raises(ValueError):
        write_workbook(report, tmp_path / "x.xlsx", max_rows=1)


# openpyxl's abandoned sheet streams complain when collected; its temp files go at exit.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_failed_write_leaves_the_old_file(
    tmp_path: Path, report: Report, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "out.xlsx"
    path.write_bytes(b"old")

    class DiskFull(ExcelWriter):
        def save(self) -> None:
            raise OSError("disk full")

    monkeypatch.setattr(workbook, "ExcelWriter", DiskFull)
    with pytest.raises(OSError, match="disk full"):
        write_workbook(report, path)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.xlsx"]
    gc.collect()  # collect the abandoned streams here, under this test's warning filter


def test_run_evidence_text_is_never_a_formula(tmp_path: Path) -> None:
    run = replace(sample_report().run, input_name=HYPERLINK, user="-1+1", host="x")
    path = tmp_path / "x.xlsx"
    write_workbook(report_from([row(2)], run=run), path)
    rows = summary_rows(path)
    assert find(rows, "Input file")[1] == HYPERLINK
    assert find(rows, "User")[1] == "-1+1@x"
    ws = sheet(path, "Summary")
    assert all(c.data_type != "f" for line in ws.iter_rows(max_row=16) for c in line)
