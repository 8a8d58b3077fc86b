"""Recognisable secrets through whole batches: not one byte of them in anything a run writes."""

from __future__ import annotations

import csv
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from recon.sandbox.app import SANDBOX_POS_ID, Credentials
from recon.sandbox.process import SandboxServer

SECRETS = Credentials("key-7f3a9c1e55b2", "secret-0d4e8b2a91c6", "endpoints-5c7e1f9a3b08")
WRONG_KEY = "wrongkey-a8e2c4d6f0b1"


def write_orders(path: Path, prefix: str, n: int = 6) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["order_id", "order_currency", "charge_amount", "pos_id"])
        w.writerows([f"{prefix}-{i}", "UAH", "10.50", SANDBOX_POS_ID] for i in range(n))


def everything_written(folder: Path, streams: list[bytes]) -> list[tuple[str, bytes]]:
    """Every byte the runs wrote: streams, files (journal, WAL, logs), and workbooks unzipped."""
    found = [(f"stream {i}", s) for i, s in enumerate(streams)]
    for path in folder.rglob("*"):
        if not path.is_file() or path.suffix == ".csv":
            continue
        data = path.read_bytes()
        found.append((str(path), data))
        if path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as z:
                found += [(f"{path}:{name}", z.read(name)) for name in z.namelist()]
    return found


@pytest.mark.slow
def test_no_secret_in_anything_a_run_writes(tmp_path: Path) -> None:
    write_orders(tmp_path / "good.csv", "S")
    write_orders(tmp_path / "denied.csv", "D")
    orders = tmp_path / "all.csv"
    with orders.open("w", encoding="utf-8") as f:
        f.write((tmp_path / "good.csv").read_text(encoding="utf-8"))
        f.write("".join((tmp_path / "denied.csv").read_text(encoding="utf-8").splitlines(True)[1:]))
    work = tmp_path / "work"
    work.mkdir()
    streams: list[bytes] = []
    faults = "order:S-3=drop_after_commit,order:S-4=error500_after_commit"
    with SandboxServer(
        "--orders", str(orders), "--faults", faults, credentials=SECRETS,
        log=tmp_path / "server.log",
    ) as server:  # fmt: skip
        env = server.env()
        runs = [
            ("--debug", "capture", str(tmp_path / "good.csv"), "--yes", "--timeout", "2"),
            ("--verbose", "capture", str(tmp_path / "good.csv"), "--yes"),  # resume
            ("--debug", "runs"),
        ]
        for args in runs:
            done = subprocess.run(
                [sys.executable, "-m", "recon", *args], env=env, cwd=work, capture_output=True,
                timeout=120,
            )  # fmt: skip
            streams += [done.stdout, done.stderr]
            assert done.returncode in (0, 1), done.stderr.decode()[-2000:]
        denied = subprocess.run(
            [sys.executable, "-m", "recon", "--debug", "capture", str(tmp_path / "denied.csv"),
             "--yes"],
            env={**env, "FINLINE_API_KEY": WRONG_KEY}, cwd=work, capture_output=True, timeout=120,
        )  # fmt: skip
        streams += [denied.stdout, denied.stderr]
        assert denied.returncode == 3
        assert b"401" in denied.stdout + denied.stderr, (denied.stdout + denied.stderr).decode()[
            -3000:
        ]
        stats = server.stats()
    captured = {order for order, n in stats["captures"].items() if n}
    assert captured == {f"S-{i}" for i in range(6)}  # the batch really ran; D-* were refused
    debug_output = b"".join(streams)
    assert b"POST" in debug_output  # --debug did log the requests
    written = everything_written(work, streams)
    assert any(name.endswith(".sqlite") for name, _ in written)
    assert any(".xlsx:" in name for name, _ in written)
    for secret in (SECRETS.api_key, SECRETS.api_secret, SECRETS.endpoints_key, WRONG_KEY):
        for name, data in written:
            assert secret.encode() not in data, f"{secret} found in {name}"
