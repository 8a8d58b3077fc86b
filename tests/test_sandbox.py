"""The simulator keeps API.md's rules, every fault does what it says, and the sample data agrees.

The app is driven the way recon drives it: httpx over ASGITransport (and once over loopback
through uvicorn). Money is parsed with Decimal on the client side too, so every amount compared
here is exact.
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import openpyxl
import pytest

from recon.sandbox.app import (
    SANDBOX_CREDENTIALS,
    SANDBOX_OTHER_POS_ID,
    SANDBOX_POS_ID,
    Credentials,
    SlidingWindowLimiter,
    create_app,
    is_loopback,
    make_server,
    serve,
)
from recon.sandbox.faults import Fault, FaultPlan, FaultSpecError, parse_faults
from recon.sandbox.ledger import (
    Hold,
    Ledger,
    fee_for,
    holds_for_batch,
    holds_for_orders,
    load_holds,
    to_json,
    write_holds,
)
from recon.schema import Order

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"
POS = SANDBOX_POS_ID
HEADERS = {
    "X-API-AUTH": SANDBOX_CREDENTIALS.auth_header,
    "X-API-KEY": SANDBOX_CREDENTIALS.endpoints_key,
}
D = Decimal
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}$")
ANSWER_FIELDS = {
    "operation_id",
    "payment_id",
    "order_id",
    "transaction_id",
    "pos_id",
    "mode",
    "method",
    "amount",
    "status",
    "status_code",
    "status_description",
    "created_at",
    "processing_time",
    "fee",
    "comment",
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def standard_holds() -> list[Hold]:
    return [
        Hold("A1", POS, "UAH", D("100.00"), fee_percent=D("1.5")),
        Hold("A2", POS, "EUR", D(100)),
        Hold("FAILED", POS, "UAH", D(50), auth_status="failure"),
        Hold("123", POS, "UAH", D(100), quirk="answer_hold_amount"),
        Hold("INV/2026#7 ?%", POS, "UAH", D(10)),
        Hold("B1", SANDBOX_OTHER_POS_ID, "USD", D(20)),
    ]


def body(order_id: str = "A1", currency: str = "UAH", **extra: Any) -> dict[str, Any]:
    return {"pos_id": POS, "order_id": order_id, "order_currency": currency, **extra}


def raw_json(**fields: Any) -> str:
    """A request body with amounts written exactly as given (strings become raw numbers)."""
    parts = []
    for k, v in fields.items():
        value = v if k == "charge_amount" and isinstance(v, str) else json.dumps(v)
        parts.append(f"{json.dumps(k)}: {value}")
    return "{" + ", ".join(parts) + "}"


def parse(response: httpx.Response) -> Any:
    return json.loads(response.text, parse_float=Decimal, parse_int=Decimal)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(clock: FakeClock) -> Ledger:
    return Ledger(standard_holds(), clock=clock)


async def client_for(app: Any, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://sandbox/api/v1",
        headers=HEADERS if headers is None else headers,
    )


@pytest.fixture
async def client(ledger: Ledger) -> AsyncIterator[httpx.AsyncClient]:
    async with await client_for(create_app(ledger)) as c:
        yield c


async def post(client: httpx.AsyncClient, payload: dict[str, Any] | str) -> httpx.Response:
    content = payload if isinstance(payload, str) else to_json(payload)
    return await client.post(
        "/capture", content=content, headers={"Content-Type": "application/json"}
    )


# -- capture rules -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_whole_hold_capture_answers_every_field(
    client: httpx.AsyncClient, ledger: Ledger
) -> None:
    r = await post(client, body(comment="full"))
    assert r.status_code == 200
    answer = parse(r)
    assert ANSWER_FIELDS <= answer.keys()
    assert answer["order_currency"] == "UAH" and "currency" not in answer
    assert answer["status"] == "success" and answer["status_code"] == "1000"
    assert answer["amount"] == D("100.00") and '"amount": 100.00' in r.text
    assert answer["fee"] == {"amount": D("1.50"), "currency": "UAH"}
    assert answer["mode"] == "direct" and answer["method"] == "capture"
    assert answer["pos_id"] == POS and answer["comment"] == "full"
    assert TIMESTAMP.match(answer["created_at"]) and TIMESTAMP.match(answer["processing_time"])
    assert ledger.captures_committed("A1") == 1


@pytest.mark.anyio
async def test_partial_capture_uses_currency_key_and_keeps_the_number_exact(
    client: httpx.AsyncClient,
) -> None:
    r = await post(client, raw_json(**body(charge_amount="80.50")))
    answer = parse(r)
    assert answer["status"] == "success"
    assert answer["currency"] == "UAH" and "order_currency" not in answer
    assert '"amount": 80.50' in r.text
    assert answer["fee"]["amount"] == D("1.21")  # 80.50 * 1.5 % = 1.2075 -> 1.21


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("charge", "status", "code"),
    [("125", "success", "1000"), ("125.00", "success", "1000"), ("125.01", "failure", "4139")],
)
async def test_above_the_hold_up_to_over_percent(
    client: httpx.AsyncClient, ledger: Ledger, charge: str, status: str, code: str
) -> None:
    r = await post(client, raw_json(**body("A2", "EUR", charge_amount=charge)))
    assert r.status_code == 200
    answer = parse(r)
    assert (answer["status"], answer["status_code"]) == (status, code)
    assert ledger.captures_committed("A2") == (1 if status == "success" else 0)


@pytest.mark.anyio
async def test_auth_failed_is_refused_with_4150(client: httpx.AsyncClient, ledger: Ledger) -> None:
    r = await post(client, body("FAILED"))
    assert r.status_code == 200
    assert (parse(r)["status"], parse(r)["status_code"]) == ("failure", "4150")
    assert ledger.captures_committed("FAILED") == 0


@pytest.mark.anyio
async def test_second_capture_is_refused_and_not_committed(
    client: httpx.AsyncClient, ledger: Ledger
) -> None:
    assert parse(await post(client, body()))["status"] == "success"
    again = parse(await post(client, body(charge_amount=D(1))))
    assert (again["status"], again["status_code"]) == ("failure", "4150")
    assert ledger.captures_committed("A1") == 1
    assert ledger.capture_requests_by_order()["A1"] == 2


@pytest.mark.anyio
async def test_repeat_can_commit_twice_and_the_counter_shows_it(clock: FakeClock) -> None:
    ledger = Ledger(standard_holds(), refuse_repeat=False, clock=clock)
    async with await client_for(create_app(ledger)) as c:
        first = parse(await post(c, body()))
        second = parse(await post(c, body()))
    assert first["status"] == second["status"] == "success"
    assert first["operation_id"] != second["operation_id"]
    assert ledger.captures_committed("A1") == 2
    assert ledger.capture_count_by_order()["A1"] == 2


@pytest.mark.anyio
@pytest.mark.parametrize(
    "payload",
    [body("NOPE"), {**body("B1", "USD"), "pos_id": "11111111-2222-4333-8444-555555555555"}],
    ids=["unknown order", "unknown pos"],
)
async def test_unknown_order_or_pos_is_404_with_error_body(
    client: httpx.AsyncClient, payload: dict[str, Any]
) -> None:
    r = await post(client, payload)
    assert r.status_code == 404
    error = r.json()
    assert error["message"] and error["args"]["code"]


@pytest.mark.anyio
async def test_other_pos_is_its_own_ledger(client: httpx.AsyncClient, ledger: Ledger) -> None:
    r = await post(client, {**body("B1", "USD"), "pos_id": SANDBOX_OTHER_POS_ID})
    assert parse(r)["status"] == "success"
    assert (await post(client, body("B1", "USD"))).status_code == 404  # B1 is not on POS
    assert ledger.captures_committed("B1", SANDBOX_OTHER_POS_ID) == 1


@pytest.mark.anyio
async def test_currency_not_matching_the_hold_is_400_4124(
    client: httpx.AsyncClient, ledger: Ledger
) -> None:
    r = await post(client, body("A1", "EUR"))
    assert r.status_code == 400 and r.json()["args"]["code"] == "4124"
    r = await post(client, body("A1", "XYZ"))
    assert r.status_code == 400 and r.json()["args"]["code"] == "4124"
    assert ledger.captures_committed("A1") == 0


@pytest.mark.anyio
@pytest.mark.parametrize("missing", ["pos_id", "order_id", "order_currency"])
async def test_missing_field_is_400_4000(client: httpx.AsyncClient, missing: str) -> None:
    payload = body()
    del payload[missing]
    r = await post(client, payload)
    assert r.status_code == 400 and r.json()["args"]["code"] == "4000"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("charge", "code"),
    [
        ("80.555", "4151"),
        ("80.500", "4151"),
        ('"80"', "4151"),
        ("true", "4151"),
        ("0", "4139"),
        ("-5", "4139"),
    ],
)
async def test_malformed_amount_is_400(
    client: httpx.AsyncClient, ledger: Ledger, charge: str, code: str
) -> None:
    r = await post(client, raw_json(**body(charge_amount=charge)))
    assert r.status_code == 400 and r.json()["args"]["code"] == code
    assert ledger.captures_committed("A1") == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    "payload",
    [
        {**body(), "order_id": "X" * 33},
        {**body(), "pos_id": "not-a-uuid"},
        {**body(), "comment": "x" * 2049},
        {**body(), "server_url": 5},
        "[1, 2]",
    ],
    ids=["long id", "bad pos", "long comment", "bad url", "not an object"],
)
async def test_malformed_fields_are_400_4151(
    client: httpx.AsyncClient, payload: dict[str, Any] | str
) -> None:
    r = await post(client, payload)
    assert r.status_code == 400 and r.json()["args"]["code"] == "4151"


@pytest.mark.anyio
async def test_answer_hold_amount_quirk_reproduces_the_provider_example(
    client: httpx.AsyncClient, ledger: Ledger
) -> None:
    r = await post(client, body("123", charge_amount=D(80), comment="10101"))
    answer = parse(r)
    assert answer["amount"] == D(100) and answer["currency"] == "UAH"
    assert answer["fee"] is None and '"fee": null' in r.text
    ops = parse(await client.get(f"/pos/{POS}/orders/123/capture"))
    assert ops["amount"] == D(100)


def test_ids_are_deterministic() -> None:
    answers = [Ledger(standard_holds()).capture(body())[1] for _ in range(2)]
    for key in ("operation_id", "payment_id", "transaction_id"):
        assert answers[0][key] == answers[1][key]


@pytest.mark.parametrize(
    ("amount", "percent", "currency", "fee"),
    [
        (D("3.00"), D("1.5"), "UAH", D("0.05")),  # 0.045: half-up, not half-even
        (D("80.50"), D("1.5"), "UAH", D("1.21")),
        (D("0.01"), D("1.5"), "EUR", D("0.00")),
        (D("1234.56"), D("2.75"), "USD", D("33.95")),  # 33.9504
        (D(1000), D("1.5"), "JPY", D(15)),
        (D(100), None, "UAH", None),
    ],
)
def test_fee_arithmetic(
    amount: Decimal, percent: Decimal | None, currency: str, fee: Decimal | None
) -> None:
    got = fee_for(amount, Hold("x", POS, currency, amount, fee_percent=percent))
    assert got == fee
    if got is not None and fee is not None:
        assert got.as_tuple().exponent == fee.as_tuple().exponent


def test_to_json_writes_exact_numbers_and_refuses_floats() -> None:
    text = to_json({"a": D("80.50"), "b": [D("1E+2"), None, True], "c": "Київ"})
    assert text == '{"a": 80.50, "b": [100, null, true], "c": "Київ"}'
    with pytest.raises(TypeError):
        to_json({"a": 1.5})


def test_concurrent_captures_of_one_order_commit_once() -> None:
    ledger = Ledger(standard_holds())
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: ledger.capture(body())[1]["status"], range(64)))
    assert answers.count("success") == 1
    assert ledger.captures_committed("A1") == 1


# -- look-ups ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_lookups_before_and_after_capture(client: httpx.AsyncClient) -> None:
    ops = parse(await client.get(f"/pos/{POS}/orders/A1"))
    assert [op["method"] for op in ops] == ["auth"]
    assert (ops[0]["status"], ops[0]["status_code"]) == ("success", "1002")
    r = await client.get(f"/pos/{POS}/orders/A1/capture")
    assert r.status_code == 404 and r.json()["args"]["code"]

    captured = parse(await post(client, body(charge_amount=D(40))))
    ops = parse(await client.get(f"/pos/{POS}/orders/A1"))
    assert [op["method"] for op in ops] == ["auth", "capture"]
    assert ops[1] == captured
    assert ops[1]["payment_id"] == ops[0]["operation_id"]
    assert parse(await client.get(f"/pos/{POS}/orders/A1/capture")) == captured


@pytest.mark.anyio
async def test_refused_capture_is_not_in_the_lookups(client: httpx.AsyncClient) -> None:
    await post(client, body("FAILED"))
    ops = parse(await client.get(f"/pos/{POS}/orders/FAILED"))
    assert [(op["method"], op["status"]) for op in ops] == [("auth", "failure")]
    assert (await client.get(f"/pos/{POS}/orders/FAILED/capture")).status_code == 404


@pytest.mark.anyio
async def test_lookup_of_an_id_with_url_characters(client: httpx.AsyncClient) -> None:
    order = "INV/2026#7 ?%"
    await post(client, body(order))
    segment = quote(order, safe="")
    answer = parse(await client.get(f"/pos/{POS}/orders/{segment}/capture"))
    assert answer["order_id"] == order
    assert len(parse(await client.get(f"/pos/{POS}/orders/{segment}"))) == 2


@pytest.mark.anyio
async def test_lookup_of_unknown_order_is_404(client: httpx.AsyncClient) -> None:
    for path in (f"/pos/{POS}/orders/NOPE", f"/pos/{POS}/orders/NOPE/capture"):
        r = await client.get(path)
        assert r.status_code == 404 and "message" in r.json()


# -- the HTTP surface ----------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-KEY": SANDBOX_CREDENTIALS.endpoints_key},
        {"X-API-AUTH": SANDBOX_CREDENTIALS.auth_header},
        {**HEADERS, "X-API-AUTH": "CPAY sandbox-api-key:wrong"},
        {**HEADERS, "X-API-AUTH": SANDBOX_CREDENTIALS.auth_header.replace("CPAY", "Bearer")},
        {**HEADERS, "X-API-KEY": "wrong"},
    ],
    ids=["none", "no auth", "no key", "wrong secret", "wrong scheme", "wrong key"],
)
async def test_wrong_credentials_are_401(ledger: Ledger, headers: dict[str, str]) -> None:
    async with await client_for(create_app(ledger), headers=headers) as c:
        r = await post(c, body())
        assert r.status_code == 401 and r.json()["args"]["code"]
        assert (await c.get(f"/pos/{POS}/orders/A1")).status_code == 401
    assert ledger.captures_committed("A1") == 0


@pytest.mark.anyio
async def test_custom_credentials(ledger: Ledger) -> None:
    creds = Credentials("key-1", "secret-2", "endpoints-3")
    assert not {"key-1", "secret-2", "endpoints-3"} & set(re.findall(r"[\w-]+", repr(creds)))
    headers = {"X-API-AUTH": "CPAY key-1:secret-2", "X-API-KEY": "endpoints-3"}
    async with await client_for(create_app(ledger, credentials=creds), headers=headers) as c:
        assert (await post(c, body())).status_code == 200
    async with await client_for(create_app(ledger, credentials=creds)) as c:
        assert (await post(c, body())).status_code == 401


@pytest.mark.anyio
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_post_without_json_content_type_is_406(
    client: httpx.AsyncClient, ledger: Ledger, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    r = await client.post("/capture", content=to_json(body()).encode(), headers=headers)
    assert r.status_code == 406
    assert ledger.captures_committed("A1") == 0


@pytest.mark.anyio
async def test_json_content_type_with_charset_is_fine(client: httpx.AsyncClient) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    r = await client.post("/capture", content=to_json(body()), headers=headers)
    assert r.status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize("content", ["{not json", '{"charge_amount": NaN}', b"\xff\xfe"])
async def test_body_that_is_not_json_is_400(client: httpx.AsyncClient, content: Any) -> None:
    r = (
        await post(client, content)
        if isinstance(content, str)
        else await client.post(
            "/capture", content=content, headers={"Content-Type": "application/json"}
        )
    )
    assert r.status_code == 400 and r.json()["args"]["code"] == "4151"


@pytest.mark.anyio
async def test_unknown_route_and_wrong_method(client: httpx.AsyncClient) -> None:
    r = await client.get("/nowhere")
    assert r.status_code == 404 and "message" in r.json()
    assert (await client.get("/capture")).status_code == 405


# -- rate limit and latency ----------------------------------------------------------------


def test_sliding_window_limiter() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(3, clock=clock)
    assert [limiter.admit() for _ in range(3)] == [None, None, None]
    clock.t += 0.4
    assert limiter.admit() == pytest.approx(0.6)  # refused, and not counted
    clock.t += 0.6
    assert limiter.admit() is None  # the first three left the window
    assert limiter.admit() is None and limiter.admit() is None
    assert limiter.admit() is not None


def test_fractional_rate_keeps_its_average() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(0.5, clock=clock)
    assert limiter.admit() is None
    clock.t += 1.9
    assert limiter.admit() is not None
    clock.t += 0.1
    assert limiter.admit() is None


@pytest.mark.anyio
async def test_rate_limit_answers_429_with_retry_after_and_does_not_process(
    ledger: Ledger,
) -> None:
    async with await client_for(create_app(ledger, rate_limit=2)) as c:
        answers = [await post(c, body("A2", "EUR", charge_amount=D(1))) for _ in range(2)]
        answers.append(await post(c, body("A1")))
        answers.append(await c.get(f"/pos/{POS}/orders/A1"))  # look-ups count too
    assert [r.status_code for r in answers] == [200, 200, 429, 429]
    assert answers[2].headers["Retry-After"] == "1"
    assert ledger.captures_committed("A1") == 0
    assert ledger.capture_requests_by_order()["A1"] == 0


@pytest.mark.anyio
async def test_latency(ledger: Ledger) -> None:
    async with await client_for(create_app(ledger, latency_ms=150)) as c:
        start = time.monotonic()
        await c.get(f"/pos/{POS}/orders/A1")
    assert time.monotonic() - start >= 0.15


# -- faults --------------------------------------------------------------------------------


def test_parse_faults_grammar() -> None:
    plan = parse_faults(
        "drop_after_commit=0.02, error500_after_commit=0.02,error503_before=0.02,"
        "slow=0.02:3.5,rate429=0.01:2,pending=0.02,not_json=0.01,lookup503=0.1,"
        "order:ABC=drop_after_commit,order:X%2CY=error503_before*2+ok+pending:7,seed=9"
    )
    assert plan.seed == 9 and plan.lookup503 == 0.1
    kinds = {f.kind: (f.seconds, fraction) for f, fraction in plan.fractions}
    assert kinds["slow"] == (3.5, 0.02) and kinds["rate429"] == (2.0, 0.01)
    assert kinds["pending"] == (5.0, 0.02)  # the default seconds
    assert plan.per_order["ABC"] == (Fault("drop_after_commit"),)
    e503 = Fault("error503_before")
    assert plan.per_order["X,Y"] == (e503, e503, None, Fault("pending", 7.0))
    assert parse_faults("") == FaultPlan()


def test_order_id_with_equals_sign() -> None:
    assert parse_faults("order:a=b=not_json").per_order == {"a=b": (Fault("not_json"),)}


@pytest.mark.parametrize(
    "spec",
    [
        "explode=0.1",
        "slow=1.5",
        "slow=abc",
        "drop_after_commit=0.1:3",
        "slow=0.6,pending=0.6",
        "order:=slow",
        "order:ABC",
        "order:ABC=slow*0",
        "seed=x",
        "nonsense",
    ],
)
def test_parse_faults_refuses_bad_specs(spec: str) -> None:
    with pytest.raises(FaultSpecError):
        parse_faults(spec)


def test_per_order_faults_follow_the_attempts() -> None:
    plan = parse_faults("order:X=error503_before*2+ok+drop_after_commit,not_json=1")
    got = [plan.for_capture("X", n) for n in range(1, 6)]
    assert got == [Fault("error503_before")] * 2 + [None, Fault("drop_after_commit"), None]
    assert plan.for_capture("other", 1) == Fault("not_json")


def test_fractions_are_deterministic_and_about_right() -> None:
    plan = parse_faults("error503_before=0.1,slow=0.2:1", seed=3)
    draws = [plan.for_capture(f"O{i}", 1) for i in range(20000)]
    assert draws == [plan.for_capture(f"O{i}", 1) for i in range(20000)]
    assert 1800 < sum(d is not None and d.kind == "error503_before" for d in draws) < 2200
    assert 3700 < sum(d is not None and d.kind == "slow" for d in draws) < 4300
    other = parse_faults("error503_before=0.1,slow=0.2:1", seed=4)
    assert draws != [other.for_capture(f"O{i}", 1) for i in range(20000)]
    # A retry draws again: the same order does not meet the same fault forever.
    assert len({plan.for_capture("O1", n) for n in range(1, 50)}) > 1


async def faulty(ledger: Ledger, spec: str) -> httpx.AsyncClient:
    return await client_for(create_app(ledger, faults=parse_faults(spec)))


@pytest.mark.anyio
async def test_drop_after_commit_is_a_lost_answer(ledger: Ledger) -> None:
    async with await faulty(ledger, "order:A1=drop_after_commit") as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await post(c, body())
        assert ledger.captures_committed("A1") == 1
        # The look-up tells the truth, and a repeat is refused.
        assert parse(await c.get(f"/pos/{POS}/orders/A1/capture"))["status"] == "success"
        assert parse(await post(c, body()))["status_code"] == "4150"
    assert ledger.captures_committed("A1") == 1


@pytest.mark.anyio
async def test_error500_after_commit(ledger: Ledger) -> None:
    async with await faulty(ledger, "order:A1=error500_after_commit") as c:
        r = await post(c, body())
    assert r.status_code == 500 and r.json()["args"]["code"]
    assert ledger.captures_committed("A1") == 1


@pytest.mark.anyio
async def test_error503_before_does_not_commit(ledger: Ledger) -> None:
    async with await faulty(ledger, "order:A1=error503_before") as c:
        assert (await post(c, body())).status_code == 503
        assert ledger.captures_committed("A1") == 0
        assert parse(await post(c, body()))["status"] == "success"  # the retry passes
    assert ledger.captures_committed("A1") == 1


@pytest.mark.anyio
async def test_rate429_fault_with_retry_after(ledger: Ledger) -> None:
    async with await faulty(ledger, "order:A1=rate429:2") as c:
        r = await post(c, body())
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    assert ledger.capture_requests_by_order()["A1"] == 0


@pytest.mark.anyio
async def test_slow_commits_after_the_client_gave_up(ledger: Ledger) -> None:
    async with await faulty(ledger, "order:A1=slow:0.3") as c:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await post(c, body())
        assert ledger.captures_committed("A1") == 0
        assert (await c.get(f"/pos/{POS}/orders/A1/capture")).status_code == 404
        await asyncio.sleep(0.35)
        assert ledger.captures_committed("A1") == 1
        assert parse(await c.get(f"/pos/{POS}/orders/A1/capture"))["status"] == "success"


@pytest.mark.anyio
async def test_slow_answers_when_waited_for(ledger: Ledger) -> None:
    async with await faulty(ledger, "order:A1=slow:0.1") as c:
        start = time.monotonic()
        assert parse(await post(c, body()))["status"] == "success"
    assert time.monotonic() - start >= 0.1


@pytest.mark.anyio
async def test_pending_then_success(ledger: Ledger, clock: FakeClock) -> None:
    async with await faulty(ledger, "order:A1=pending:5") as c:
        answer = parse(await post(c, body()))
        assert (answer["status"], answer["status_code"]) == ("pending", "2119")
        assert ledger.captures_committed("A1") == 1
        clock.t += 4.9
        looked = parse(await c.get(f"/pos/{POS}/orders/A1/capture"))
        assert looked["status"] == "pending"
        clock.t += 0.2
        looked = parse(await c.get(f"/pos/{POS}/orders/A1/capture"))
        assert (looked["status"], looked["status_code"]) == ("success", "1000")
        assert looked["processing_time"] > looked["created_at"]
        ops = parse(await c.get(f"/pos/{POS}/orders/A1"))
        assert ops[-1]["status"] == "success"


@pytest.mark.anyio
async def test_not_json_answer_after_commit(ledger: Ledger) -> None:
    async with await faulty(ledger, "order:A1=not_json") as c:
        r = await post(c, body())
    assert r.status_code == 200 and not r.headers["content-type"].startswith("application/json")
    with pytest.raises(ValueError):
        r.json()
    assert ledger.captures_committed("A1") == 1


@pytest.mark.anyio
async def test_fault_on_a_refused_capture_still_refuses(ledger: Ledger) -> None:
    async with await faulty(ledger, "order:FAILED=error500_after_commit") as c:
        assert (await post(c, body("FAILED"))).status_code == 500
    assert ledger.captures_committed("FAILED") == 0


@pytest.mark.anyio
async def test_lookup503(ledger: Ledger) -> None:
    async with await faulty(ledger, "lookup503=1") as c:
        assert (await c.get(f"/pos/{POS}/orders/A1")).status_code == 503
        assert (await post(c, body())).status_code == 200  # captures are not touched


@pytest.mark.anyio
async def test_fractional_faults_through_the_app(clock: FakeClock) -> None:
    holds = [Hold(f"F{i}", POS, "UAH", D(10)) for i in range(200)]
    ledger = Ledger(holds, clock=clock)
    async with await faulty(ledger, "error503_before=0.5,seed=1") as c:
        codes = [(await post(c, body(f"F{i}"))).status_code for i in range(200)]
    assert 60 < codes.count(503) < 140
    assert codes.count(200) == sum(ledger.capture_count_by_order().values())


# -- holds ---------------------------------------------------------------------------------


def test_holds_round_trip(tmp_path: Path) -> None:
    holds = standard_holds()
    write_holds(tmp_path / "h.csv", holds)
    assert load_holds(tmp_path / "h.csv") == holds


def test_hold_refuses_unknown_quirk() -> None:
    with pytest.raises(ValueError):
        Hold("x", POS, "UAH", D(1), quirk="surprise")


def test_holds_for_orders_let_every_capture_succeed_as_asked() -> None:
    orders = [
        Order(2, "W", POS, "UAH", None),
        Order(3, "P", POS, "EUR", D("12.34")),
        Order(4, "P", POS, "EUR", D("99")),  # a repeated id: the first row wins
    ]
    holds = holds_for_orders(orders)
    assert holds == holds_for_orders(orders)
    assert [(h.order_id, h.amount, h.fee_percent) for h in holds] == [
        ("W", D(100), D("1.5")),
        ("P", D("12.34"), D("1.5")),
    ]
    ledger = Ledger(holds)
    assert ledger.capture(body("W"))[1]["amount"] == D(100)
    answer = ledger.capture(body("P", "EUR", charge_amount=D("12.34")))[1]
    assert answer["amount"] == D("12.34") and answer["fee"]["amount"] == D("0.19")


def test_holds_for_batch_prefers_holds_csv_beside_the_input(tmp_path: Path) -> None:
    orders = [Order(2, "W", POS, "UAH", None)]
    assert holds_for_batch(tmp_path / "in.csv", orders) == holds_for_orders(orders)
    assert holds_for_batch(SAMPLES / "orders.xlsx", orders) == load_holds(SAMPLES / "holds.csv")


@pytest.mark.anyio
async def test_concurrent_requests_through_the_app_commit_once(ledger: Ledger) -> None:
    async with await client_for(create_app(ledger, latency_ms=5)) as c:
        answers = await asyncio.gather(*(post(c, body()) for _ in range(30)))
    assert [parse(r)["status"] for r in answers].count("success") == 1
    assert ledger.capture_count_by_order() == {
        "A1": 1,
        "A2": 0,
        "FAILED": 0,
        "123": 0,
        "INV/2026#7 ?%": 0,
        "B1": 0,
    }


# -- sample data ---------------------------------------------------------------------------


@dataclass
class Sample:
    order_id: str
    currency: str
    charge: str
    pos_id: str
    comment: str


def read_samples() -> list[Sample]:
    with open(SAMPLES / "orders.csv", newline="", encoding="utf-8") as f:
        return [
            Sample(
                r["order_id"], r["order_currency"], r["charge_amount"], r["pos_id"], r["comment"]
            )
            for r in csv.DictReader(f)
        ]


def outcome_of(response: httpx.Response, charge: str) -> tuple[str, Decimal, Decimal | None]:
    """DESIGN.md's outcome for one answered capture, as reconcile would decide it."""
    if response.status_code != 200:
        return "failed", D(0), None
    answer = parse(response)
    if answer["status"] != "success":
        return "failed", D(0), None
    captured = answer["amount"]
    fee = answer["fee"]["amount"] if answer["fee"] else None
    if not charge or captured == D(charge):
        return "captured", captured, fee
    return ("partial" if captured < D(charge) else "over"), captured, fee


def test_sample_orders_csv_and_xlsx_hold_the_same_rows() -> None:
    samples = read_samples()
    assert 40 <= len(samples) <= 60
    sheet = openpyxl.load_workbook(SAMPLES / "orders.xlsx").active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == (
        "order_id",
        "order_currency",
        "charge_amount",
        "comment",
        "server_url",
        "pos_id",
    )
    assert len(rows) - 1 == len(samples)
    for sample, row in zip(samples, rows[1:], strict=True):
        assert row[0] == sample.order_id and isinstance(row[0], str)
        assert row[1] == sample.currency
        assert (row[2] is None) == (sample.charge == "")
        if row[2] is not None:
            assert D(str(row[2])) == D(sample.charge)
        assert (row[3] or "") == sample.comment
        assert (row[5] or "") == sample.pos_id
    assert any(s.pos_id for s in samples) and any(not s.pos_id for s in samples)
    assert any(re.search("[А-Яа-яІіЇїЄє]", s.comment) for s in samples)
    assert {s.currency for s in samples} == {"UAH", "EUR", "USD"}
    example = next(s for s in samples if s.order_id == "123")
    assert (example.currency, example.charge, example.comment) == ("UAH", "80", "10101")


@pytest.mark.anyio
async def test_sample_batch_ends_as_expected_csv() -> None:
    ledger = Ledger(load_holds(SAMPLES / "holds.csv"))
    with open(SAMPLES / "expected.csv", newline="", encoding="utf-8") as f:
        expected = {r["order_id"]: r for r in csv.DictReader(f)}
    samples = read_samples()
    assert list(expected) == [s.order_id for s in samples]
    assert {r["outcome"] for r in expected.values()} == {"captured", "partial", "over", "failed"}
    async with await client_for(create_app(ledger)) as c:
        for s in samples:
            payload: dict[str, Any] = {
                "pos_id": s.pos_id or SANDBOX_POS_ID,
                "order_id": s.order_id,
                "order_currency": s.currency,
                "comment": s.comment,
            }
            if s.charge:
                payload["charge_amount"] = D(s.charge)
            outcome, captured, fee = outcome_of(await post(c, payload), s.charge)
            want = expected[s.order_id]
            assert outcome == want["outcome"], s.order_id
            assert captured == D(want["captured_amount"]), s.order_id
            assert fee == (D(want["fee_amount"]) if want["fee_amount"] else None), s.order_id
    assert max(ledger.capture_count_by_order().values()) == 1


# -- over loopback -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(ledger: Ledger) -> Iterator[str]:
    port = free_port()
    app = create_app(ledger, faults=parse_faults("order:A2=drop_after_commit"))
    server = make_server(app, "127.0.0.1", port, log_level="critical")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started
    yield f"http://127.0.0.1:{port}/api/v1"
    server.should_exit = True
    thread.join(5)


def test_served_over_loopback_and_drop_is_a_lost_answer(served: str, ledger: Ledger) -> None:
    with httpx.Client(base_url=served, headers=HEADERS, timeout=5) as c:
        r = c.post(
            "/capture", content=to_json(body()), headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 200 and parse(r)["status"] == "success"
        with pytest.raises(httpx.RemoteProtocolError):
            c.post(
                "/capture",
                content=to_json(body("A2", "EUR")),
                headers={"Content-Type": "application/json"},
            )
    assert ledger.captures_committed("A2") == 1


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_serve_refuses_non_loopback(ledger: Ledger, host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(ValueError):
        serve(create_app(ledger), host, 8000)


def test_loopback_names() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "127.0.0.2"))
