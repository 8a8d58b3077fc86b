"""The workbook as a spreadsheet program sees it: LibreOffice recalculates every Summary formula.

openpyxl writes formulas without values, so only a real spreadsheet can say whether they tie out to
the tool's Decimal totals beside them, and whether hostile text stays text. CI installs LibreOffice
(.ci/run), so there this test fails rather than skips when `soffice` is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook
from openpyxl.worksheet.worksheet import Worksheet
from workbook_fixtures import AT_SUM, HYPERLINK, sample_report, synthetic_report

from recon.reconcile import Outcome, Report
from recon.workbook import RECONCILIATION_HEADERS, write_workbook

SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")


@pytest.fixture(autouse=True)
def need_soffice() -> None:
    if SOFFICE is None:
        if os.environ.get("CI"):
            pytest.fail("LibreOffice (soffice) is required in CI for the workbook formula test")
        pytest.skip("LibreOffice (soffice) not installed")


def recalculated(path: Path, tmp_path: Path) -> Path:
    """Open `path` in LibreOffice and save it again: every formula gets its value."""
    assert SOFFICE is not None
    out = tmp_path / "converted"
    profile = tmp_path / "lo-profile"  # a private profile: parallel runs must not share one
    result = subprocess.run(
        [
            SOFFICE,
            f"-env:UserInstallation={profile.as_uri()}",
            "--headless",
            "--norestore",
            "--convert-to",
            "xlsx",
            "--outdir",
            str(out),
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    converted = out / path.name
    assert converted.exists(), f"soffice failed ({result.returncode}): {result.stderr}"
    return converted


def summary(path: Path, data_only: bool) -> Worksheet:
    ws = load_workbook(path, data_only=data_only)["Summary"]
    assert isinstance(ws, Worksheet)
    return ws


def as_decimal(value: object) -> Decimal:
    assert isinstance(value, int | float), value
    return round(Decimal(repr(value)), 6)  # float sums carry noise far below a minor unit


def check_formulas_tie_out(written: Path, converted: Path) -> int:
    """Every formula's value equals the tool total in the next column; returns how many."""
    formulas = summary(written, data_only=False)
    values = summary(converted, data_only=True)
    checked = 0
    for line in formulas.iter_rows():
        for cell in line:
            if cell.data_type != "f":
                continue
            assert cell.row is not None and cell.column is not None
            value = values.cell(row=cell.row, column=cell.column).value
            tool = values.cell(row=cell.row, column=cell.column + 1).value
            assert as_decimal(value) == as_decimal(tool), (cell.coordinate, cell.value)
            checked += 1
    return checked


def test_summary_formulas_equal_the_tool_totals(tmp_path: Path) -> None:
    report = sample_report()
    path = tmp_path / "in" / "sample.xlsx"
    write_workbook(report, path)
    converted = recalculated(path, tmp_path)
    checked = check_formulas_tie_out(path, converted)
    # orders, requested, captured, difference, fees, net per currency; one per outcome;
    # rows, requested, captured per (outcome, currency)
    pairs = len({(str(r.outcome), r.currency) for r in report.rows})
    assert checked == 6 * len(report.currencies) + len(report.outcomes) + 3 * pairs


def test_a_total_that_does_not_tie_out_is_caught(tmp_path: Path) -> None:
    report = sample_report()
    first = report.currencies[0]
    wrong = replace(first, captured=first.captured + Decimal("0.01"))
    path = tmp_path / "in" / "wrong.xlsx"
    write_workbook(replace(report, currencies=(wrong, *report.currencies[1:])), path)
    with pytest.raises(AssertionError):
        check_formulas_tie_out(path, recalculated(path, tmp_path))


def test_formulas_sum_every_part_of_a_split_sheet(tmp_path: Path) -> None:
    report: Report = synthetic_report(2_500)
    path = tmp_path / "in" / "split.xlsx"
    write_workbook(report, path, max_rows=1_000)
    converted = recalculated(path, tmp_path)
    names = load_workbook(converted, read_only=True).sheetnames
    assert names[1:4] == ["Reconciliation", "Reconciliation (2)", "Reconciliation (3)"]
    assert check_formulas_tie_out(path, converted) > 0
    rows = [list(r) for r in summary(converted, data_only=True).iter_rows(values_only=True)]
    start = next(i for i, r in enumerate(rows) if r[0] == "Currency") + 1
    end = next(i for i in range(start, len(rows)) if rows[i][0] is None)
    sent = [r for r in report.rows if r.outcome is not Outcome.REJECTED]
    assert sum(as_decimal(r[1]) for r in rows[start:end]) == len(sent)


def test_hostile_text_stays_text(tmp_path: Path) -> None:
    path = tmp_path / "in" / "sample.xlsx"
    write_workbook(sample_report(), path)
    converted = recalculated(path, tmp_path)
    for data_only in (True, False):
        ws = load_workbook(converted, data_only=data_only)["Reconciliation"]
        assert isinstance(ws, Worksheet)
        comment = RECONCILIATION_HEADERS.index("Comment") + 1
        order_id = RECONCILIATION_HEADERS.index("Order ID") + 1
        assert ws.cell(row=2, column=comment).value == HYPERLINK
        assert ws.cell(row=2, column=comment).data_type == "s"
        assert ws.cell(row=3, column=comment).value == AT_SUM
        assert ws.cell(row=3, column=comment).data_type == "s"
        assert ws.cell(row=3, column=order_id).value == "-00123"
        assert ws.cell(row=11, column=order_id).value == "=1+1"
        assert ws.cell(row=9, column=comment).value == "#N/A"
        assert ws.cell(row=9, column=comment).data_type == "s"


def test_a_real_batch_ties_out_and_keeps_hostile_comments_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: a sandbox batch through the command, recalculated by LibreOffice."""
    import csv

    from click.testing import CliRunner

    from recon.cli import cli

    samples = Path(__file__).parent.parent / "sample_data"
    with (samples / "orders.csv").open(encoding="utf-8") as f:
        rows = list(csv.reader(f))
    rows[1][3] = HYPERLINK
    rows[2][3] = AT_SUM
    with (tmp_path / "orders.csv").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    shutil.copy(samples / "holds.csv", tmp_path / "holds.csv")
    monkeypatch.chdir(tmp_path)
    args = ["capture", "orders.csv", "--sandbox", "--yes", "--rate", "500", "--out", "in/b.xlsx"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    path = tmp_path / "in" / "b.xlsx"
    converted = recalculated(path, tmp_path)
    assert check_formulas_tie_out(path, converted) > 20
    ws = load_workbook(converted, data_only=True)["Reconciliation"]
    assert isinstance(ws, Worksheet)
    comment = RECONCILIATION_HEADERS.index("Comment") + 1
    assert ws.cell(row=2, column=comment).value == HYPERLINK
    assert ws.cell(row=3, column=comment).value == AT_SUM
