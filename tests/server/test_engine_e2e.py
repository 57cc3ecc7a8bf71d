"""The service on the real engine (a synthesized SDXS checkpoint, 64×64, 1–8 steps).

Few and small on purpose: each generation costs about a second per step on two cores.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from starlette.testclient import TestClient

from sdcpp_service.config import Settings
from sdcpp_service.server.app import create_app
from sdcpp_service.server.options import ServerOptions
from tests.server.test_native import sse_events, wait_done
from tests.synth.kit import Kit

pytestmark = pytest.mark.engine

SMALL = {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 1, "seed": 3}


@pytest.fixture(scope="module")
def home(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Model folder (the SDXS checkpoint, linked) and a data dir shared by this module's apps
    (so the model is hashed once)."""
    root = tmp_path_factory.mktemp("serve")
    checkpoints = root / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "sdxs.safetensors").symlink_to(kit.path("sdxs"))
    return root


def settings(home: Path, data: str = "data") -> Settings:
    return Settings(data_dir=home / data, model_dirs=(home / "models",), threads=2)


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[TestClient]:
    app = create_app(settings(home), options=ServerOptions(max_queue=4, preload="sdxs"))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def decode_png(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def wait_progress(client: TestClient, job_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["progress"] is not None:
            return
        assert job["status"] in ("queued", "running"), job
        time.sleep(0.05)
    raise AssertionError("no progress reported")


def test_txt2img_through_each_dialect(client: TestClient) -> None:
    r = client.post("/api/v1/jobs", json=SMALL)
    assert r.status_code == 202, r.text
    job = wait_done(client, r.json()["id"], timeout=300)
    assert job["status"] == "completed", job
    native = Image.open(io.BytesIO(client.get(job["outputs"][0]["url"]).content))
    assert native.size == (64, 64) and "Model: sdxs" in native.info["parameters"]

    svc = client.app.state.service  # type: ignore[attr-defined]
    model = svc.default_model()  # the preloaded sdxs
    deadline = time.monotonic() + 300  # hashed in the background (idle priority), not on a job
    while svc.hashes.known(model) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    r = client.post("/sdapi/v1/txt2img", json={**SMALL, "sampler_name": "Euler a"})
    assert r.status_code == 200, r.text
    image = decode_png(r.json()["images"][0])
    info = json.loads(r.json()["info"])
    assert image.size == (64, 64) and info["all_seeds"] == [3]
    assert info["sd_model_hash"] and f"Model hash: {info['sd_model_hash']}" in info["infotexts"][0]

    r = client.post(
        "/v1/images/generations",
        json={"prompt": "a lighthouse", "size": "64x64", "steps": 1, "seed": 3},
    )
    assert r.status_code == 200, r.text
    assert decode_png(r.json()["data"][0]["b64_json"]).size == (64, 64)


def test_sse_steps_rise(client: TestClient) -> None:
    job = client.post("/api/v1/jobs", json={**SMALL, "steps": 3}).json()
    with client.stream("GET", f"/api/v1/jobs/{job['id']}/events") as r:
        events = sse_events(r.read().decode())
    kinds = [k for k, _ in events]
    assert kinds[0] in ("queued", "started") and kinds[-1] == "completed", kinds
    steps = [d["step"] for k, d in events if k == "progress" and d["phase"] == "sampling"]
    assert steps and steps == sorted(steps) and steps[-1] == 3
    assert kinds.index("started") < kinds.index("progress")


def test_system_names_backend_and_device(client: TestClient) -> None:
    deadline = time.monotonic() + 120
    while not (engine := client.get("/system").json()["engine"]) and time.monotonic() < deadline:
        time.sleep(0.2)  # the worker reports its engine once it has started
    assert engine["backend"] in ("cpu", "openblas", "cuda", "vulkan", "metal", "hipblas", "sycl")
    assert engine["device"] in engine["devices"]


def test_cancel_running_job_then_next_runs(client: TestClient) -> None:
    slow = client.post("/api/v1/jobs", json={**SMALL, "steps": 8}).json()
    wait_progress(client, slow["id"])
    client.post(f"/api/v1/jobs/{slow['id']}/cancel")
    assert wait_done(client, slow["id"], timeout=60)["status"] == "cancelled"
    nxt = client.post("/api/v1/jobs", json=SMALL).json()
    assert wait_done(client, nxt["id"], timeout=300)["status"] == "completed"


def test_kill_worker_mid_job(client: TestClient) -> None:
    slow = client.post("/api/v1/jobs", json={**SMALL, "steps": 8}).json()
    wait_progress(client, slow["id"])
    pid = client.get("/system").json()["worker"]["pid"]
    os.kill(pid, signal.SIGKILL)
    failed = wait_done(client, slow["id"], timeout=60)
    assert failed["status"] == "failed" and failed["error"]["type"] == "WorkerDied"
    assert "died" in failed["error"]["message"]
    assert client.get("/health").json()["status"] == "ok"
    nxt = client.post("/api/v1/jobs", json=SMALL).json()
    assert wait_done(client, nxt["id"], timeout=300)["status"] == "completed"
    assert client.get("/system").json()["worker"]["pid"] != pid


def test_concurrent_submissions_complete_or_429(client: TestClient) -> None:
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def submit() -> None:
        r = client.post("/api/v1/jobs", json=SMALL)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=submit) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    codes = [r.status_code for r in results]
    assert len(codes) == 50 and set(codes) <= {202, 429}, codes
    assert 429 in codes and all("retry-after" in r.headers for r in results if r.status_code == 429)
    ids = [r.json()["id"] for r in results if r.status_code == 202]
    # the queue holds 4 and one runs; a job that finished meanwhile frees its place
    finished = sum(client.get(f"/api/v1/jobs/{i}").json()["status"] == "completed" for i in ids)
    assert len(ids) == len(set(ids)) and 1 <= len(ids) <= 5 + finished
    for job_id in ids:
        assert wait_done(client, job_id, timeout=300)["status"] == "completed"
    listed = {j["id"] for j in client.get("/api/v1/jobs?limit=1000").json()["jobs"]}
    assert set(ids) <= listed


def test_restart_runs_queued_jobs(home: Path) -> None:
    app = create_app(settings(home, "restart"), options=ServerOptions(preload="sdxs"))
    with TestClient(app, raise_server_exceptions=False) as first:
        ids = [first.post("/api/v1/jobs", json=SMALL).json()["id"] for _ in range(2)]
    app = create_app(settings(home, "restart"))
    with TestClient(app, raise_server_exceptions=False) as second:
        for job_id in ids:
            job = wait_done(second, job_id, timeout=300)
            assert job["status"] == "completed" and job["attempts"] == 1, job
            assert second.get(job["outputs"][0]["url"]).status_code == 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cli_serve_with_auth(home: Path) -> None:
    port = free_port()
    cmd = [sys.executable, "-c", "from sdcpp_service.cli import main; main()", "serve"]
    cmd += ["--port", str(port)]
    cmd += ["--models", str(home / "models"), "--data-dir", str(home / "cli"), "--api-key", "k"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if http.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
            assert http.get("/api/v1/models").status_code == 401
            ok: Any = http.get("/api/v1/models", headers={"Authorization": "Bearer k"})
            assert ok.status_code == 200
            assert ok.json()["models"][0]["name"] == "sdxs"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    # uvicorn shuts down cleanly, then re-raises the signal it caught
    assert proc.returncode in (0, -signal.SIGTERM), err.decode()[-2000:]
    assert b"Application shutdown complete" in err
