"""The Financial Line client: `capture` and the status look-ups, answers checked before believed.

Every call returns a `Reply` instead of raising, because the journal records every attempt,
whatever came back. The kinds of reply, and what the batch does with each:

    Reply.kind
    ├── OPERATION     a well-formed operation for this order (any status): record it
    ├── NOT_FOUND     look-up only: the provider has no such operation (404)
    ├── REFUSED       a final 4xx (400, 404 on capture, 405, 406, ...): not processed, not retried
    ├── THROTTLED     429: not processed; retry later and slow down
    ├── UNAUTHORIZED  401: a credential is wrong; stop the whole batch
    ├── NOT_SENT      the request never left (connection refused, pool timeout): safe to retry
    └── IN_DOUBT      it may have been processed (timeout after sending, connection lost, 5xx,
                      an answer that does not parse or does not match the order): look it up
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import httpx

from recon import money
from recon.schema import Order
from recon.settings import Settings

log = logging.getLogger("recon.api")

MAX_AMOUNT_DIGITS = 15  # integer digits of any real amount; 1E+30 is a broken or hostile answer
MAX_ID_DIGITS = 40  # a numeric id or code longer than this is not one
MAX_ANSWER_BYTES = 1_000_000  # a capture answer is < 1 kB; anything huge is hostile or broken
STATUSES = ("init", "pending", "success", "failure")
FINAL_STATUSES = ("success", "failure")

# API.md, "Statuses and codes". Unknown codes are kept and shown as they came.
STATUS_CODES: dict[str, str] = {
    "1000": "Transaction is successful",
    "1002": "Amount successfully blocked",
    "1004": "Refund successful",
    "1009": "Reverse successful",
    "2000": "Transaction is accepted (pending)",
    "2119": "Processing (pending)",
    "9000": "Unknown error (pending: look again later)",
    "4000": "Required fields missing",
    "4005": "Internal error",
    "4010": "Limits exceeded",
    "4012": "Limits exceeded",
    "4124": "Invalid currency",
    "4139": "Invalid transaction amount",
    "4150": "Invalid operation",
    "4151": "Invalid input fields",
    "4152": "Invalid configuration",
    "4153": "Rejected",
    "6001": "Amount or count limit exceeded",
}


def code_meaning(code: str) -> str:
    return STATUS_CODES.get(code, "not in the provider's table")


class ReplyKind(StrEnum):
    OPERATION = "operation"
    NOT_FOUND = "not_found"
    REFUSED = "refused"
    THROTTLED = "throttled"
    UNAUTHORIZED = "unauthorized"
    NOT_SENT = "not_sent"
    IN_DOUBT = "in_doubt"


@dataclass(frozen=True)
class Operation:
    """One provider operation (a capture, or the auth in a look-up), checked and typed."""

    order_id: str
    pos_id: str
    method: str
    status: str
    status_code: str
    status_description: str
    amount: Decimal | None
    currency: str
    operation_id: str = ""
    payment_id: str = ""
    transaction_id: str = ""
    created_at: str = ""
    processing_time: str = ""
    fee_amount: Decimal | None = None
    fee_currency: str = ""
    comment: str = ""

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class Reply:
    kind: ReplyKind
    http_status: int | None = None
    body: str = ""  # the answer as received (capped), for the journal
    operation: Operation | None = None
    code: str = ""  # the provider's code for a refusal
    message: str = ""  # plain words: why refused, why in doubt
    retry_after: str | None = None  # the raw Retry-After header of a 429


@dataclass(frozen=True)
class _Answer:
    """An HTTP answer read in full, before it is judged."""

    status: int
    body: str
    retry_after: str | None
    location: str = ""


class MalformedAnswer(ValueError):
    """An answer that cannot be believed: it is not the operation we asked about."""


def _text(data: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise MalformedAnswer(f"answer has no {key!r}")
        return ""
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        if value.adjusted() > MAX_ID_DIGITS:  # int() of 1e1000000 takes the CPU for seconds
            raise MalformedAnswer(f"answer's {key!r} is an absurd number")
        return str(int(value))  # `"status_code": 1000` or `"order_id": 123`: tolerated
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedAnswer(f"answer's {key!r} is not text: {value!r:.60}")
    return str(value)


def _amount(value: Any, currency: str, what: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise MalformedAnswer(f"{what} is not a number: {value!r:.60}")
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise MalformedAnswer(f"{what} is not a number: {value!r:.60}") from exc
    if not amount.is_finite() or amount < 0:
        raise MalformedAnswer(f"{what} is not a non-negative amount: {value!r:.60}")
    if amount.adjusted() >= MAX_AMOUNT_DIGITS:
        raise MalformedAnswer(f"{what} is implausibly large: {value!r:.60}")
    if currency and money.is_currency(currency):
        exponent = amount.as_tuple().exponent
        decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        if decimals > money.currency_decimals(currency) and amount != amount.quantize(
            Decimal(1).scaleb(-money.currency_decimals(currency))
        ):
            raise MalformedAnswer(f"{what} has more decimals than {currency} allows: {value}")
    return amount


def parse_operation(data: Any, order: Order | None = None) -> Operation:
    """Type one operation and check it is about `order`; MalformedAnswer when it cannot be believed.

    The provider's examples name the currency `order_currency` on a full capture and `currency` on
    a partial one; both are accepted.
    """
    if not isinstance(data, dict):
        raise MalformedAnswer(f"answer is not a JSON object: {type(data).__name__}")
    status = _text(data, "status", required=True)
    if status not in STATUSES:
        raise MalformedAnswer(f"unknown status {status!r:.40}")
    currency = _text(data, "order_currency") or _text(data, "currency")
    fee = data.get("fee")
    if fee is not None and not isinstance(fee, dict):
        raise MalformedAnswer(f"fee is not an object: {fee!r:.60}")
    fee_currency = _text(fee, "currency") if fee else ""
    op = Operation(
        order_id=_text(data, "order_id", required=True),
        pos_id=_text(data, "pos_id"),
        method=_text(data, "method"),
        status=status,
        status_code=_text(data, "status_code"),
        status_description=_text(data, "status_description"),
        amount=_amount(data.get("amount"), currency, "amount"),
        currency=currency,
        operation_id=_text(data, "operation_id"),
        payment_id=_text(data, "payment_id"),
        transaction_id=_text(data, "transaction_id"),
        created_at=_text(data, "created_at"),
        processing_time=_text(data, "processing_time"),
        fee_amount=_amount(fee.get("amount"), fee_currency, "fee amount") if fee else None,
        fee_currency=fee_currency,
        comment=_text(data, "comment"),
    )
    if order is not None:
        if not op.pos_id or not op.currency:
            raise MalformedAnswer("answer does not name its POS and currency")
        if op.order_id != order.order_id:
            raise MalformedAnswer(
                f"answer is for order {op.order_id!r:.40}, not {order.order_id!r}"
            )
        if op.pos_id and op.pos_id.lower() != order.pos_id.lower():
            raise MalformedAnswer(f"answer is for POS {op.pos_id!r:.40}, not {order.pos_id!r}")
        if op.currency and op.currency != order.currency:
            raise MalformedAnswer(
                f"answer is in {op.currency!r:.10}, the order in {order.currency}"
            )
        if op.status == "success" and (op.amount is None or not op.currency):
            raise MalformedAnswer("a successful answer without its amount and currency")
        if op.method and op.method.lower() != "capture":  # the hold (auth) is not a capture
            raise MalformedAnswer(f"answer is a {op.method!r:.20} operation, not a capture")
    return op


def loads(text: str) -> Any:
    """JSON with every number as Decimal: no binary float ever touches an amount."""
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def capture_body(order: Order) -> bytes:
    """The documented body: fields in the documented order, amounts as exact JSON numbers."""
    fields: list[tuple[str, str]] = [
        ("pos_id", json.dumps(order.pos_id)),
        ("order_id", json.dumps(order.order_id)),
        ("order_currency", json.dumps(order.currency)),
    ]
    if order.amount is not None:
        fields.append(("charge_amount", money.json_number(order.amount)))
    if order.comment:
        fields.append(("comment", json.dumps(order.comment, ensure_ascii=False)))
    if order.server_url:
        fields.append(("server_url", json.dumps(order.server_url)))
    return ("{" + ",".join(f'"{k}":{v}' for k, v in fields) + "}").encode("utf-8")


def _error_fields(data: Any) -> tuple[str, str]:
    """(code, message) of a 4xx body: `{"message", "args": {"code"}}` or a list of violations."""
    if not isinstance(data, dict):
        return "", ""
    message = data.get("message")
    message = message if isinstance(message, str) else ""
    args = data.get("args")
    code = ""
    if isinstance(args, dict) and isinstance(args.get("code"), str | int | Decimal):
        code = str(args["code"])
    elif isinstance(args, list):
        parts = [
            f"{a.get('field_name')}: {a.get('violation')}"
            for a in args
            if isinstance(a, dict) and "field_name" in a
        ]
        message = "; ".join([message, *parts]) if message else "; ".join(parts)
    for key in ("status_code", "code"):
        if not code and isinstance(data.get(key), str | int | Decimal):
            code = str(data[key])
    return code, message[:500]


class Client:
    """One Financial Line endpoint. The transport is a parameter: network, sandbox or mock."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        max_connections: int = 16,
    ) -> None:
        self.settings = settings
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=settings.base_url + "/",
            transport=transport,
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,  # a redirected POST could be replayed somewhere else
            verify=True,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers=self.headers(),
        )

    def _scrub(self, text: str) -> str:
        """An answer that echoes a credential (some error pages quote the request) is kept
        with the credential masked: answers go to the journal, the workbook and the screen."""
        for secret in self.settings.secrets():
            text = text.replace(secret, "****")
        return text

    def headers(self) -> dict[str, str]:
        s = self.settings
        return {
            "X-API-AUTH": f"CPAY {s.api_key.reveal()}:{s.api_secret.reveal()}",
            "X-API-KEY": s.endpoints_key.reveal(),
            "Content-Type": "application/json",
        }

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def capture(self, order: Order) -> Reply:
        request = self._http.build_request("POST", "capture", content=capture_body(order))
        answer = await self._send(request)
        if isinstance(answer, Reply):
            return answer
        return self._classify(answer, order, on_404=ReplyKind.REFUSED, lookup=False)

    async def lookup_capture(self, order: Order) -> Reply:
        """The order's capture operation, if any (`GET /pos/{pos}/orders/{order}/capture`)."""
        path = f"pos/{quote(order.pos_id, safe='')}/orders/{quote(order.order_id, safe='')}/capture"
        request = self._http.build_request("GET", path)
        answer = await self._send(request)
        if isinstance(answer, Reply):
            return answer
        return self._classify(answer, order, on_404=ReplyKind.NOT_FOUND, lookup=True)

    async def _send(self, request: httpx.Request) -> Reply | _Answer:
        """Send with an overall deadline: httpx's timeouts are per phase, and a transport in the
        same process (the sandbox) has none at all."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange(request)
        except TimeoutError:
            return Reply(ReplyKind.IN_DOUBT, message=f"no answer within {self.timeout:g} s")

    async def _exchange(self, request: httpx.Request) -> Reply | _Answer:
        log.debug("%s %s %s", request.method, request.url, request.content.decode("utf-8"))
        try:
            response = await self._http.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return Reply(ReplyKind.NOT_SENT, message=f"could not connect: {type(exc).__name__}")
        except httpx.TimeoutException as exc:
            return Reply(ReplyKind.IN_DOUBT, message=f"no answer in time ({type(exc).__name__})")
        except httpx.HTTPError as exc:  # transport errors, and any other the exchange raises
            return Reply(ReplyKind.IN_DOUBT, message=f"connection lost ({type(exc).__name__})")
        try:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) > MAX_ANSWER_BYTES:
                    return Reply(
                        ReplyKind.IN_DOUBT,
                        response.status_code,
                        body=bytes(body[:2000]).decode("utf-8", "replace"),
                        message=f"answer larger than {MAX_ANSWER_BYTES} bytes refused",
                    )
        except httpx.TimeoutException as exc:
            return Reply(
                ReplyKind.IN_DOUBT, response.status_code, message=f"answer cut off ({exc})"
            )
        except httpx.HTTPError as exc:  # cut off, or undecodable (a false Content-Encoding)
            name = type(exc).__name__
            return Reply(
                ReplyKind.IN_DOUBT, response.status_code, message=f"answer cut off ({name})"
            )
        finally:
            await response.aclose()
        text = self._scrub(bytes(body).decode("utf-8", "replace"))
        log.debug("answer %s %s", response.status_code, text[:2000])
        return _Answer(
            response.status_code,
            text,
            response.headers.get("Retry-After"),
            self._scrub(response.headers.get("Location", ""))[:200],
        )

    def _classify(self, raw: _Answer, order: Order, *, on_404: ReplyKind, lookup: bool) -> Reply:
        """Turn an HTTP answer into a Reply kind; anything that cannot be believed is IN_DOUBT."""
        try:
            return self._judge(raw, order, on_404=on_404, lookup=lookup)
        # whatever a hostile answer trips, it is no answer to believe
        except Exception as exc:  # noqa: BLE001
            why = f"answer could not be read ({type(exc).__name__})"
            return Reply(ReplyKind.IN_DOUBT, raw.status, raw.body, message=why)

    def _judge(self, raw: _Answer, order: Order, *, on_404: ReplyKind, lookup: bool) -> Reply:
        status = raw.status
        data: Any = None
        try:
            data = loads(raw.body) if raw.body else None
        except (ValueError, RecursionError):  # RecursionError: `[[[[...` nested 200k deep
            data = None
        if status == 200:
            if lookup and isinstance(data, list):  # the full look-up shape: pick the capture
                methods = [
                    str(d.get("method", "")).lower() if isinstance(d, dict) else "" for d in data
                ]
                if any(m not in ("auth", "capture") for m in methods):
                    # an entry that does not say what it is might be the capture
                    why = "look-up lists an operation that is neither the auth nor a capture"
                    return Reply(ReplyKind.IN_DOUBT, 200, raw.body, message=why)
                captures = [d for d, m in zip(data, methods, strict=True) if m == "capture"]
                if not captures:
                    return Reply(ReplyKind.NOT_FOUND, 200, raw.body, message="no capture on record")
                # A success outranks a pending one, which outranks a refusal: a failed attempt
                # beside a successful one must not make the order look uncaptured.
                rank = {"success": 0, "pending": 1, "init": 1}
                data = min(reversed(captures), key=lambda d: rank.get(str(d.get("status")), 2))
            try:
                op = parse_operation(data, order)
            except MalformedAnswer as exc:
                return Reply(
                    ReplyKind.IN_DOUBT, 200, raw.body, message=f"answer not believed: {exc}"
                )
            return Reply(ReplyKind.OPERATION, 200, raw.body, operation=op)
        code, message = _error_fields(data)
        if status == 401:
            return Reply(ReplyKind.UNAUTHORIZED, 401, raw.body, code=code, message=message)
        if status == 429:
            return Reply(
                ReplyKind.THROTTLED,
                429,
                raw.body,
                message="too many requests",
                retry_after=raw.retry_after,
            )
        if status == 404:
            if lookup and not isinstance(data, dict):
                # a router's or proxy's 404 page is not the provider saying "no such capture"
                why = "look-up answered 404 without the provider's error body"
                return Reply(ReplyKind.IN_DOUBT, 404, raw.body, message=why)
            return Reply(on_404, 404, raw.body, code=code, message=message or "not found")
        if 300 <= status < 400:  # never followed (a replayed POST could capture elsewhere), and
            # a 303 after a POST usually means it was processed: look it up
            where = raw.location or "elsewhere"
            why = f"redirected to {where}, not followed; the capture may have happened"
            return Reply(ReplyKind.IN_DOUBT, status, raw.body, message=why)
        if 400 <= status < 500:
            return Reply(ReplyKind.REFUSED, status, raw.body, code=code, message=message)
        return Reply(
            ReplyKind.IN_DOUBT,
            status,
            raw.body,
            code=code,
            message=f"server error {status}: the capture may have happened",
        )
