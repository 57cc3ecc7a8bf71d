"""``/health`` says ``ready`` only once the ``--preload`` models are loaded (issue 19): before,
the first request after "ready" still waited for the load."""

from __future__ import annotations

import time
from pathlib import Path

from starlette.testclient import TestClient

from sdcpp_service.config import Settings
from sdcpp_service.server.app import create_app
from sdcpp_service.server.options import ServerOptions
from tests.fakes import FakeEngine


def _health(client: TestClient, want: str, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = client.get("/health").json()
        if health["worker"] == want:
            return health  # type: ignore[no-any-return]
        time.sleep(0.01)
    raise AssertionError(f"/health never said {want}: {health}")


def test_ready_only_after_the_preloads_are_loaded(tmp_path: Path, model_dir: Path) -> None:
    gate = tmp_path / "gate"
    settings = Settings(data_dir=tmp_path / "data", model_dirs=(model_dir,), threads=1)
    engine = FakeEngine(load_gate=str(gate))
    app = create_app(settings, engine, ServerOptions(workers=2, preload="alpha,beta"))
    with TestClient(app) as client:
        _health(client, "loading")  # workers up, the preloads held at the gate
        assert all(not w["model"] for w in client.get("/api/v1/workers").json()["workers"])
        gate.touch()
        _health(client, "ready")
        names = sorted(w["model_name"] for w in client.get("/api/v1/workers").json()["workers"])
        assert names == ["alpha", "beta"]


def test_without_preloads_ready_once_a_worker_is_up(tmp_path: Path, model_dir: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", model_dirs=(model_dir,), threads=1)
    app = create_app(settings, FakeEngine(load_gate=str(tmp_path / "never")), ServerOptions())
    with TestClient(app) as client:
        _health(client, "ready")  # nothing to preload: no load is waited for
