"""`recon sandbox serve` in a child process, for kill tests and benchmarks needing a real server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from recon.sandbox.app import SANDBOX_CREDENTIALS, STATS_PATH, Credentials


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SandboxServer:
    """Starts the simulator on a free loopback port; `stats()` reads its ledger back."""

    def __init__(
        self, *args: str, log: Path | None = None, credentials: Credentials | None = None
    ) -> None:
        self.credentials = credentials or SANDBOX_CREDENTIALS
        self.port = free_port()
        self.args = args
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def env(self) -> dict[str, str]:
        """The environment a `recon capture` against this server needs."""
        return {
            **os.environ,
            "FINLINE_BASE_URL": self.base_url,
            "FINLINE_API_KEY": self.credentials.api_key,
            "FINLINE_API_SECRET": self.credentials.api_secret,
            "FINLINE_ENDPOINTS_KEY": self.credentials.endpoints_key,
        }

    def __enter__(self) -> SandboxServer:
        out = self.log.open("wb") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "recon", "sandbox", "serve", "--port", str(self.port),
             *self.args],
            stdout=out, stderr=subprocess.STDOUT, env=self.env(),
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sandbox server exited with {self.proc.returncode}")
            try:
                self.stats()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("sandbox server did not start within 30 s")

    def stats(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}{STATS_PATH}"
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 (loopback only)
            data: dict[str, Any] = json.loads(answer.read())
        return data

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
