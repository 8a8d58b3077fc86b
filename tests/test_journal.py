"""The journal: states committed before the step, resume identity, safety of the file itself."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import order

from recon.api import Operation
from recon.errors import JournalError
from recon.journal import Journal, Settlement, State, run_key
from recon.schema import Batch, Order, Rejection


def plan(journal: Journal, orders: list[Order], sha: str = "a" * 64, **kw: object) -> str:
    batch = Batch(tuple(orders), tuple(kw.pop("rejected", ())), tuple(kw.pop("rejections", ())))  # type: ignore[arg-type]
    return journal.create_run(
        batch, input_name="in.csv", input_size=10, input_sha256=sha, base_url="http://x",
        rate=10, user="u", key=str(kw.pop("key", "")),
    )  # fmt: skip


def test_journal_file_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        plan(j, [order("A")])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_damaged_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        plan(j, [order(f"O{i}") for i in range(500)])
    data = bytearray(path.read_bytes())
    data[4096 : 4096 + 200] = b"\xff" * 200  # smash a page in the middle
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match="integrity|cannot be used"):
        Journal(path)


def test_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError):
        Journal(path)


def test_orders_are_planned_in_input_order_with_rejected_rows(journal: Journal) -> None:
    good = [order("A", row=2), order("C", row=4)]
    bad = Order(3, "B", "", "XXX", None, amount_text="1e3")
    run_id = plan(
        journal, good, rejected=[bad], rejections=[Rejection(3, "charge_amount", "1e3", "no")]
    )
    records = journal.records(run_id)
    assert [(r.order.order_id, r.state) for r in records] == [
        ("A", State.PLANNED), ("B", State.REJECTED), ("C", State.PLANNED),
    ]  # fmt: skip
    assert journal.rejections(run_id) == [Rejection(3, "charge_amount", "1e3", "no")]
    assert records[0].order.amount == Decimal(100)


def test_a_run_is_found_by_input_bytes_sheet_decimal_pos_and_endpoint(journal: Journal) -> None:
    pos = (order("A").pos_id,)
    key = run_key("b" * 64, pos, "http://x", "Mon", None)
    run_id = plan(journal, [order("A")], sha="b" * 64, key=key)
    assert journal.find_run(key) == run_id
    assert (
        journal.find_run(run_key("b" * 64, (pos[0].upper(),), "http://x/", "Mon", None)) == run_id
    )
    for other in (
        run_key("c" * 64, pos, "http://x", "Mon", None),  # other bytes
        run_key("b" * 64, ("other-pos",), "http://x", "Mon", None),  # other POS
        run_key("b" * 64, pos, "https://api.finline.io/api/v1", "Mon", None),  # real vs sandbox
        run_key("b" * 64, pos, "http://x", "Tue", None),  # another sheet of the workbook
        run_key("b" * 64, pos, "http://x", "Mon", ","),  # read with another decimal separator
    ):
        assert journal.find_run(other) is None


def test_sending_is_committed_before_the_request_with_its_deadline(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        run_id = plan(j, [order("A")])
        attempt = j.mark_sending(run_id, 0, order("A"), timeout=30)
        assert isinstance(attempt, int) and attempt
        # another connection (another process) already sees it: it was committed
        other = sqlite3.connect(path)
        state = other.execute("SELECT state FROM orders").fetchone()[0]
        deadline = other.execute("SELECT deadline FROM attempts").fetchone()[0]
        other.close()
        assert state == "sending"
        assert deadline == j.last_deadline(run_id, 0)


def test_an_order_another_run_may_have_captured_is_never_sent(journal: Journal) -> None:
    first = plan(journal, [order("A"), order("B")], sha="1" * 64)
    journal.mark_sending(first, 0, order("A"), timeout=1)  # in flight in run 1
    second = plan(journal, [order("A"), order("B")], sha="2" * 64)
    states = {r.order.order_id: r.state for r in journal.records(second)}
    assert states == {"A": State.DUPLICATE, "B": State.PLANNED}
    # and at the moment of sending too, not only at planning
    journal.mark_sending(first, 1, order("B"), timeout=1)
    assert journal.mark_sending(second, 1, order("B"), timeout=1) is State.DUPLICATE
    assert journal.records(second)[1].state is State.DUPLICATE


def test_the_same_pos_in_another_case_is_the_same_pos(journal: Journal) -> None:
    first = plan(journal, [order("A")], sha="1" * 64)
    journal.mark_sending(first, 0, order("A"), timeout=1)
    shouted = Order(2, "A", order("A").pos_id.upper(), "UAH", Decimal(100))
    second = plan(journal, [shouted], sha="2" * 64)
    assert journal.records(second)[0].state is State.DUPLICATE


def test_another_endpoint_is_another_ledger(journal: Journal) -> None:
    first = plan(journal, [order("A")], sha="1" * 64)
    journal.mark_sending(first, 0, order("A"), timeout=1)
    batch = Batch((order("A"),), (), ())
    real = journal.create_run(
        batch, input_name="in.csv", input_size=10, input_sha256="2" * 64,
        base_url="https://api.finline.io/api/v1", rate=10, user="u",
    )  # fmt: skip
    assert journal.records(real)[0].state is State.PLANNED  # a sandbox capture is no capture


def test_only_a_planned_order_is_marked_sending(journal: Journal) -> None:
    run_id = plan(journal, [order("A")])
    assert isinstance(journal.mark_sending(run_id, 0, order("A"), timeout=1), int)
    # a second process (or a bug) trying to send it again gets the state, not an attempt
    assert journal.mark_sending(run_id, 0, order("A"), timeout=1) is State.SENDING
    assert len(journal.attempts(run_id, 0)) == 1


def test_a_second_capture_on_the_same_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path, exclusive=True):
        with pytest.raises(JournalError, match="in use"):
            Journal(path, exclusive=True)
        Journal(path).close()  # readers (report, runs, verify) are welcome
    Journal(path, exclusive=True).close()  # released with the first


def test_an_unusable_journal_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(JournalError, match="cannot be opened"):
        Journal(blocker / "sub" / "j.sqlite")


def test_a_failed_capture_elsewhere_does_not_block(journal: Journal) -> None:
    first = plan(journal, [order("A")], sha="1" * 64)
    attempt = journal.mark_sending(first, 0, order("A"), timeout=1)
    assert isinstance(attempt, int)
    refused = Operation("A", "", "capture", "failure", "4139", "", None, "UAH")
    journal.settle(
        first, 0, attempt, Settlement(State.ANSWERED, 200, operation=refused),
        reply="operation", http_status=200, body="{}", message="",
    )  # fmt: skip
    second = plan(journal, [order("A")], sha="2" * 64)
    assert journal.records(second)[0].state is State.PLANNED


KILLER = """
import os, sys
from decimal import Decimal
sys.path.insert(0, {tests!r})
from conftest import order
from recon.journal import Journal
from recon.schema import Batch
j = Journal(__import__("pathlib").Path({path!r}))
run = j.create_run(Batch((order("A"), order("B")), (), ()), input_name="x", input_size=1,
                   input_sha256="k" * 64, base_url="http://x", rate=1, user="u")
j.mark_sending(run, 0, order("A"), timeout=5)
os.kill(os.getpid(), 9)
"""


def test_committed_steps_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    code = KILLER.format(tests=str(Path(__file__).parent), path=str(path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == -9
    with Journal(path) as j:
        (run,) = j.runs()
        states = [r.state for r in j.records(run.run_id)]
    assert states == [State.SENDING, State.PLANNED]
    assert os.path.exists(path)
