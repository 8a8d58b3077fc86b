"""Credentials and endpoint from the environment (and a `.env`), with secrets masked everywhere."""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from recon.errors import UsageError

DEFAULT_BASE_URL = "https://api.finline.io/api/v1"
SECRET_VARS = ("FINLINE_API_KEY", "FINLINE_API_SECRET", "FINLINE_ENDPOINTS_KEY")
MASK = "****"


class Secret:
    """A credential that prints as `****`: repr, str and f-strings never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return f"Secret({MASK!r})" if self._value else "Secret('')"

    def __str__(self) -> str:
        return MASK if self._value else ""


@dataclass(frozen=True)
class Settings:
    api_key: Secret
    api_secret: Secret
    endpoints_key: Secret
    pos_id: str | None
    base_url: str = DEFAULT_BASE_URL

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(
            api_key=Secret(env.get("FINLINE_API_KEY", "")),
            api_secret=Secret(env.get("FINLINE_API_SECRET", "")),
            endpoints_key=Secret(env.get("FINLINE_ENDPOINTS_KEY", "")),
            pos_id=env.get("FINLINE_POS_ID") or None,
            base_url=normalise_url(env.get("FINLINE_BASE_URL") or DEFAULT_BASE_URL),
        )

    def secrets(self) -> tuple[str, ...]:
        """The raw secret values, for scrubbing text that might carry one."""
        return tuple(s.reveal() for s in (self.api_key, self.api_secret, self.endpoints_key) if s)

    def require_credentials(self) -> None:
        missing = [
            name
            for name, value in zip(
                SECRET_VARS, (self.api_key, self.api_secret, self.endpoints_key), strict=True
            )
            if not value
        ]
        if missing:
            raise UsageError(
                f"missing credentials: set {', '.join(missing)} in the environment or .env "
                "(or use --sandbox to run against the embedded simulator)"
            )
        check_base_url(self.base_url)

    def masked(self) -> dict[str, str]:
        return {
            "FINLINE_API_KEY": str(self.api_key),
            "FINLINE_API_SECRET": str(self.api_secret),
            "FINLINE_ENDPOINTS_KEY": str(self.endpoints_key),
            "FINLINE_POS_ID": self.pos_id or "",
            "FINLINE_BASE_URL": self.base_url,
        }


def normalise_url(url: str) -> str:
    """One spelling per endpoint: the journal tells ledgers apart by this string, and
    `https://API.finline.io:443/api/v1/` is the same ledger as `https://api.finline.io/api/v1`."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    default = {"https": 443, "http": 80}.get(parts.scheme.lower())
    try:
        port = parts.port
    except ValueError:
        return url.strip().rstrip("/")  # not a URL we can read: check_base_url will say so
    netloc = host if port in (None, default) else f"{host}:{port}"
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(url: str) -> None:
    """Credentials go only over TLS, except to a simulator on this machine."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return
    raise UsageError(f"FINLINE_BASE_URL must be an https:// URL (or http:// on loopback): {url!r}")


def load_environment(
    env: Mapping[str, str], dotenv: Path = Path(".env")
) -> tuple[dict[str, str], list[str]]:
    """The process environment over a `.env` file; warnings when the file is readable by others."""
    warnings: list[str] = []
    merged: dict[str, str] = {}
    if dotenv.is_file():
        mode = dotenv.stat().st_mode
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            warnings.append(
                f"{dotenv} is readable by other users; it holds credentials: chmod 600 {dotenv}"
            )
        merged.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    merged.update({k: v for k, v in env.items() if k.startswith("FINLINE_")})
    return merged, warnings


def current_user() -> str:
    for name in ("USER", "LOGNAME", "USERNAME"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "unknown"
