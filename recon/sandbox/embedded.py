"""`--sandbox`: the simulator in-process, behind httpx.ASGITransport, with holds for the input."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import httpx

from recon.sandbox.app import SANDBOX_CREDENTIALS, SANDBOX_POS_ID, create_app
from recon.sandbox.ledger import Hold, Ledger, holds_for_orders, load_holds
from recon.schema import Order
from recon.settings import Secret, Settings

# Never resolved: the ASGI transport answers every request in-process.
BASE_URL = "http://sandbox.recon.local/api/v1"


def holds_for_input(orders: Sequence[Order], input_file: Path) -> list[Hold]:
    """The `holds.csv` beside the input when it is about these orders (the samples), else made up.

    A holds file that shares no order with the input belongs to another input: making up holds
    then gives the user a sandbox run in which their own orders can be captured.
    """
    holds_file = input_file.parent / "holds.csv"
    if holds_file.is_file():
        holds = load_holds(holds_file)
        if {h.order_id for h in holds} & {o.order_id for o in orders}:
            return holds
    return holds_for_orders(orders)


def embedded_sandbox(
    orders: Sequence[Order], input_file: Path
) -> tuple[httpx.AsyncBaseTransport, Settings]:
    app = create_app(Ledger(holds_for_input(orders, input_file)), credentials=SANDBOX_CREDENTIALS)
    settings = Settings(
        api_key=Secret(SANDBOX_CREDENTIALS.api_key),
        api_secret=Secret(SANDBOX_CREDENTIALS.api_secret),
        endpoints_key=Secret(SANDBOX_CREDENTIALS.endpoints_key),
        pos_id=SANDBOX_POS_ID,
        base_url=BASE_URL,
    )
    return httpx.ASGITransport(app=app), settings
