"""The batch against the sandbox's faults: every order settled, none captured twice."""

from __future__ import annotations

from decimal import Decimal

import pytest
from conftest import FAST, holds_for, order, orders, run_orders, sandbox

from recon.batch import BatchOptions, Counts
from recon.errors import StoppedEarly, Unauthorized
from recon.journal import Journal, State
from recon.reconcile import Outcome, build_report
from recon.sandbox.ledger import Hold
from recon.settings import Secret


def outcomes(journal: Journal, run_id: str) -> dict[str, Outcome]:
    report = build_report(journal.run_info(run_id), journal.records(run_id), [])
    return {r.order_id: r.outcome for r in report.rows}


def test_clean_batch_captures_everything_once(journal: Journal) -> None:
    batch = orders(30)
    box = sandbox(holds_for(batch), refuse_repeat=False)
    run_id, counts = run_orders(journal, batch, box)
    assert isinstance(counts, Counts) and counts.settled == 30
    assert set(outcomes(journal, run_id).values()) == {Outcome.CAPTURED}
    assert box.ledger.capture_count_by_order() == {o.order_id: 1 for o in batch}


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        # answer lost after the capture committed: the look-up finds it
        ("drop_after_commit", Outcome.CAPTURED),
        ("error500_after_commit", Outcome.CAPTURED),
        ("not_json", Outcome.CAPTURED),
        # commits after the client gave up (timeout 0.5 s): found by a later look-up
        ("slow:1.0", Outcome.CAPTURED),
        # refused before committing: the look-up after the deadline finds nothing, sent again
        ("error503_before", Outcome.CAPTURED),
        # not processed: sent again after Retry-After
        ("rate429:0.2", Outcome.CAPTURED),
        # pending for 0.5 s: polled until success, within the settle time (2 s)
        ("pending:0.5", Outcome.CAPTURED),
        # pending past the settle time: reported pending
        ("pending:30", Outcome.PENDING),
    ],
)
def test_each_fault_kind_settles_without_a_second_capture(
    journal: Journal, fault: str, expected: Outcome
) -> None:
    batch = orders(6)
    box = sandbox(holds_for(batch), faults=f"order:ORD-00002={fault}", refuse_repeat=False)
    run_id, counts = run_orders(journal, batch, box)
    assert isinstance(counts, Counts)
    result = outcomes(journal, run_id)
    assert result["ORD-00002"] is expected
    assert all(result[o.order_id] is Outcome.CAPTURED for o in batch if o.order_id != "ORD-00002")
    committed = box.ledger.capture_count_by_order()
    assert all(n == 1 for n in committed.values()), committed
    assert committed.get("ORD-00002", 0) == 1


def test_a_capture_in_doubt_is_sent_again_only_after_its_deadline(journal: Journal) -> None:
    batch = orders(1)
    box = sandbox(holds_for(batch), faults="order:ORD-00000=error503_before", refuse_repeat=False)
    run_id, _ = run_orders(journal, batch, box)
    attempts = journal.attempts(run_id, 0)
    kinds = [a["kind"] for a in attempts]
    assert kinds[0] == "capture" and kinds[-1] == "capture" and "lookup" in kinds
    first_deadline = float(attempts[0]["deadline"])  # type: ignore[arg-type]
    # the look-up that allowed the second capture was sent after deadline + grace
    proof = [a for a in attempts if a["kind"] == "lookup" and a["reply"] == "not_found"][-1]
    from datetime import datetime

    sent = datetime.fromisoformat(str(proof["sent_at"]).replace("Z", "+00:00")).timestamp()
    assert sent >= first_deadline + FAST.grace - 0.01


def test_lookups_failing_leave_the_order_unknown(journal: Journal) -> None:
    batch = orders(2)
    box = sandbox(
        holds_for(batch),
        faults="order:ORD-00001=error500_after_commit,lookup503=1",
        refuse_repeat=False,  # so that a second capture, if sent, would show in the ledger
    )
    run_id, _ = run_orders(journal, batch, box)
    result = outcomes(journal, run_id)
    assert result["ORD-00001"] is Outcome.UNKNOWN
    report = build_report(journal.run_info(run_id), journal.records(run_id), [])
    row = next(r for r in report.rows if r.order_id == "ORD-00001")
    assert row.captured is None and "not settled" in row.reason
    assert box.ledger.capture_count_by_order()["ORD-00001"] == 1


def test_unauthorized_stops_after_the_first_answer(journal: Journal) -> None:
    from conftest import sandbox_settings

    batch = orders(20)
    box = sandbox(holds_for(batch))
    settings = sandbox_settings()
    wrong = type(settings)(
        api_key=Secret("wrong"), api_secret=settings.api_secret,
        endpoints_key=settings.endpoints_key, pos_id=settings.pos_id, base_url=settings.base_url,
    )  # fmt: skip
    run_id, result = run_orders(journal, batch, box, settings=wrong)
    assert isinstance(result, Unauthorized) and result.exit_code == 3
    assert sum(box.ledger.capture_requests_by_order().values()) == 0
    sent = [a for seq in range(20) for a in journal.attempts(run_id, seq)]
    assert len(sent) == 1  # one request, then nothing
    assert all(r.state is State.PLANNED for r in journal.records(run_id))


def test_resume_sends_nothing_twice(journal: Journal) -> None:
    batch = orders(10)
    box = sandbox(holds_for(batch), refuse_repeat=False)
    run_id, _ = run_orders(journal, batch, box)
    # the same run again: everything answered, nothing is sent
    _, counts = run_orders(journal, batch, box, run_id=run_id)
    assert isinstance(counts, Counts) and counts.total == 0
    assert box.ledger.capture_count_by_order() == {o.order_id: 1 for o in batch}


def test_an_order_left_sending_by_a_crash_is_looked_up_first(journal: Journal) -> None:
    batch = orders(3)
    box = sandbox(holds_for(batch), refuse_repeat=False)
    run_id, _ = run_orders(journal, batch, box)
    # fake a crash between the commit of "sending" and the answer: the capture did happen
    journal.set_state(run_id, 1, State.SENDING)
    _, counts = run_orders(journal, batch, box, run_id=run_id)
    assert isinstance(counts, Counts)
    kinds = [a["kind"] for a in journal.attempts(run_id, 1)]
    assert kinds == ["capture", "lookup"]
    assert outcomes(journal, run_id)["ORD-00001"] is Outcome.CAPTURED
    assert box.ledger.capture_count_by_order()["ORD-00001"] == 1


def test_an_order_captured_by_another_run_is_a_duplicate(journal: Journal) -> None:
    batch = orders(3)
    box = sandbox(holds_for(batch), refuse_repeat=False)
    run_orders(journal, batch, box)
    run2, _ = run_orders(journal, [*batch, order("NEW-1")], sandbox(holds_for([order("NEW-1")])))
    result = outcomes(journal, run2)
    assert [result[o.order_id] for o in batch] == [Outcome.DUPLICATE] * 3
    assert result["NEW-1"] is Outcome.CAPTURED


def test_refusals_and_reconciliation_of_amounts(journal: Journal) -> None:
    holds = [
        Hold("FULL", order("x").pos_id, "UAH", Decimal(100)),
        Hold("PART", order("x").pos_id, "UAH", Decimal(100)),
        Hold("OVER-OK", order("x").pos_id, "UAH", Decimal(100)),
        Hold("OVER-BAD", order("x").pos_id, "UAH", Decimal(100)),
        Hold("AUTHFAIL", order("x").pos_id, "UAH", Decimal(100), auth_status="failure"),
        Hold("CUR", order("x").pos_id, "EUR", Decimal(100)),
        Hold("QUIRK", order("x").pos_id, "UAH", Decimal(100), quirk="answer_hold_amount"),
    ]
    batch = [
        order("FULL", None), order("PART", "80"), order("OVER-OK", "125"),
        order("OVER-BAD", "125.01"), order("AUTHFAIL", "10"), order("CUR", "10"),
        order("NOHOLD", "10"), order("QUIRK", "80"),
    ]  # fmt: skip
    run_id, _ = run_orders(journal, batch, sandbox(holds))
    report = build_report(journal.run_info(run_id), journal.records(run_id), [])
    rows = {r.order_id: r for r in report.rows}
    assert rows["FULL"].outcome is Outcome.CAPTURED and rows["FULL"].captured == 100
    assert rows["FULL"].requested is None and rows["FULL"].difference is None
    assert rows["PART"].outcome is Outcome.CAPTURED and rows["PART"].captured == 80
    assert rows["OVER-OK"].outcome is Outcome.CAPTURED and rows["OVER-OK"].captured == 125
    for refused in ("OVER-BAD", "AUTHFAIL", "CUR", "NOHOLD"):
        assert rows[refused].outcome is Outcome.FAILED, refused
        assert rows[refused].captured == 0 and rows[refused].reason.startswith("refused")
    assert rows["OVER-BAD"].status_code == "4139"
    assert rows["QUIRK"].outcome is Outcome.OVER
    assert (
        rows["QUIRK"].difference == 20
        and rows["QUIRK"].reason == "captured 100.00 UAH, asked 80.00 UAH"
    )
    uah = next(c for c in report.currencies if c.currency == "UAH")
    assert uah.captured == sum(r.captured or 0 for r in report.rows if r.currency == "UAH")


def test_connection_refused_everywhere_stops_the_batch(journal: Journal) -> None:
    import httpx

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    batch = orders(3)
    box = sandbox(holds_for(batch))
    box.transport = httpx.MockTransport(refuse)
    options = BatchOptions(concurrency=2, timeout=0.5, max_unreachable=3)
    run_id, result = run_orders(journal, batch, box, options=options)
    assert isinstance(result, StoppedEarly) and "cannot reach" in str(result)
    assert all(r.state is State.PLANNED for r in journal.records(run_id))


HOSTILE = {
    "another order": {"order_id": "SOMEONE-ELSE"},
    "another POS": {"pos_id": "00000000-0000-4000-8000-000000000000"},
    "unknown status": {"status": "done"},
    "another currency": {"currency": "USD"},
    "negative amount": {"amount": -100},
    "non-numeric amount": {"amount": "100 UAH"},
    "too many decimals": {"amount": 100.001},
    "missing status": {"status": None},
    "wrong JSON type": {"order_id": ["ORD-00000"]},
}


@pytest.mark.parametrize("lookup_works", [True, False])
@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_answer_never_becomes_captured(
    journal: Journal, name: str, lookup_works: bool
) -> None:
    """The answer is recorded as received; the look-up settles it, or the order stays unknown."""
    import json

    import httpx
    from conftest import POS

    good = {
        "order_id": "ORD-00000", "pos_id": POS, "method": "capture", "status": "success",
        "status_code": "1000", "status_description": "ok", "amount": 100, "currency": "UAH",
        "operation_id": "op-1", "fee": None,
    }  # fmt: skip
    bad = {k: v for k, v in {**good, **HOSTILE[name]}.items() if v is not None}

    def provider(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, content=json.dumps(bad))
        if lookup_works:
            return httpx.Response(200, content=json.dumps(good))
        return httpx.Response(503, content=b'{"message": "unavailable"}')

    box = sandbox([])
    box.transport = httpx.MockTransport(provider)
    run_id, _ = run_orders(journal, orders(1), box)
    report = build_report(journal.run_info(run_id), journal.records(run_id), [])
    (row,) = report.rows
    attempts = journal.attempts(run_id, 0)
    assert attempts[0]["body"] == json.dumps(bad)  # recorded as received
    if lookup_works:
        assert row.outcome is Outcome.CAPTURED and row.operation_id == "op-1"
    else:
        assert row.outcome is Outcome.UNKNOWN and row.captured is None
        assert "answer not believed" in row.reason


def test_a_fee_in_another_currency_is_not_added_to_this_one() -> None:
    from workbook_fixtures import row

    from recon.reconcile import totals

    rows = [
        row(2, currency="USD", fee_amount=Decimal("1.00"), fee_currency="USD"),
        row(3, currency="USD", fee_amount=Decimal("40.00"), fee_currency="UAH"),
    ]
    (usd,), _ = totals(rows)
    assert usd.fees == Decimal("1.00")


def test_a_pending_capture_whose_look_ups_find_nothing_is_never_sent_again(
    journal: Journal,
) -> None:
    """The provider said "pending"; a later 404 on the look-up is no proof it did nothing."""
    import json

    import httpx
    from conftest import POS

    pending = {
        "order_id": "ORD-00000", "pos_id": POS, "method": "capture", "status": "pending",
        "status_code": "2119", "amount": 100, "currency": "UAH", "operation_id": "op-9",
    }  # fmt: skip
    posts: list[httpx.Request] = []

    def provider(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posts.append(request)
            return httpx.Response(200, content=json.dumps(pending))
        return httpx.Response(404, content=b'{"message": "not found"}')

    box = sandbox([])
    box.transport = httpx.MockTransport(provider)
    run_id, _ = run_orders(journal, orders(1), box)
    assert len(posts) == 1
    (row,) = build_report(journal.run_info(run_id), journal.records(run_id), []).rows
    assert row.outcome in (Outcome.UNKNOWN, Outcome.PENDING)
    # and a resume of the run does not send it either
    run_orders(journal, orders(1), box, run_id=run_id)
    assert len(posts) == 1


def test_429_without_retry_after_backs_off_and_gives_up_in_the_end(journal: Journal) -> None:
    import httpx

    def provider(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, content=b'{"message": "slow down"}')

    box = sandbox([])
    box.transport = httpx.MockTransport(provider)
    options = BatchOptions(concurrency=1, timeout=0.5, backoff=0.01, max_throttled=3)
    run_id, result = run_orders(journal, orders(1), box, options=options)
    assert isinstance(result, StoppedEarly) and "429" in str(result)
    attempts = journal.attempts(run_id, 0)
    assert len(attempts) == 4  # the first and three retries, each after a back-off
    assert journal.records(run_id)[0].state is State.PLANNED  # never processed: resumable
