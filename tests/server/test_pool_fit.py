"""The pool charges a running job its estimated peak (issue 18): a job whose compute buffers
would take the warm models over ``--max-memory`` first unloads an idle worker's model, where
counting the files alone would have kept it."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path
from typing import Any

from PIL import Image
from starlette.testclient import TestClient

from sdcpp_service.config import Settings
from sdcpp_service.fit import estimate
from sdcpp_service.fit.job import job_plan
from sdcpp_service.server.app import create_app
from sdcpp_service.server.options import ServerOptions
from sdcpp_service.server.slot import files_size
from tests.fakes import FakeEngine

MB = 2**20
_buf = io.BytesIO()
Image.new("RGB", (32, 32)).save(_buf, "PNG")
PNG = base64.b64encode(_buf.getvalue()).decode()
JOB = {"prompt": "p", "width": 256, "height": 256, "steps": 1, "seed": 1}


def _workers(client: TestClient) -> dict[str, str]:
    return {
        w["model_name"] or "": w["state"] for w in client.get("/api/v1/workers").json()["workers"]
    }


def test_a_jobs_estimated_peak_unloads_an_idle_model(tmp_path: Path, model_dir: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", model_dirs=(model_dir,), threads=1)
    alpha = str(model_dir / "checkpoints" / "alpha.safetensors")
    beta = str(model_dir / "checkpoints" / "sub" / "beta.safetensors")
    plan, shape, switches = job_plan("txt2img", beta, JOB, {}, settings)
    est = estimate(plan, shape, switches, warm=True)
    need = est.peak_ram_bytes - est.ram["load"]["runtime"]
    budget = files_size(alpha, {}) + need - MB
    # the premises: both files fit together, the job fits alone, not beside alpha's model
    assert files_size(alpha, {}) + files_size(beta, {}) <= budget
    assert est.peak_ram_bytes <= budget < files_size(alpha, {}) + need
    options = ServerOptions(workers=2, preload="alpha,beta", max_memory_gb=budget / 1e9)
    app = create_app(settings, FakeEngine(), options)
    with TestClient(app) as client:
        deadline = time.monotonic() + 60
        while client.get("/health").json()["worker"] != "ready" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _workers(client) == {"alpha": "idle", "beta": "idle"}
        job = client.post("/api/v1/jobs", json={**JOB, "model": "beta"})
        assert job.status_code == 202, job.text
        url = f"/api/v1/jobs/{job.json()['id']}"
        while client.get(url).json()["status"] in ("queued", "running"):
            time.sleep(0.02)
        assert client.get(url).json()["status"] == "completed"
        names = {w["model_name"] for w in client.get("/api/v1/workers").json()["workers"]}
        assert names == {"beta", None}  # alpha was unloaded to make room for the job's peak


def test_an_estimate_over_the_budget_asks_for_the_whole_budget(tmp_path: Path) -> None:
    """A guessed estimate the submission let through must not make the job wait forever."""
    from sdcpp_service.server.jobs import Job
    from sdcpp_service.server.pool import Pool

    model = tmp_path / "m.safetensors"
    model.write_bytes(b"\0" * 1000)
    job = Job("j", "txt2img", str(model), {})
    pool = Pool([], max_memory=10_000, footprint=lambda j: 50_000)
    assert pool.need(str(model), {}, job) == 10_000
    assert Pool([], 10_000, footprint=lambda j: None).need(str(model), {}, job) == 1000
    assert Pool([], 10_000, footprint=lambda j: 3000).need(str(model), {}, job) == 3000


def test_an_estimate_that_cannot_be_made_is_not_a_500(make_client: Any) -> None:
    client = make_client()
    r = client.post("/api/v1/estimate", json={"kind": "upscale", "image": PNG, "model": "4x_test"})
    assert r.status_code == 200, r.text
    assert r.json()["fits"] is None and r.json()["message"].startswith("cannot estimate")
