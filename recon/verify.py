"""Tamper evidence: is this workbook the one the journal wrote, and if not, where does it differ?"""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from openpyxl import load_workbook
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException

from recon.errors import InputError
from recon.journal import Journal
from recon.reconcile import build_report
from recon.workbook import write_workbook

MAX_DIFFERENCES = 50  # enough to show the pattern of a change; the count says the rest


@dataclass(frozen=True)
class Difference:
    sheet: str
    cell: str
    expected: object
    found: object


@dataclass(frozen=True)
class Verdict:
    matches: bool
    run_id: str
    message: str
    differences: tuple[Difference, ...] = ()
    total_differences: int = 0


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sheets(path: Path) -> dict[str, list[tuple[object, ...]]]:
    try:
        wb = load_workbook(path, read_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as exc:
        raise InputError(f"{path} is not a workbook recon can read: {exc}") from exc
    try:
        return {ws.title: [tuple(r) for r in ws.iter_rows(values_only=True)] for ws in wb}
    finally:
        wb.close()


def run_id_in(sheets: dict[str, list[tuple[object, ...]]]) -> str:
    """The run id the Summary sheet states (the row labelled "Run ID")."""
    for row in sheets.get("Summary", [])[:10]:
        if row and row[0] == "Run ID" and len(row) > 1 and row[1]:
            return str(row[1])
    return ""


def compare(
    expected: dict[str, list[tuple[object, ...]]], found: dict[str, list[tuple[object, ...]]]
) -> list[Difference]:
    """Every cell whose value differs, sheet by sheet, in reading order."""
    differences: list[Difference] = []
    for name in list(expected) + [n for n in found if n not in expected]:
        if name not in found or name not in expected:
            differences.append(Difference(name, "(sheet)", name in expected, name in found))
            continue
        a, b = expected[name], found[name]
        for r in range(max(len(a), len(b))):
            row_a = a[r] if r < len(a) else ()
            row_b = b[r] if r < len(b) else ()
            for c in range(max(len(row_a), len(row_b))):
                va = row_a[c] if c < len(row_a) else None
                vb = row_b[c] if c < len(row_b) else None
                if va != vb:
                    differences.append(
                        Difference(name, f"{get_column_letter(c + 1)}{r + 1}", va, vb)
                    )
    return differences


def verify_workbook(path: Path, journal: Journal) -> Verdict:
    digest = sha256_of(path)
    written = journal.workbooks(digest)
    if written:
        run_id = written[-1][0]
        return Verdict(True, run_id, f"{path} is the workbook the journal wrote for run {run_id}")
    found = _sheets(path)
    run_id = run_id_in(found)
    if not run_id:
        return Verdict(False, "", f"{path} was not written by this journal and names no run")
    run = journal.run_info(run_id)  # JournalError when the journal has no such run
    report = build_report(run, journal.records(run_id), journal.rejections(run_id))
    with tempfile.TemporaryDirectory() as tmp:
        again = Path(tmp) / "expected.xlsx"
        write_workbook(report, again)
        expected = _sheets(again)
    differences = compare(expected, found)
    if not differences:
        return Verdict(
            False, run_id,
            f"{path}: the cells match run {run_id} as the journal holds it, but the file is not "
            "one the journal wrote (re-saved by another program?)",
        )  # fmt: skip
    return Verdict(
        False, run_id,
        f"{path} differs from run {run_id} as the journal holds it in {len(differences)} cell(s)",
        tuple(differences[:MAX_DIFFERENCES]), len(differences),
    )  # fmt: skip
