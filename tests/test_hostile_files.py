"""Hostile input files through the command: exit 2, a clear message, fast, small, nothing sent."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recon.cli import cli

DATA = Path(__file__).parent / "data"

# Runs the command in a child and reports the child's own peak memory.
MEASURE = """
import json, resource, subprocess, sys, time
start = time.monotonic()
done = subprocess.run(sys.argv[1:], capture_output=True)
print(json.dumps({
    "rc": done.returncode, "seconds": time.monotonic() - start,
    "maxrss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    "out": (done.stdout + done.stderr).decode("utf-8", "replace")[-2000:],
}))
"""


def hundred_mb_line(folder: Path) -> Path:
    path = folder / "long_line.csv"
    with path.open("wb") as f:
        f.write(b"order_id,order_currency,charge_amount\n")
        f.write(b"A1,UAH," + b"9" * 100_000_000 + b"\n")
    return path


def million_columns(folder: Path) -> Path:
    path = folder / "wide.csv"
    path.write_bytes(b"order_id,order_currency," + b"x," * 1_000_000 + b"\nA1,UAH\n")
    return path


CASES = {
    "zip bomb (size)": lambda folder: shutil.copy(DATA / "excel_size_bomb.xlsx", folder),
    "zip bomb (ratio)": lambda folder: shutil.copy(DATA / "excel_ratio_bomb.xlsx", folder),
    "entity declarations": lambda folder: shutil.copy(DATA / "excel_doctype.xlsx", folder),
    "100 MB line": hundred_mb_line,
    "a million columns": million_columns,
    "not a zip": lambda folder: shutil.copy(DATA / "not_zip.xlsx", folder),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_file_is_refused_fast_and_small_and_nothing_is_sent(
    tmp_path: Path, case: str
) -> None:
    path = Path(CASES[case](tmp_path))
    command = [sys.executable, "-m", "recon", "capture", str(path), "--sandbox", "--yes"]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *command], cwd=tmp_path, capture_output=True, timeout=60
    )
    result = json.loads(done.stdout)
    assert result["rc"] == 2, result["out"]
    assert "Error:" in result["out"] and "Traceback" not in result["out"]
    assert path.name in result["out"]  # the message names the file
    assert result["seconds"] < 10 and time.monotonic() - started < 20
    assert result["maxrss_mb"] < 500
    assert not (tmp_path / "reports" / "journal.sqlite").exists()  # nothing planned, nothing sent


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=400))
def test_validate_never_ends_in_a_traceback(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "any.csv"
    path.write_bytes(data)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.output.strip()  # a message, always


BAD_CORPUS = [
    "amounts_bad.csv", "ambiguous.csv", "ambiguous_settled.csv", "ambiguous_mixed.csv",
    "duplicates.csv", "invalid_fields.csv", "ragged_row.csv", "missing_column.csv", "empty.csv",
    "header_only.csv", "garbage.csv", "not_zip.xlsx", "huge_cell.csv", "huge_quoted_cell.csv",
    "excel_doctype.xlsx", "excel_ratio_bomb.xlsx", "excel_size_bomb.xlsx",
]  # fmt: skip


@pytest.mark.parametrize("name", BAD_CORPUS)
def test_every_bad_corpus_file_is_refused_whole_and_nothing_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    shutil.copy(DATA / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["capture", name, "--sandbox", "--yes"])
    assert result.exit_code == 2, result.output
    assert "Error:" in result.output
    assert not (tmp_path / "reports").exists()  # no journal, no run, no request
