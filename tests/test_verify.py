"""`recon verify`: the workbook the journal wrote passes; one changed cell fails, named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from recon.cli import cli
from recon.errors import BAD_INPUT, EXCEPTIONS, OK

SAMPLES = Path(__file__).parent.parent / "sample_data"


@pytest.fixture
def book(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("orders.csv", "holds.csv"):
        shutil.copy(SAMPLES / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli, ["capture", "orders.csv", "--sandbox", "--yes", "--rate", "500", "--out", "b.xlsx"]
    )
    assert result.exit_code == EXCEPTIONS, result.output
    return tmp_path / "b.xlsx"


def test_untouched_workbook_passes(book: Path) -> None:
    result = CliRunner().invoke(cli, ["verify", str(book)])
    assert result.exit_code == OK, result.output
    assert "OK" in result.output and "run" in result.output


def test_one_changed_cell_fails_and_is_named(book: Path) -> None:
    wb = load_workbook(book)
    ws = wb["Reconciliation"]
    header = [c.value for c in ws[1]]
    column = header.index("Captured amount") + 1
    ws.cell(row=5, column=column).value = 999999
    wb.save(book)
    result = CliRunner().invoke(cli, ["verify", str(book)])
    assert result.exit_code == EXCEPTIONS
    assert "NOT VERIFIED" in result.output
    assert "1 cell(s)" in result.output
    assert f"Reconciliation │ {ws.cell(row=5, column=column).coordinate}" in result.output
    assert "999999" in result.output


def test_a_file_that_is_not_a_workbook(book: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake.xlsx"
    fake.write_bytes(b"not a zip")
    result = CliRunner().invoke(cli, ["verify", str(fake)])
    assert result.exit_code == BAD_INPUT
    assert "not a workbook" in result.output


def test_a_csv_named_on_the_command_line(book: Path) -> None:
    result = CliRunner().invoke(cli, ["verify", "orders.csv"])
    assert result.exit_code == BAD_INPUT
    assert "not a workbook" in result.output and "Traceback" not in result.output
