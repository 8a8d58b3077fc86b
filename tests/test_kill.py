"""Kill -9 at random moments, re-run until done: no order captured twice, none lost."""

from __future__ import annotations

import csv
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from openpyxl import load_workbook

from recon.sandbox.app import SANDBOX_POS_ID
from recon.sandbox.process import SandboxServer

ORDERS = 500
# 10 % of capture requests meet a fault; `slow` commits after the client's 1 s timeout.
FAULTS = (
    "drop_after_commit=0.02,error500_after_commit=0.02,error503_before=0.01,"
    "slow=0.02:1.5,not_json=0.01,rate429=0.01:1,pending=0.01:2"
)


def attempts_so_far(journal: Path) -> int:
    if not journal.exists():
        return 0
    with sqlite3.connect(journal) as db:
        return int(db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0])


def write_orders(path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["order_id", "order_currency", "charge_amount", "pos_id"])
        for i in range(ORDERS):
            w.writerow([f"K-{i:04d}", "UAH", "" if i % 5 == 0 else f"{10 + i % 90}.{i % 100:02d}",
                        SANDBOX_POS_ID])  # fmt: skip


@pytest.mark.slow
def test_kill_9_at_random_moments_never_captures_twice(tmp_path: Path) -> None:
    orders = tmp_path / "orders.csv"
    write_orders(orders)
    journal = tmp_path / "journal.sqlite"
    rng = random.Random(20261204)
    command = [
        sys.executable, "-m", "recon", "capture", str(orders), "--yes", "--journal", str(journal),
        "--rate", "60", "--concurrency", "16", "--timeout", "1", "--settle-timeout", "5",
        "--out", str(tmp_path / "book.xlsx"),
    ]  # fmt: skip
    args = ["--orders", str(orders), "--faults", FAULTS, "--allow-repeat", "--seed", "7"]
    with SandboxServer(*args, log=tmp_path / "server.log") as server:
        kills, landed, seen = 0, 0, 0
        for _ in range(5):
            proc = subprocess.Popen(
                command, env=server.env(), cwd=tmp_path,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            # start-up takes about a second; then at most ~1.5 s of sending (90 of 500 orders)
            time.sleep(rng.uniform(1.0, 2.5))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
            now = attempts_so_far(journal)
            landed += now > seen  # this run had sent requests when it was killed
            seen = now
        assert kills == 5, "the batch finished before it could be killed 5 times"
        assert landed >= 4, "most kills must land while requests are going out"
        for _ in range(5):
            done = subprocess.run(
                command, env=server.env(), cwd=tmp_path, capture_output=True, timeout=300
            )
            if done.returncode in (0, 1):
                break
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        captures = server.stats()["captures"]
    assert len(captures) == ORDERS  # every capturable order captured
    twice = {order: n for order, n in captures.items() if n != 1}
    assert twice == {}
    wb = load_workbook(tmp_path / "book.xlsx", read_only=True)
    rows = list(wb["Reconciliation"].iter_rows(values_only=True))
    outcome = rows[0].index("Outcome")
    assert len(rows) - 1 == ORDERS
    assert {r[outcome] for r in rows[1:]} == {"captured"}  # the workbook agrees with the ledger


@pytest.mark.slow
def test_ctrl_c_finishes_in_flight_writes_the_workbook_and_resumes(tmp_path: Path) -> None:
    orders = tmp_path / "orders.csv"
    write_orders(orders)
    command = [
        sys.executable, "-m", "recon", "capture", str(orders), "--yes",
        "--journal", str(tmp_path / "journal.sqlite"), "--rate", "40", "--concurrency", "8",
        "--out", str(tmp_path / "book.xlsx"),
    ]  # fmt: skip
    args = ["--orders", str(orders), "--latency-ms", "300", "--allow-repeat"]
    with SandboxServer(*args) as server:
        proc = subprocess.Popen(
            command, env=server.env(), cwd=tmp_path,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        time.sleep(3.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 3, err.decode()[-2000:]
        assert b"interrupted" in err
        wb = load_workbook(tmp_path / "book.xlsx", read_only=True)
        rows = list(wb["Reconciliation"].iter_rows(values_only=True))
        outcome = rows[0].index("Outcome")
        seen = {r[outcome] for r in rows[1:]}
        assert len(rows) - 1 == ORDERS and seen == {"captured", "not_sent"}
        captured_before = sum(1 for r in rows[1:] if r[outcome] == "captured")
        # every request that went out was answered and recorded before the exit
        assert captured_before == sum(server.stats()["captures"].values())
        done = subprocess.run(command, env=server.env(), cwd=tmp_path, capture_output=True)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        assert b"resuming run" in done.stderr
        captures = server.stats()["captures"]
    assert set(captures.values()) == {1}


@pytest.mark.slow
def test_resume_finishes_a_run_whose_input_file_has_changed(tmp_path: Path) -> None:
    orders = tmp_path / "orders.csv"
    write_orders(orders)
    journal = tmp_path / "journal.sqlite"
    command = [
        sys.executable, "-m", "recon", "capture", str(orders), "--yes", "--journal", str(journal),
        "--rate", "60", "--out", str(tmp_path / "first.xlsx"),
    ]  # fmt: skip
    args = ["--orders", str(orders), "--latency-ms", "200", "--allow-repeat"]
    with SandboxServer(*args) as server:
        proc = subprocess.Popen(
            command, env=server.env(), cwd=tmp_path,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(2.5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 3
        with orders.open("a", encoding="utf-8") as f:
            f.write(f"LATE-1,UAH,5.00,{SANDBOX_POS_ID}\n")  # the file changes: capture would
        with sqlite3.connect(journal) as db:  # start a new run; resume finishes the old one
            (run_id,) = db.execute("SELECT run_id FROM runs").fetchone()
        resume = [sys.executable, "-m", "recon", "resume", run_id, "--journal", str(journal)]
        wrong = subprocess.run(
            [*resume, "--yes"], env={**server.env(), "FINLINE_BASE_URL": "https://x.example/v1"},
            cwd=tmp_path, capture_output=True,
        )  # fmt: skip
        assert wrong.returncode == 2 and b"was made against" in wrong.stderr
        done = subprocess.run(
            [*resume, "--yes", "--rate", "200", "--out", str(tmp_path / "done.xlsx")],
            env=server.env(), cwd=tmp_path, capture_output=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        captures = server.stats()["captures"]
    assert {k for k, n in captures.items() if n} == {f"K-{i:04d}" for i in range(ORDERS)}
    assert set(v for k, v in captures.items() if k.startswith("K-")) == {1}
    wb = load_workbook(tmp_path / "done.xlsx", read_only=True)
    rows = list(wb["Reconciliation"].iter_rows(values_only=True))
    assert len(rows) - 1 == ORDERS and {r[rows[0].index("Outcome")] for r in rows[1:]} == {
        "captured"
    }
