"""``sdcpp serve`` argument checks (nothing is started)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sdcpp_service.cli import app
from sdcpp_service.cli.serve import is_loopback
from sdcpp_service.server.options import ServerOptions
from tests.models import layouts as L
from tests.models.corpus import write_safetensors


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


@pytest.mark.parametrize(
    ("typed", "shown"),
    [("alice", "'alice' must be user:password (a ':' is missing)"),
     ("alice:", "'alice:' must be user:password (a password is missing)"),
     (":s3cret", "':…' must be user:password (a user is missing)")],
)  # fmt: skip
def test_api_auth_error_shows_what_was_typed_but_no_password(typed: str, shown: str) -> None:
    result = CliRunner().invoke(app, ["serve", "--api-auth", typed])
    assert result.exit_code == 2
    assert result.stderr == f"error: --api-auth {shown}\n"


def test_port_out_of_range_is_one_line() -> None:
    result = CliRunner().invoke(app, ["serve", "--port", "99999"])
    assert result.exit_code == 2
    assert result.stderr == (
        "error: --port 99999 is not a TCP port; use one from 1 to 65535, e.g. --port 7860\n"
    )


def test_port_in_use_is_one_line_naming_a_free_port() -> None:
    """A real `sdcpp serve` process on a taken port: one line, no banner, no traceback."""
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "sdcpp_service", "serve", "--port", str(port)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: the port is in use")
    assert proc.stderr.count("\n") == 1, proc.stderr
    suggested = int(proc.stderr.rsplit("--port ", 1)[1])
    assert suggested != port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", suggested))  # it was free


def test_rejects_unknown_preload(tmp_path: object) -> None:
    result = CliRunner().invoke(
        app,
        ["serve", "--models", str(tmp_path), "--preload", "missing", "--data-dir", str(tmp_path)],
    )
    assert result.exit_code == 2 and "missing" in result.output


def test_keep_jobs_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from sdcpp_service.server import app as app_module

    seen: list[tuple[float, float]] = []

    def fake_create_app(settings: object, options: ServerOptions) -> object:
        seen.append((options.keep_jobs_hours, options.keep_outputs_gb))
        return object()

    monkeypatch.setattr(app_module, "create_app", fake_create_app)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: None)
    args = ["serve", "--models", str(tmp_path), "--data-dir", str(tmp_path), "--port", "0"]
    assert CliRunner().invoke(app, [*args, "--keep-jobs", "2.5"]).exit_code == 0
    assert CliRunner().invoke(app, args).exit_code == 0
    assert CliRunner().invoke(app, [*args, "--keep-outputs-gb", "20"]).exit_code == 0
    assert seen == [(2.5, 0.0), (168.0, 0.0), (168.0, 20.0)]
    for flag in ("--keep-jobs", "--keep-outputs-gb"):
        bad = CliRunner().invoke(app, [*args, flag, "-1"])
        assert bad.exit_code == 2 and flag in bad.output


def test_pool_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from sdcpp_service.server import app as app_module

    seen: list[ServerOptions] = []
    monkeypatch.setattr(app_module, "create_app", lambda settings, options: seen.append(options))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: None)
    models = tmp_path / "models" / "checkpoints"
    models.mkdir(parents=True)
    sd1 = {
        **L.prefixed("model.diffusion_model.", L.unet(768)),
        **L.prefixed("cond_stage_model.transformer.", L.clip_text(768)),
    }
    for name in ("a", "b"):
        write_safetensors(models / f"{name}.safetensors", sd1)
    args = ["serve", "--models", str(tmp_path / "models"), "--data-dir", str(tmp_path)]
    args += ["--port", "0"]  # 7860 may be taken on this machine
    ok = CliRunner().invoke(
        app, [*args, "--workers", "2", "--preload", "a, b", "--max-memory", "3"]
    )
    assert ok.exit_code == 0, ok.output
    assert (seen[0].workers, seen[0].preloads, seen[0].max_memory_gb) == (2, ("a", "b"), 3.0)
    assert CliRunner().invoke(app, args).exit_code == 0
    assert (seen[1].workers, seen[1].max_memory_gb, seen[1].parallel) == (1, 0.0, 0)
    assert CliRunner().invoke(app, [*args, "--workers", "2", "--parallel", "2"]).exit_code == 0
    assert seen[2].parallel == 2
    two = CliRunner().invoke(app, [*args, "--preload", "a,b"])
    assert two.exit_code == 2 and "--workers 2" in two.output
    for bad in (
        ["--workers", "0"],
        ["--max-memory", "-1"],
        ["--parallel", "2"],
        ["--parallel", "-1"],
    ):
        result = CliRunner().invoke(app, [*args, *bad])
        assert result.exit_code == 2 and bad[0] in result.output
