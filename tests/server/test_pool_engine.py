"""The worker pool on the real engine: ``--workers 2 --preload sdxs,sd1`` (synthesized kit models,
64×64, 1–2 steps). Loads are counted by the engine processes themselves."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from sdcpp_service.config import Settings
from sdcpp_service.server.app import create_app
from sdcpp_service.server.options import ServerOptions
from tests.server.test_native import wait_done
from tests.server.test_pool import busy_together
from tests.synth.kit import Kit

pytestmark = pytest.mark.engine

SMALL = {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 1, "seed": 3}


@pytest.fixture(scope="module")
def home(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdxs and sd1 linked into a model folder, and "tiny": sdxs again under another name (a
    third model, as far as the pool is concerned)."""
    root = tmp_path_factory.mktemp("pool")
    checkpoints = root / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for name in ("sdxs", "sd1"):
        (checkpoints / f"{name}.safetensors").symlink_to(kit.path(name))
    (checkpoints / "tiny.safetensors").symlink_to(kit.path("sdxs"))
    return root


def make(home: Path, data: str, **options: Any) -> TestClient:
    settings = Settings(data_dir=home / data, model_dirs=(home / "models",), threads=1)
    return TestClient(create_app(settings, options=ServerOptions(**options)))


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[TestClient]:
    with make(home, "data", workers=2, preload="sdxs,sd1", parallel=2) as c:
        yield c


def workers(client: TestClient) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = client.get("/api/v1/workers").json()["workers"]
    return listed


def holding(client: TestClient, name: str) -> dict[str, Any]:
    return next(w for w in workers(client) if w["model_name"] == name)


def wait_warm(client: TestClient, names: set[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if {w["model_name"] for w in workers(client) if w["state"] == "idle"} >= names:
            return
        time.sleep(0.2)
    raise AssertionError(f"{names} never warm: {workers(client)}")


def run(client: TestClient, *models: str, **extra: Any) -> list[dict[str, Any]]:
    ids = [
        client.post("/api/v1/jobs", json={**SMALL, "model": m, **extra}).json()["id"]
        for m in models
    ]
    return [wait_done(client, i, timeout=600) for i in ids]


def test_alternating_models_never_reload(client: TestClient) -> None:
    run(client, "sdxs", "sd1")  # both warm (whatever ran before)
    before = {w["pid"]: w["loads"] for w in workers(client)}
    done = run(client, "sdxs", "sd1", "sdxs", "sd1")
    assert [d["status"] for d in done] == ["completed"] * 4
    after = workers(client)
    assert {w["pid"]: w["loads"] for w in after} == before  # same processes, no load
    assert sorted(w["model_name"] for w in after) == ["sd1", "sdxs"]
    assert all(w["resident_bytes"] > w["model_bytes"] > 0 for w in after)


def test_two_models_at_once_cancel_one(client: TestClient) -> None:
    wait_warm(client, {"sdxs", "sd1"})
    a = client.post("/api/v1/jobs", json={**SMALL, "model": "sdxs", "steps": 40}).json()
    b = client.post("/api/v1/jobs", json={**SMALL, "model": "sd1", "steps": 6}).json()
    busy_together(client, [a["id"], b["id"]], timeout=300)
    other = holding(client, "sd1")
    client.post(f"/api/v1/jobs/{a['id']}/cancel")
    assert wait_done(client, a["id"], timeout=120)["status"] == "cancelled"
    assert wait_done(client, b["id"], timeout=600)["status"] == "completed"
    untouched = holding(client, "sd1")
    assert (untouched["pid"], untouched["loads"]) == (other["pid"], other["loads"])


def test_kill_one_worker_mid_job_other_completes(client: TestClient) -> None:
    wait_warm(client, {"sd1"})
    a = client.post("/api/v1/jobs", json={**SMALL, "model": "sdxs", "steps": 40}).json()
    b = client.post("/api/v1/jobs", json={**SMALL, "model": "sd1", "steps": 6}).json()
    busy_together(client, [a["id"], b["id"]], timeout=300)
    victim = next(w for w in workers(client) if w["current_job"] == a["id"])
    other = holding(client, "sd1")
    os.kill(victim["pid"], signal.SIGKILL)
    failed = wait_done(client, a["id"], timeout=120)
    assert failed["status"] == "failed" and failed["error"]["type"] == "WorkerDied"
    assert wait_done(client, b["id"], timeout=600)["status"] == "completed"
    assert holding(client, "sd1")["pid"] == other["pid"]
    assert run(client, "sdxs")[0]["status"] == "completed"  # the killed worker came back


def test_twenty_mixed_jobs_over_three_models(client: TestClient) -> None:
    before = sum(w["jobs"] for w in workers(client))
    names = ["sdxs", "sd1", "tiny"]
    done = run(client, *(names[i % 3] for i in range(20)))
    assert [d["status"] for d in done] == ["completed"] * 20
    assert all(d["attempts"] == 1 and len(d["outputs"]) == 1 for d in done)
    assert len({d["outputs"][0]["name"] for d in done}) == 20
    assert sum(w["jobs"] for w in workers(client)) - before == 20  # none lost, none run twice


def test_memory_budget_evicts_or_refuses(home: Path, kit: Kit) -> None:
    sd1, sdxs = (kit.path(n).stat().st_size for n in ("sd1", "sdxs"))
    budget = (max(sd1, sdxs) + min(sd1, sdxs) // 2) / 1e9  # one fits, not both
    with make(home, "budget", workers=2, max_memory_gb=budget) as client:
        assert run(client, "sd1")[0]["status"] == "completed"
        assert run(client, "sdxs")[0]["status"] == "completed"
        warm = [w for w in workers(client) if w["model"]]
        assert [w["model_name"] for w in warm] == ["sdxs"]  # sd1 was unloaded to make room
    with make(home, "small", workers=1, max_memory_gb=sdxs / 2e9) as client:
        r = client.post("/api/v1/jobs", json={**SMALL, "model": "sd1"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "model"
        assert "--max-memory" in r.json()["error"]["message"]
