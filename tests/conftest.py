"""Shared helpers: a sandbox behind httpx.ASGITransport, journals in tmp_path, batches of orders."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from recon.api import Client
from recon.batch import BatchOptions, Counts, run_batch
from recon.errors import StoppedEarly
from recon.journal import Journal
from recon.pacing import RateLimiter
from recon.sandbox.app import SANDBOX_CREDENTIALS, SANDBOX_POS_ID, create_app
from recon.sandbox.faults import parse_faults
from recon.sandbox.ledger import Hold, Ledger
from recon.schema import Batch, Order
from recon.settings import Secret, Settings

POS = SANDBOX_POS_ID
BASE_URL = "http://sandbox.test/api/v1"


def sandbox_settings() -> Settings:
    return Settings(
        api_key=Secret(SANDBOX_CREDENTIALS.api_key),
        api_secret=Secret(SANDBOX_CREDENTIALS.api_secret),
        endpoints_key=Secret(SANDBOX_CREDENTIALS.endpoints_key),
        pos_id=POS,
        base_url=BASE_URL,
    )


def order(order_id: str, amount: str | None = "100", currency: str = "UAH", row: int = 2) -> Order:
    return Order(
        source_row=row,
        order_id=order_id,
        pos_id=POS,
        currency=currency,
        amount=None if amount is None else Decimal(amount),
    )


def orders(n: int, amount: str | None = "100") -> list[Order]:
    return [order(f"ORD-{i:05d}", amount, row=i + 2) for i in range(n)]


def holds_for(batch_orders: Sequence[Order], hold: str = "100") -> list[Hold]:
    return [Hold(o.order_id, o.pos_id, o.currency, Decimal(hold)) for o in batch_orders]


@dataclass
class Sandbox:
    ledger: Ledger
    transport: httpx.AsyncBaseTransport


def sandbox(
    holds: Sequence[Hold], faults: str = "", rate_limit: float | None = None, **ledger_kw: object
) -> Sandbox:
    ledger = Ledger(holds, **ledger_kw)  # type: ignore[arg-type]
    app = create_app(ledger, faults=parse_faults(faults) if faults else None, rate_limit=rate_limit)
    return Sandbox(ledger, httpx.ASGITransport(app=app))


FAST = BatchOptions(
    concurrency=4, timeout=0.5, settle_timeout=2.0, grace=0.2, max_lookups=4, backoff=0.05
)


def run_orders(
    journal: Journal,
    batch_orders: Sequence[Order],
    box: Sandbox,
    options: BatchOptions = FAST,
    rate: float = 1000.0,
    settings: Settings | None = None,
    run_id: str | None = None,
) -> tuple[str, Counts | StoppedEarly]:
    """Plan (or resume) a run of these orders and drive it to the end against the sandbox."""
    if run_id is None:
        batch = Batch(orders=tuple(batch_orders), rejected=(), rejections=())
        run_id = journal.create_run(
            batch, input_name="t.csv", input_size=1, input_sha256="x" * 64,
            base_url=BASE_URL, rate=rate, user="test",
        )  # fmt: skip

    async def go() -> Counts:
        async with Client(
            settings or sandbox_settings(), transport=box.transport, timeout=options.timeout
        ) as client:
            return await run_batch(journal, run_id, client, RateLimiter(rate), options)

    try:
        return run_id, asyncio.run(go())
    except StoppedEarly as exc:
        return run_id, exc


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    with Journal(tmp_path / "journal.sqlite") as j:
        yield j  # type: ignore[misc]
