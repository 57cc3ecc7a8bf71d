"""CPU threads of the pool's engine workers: with no ``--threads`` each worker gets every physical
core (read back from the engine context it made); ``--threads`` decides for every worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from sdcpp_service.config import Settings, physical_cores
from sdcpp_service.server.app import create_app
from sdcpp_service.server.options import ServerOptions
from tests.server.test_pool_engine import home, wait_warm, workers  # noqa: F401
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
