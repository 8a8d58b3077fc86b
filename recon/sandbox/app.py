"""The Financial Line API as an ASGI app over a `Ledger`: headers, rate limit, latency, faults.

Mounted under `/api/v1`, so a client's base URL is `http://<host>/api/v1` whether it reaches the
app in-process (`httpx.ASGITransport(app=...)`, keep `raise_app_exceptions=True`) or over
loopback through `serve`. A dropped connection looks the same both ways to an httpx client: an
`httpx.RemoteProtocolError` (in-process the app raises `ConnectionDropped`, a subclass; through
uvicorn the server closes the socket after a partial body).

Note for clients: `ASGITransport` ignores httpx timeouts, so an in-process client must enforce its
own deadline (`asyncio.timeout`). The `slow` fault's commit runs in its own task, shielded, so it
still commits after such a client cancelled the request, as a real slow provider would.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from recon.sandbox.faults import Fault, FaultPlan
from recon.sandbox.ledger import Answer, Ledger, error_body, to_json
from recon.settings import is_loopback

API_PREFIX = "/api/v1"
STATS_PATH = "/_sandbox/stats"  # counts for tests and benchmarks; outside the API, no credentials
# The POS the sample data and `--sandbox` runs use by default (FINLINE_POS_ID).
SANDBOX_POS_ID = "5b0c1d2e-3f40-4a51-8b62-7c83d94ea5f6"
# A second POS some sample rows name explicitly.
SANDBOX_OTHER_POS_ID = "0e8d6f4a-2b1c-4d3e-9f5a-6b7c8d9e0f1a"


@dataclass(frozen=True)
class Credentials:
    """The three secrets of API.md; `repr` masks them so logs never show one."""

    api_key: str
    api_secret: str
    endpoints_key: str

    def __repr__(self) -> str:
        return "Credentials(api_key='***', api_secret='***', endpoints_key='***')"

    @property
    def auth_header(self) -> str:
        """The X-API-AUTH value: `CPAY {API_KEY}:{API_SECRET}`."""
        return f"CPAY {self.api_key}:{self.api_secret}"


SANDBOX_CREDENTIALS = Credentials("sandbox-api-key", "sandbox-api-secret", "sandbox-endpoints-key")


class ConnectionDropped(httpx.RemoteProtocolError):
    """The sandbox broke the connection after committing (fault drop_after_commit)."""


class SlidingWindowLimiter:
    """At most `per_second` requests in any one-second window; refused ones do not count.

    A fractional rate keeps its average: capacity floor(rate) (at least 1) per window of
    capacity / rate seconds (0.5/s is one request per 2 s).
    """

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        if per_second <= 0:
            raise ValueError("the rate limit must be above zero")
        self.capacity = max(1, math.floor(per_second))
        self.window = self.capacity / per_second
        self._clock = clock
        self._admitted: deque[float] = deque()
        self._lock = threading.Lock()

    def admit(self) -> float | None:
        """None when the request may go on, else the seconds until a slot frees."""
        with self._lock:
            now = self._clock()
            while self._admitted and self._admitted[0] <= now - self.window:
                self._admitted.popleft()
            if len(self._admitted) < self.capacity:
                self._admitted.append(now)
                return None
            return self._admitted[0] + self.window - now


@dataclass
class _Sandbox:
    ledger: Ledger
    credentials: Credentials
    faults: FaultPlan | None
    limiter: SlidingWindowLimiter | None
    latency: float
    capture_attempts: dict[str, int] = field(default_factory=dict)
    lookup_attempts: dict[str, int] = field(default_factory=dict)
    background: set[asyncio.Task[Answer]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0  # every request that reached the gate
    throttled: int = 0  # of them, answered 429

    def stats(self) -> dict[str, Any]:
        """What tests and benchmarks read back from a server in another process."""
        return {
            "requests": self.requests,
            "throttled": self.throttled,
            "captures": self.ledger.capture_count_by_order(),
        }

    def next_attempt(self, counter: dict[str, int], order_id: str) -> int:
        with self.lock:
            counter[order_id] = counter.get(order_id, 0) + 1
            return counter[order_id]


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer written by `to_json`, so Decimal amounts stay exact numbers."""
    return Response(to_json(body), status, headers, media_type="application/json")


class _DroppedResponse(Response):
    """Starts a 200 answer, sends part of it, then fails: the client never gets the answer.

    The response must have started, or Starlette (and uvicorn) would answer a tidy 500 instead.
    """

    def __init__(self, request: Request) -> None:
        super().__init__(status_code=200)
        self.request = request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"operation_id": "', "more_body": True})
        request = httpx.Request(self.request.method, str(self.request.url))
        raise ConnectionDropped("sandbox dropped the connection after committing", request=request)


def create_app(
    ledger: Ledger,
    *,
    credentials: Credentials | None = None,
    faults: FaultPlan | None = None,
    rate_limit: float | None = None,
    latency_ms: float = 0,
) -> Starlette:
    """The simulator over `ledger`; credentials None means `SANDBOX_CREDENTIALS`."""
    sandbox = _Sandbox(
        ledger=ledger,
        credentials=credentials or SANDBOX_CREDENTIALS,
        faults=faults,
        limiter=SlidingWindowLimiter(rate_limit) if rate_limit else None,
        latency=latency_ms / 1000,
    )

    async def capture(request: Request) -> Response:
        refused = await _gate(sandbox, request)
        if refused is not None:
            return refused
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != (
            "application/json"
        ):
            return json_response(406, error_body("S-406", "Content-Type must be application/json"))
        try:
            body = json.loads(
                await request.body(),
                parse_float=Decimal,
                parse_int=Decimal,
                parse_constant=_no_constant,
            )
        except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
            return json_response(400, error_body("4151", "The body is not JSON"))
        order_id = body.get("order_id") if isinstance(body, dict) else None
        order_key = order_id if isinstance(order_id, str) else ""
        fault = None
        if sandbox.faults is not None:
            attempt = sandbox.next_attempt(sandbox.capture_attempts, order_key)
            fault = sandbox.faults.for_capture(order_key, attempt)
        return await _capture(sandbox, request, body, fault)

    async def lookup(request: Request) -> Response:
        refused = await _gate(sandbox, request)
        if refused is not None:
            return refused
        parsed = _lookup_path(request)
        if parsed is None:
            return json_response(404, error_body("S-404", "Not found"))
        pos_id, order_id, capture_only = parsed
        if sandbox.faults is not None and sandbox.faults.lookup503:
            attempt = sandbox.next_attempt(sandbox.lookup_attempts, order_id)
            if sandbox.faults.for_lookup(order_id, attempt):
                return json_response(503, error_body("4005", "Service unavailable"))
        if capture_only:
            status, answer = sandbox.ledger.capture_operation(pos_id, order_id)
            return json_response(status, answer)
        status, operations = sandbox.ledger.operations(pos_id, order_id)
        return json_response(status, operations)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        return json_response(status, error_body(f"S-{status}", "Not found or method not allowed"))

    async def stats(request: Request) -> Response:
        return json_response(200, sandbox.stats())

    routes = [
        Route(STATS_PATH, stats, methods=["GET"]),
        Mount(
            API_PREFIX,
            routes=[
                Route("/capture", capture, methods=["POST"]),
                Route("/pos/{rest:path}", lookup, methods=["GET"]),
            ],
        ),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.state.sandbox = sandbox
    return app


async def _gate(sandbox: _Sandbox, request: Request) -> Response | None:
    """What every request meets first: the rate limit, the latency, the credentials."""
    wait = sandbox.limiter.admit() if sandbox.limiter else None
    with sandbox.lock:
        sandbox.requests += 1
        sandbox.throttled += wait is not None
    if sandbox.latency:
        await asyncio.sleep(sandbox.latency)
    if wait is not None:
        return _too_many(wait)
    creds = sandbox.credentials
    auth = request.headers.get("x-api-auth", "")
    key = request.headers.get("x-api-key", "")
    # Both compared in full (no short-circuit) and in constant time: no timing hints.
    auth_ok = hmac.compare_digest(auth.encode(), creds.auth_header.encode())
    key_ok = hmac.compare_digest(key.encode(), creds.endpoints_key.encode())
    if not (auth_ok and key_ok):
        return json_response(401, error_body("S-401", "Invalid API credentials"))
    return None


def _too_many(wait: float) -> Response:
    retry_after = max(1, math.ceil(wait))
    return json_response(
        429,
        error_body("S-429", "Too many requests"),
        headers={"Retry-After": str(retry_after)},
    )


async def _capture(sandbox: _Sandbox, request: Request, body: Any, fault: Fault | None) -> Response:
    kind = fault.kind if fault else ""
    if kind == "rate429":
        assert fault is not None
        return _too_many(fault.seconds)
    if kind == "error503_before":
        return json_response(503, error_body("4005", "Service unavailable"))
    if kind == "slow":
        assert fault is not None
        task = asyncio.ensure_future(_commit_later(sandbox.ledger, body, fault.seconds))
        sandbox.background.add(task)  # a reference, so the commit outlives a gone client
        task.add_done_callback(sandbox.background.discard)
        status, answer = await asyncio.shield(task)
    else:
        pending_for = fault.seconds if fault and kind == "pending" else 0.0
        status, answer = sandbox.ledger.capture(body, pending_for=pending_for)
    if kind == "drop_after_commit":
        return _DroppedResponse(request)
    if kind == "error500_after_commit":
        return json_response(500, error_body("4005", "Internal error"))
    if kind == "not_json":
        page = "<html><body><h1>502 Bad Gateway</h1><p>upstream timed out</p></body></html>"
        return Response(page, 200, media_type="text/html")
    return json_response(status, answer)


async def _commit_later(ledger: Ledger, body: Any, seconds: float) -> Answer:
    await asyncio.sleep(seconds)
    return ledger.capture(body)


def _lookup_path(request: Request) -> tuple[str, str, bool] | None:
    """(pos_id, order_id, capture only) from the raw path, where `%2F` in an id stays inside it.

    Starlette routes on the decoded path, which would split an order id such as `INV/7`.
    """
    raw = request.scope.get("raw_path") or request.url.path.encode()
    segments = raw.decode("latin-1").split("?")[0].split("/")
    capture_only = len(segments) >= 5 and segments[-1] == "capture" and segments[-3] == "orders"
    if capture_only:
        segments = segments[:-1]
    if len(segments) < 4 or segments[-2] != "orders" or segments[-4] != "pos":
        return None
    try:
        pos_id = unquote(segments[-3], errors="strict")
        order_id = unquote(segments[-1], errors="strict")
    except UnicodeDecodeError:
        return None
    return pos_id, order_id, capture_only


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def make_server(
    app: Starlette, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info"
) -> uvicorn.Server:
    """A uvicorn server for the app, not started; loopback only, since it takes fake money."""
    if not is_loopback(host):
        raise ValueError(f"the sandbox serves on loopback only, not on {host!r}")
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))


def serve(app: Starlette, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the app on loopback until interrupted (`recon sandbox serve`)."""
    make_server(app, host, port).run()
