"""Behaviour only a real server shows: a client that disconnects from a synchronous request
cancels its job (unless ``save_images``), and ``sdcpp serve --api-server-stop`` restarts and
stops on request."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from sdcpp_service.config import Settings
from sdcpp_service.server.app import create_app
from sdcpp_service.server.options import ServerOptions
from tests.fakes import FakeEngine
from tests.server.test_real_clients import free_port


@pytest.fixture
def slow_url(tmp_path: Path, model_dir: Path) -> Iterator[str]:
    """A live server whose fake engine takes 50 ms a step."""
    settings = Settings(data_dir=tmp_path / "data", model_dirs=(model_dir,), threads=1)
    app = create_app(
        settings, FakeEngine(step_seconds=0.05), ServerOptions(worker_start_timeout=60)
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _latest(http: httpx.Client, status: str, timeout: float = 20) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = http.get("/api/v1/jobs", params={"status": status}).json()["jobs"]
        if jobs:
            return dict(jobs[0])
        time.sleep(0.05)
    raise AssertionError(f"no {status} job")


@pytest.mark.parametrize("route", ["/sdapi/v1/txt2img", "/v1/images/generations"])
def test_disconnect_cancels_the_job(slow_url: str, route: str) -> None:
    body = {"prompt": "a", "steps": 140, "width": 64, "height": 64, "size": "64x64"}
    with httpx.Client(base_url=slow_url, timeout=10) as http:
        with pytest.raises(httpx.ReadTimeout):
            http.post(route, json=body, timeout=httpx.Timeout(10, read=0.5))
        assert _latest(http, "cancelled")["status"] == "cancelled"


def test_disconnect_from_extras_cancels_its_upscale(slow_url: str) -> None:
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buf, format="PNG")
    body = {"image": base64.b64encode(buf.getvalue()).decode(), "upscaler_1": "Lanczos",
            "upscaling_resize": 2}  # fmt: skip
    with httpx.Client(base_url=slow_url, timeout=10) as http:
        ahead = http.post("/api/v1/jobs", json={"prompt": "a", "steps": 140, "width": 64,
                                                "height": 64}).json()["id"]  # fmt: skip
        with pytest.raises(httpx.ReadTimeout):  # the upscale waits behind it; the client goes
            http.post(
                "/sdapi/v1/extra-single-image", json=body, timeout=httpx.Timeout(10, read=0.5)
            )
        cancelled = _latest(http, "cancelled")
        assert cancelled["kind"] == "upscale", cancelled
        assert http.get(f"/api/v1/jobs/{ahead}").json()["status"] == "running"  # not its job
        http.post(f"/api/v1/jobs/{ahead}/cancel")


def test_disconnect_with_save_images_keeps_the_job(slow_url: str) -> None:
    body = {"prompt": "a", "steps": 20, "width": 64, "height": 64, "save_images": True}
    with httpx.Client(base_url=slow_url, timeout=10) as http:
        with pytest.raises(httpx.ReadTimeout):
            http.post("/sdapi/v1/txt2img", json=body, timeout=httpx.Timeout(10, read=0.3))
        assert _latest(http, "completed")["status"] == "completed"
        assert http.get("/api/v1/jobs", params={"status": "cancelled"}).json()["jobs"] == []


def _wait_up(http: httpx.Client, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if http.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)


def test_server_restart_and_stop(tmp_path: Path, model_dir: Path) -> None:
    port = free_port()
    cmd = [sys.executable, "-c", "from sdcpp_service.cli import main; main()", "serve"]
    cmd += ["--port", str(port), "--models", str(model_dir), "--data-dir", str(tmp_path / "d")]
    cmd += ["--api-server-stop"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            _wait_up(http, proc)
            assert http.get("/sdapi/v1/cmd-flags").json()["api_server_stop"] is True
            assert http.post("/sdapi/v1/options", json={"send_seed": False}).status_code == 200
            assert http.post("/sdapi/v1/server-restart").text == "Restarting."
            deadline = time.monotonic() + 30
            while True:  # down, then up again
                try:
                    http.get("/health")
                except httpx.TransportError:
                    break
                assert time.monotonic() < deadline
                time.sleep(0.05)
            _wait_up(http, proc)
            assert http.get("/sdapi/v1/options").json()["send_seed"] is False
            assert http.post("/sdapi/v1/server-stop").text == "Stopping."
            proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert b"sdcpp serve: restarting" in err
    assert proc.returncode in (0, -signal.SIGINT), err.decode()[-2000:]
