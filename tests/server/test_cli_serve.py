"""``sdcpp serve`` argument checks (nothing is started)."""

from __future__ import annotations

from typer.testing import CliRunner

from sdcpp_service.cli import app
from sdcpp_service.cli.serve import is_loopback


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    assert not is_loopback("example.org")


def test_refuses_open_host_without_credentials() -> None:
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "--api-key" in result.output and "--insecure" in result.output


def test_rejects_malformed_basic_credentials() -> None:
    result = CliRunner().invoke(app, ["serve", "--api-auth", "nopassword"])
    assert result.exit_code == 2 and "user:password" in result.output


def test_rejects_unknown_preload(tmp_path: object) -> None:
    result = CliRunner().invoke(
        app,
        ["serve", "--models", str(tmp_path), "--preload", "missing", "--data-dir", str(tmp_path)],
    )
    assert result.exit_code == 2 and "missing" in result.output
