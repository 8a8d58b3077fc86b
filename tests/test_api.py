"""The client against the provider's own examples (API.md) and against hostile answers."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import httpx
import pytest

from recon.api import Client, Reply, ReplyKind, capture_body, loads, parse_operation
from recon.schema import Order
from recon.settings import Secret, Settings

POS = "dc728de1-51ef-4ef1-80f7-3b44b07b5667"
SETTINGS = Settings(
    api_key=Secret("KEY"), api_secret=Secret("SECRET"), endpoints_key=Secret("ENDPOINTS"),
    pos_id=POS, base_url="https://api.finline.io/api/v1",
)  # fmt: skip
DOC_ORDER = Order(
    source_row=2, order_id="123", pos_id=POS, currency="UAH", amount=Decimal(80),
    comment="10101", server_url="https://callback.blackhole.com/callback/capture",
)  # fmt: skip

# The provider's two documented answers: full capture names `order_currency`, partial `currency`.
FULL_ANSWER = """{
"operation_id": "f7d0c7cb-af32-441f-b2af-4d90d4da70e1",
"payment_id": "fdf1a710-8a34-414c-b023-b7e78104301a",
"order_id": "123",
"transaction_id": "4f98dc46-ffff-4ba7-a267-286fe7669894",
"pos_id": "dc728de1-51ef-4ef1-80f7-3b44b07b5667",
"mode": "direct",
"method": "capture",
"amount": 100,
"order_currency": "UAH",
"status": "success",
"status_code": "1000",
"status_description": "Transaction is successful.",
"created_at": "2018-10-10T10:10:10.100",
"processing_time": "2018-10-10T10:10:12.000",
"fee": null,
"comment": "10101"
}"""
PARTIAL_ANSWER = FULL_ANSWER.replace('"order_currency"', '"currency"')


def answering(status: int, body: str | bytes, headers: dict[str, str] | None = None) -> Any:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        content = body.encode() if isinstance(body, str) else body
        return httpx.Response(status, content=content, headers=headers)

    return httpx.MockTransport(handler), seen


def capture(transport: httpx.AsyncBaseTransport, order: Order = DOC_ORDER) -> Reply:
    async def go() -> Reply:
        async with Client(SETTINGS, transport=transport, timeout=2) as client:
            return await client.capture(order)

    return asyncio.run(go())


def lookup(transport: httpx.AsyncBaseTransport, order: Order = DOC_ORDER) -> Reply:
    async def go() -> Reply:
        async with Client(SETTINGS, transport=transport) as client:
            return await client.lookup_capture(order)

    return asyncio.run(go())


def test_documented_request_headers_and_body() -> None:
    transport, seen = answering(200, PARTIAL_ANSWER)
    capture(transport)
    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == "https://api.finline.io/api/v1/capture"
    assert request.headers["X-API-AUTH"] == "CPAY KEY:SECRET"
    assert request.headers["X-API-KEY"] == "ENDPOINTS"
    assert request.headers["Content-Type"] == "application/json"
    documented = {
        "pos_id": POS,
        "order_id": "123",
        "order_currency": "UAH",
        "charge_amount": 80,
        "comment": "10101",
        "server_url": "https://callback.blackhole.com/callback/capture",
    }
    assert json.loads(request.content) == documented
    assert list(json.loads(request.content)) == list(documented)  # the documented order
    assert b'"charge_amount":80,' in request.content  # a JSON number, not "80" nor 80.0


def test_whole_hold_capture_sends_no_charge_amount() -> None:
    body = json.loads(capture_body(Order(2, "123", POS, "UAH", None)))
    assert body == {"pos_id": POS, "order_id": "123", "order_currency": "UAH"}


@pytest.mark.parametrize(
    ("amount", "text"),
    [("80.10", b"80.10"), ("0.3", b"0.3"), ("1234567890123.45", b"1234567890123.45"), ("5", b"5")],
)
def test_amounts_go_out_as_exact_json_numbers(amount: str, text: bytes) -> None:
    body = capture_body(Order(2, "1", POS, "UAH", Decimal(amount)))
    assert b'"charge_amount":' + text + b"}" in body
    assert loads(body.decode())["charge_amount"] == Decimal(amount)


def test_both_documented_answers_parse_into_the_same_fields() -> None:
    full = parse_operation(loads(FULL_ANSWER), DOC_ORDER)
    partial = parse_operation(loads(PARTIAL_ANSWER), DOC_ORDER)
    assert full == partial
    assert full.currency == "UAH"
    assert full.amount == Decimal(100)
    assert full.status == "success" and full.status_code == "1000"
    assert full.created_at == "2018-10-10T10:10:10.100"
    assert full.fee_amount is None
    transport, _ = answering(200, PARTIAL_ANSWER)
    reply = capture(transport)
    assert reply.kind is ReplyKind.OPERATION and reply.operation == full


def test_fee_object_is_read_as_decimal() -> None:
    data = loads(FULL_ANSWER.replace('"fee": null', '"fee": {"amount": 1.5, "currency": "UAH"}'))
    op = parse_operation(data, DOC_ORDER)
    assert op.fee_amount == Decimal("1.5") and op.fee_currency == "UAH"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (('"order_id": "123"', '"order_id": "124"'), "order"),
        (('"pos_id": "dc728de1', '"pos_id": "00000000'), "POS"),
        (('"status": "success"', '"status": "captured"'), "status"),
        (('"order_currency": "UAH"', '"order_currency": "USD"'), "USD"),
        (('"amount": 100', '"amount": -100'), "non-negative"),
        (('"amount": 100', '"amount": "lots"'), "number"),
        (('"amount": 100', '"amount": 100.001'), "decimals"),
        (('"amount": 100', '"amount": [100]'), "number"),
        (('"status": "success",', ""), "status"),
        (('"order_id": "123",', ""), "order_id"),
        (('"fee": null', '"fee": "1.5"'), "fee"),
        (('"method": "capture"', '"method": "refund"'), "refund"),
    ],
)
def test_hostile_answers_are_in_doubt_never_believed(change: tuple[str, str], why: str) -> None:
    transport, _ = answering(200, FULL_ANSWER.replace(*change))
    reply = capture(transport)
    assert reply.kind is ReplyKind.IN_DOUBT
    assert why in reply.message
    assert reply.operation is None


def test_answer_that_is_not_json_or_not_an_object_is_in_doubt() -> None:
    for body in ("<html>502</html>", "[1, 2]", "null", ""):
        transport, _ = answering(200, body)
        assert capture(transport).kind is ReplyKind.IN_DOUBT


def test_enormous_answer_is_refused_as_in_doubt() -> None:
    transport, _ = answering(200, b'{"x": "' + b"a" * 2_000_000 + b'"}')
    reply = capture(transport)
    assert reply.kind is ReplyKind.IN_DOUBT
    assert "larger than" in reply.message
    assert len(reply.body) <= 2000


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ReplyKind.REFUSED),
        (401, ReplyKind.UNAUTHORIZED),
        (404, ReplyKind.REFUSED),
        (406, ReplyKind.REFUSED),
        (429, ReplyKind.THROTTLED),
        (500, ReplyKind.IN_DOUBT),
        (502, ReplyKind.IN_DOUBT),
        (503, ReplyKind.IN_DOUBT),
    ],
)
def test_http_statuses(status: int, kind: ReplyKind) -> None:
    body = '{"message": "Invalid transaction amount", "args": {"code": "4139"}}'
    transport, _ = answering(status, body, {"Retry-After": "3"})
    reply = capture(transport)
    assert reply.kind is kind
    assert reply.http_status == status
    if kind is ReplyKind.REFUSED:
        assert reply.code == "4139" and reply.message == "Invalid transaction amount"
    if kind is ReplyKind.THROTTLED:
        assert reply.retry_after == "3"


def test_error_body_with_a_list_of_violations() -> None:
    body = '{"message": "bad", "args": [{"field_name": "charge_amount", "violation": "too big"}]}'
    transport, _ = answering(400, body)
    assert "charge_amount: too big" in capture(transport).message


def test_connection_refused_is_not_sent_and_lost_connection_is_in_doubt() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def lose(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    assert capture(httpx.MockTransport(refuse)).kind is ReplyKind.NOT_SENT
    assert capture(httpx.MockTransport(lose)).kind is ReplyKind.IN_DOUBT
    assert capture(httpx.MockTransport(slow)).kind is ReplyKind.IN_DOUBT


def test_lookup_encodes_the_order_id_as_one_path_segment() -> None:
    transport, seen = answering(404, '{"message": "not found"}')
    reply = lookup(transport, Order(2, "A/B?C#D%E F", POS, "UAH", None))
    assert reply.kind is ReplyKind.NOT_FOUND
    assert (
        seen[0].url.raw_path == f"/api/v1/pos/{POS}/orders/A%2FB%3FC%23D%25E%20F/capture".encode()
    )


def test_lookup_list_shape_picks_the_capture() -> None:
    auth = FULL_ANSWER.replace('"method": "capture"', '"method": "auth"')
    transport, _ = answering(200, f"[{auth}, {FULL_ANSWER}]")
    reply = lookup(transport)
    assert reply.kind is ReplyKind.OPERATION and reply.operation is not None
    assert reply.operation.method == "capture"
    transport, _ = answering(200, f"[{auth}]")
    assert lookup(transport).kind is ReplyKind.NOT_FOUND


def test_the_hold_itself_is_not_a_capture() -> None:
    auth = FULL_ANSWER.replace('"method": "capture"', '"method": "auth"')
    transport, _ = answering(200, auth)
    assert capture(transport).kind is ReplyKind.IN_DOUBT


def test_numeric_ids_and_codes_are_tolerated() -> None:
    numeric = FULL_ANSWER.replace('"status_code": "1000"', '"status_code": 1000').replace(
        '"order_id": "123"', '"order_id": 123'
    )
    transport, _ = answering(200, numeric)
    reply = capture(transport)
    assert reply.kind is ReplyKind.OPERATION and reply.operation is not None
    assert reply.operation.status_code == "1000" and reply.operation.order_id == "123"


@pytest.mark.parametrize(
    "body",
    [
        FULL_ANSWER.replace('"amount": 100', '"amount": 1E+30'),
        FULL_ANSWER.replace('"amount": 100', '"amount": 1e999999999'),
        "[" * 200_000 + "]" * 200_000,  # under the size cap, deeper than any parser's stack
    ],
)
def test_absurd_answers_are_in_doubt(body: str) -> None:
    transport, _ = answering(200, body)
    assert capture(transport).kind is ReplyKind.IN_DOUBT


def test_an_answer_that_cannot_be_decoded_is_in_doubt() -> None:
    transport, _ = answering(200, b"not gzip at all", {"Content-Encoding": "gzip"})
    reply = capture(transport)
    assert reply.kind is ReplyKind.IN_DOUBT and "DecodingError" in reply.message


def test_a_credential_echoed_by_the_provider_is_masked() -> None:
    body = '{"message": "bad request: X-API-AUTH: CPAY KEY:SECRET, key ENDPOINTS"}'
    transport, _ = answering(400, body)
    reply = capture(transport)
    for secret in ("KEY:", "SECRET", "ENDPOINTS"):
        assert secret not in reply.body and secret not in reply.message
    assert "****" in reply.message


def test_lookup_list_prefers_a_successful_capture() -> None:
    failed = FULL_ANSWER.replace('"status": "success"', '"status": "failure"')
    transport, _ = answering(200, f"[{FULL_ANSWER}, {failed}]")
    reply = lookup(transport)
    assert reply.operation is not None and reply.operation.status == "success"


def test_a_success_without_currency_is_in_doubt() -> None:
    transport, _ = answering(200, FULL_ANSWER.replace('"order_currency": "UAH",', ""))
    assert capture(transport).kind is ReplyKind.IN_DOUBT


def test_a_redirected_capture_is_not_followed() -> None:
    transport, seen = answering(307, "", {"Location": "https://elsewhere.example/capture"})
    reply = capture(transport)
    assert len(seen) == 1  # not replayed anywhere
    # a 303 after a POST usually means it was processed: in doubt, settled by a look-up
    assert reply.kind is ReplyKind.IN_DOUBT and "elsewhere.example" in reply.message


@pytest.mark.parametrize(
    "change",
    [('"order_id": "123"', '"order_id": 1e5000'), ('"status_code": "1000"', '"status_code": 1e99')],
)
def test_absurd_numbers_in_text_fields_are_in_doubt_quickly(change: tuple[str, str]) -> None:
    import time

    transport, _ = answering(200, FULL_ANSWER.replace(*change))
    started = time.monotonic()
    assert capture(transport).kind is ReplyKind.IN_DOUBT
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    "field", ['"pos_id": "dc728de1-51ef-4ef1-80f7-3b44b07b5667",', '"order_currency": "UAH",']
)
@pytest.mark.parametrize("status", ["success", "failure", "pending"])
def test_an_answer_that_does_not_name_its_pos_and_currency_is_in_doubt(
    field: str, status: str
) -> None:
    body = FULL_ANSWER.replace(field, "").replace('"status": "success"', f'"status": "{status}"')
    transport, _ = answering(200, body)
    assert capture(transport).kind is ReplyKind.IN_DOUBT


def test_a_listed_operation_that_does_not_say_what_it_is_is_in_doubt() -> None:
    anonymous = FULL_ANSWER.replace('"method": "capture",', "")
    transport, _ = answering(200, f"[{anonymous}]")
    assert lookup(transport).kind is ReplyKind.IN_DOUBT
    shouting = FULL_ANSWER.replace('"method": "capture"', '"method": "CAPTURE"')
    transport, _ = answering(200, f"[{shouting}]")
    assert lookup(transport).kind is ReplyKind.OPERATION


def test_a_404_page_that_is_not_the_providers_is_no_proof() -> None:
    transport, _ = answering(404, "<html>Not Found</html>")
    assert lookup(transport).kind is ReplyKind.IN_DOUBT
    transport, _ = answering(404, '{"message": "Payment not found", "args": {"code": "S-404"}}')
    assert lookup(transport).kind is ReplyKind.NOT_FOUND
