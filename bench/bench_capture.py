"""Capture-stage throughput (issue 4): pacing against a strict provider limit, and overhead.

    .venv/bin/python bench/bench_capture.py [a|b|c ...]

(a) `recon sandbox serve` with 50 ms latency and at most 206 requests in any second; --rate 200
    on 4,000 orders: target >= 97 % of 200/s, <= 0.5 % of requests answered 429.
(b) the provider's limit 30 % below --rate (140/s against --rate 200): target >= 85 % of 140/s,
    <= 5 % of requests answered 429.
(c) the in-process sandbox, no latency, no limit: the capture stage (journal included) against
    a bare httpx.AsyncClient loop sending the same requests: target >= 50 %.
"""

from __future__ import annotations

import asyncio
import csv
import sys
import tempfile
import time
from pathlib import Path

import httpx

from recon.api import Client, capture_body
from recon.batch import BatchOptions, run_batch
from recon.journal import Journal
from recon.pacing import RateLimiter
from recon.sandbox.app import SANDBOX_CREDENTIALS, SANDBOX_POS_ID, create_app
from recon.sandbox.embedded import BASE_URL
from recon.sandbox.ledger import Ledger, holds_for_orders
from recon.sandbox.process import SandboxServer
from recon.schema import Batch, Order
from recon.settings import Secret, Settings


def make_orders(n: int) -> list[Order]:
    from decimal import Decimal

    return [
        Order(i + 2, f"B-{i:06d}", SANDBOX_POS_ID, "UAH", Decimal(10 + i % 90)) for i in range(n)
    ]


def settings(base_url: str) -> Settings:
    c = SANDBOX_CREDENTIALS
    return Settings(
        Secret(c.api_key), Secret(c.api_secret), Secret(c.endpoints_key), SANDBOX_POS_ID, base_url
    )


def capture_stage(
    orders: list[Order], base_url: str, rate: float, concurrency: int,
    transport: httpx.AsyncBaseTransport | None = None,
) -> float:  # fmt: skip
    """Seconds run_batch takes for these orders, journal included (planning excluded)."""
    with tempfile.TemporaryDirectory() as tmp, Journal(Path(tmp) / "j.sqlite") as journal:
        run_id = journal.create_run(
            Batch(tuple(orders), (), ()), input_name="bench.csv", input_size=0,
            input_sha256="0" * 64, base_url=base_url, rate=rate, user="bench",
        )  # fmt: skip
        options = BatchOptions(concurrency=concurrency, timeout=10)

        async def go() -> float:
            async with Client(
                settings(base_url), transport=transport, timeout=10, max_connections=concurrency
            ) as client:
                start = time.perf_counter()
                await run_batch(journal, run_id, client, RateLimiter(rate), options)
                return time.perf_counter() - start

        return asyncio.run(go())


def against_server(limit: float, rate: float, n: int) -> dict[str, float]:
    orders = make_orders(n)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "orders.csv"
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["order_id", "order_currency", "charge_amount", "pos_id"])
            w.writerows([o.order_id, o.currency, o.amount, o.pos_id] for o in orders)
        args = ["--orders", str(path), "--latency-ms", "50", "--rate-limit", str(limit)]
        with SandboxServer(*args) as server:
            seconds = capture_stage(orders, server.base_url, rate, concurrency=48)
            stats = server.stats()
    return {
        "orders": n,
        "seconds": seconds,
        "per_second": n / seconds,
        "requests": stats["requests"],
        "throttled_share": stats["throttled"] / stats["requests"],
        "captured": len(stats["captures"]),
    }


def overhead(n: int = 3000, concurrency: int = 8) -> dict[str, float]:
    orders = make_orders(n)

    def transport() -> httpx.ASGITransport:
        return httpx.ASGITransport(app=create_app(Ledger(holds_for_orders(orders))))

    async def bare() -> float:
        client = Client(settings(BASE_URL))  # only for its headers: the same requests
        async with httpx.AsyncClient(
            transport=transport(), base_url=BASE_URL + "/", headers=client.headers()
        ) as http:
            queue = list(orders)

            async def worker() -> None:
                while queue:
                    order = queue.pop()
                    response = await http.post("capture", content=capture_body(order))
                    response.json()

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - start

    bare_seconds = asyncio.run(bare())
    recon_seconds = capture_stage(orders, BASE_URL, 1e6, concurrency, transport())
    return {
        "orders": n,
        "bare_per_second": n / bare_seconds,
        "recon_per_second": n / recon_seconds,
        "ratio": bare_seconds / recon_seconds,
    }


def main(which: list[str]) -> int:
    """Prints each figure against its target; exit status 1 when a target is missed."""
    missed = []
    if "a" in which:
        a = against_server(206, 200, 4000)
        print("(a) limit 206/s, --rate 200:", a, flush=True)
        if a["per_second"] < 0.97 * 200 or a["throttled_share"] > 0.005:
            missed.append("a")
    if "b" in which:
        b = against_server(140, 200, 4000)
        print("(b) limit 140/s, --rate 200:", b, flush=True)
        if b["per_second"] < 0.85 * 140 or b["throttled_share"] > 0.05:
            missed.append("b")
    if "c" in which:
        c = overhead()
        print("(c) in-process overhead:", c, flush=True)
        if c["ratio"] < 0.5:
            missed.append("c")
    if missed:
        print("missed:", ", ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["a", "b", "c"]))
