"""CPU threads of the pool's engine workers: with no ``--threads`` each worker gets every physical
core (read back from the engine context it made); ``--threads`` decides for every worker; jobs
take turns where the cores hold one engine (``--parallel`` overrides)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from sdcpp_service.config import Settings, physical_cores
from sdcpp_service.server.app import create_app
from sdcpp_service.server.options import ServerOptions
from tests.server.test_native import wait_done
from tests.server.test_pool import busy_together
from tests.server.test_pool_engine import SMALL, home, wait_warm, workers  # noqa: F401
from tests.synth.kit import Kit


@pytest.mark.engine
def test_two_workers_report_their_threads(home: Path, kit: Kit) -> None:  # noqa: F811
    settings = Settings(data_dir=home / "data-threads", model_dirs=(home / "models",))
    assert settings.threads == 0  # no --threads
    app = create_app(settings, options=ServerOptions(workers=2, preload="sdxs"))
    with TestClient(app) as client:
        wait_warm(client, {"sdxs"})
        each = physical_cores()
        listed = workers(client)
        assert [w["threads"] for w in listed] == [each, each]
        system = client.get("/system").json()
        assert system["threads"] == each
        assert [w["threads"] for w in system["workers"]] == [each, each]
    # --threads still decides, whatever the number of workers
    settings = Settings(data_dir=home / "data-threads3", model_dirs=(home / "models",), threads=3)
    app = create_app(settings, options=ServerOptions(workers=2, preload="sdxs"))
    with TestClient(app) as client:
        wait_warm(client, {"sdxs"})
        assert [w["threads"] for w in workers(client)] == [3, 3]


@pytest.mark.engine
def test_on_the_cpu_jobs_take_turns_on_their_warm_workers(home: Path, kit: Kit) -> None:  # noqa: F811
    """Every core per worker: two engines at once would only slow each other down (1.23x the
    total time measured on 2 cores), so jobs for two warm models run one after the other, each
    on the worker warm for it (no reload); ``--parallel 2`` lets them overlap again."""
    cores = physical_cores()
    settings = Settings(data_dir=home / "data-turns", model_dirs=(home / "models",), threads=cores)
    app = create_app(settings, options=ServerOptions(workers=2, preload="sdxs,sd1"))
    with TestClient(app) as client:
        wait_warm(client, {"sdxs", "sd1"})
        assert client.get("/api/v1/workers").json()["parallel"] == 1
        before = {w["pid"]: w["loads"] for w in workers(client)}
        models = ("sdxs", "sd1", "sdxs", "sd1")
        ids = [client.post("/api/v1/jobs", json={**SMALL, "model": m}).json()["id"] for m in models]
        done = [wait_done(client, i, timeout=600) for i in ids]
        assert [d["status"] for d in done] == ["completed"] * 4
        spans = sorted((d["started"], d["finished"]) for d in done)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), spans
        assert {w["pid"]: w["loads"] for w in workers(client)} == before  # no reload
    settings = Settings(data_dir=home / "data-turns2", model_dirs=(home / "models",), threads=cores)
    app = create_app(settings, options=ServerOptions(workers=2, preload="sdxs,sd1", parallel=2))
    with TestClient(app) as client:
        wait_warm(client, {"sdxs", "sd1"})
        assert client.get("/api/v1/workers").json()["parallel"] == 2
        a = client.post("/api/v1/jobs", json={**SMALL, "model": "sdxs", "steps": 30}).json()
        b = client.post("/api/v1/jobs", json={**SMALL, "model": "sd1", "steps": 6}).json()
        busy_together(client, [a["id"], b["id"]], timeout=300)
        assert all(wait_done(client, j["id"], timeout=600)["status"] == "completed" for j in (a, b))
