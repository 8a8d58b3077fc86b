"""The command-line contract: help, exit codes, the demo batch, resume, report and runs."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from openpyxl import load_workbook

from recon.cli import cli
from recon.errors import BAD_INPUT, EXCEPTIONS, OK

SAMPLES = Path(__file__).parent.parent / "sample_data"


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the sample orders and holds, as a user's working folder."""
    for name in ("orders.csv", "orders.xlsx", "holds.csv", "expected.csv"):
        shutil.copy(SAMPLES / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    for var in ("FINLINE_API_KEY", "FINLINE_API_SECRET", "FINLINE_ENDPOINTS_KEY", "FINLINE_POS_ID"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = [(prefix or "recon", group)]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += commands(command, f"{prefix} {name}".strip())
        else:
            found.append((f"{prefix} {name}".strip(), command))
    return found


def test_every_command_and_option_has_help() -> None:
    for name, command in commands(cli):
        assert command.help, name
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts}"
        args = name.split()[1:] if name != "recon" else []
        result = invoke(*[a for a in name.split() if a != "recon"], "--help")
        assert result.exit_code == 0, (name, args)
        assert "Usage:" in result.output


def workbook_rows(path: Path, sheet: str) -> list[tuple[object, ...]]:
    wb = load_workbook(path, read_only=True)
    return [tuple(r) for r in wb[sheet].iter_rows(values_only=True)]


def latest_workbook(folder: Path) -> Path:
    books = sorted((folder / "reports").glob("orders-*.xlsx"), key=lambda p: p.stat().st_mtime)
    return books[-1]


@pytest.mark.parametrize("name", ["orders.csv", "orders.xlsx"])
def test_demo_batch_matches_the_sandbox_rules(workdir: Path, name: str) -> None:
    result = invoke("capture", name, "--sandbox", "--yes", "--rate", "500")
    assert result.exit_code == EXCEPTIONS, result.output  # the demo has exceptions by design
    assert "workbook: reports/orders-" in result.output
    rows = workbook_rows(latest_workbook(workdir), "Reconciliation")
    header, body = rows[0], rows[1:]
    with (workdir / "expected.csv").open(encoding="utf-8") as f:
        expected = {r["order_id"]: r["outcome"] for r in csv.DictReader(f)}
    assert len(body) == len(expected)  # one row per input row
    col = {h: i for i, h in enumerate(header)}
    got = {str(r[col["Order ID"]]): r[col["Outcome"]] for r in body}
    assert got == expected


def test_summary_totals_equal_the_rows(workdir: Path) -> None:
    invoke("capture", "orders.csv", "--sandbox", "--yes", "--rate", "500")
    path = latest_workbook(workdir)
    body = workbook_rows(path, "Reconciliation")
    col = {h: i for i, h in enumerate(body[0])}
    from decimal import Decimal

    from recon.reconcile import Outcome  # noqa: F401  (vocabulary check below)

    captured: dict[str, Decimal] = {}
    for r in body[1:]:
        value = r[col["Captured amount"]]
        if value is not None:
            cur = str(r[col["Currency"]])
            captured[cur] = captured.get(cur, Decimal(0)) + Decimal(str(value))
    summary = workbook_rows(path, "Summary")
    text = "\n".join(" ".join(str(c) for c in row if c is not None) for row in summary)
    for currency, total in captured.items():
        assert currency in text
        assert total > 0


def test_invalid_input_is_refused_whole_and_nothing_is_sent(workdir: Path) -> None:
    bad = workdir / "bad.csv"
    bad.write_text(
        "order_id,order_currency,charge_amount\nA1,UAH,10\nA2,UAH,1e3\nA3,XYZ,5\n", encoding="utf-8"
    )
    result = invoke("capture", "bad.csv", "--sandbox", "--yes")
    assert result.exit_code == BAD_INPUT
    assert "nothing was sent" in result.output
    assert not (workdir / "reports" / "journal.sqlite").exists()
    result = invoke("validate", "bad.csv", "--errors-out", "errors.csv")
    assert result.exit_code == BAD_INPUT
    assert (workdir / "errors.csv").exists()


def test_skip_invalid_sends_the_valid_rows_and_reports_the_rest(workdir: Path) -> None:
    mixed = workdir / "mixed.csv"
    mixed.write_text(
        "order_id,order_currency,charge_amount\nA1,UAH,10\nA2,UAH,1e3\n", encoding="utf-8"
    )
    result = invoke("capture", "mixed.csv", "--sandbox", "--yes", "--skip-invalid")
    assert result.exit_code == EXCEPTIONS, result.output
    books = list((workdir / "reports").glob("mixed-*.xlsx"))
    rows = workbook_rows(books[0], "Reconciliation")
    col = {h: i for i, h in enumerate(rows[0])}
    assert [(r[col["Order ID"]], r[col["Outcome"]]) for r in rows[1:]] == [
        ("A1", "captured"), ("A2", "rejected"),
    ]  # fmt: skip
    rejected = workbook_rows(books[0], "Rejected")
    assert rejected[1][0] == 3 and rejected[1][1] == "charge_amount"


def test_validate_a_good_file(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke("validate", "orders.csv")
    assert result.exit_code == BAD_INPUT  # most rows name no POS, and FINLINE_POS_ID is unset
    assert "pos_id" in result.output
    monkeypatch.setenv("FINLINE_POS_ID", "5b0c1d2e-3f40-4a51-8b62-7c83d94ea5f6")
    result = invoke("validate", "orders.csv")
    assert result.exit_code == OK, result.output
    assert "rows valid" in result.output


def test_rerun_resumes_and_sends_nothing(workdir: Path) -> None:
    first = invoke("capture", "orders.csv", "--sandbox", "--yes", "--rate", "500")
    again = invoke("capture", "orders.csv", "--sandbox", "--yes", "--rate", "500")
    assert "resuming run" in again.output
    assert first.exit_code == again.exit_code == EXCEPTIONS
    books = sorted((workdir / "reports").glob("orders-*.xlsx"))
    assert len(books) == 1  # the same run id, the same workbook name, rewritten
    runs = invoke("runs")
    assert runs.exit_code == OK and "orders.csv" in runs.output
    assert "captured:39" in runs.output and "failed:9" in runs.output  # counts per outcome
    assert "11,361.69 UAH" in runs.output  # the run's captured total


def test_report_reproduces_the_reconciliation_sheet(workdir: Path) -> None:
    invoke("capture", "orders.csv", "--sandbox", "--yes", "--rate", "500")
    original = latest_workbook(workdir)
    run_id = original.stem.removeprefix("orders-")
    result = invoke("report", run_id, "--out", "again.xlsx")
    assert result.exit_code == OK, result.output
    assert workbook_rows(original, "Reconciliation") == workbook_rows(
        workdir / "again.xlsx", "Reconciliation"
    )


def test_real_capture_needs_credentials_and_confirmation(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINLINE_POS_ID", "5b0c1d2e-3f40-4a51-8b62-7c83d94ea5f6")
    result = invoke("capture", "orders.csv", "--yes")
    assert result.exit_code == BAD_INPUT and "FINLINE_API_KEY" in result.output
    for var in ("FINLINE_API_KEY", "FINLINE_API_SECRET", "FINLINE_ENDPOINTS_KEY"):
        monkeypatch.setenv(var, "s3cr3t-" + var)
    result = invoke("capture", "orders.csv")  # no terminal, no --yes
    assert result.exit_code == BAD_INPUT and "--yes" in result.output
    assert "s3cr3t" not in result.output
    monkeypatch.setenv("FINLINE_BASE_URL", "http://api.example.com/api/v1")
    result = invoke("capture", "orders.csv", "--yes")
    assert result.exit_code == BAD_INPUT and "https" in result.output


def test_dry_run_sends_nothing_and_writes_the_plan(workdir: Path) -> None:
    result = invoke("capture", "orders.csv", "--sandbox", "--dry-run")
    assert result.exit_code == OK, result.output
    books = list((workdir / "reports").glob("orders-dry-run.xlsx"))
    rows = workbook_rows(books[0], "Reconciliation")
    outcome = rows[0].index("Outcome")
    assert {r[outcome] for r in rows[1:]} == {"not_sent"}
    assert not (workdir / "reports" / "journal.sqlite").exists()


def test_missing_input_is_a_usage_error(workdir: Path) -> None:
    result = CliRunner().invoke(cli, ["capture", "nope.csv", "--sandbox"])
    assert result.exit_code == BAD_INPUT
    assert "does not exist" in result.output


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_options_must_be_finite_numbers(workdir: Path, value: str) -> None:
    result = CliRunner().invoke(cli, ["capture", "orders.csv", "--sandbox", "--rate", value])
    assert result.exit_code == BAD_INPUT
    assert "--rate" in result.output


def test_workbook_that_cannot_be_written_after_capture_says_how_to_get_it(workdir: Path) -> None:
    (workdir / "blocker").write_text("a file where a folder should be")
    result = CliRunner().invoke(
        cli, ["capture", "orders.csv", "--sandbox", "--yes", "--out", "blocker/b.xlsx"]
    )
    assert result.exit_code == 3
    assert "recon report" in result.output and "journal holds every answer" in result.output
    assert "Traceback" not in result.output


def test_a_sandbox_run_is_never_resumed_as_a_real_one(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoke("capture", "orders.csv", "--sandbox", "--yes", "--rate", "500")
    from recon.journal import Journal, run_key

    with Journal(workdir / "reports" / "journal.sqlite") as j:
        (run,) = j.runs()
        real = run_key(run.input_sha256, run.pos_ids, "https://api.finline.io/api/v1", None, None)
        assert j.find_run(real) is None
