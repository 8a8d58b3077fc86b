"""Settings: secrets masked in every representation, .env read with a warning, TLS enforced."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from recon.cli import cli
from recon.errors import UsageError
from recon.settings import Secret, Settings, check_base_url, load_environment

ENV = {
    "FINLINE_API_KEY": "k-1f2e3d",
    "FINLINE_API_SECRET": "s-4c5b6a",
    "FINLINE_ENDPOINTS_KEY": "e-7a8b9c",
    "FINLINE_POS_ID": "5b0c1d2e-3f40-4a51-8b62-7c83d94ea5f6",
}


def test_secrets_never_show_in_repr_str_or_format() -> None:
    settings = Settings.from_env(ENV)
    shown = " ".join([repr(settings), str(settings), f"{settings}", str(settings.masked())])
    for name in ("FINLINE_API_KEY", "FINLINE_API_SECRET", "FINLINE_ENDPOINTS_KEY"):
        assert ENV[name] not in shown
    assert "****" in shown and ENV["FINLINE_POS_ID"] in shown
    assert settings.api_key.reveal() == ENV["FINLINE_API_KEY"]
    assert repr(Secret("x")) == "Secret('****')"


def test_dotenv_is_read_and_a_world_readable_one_is_warned_about(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("".join(f"{k}={v}\n" for k, v in ENV.items()))
    os.chmod(dotenv, 0o644)
    merged, warnings = load_environment({}, dotenv)
    assert merged["FINLINE_API_KEY"] == ENV["FINLINE_API_KEY"]
    assert warnings and "chmod 600" in warnings[0]
    os.chmod(dotenv, 0o600)
    merged, warnings = load_environment({"FINLINE_API_KEY": "from-env"}, dotenv)
    assert merged["FINLINE_API_KEY"] == "from-env"  # the environment wins
    assert warnings == []


def test_the_command_warns_about_a_readable_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("FINLINE_API_KEY=k\n")
    os.chmod(tmp_path / ".env", 0o644)
    result = CliRunner().invoke(cli, ["runs", "--journal", "none.sqlite"])
    assert "readable by other users" in result.output


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://api.finline.io/api/v1", True),
        ("http://127.0.0.1:8765/api/v1", True),
        ("http://localhost/api/v1", True),
        ("http://[::1]:8000/api/v1", True),
        ("http://api.finline.io/api/v1", False),
        ("http://10.0.0.5/api/v1", False),
        ("ftp://api.finline.io", False),
        ("api.finline.io", False),
    ],
)
def test_base_url_must_be_https_except_on_loopback(url: str, ok: bool) -> None:
    if ok:
        check_base_url(url)
    else:
        with pytest.raises(UsageError, match="https"):
            check_base_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.finline.io/api/v1",
        "https://API.finline.io/api/v1/",
        "HTTPS://api.finline.io:443/api/v1",
        " https://api.finline.io/api/v1 ",
    ],
)
def test_one_endpoint_has_one_spelling(url: str) -> None:
    assert Settings.from_env({"FINLINE_BASE_URL": url}).base_url == "https://api.finline.io/api/v1"
    assert Settings.from_env({"FINLINE_BASE_URL": "http://127.0.0.1:8765/api/v1"}).base_url == (
        "http://127.0.0.1:8765/api/v1"
    )
