"""Issue 12 item 4: where a native abort still happens (``GGML_ASSERT``), the CLI prints one line
naming the likely cause and exits non-zero, and a server job's error names it too.

The abort is real: the kit's SD1 ControlNet on SDXS fails ``ggml_can_repeat`` inside the engine.
Our header check refuses that pair before loading, so each test switches the check off in the
process that runs the engine (the CLI subprocess; the server's worker process).
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from starlette.testclient import TestClient

from sdcpp_service.config import Settings
from sdcpp_service.engine.aborts import ABORT_EXIT, Doing, likely_cause
from sdcpp_service.server.app import create_app
from sdcpp_service.server.engine import PipelineEngine
from sdcpp_service.server.options import ServerOptions
from tests.server.test_native import wait_done
from tests.synth.kit import Kit

UNCHECKED = (
    "import sdcpp_service.models.addons as a; a.check_control_net = lambda *x, **k: None; "
    "from sdcpp_service._launch import main; main()"
)


def test_likely_cause_names_the_add_on_first() -> None:
    files = {"model": "/m/sdxs.safetensors", "control_net": "/m/cn.safetensors"}
    assert likely_cause(Doing("generating", files, ("/m/detail.safetensors",))).startswith(
        "the LoRA detail.safetensors, which may not fit sdxs.safetensors"
    )
    assert likely_cause(Doing("generating", files)).startswith(
        "the ControlNet cn.safetensors, which may not fit sdxs.safetensors"
    )
    assert likely_cause(Doing("loading the model", {"model": "/m/x.gguf"})).startswith(
        "the model x.gguf: its tensors"
    )


@pytest.mark.engine
def test_cli_native_abort_is_one_line(kit: Kit, tmp_path: Path) -> None:
    Image.new("RGB", (64, 64), (200, 100, 50)).save(tmp_path / "edges.png")
    args = ["generate", "a fox", "-m", str(kit.path("sdxs")), "--control-net",
            str(kit.path("controlnet_sd1")), "--control-image", "edges.png", "-W", "64", "-H",
            "64", "--steps", "1", "-o", "out.png"]  # fmt: skip
    env = {**os.environ, "SDCPP_DATA_DIR": str(tmp_path / "data")}
    env.pop("GGML_NO_BACKTRACE", None)
    proc = subprocess.run(
        [sys.executable, "-c", UNCHECKED, *args],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == ABORT_EXIT, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [proc.stderr.splitlines()[-1]]  # the last line, and the only error line
    line = errors[0]
    assert line.startswith("error: the engine aborted while generating: GGML_ASSERT(")
    assert "likely cause: the ControlNet control_sd1.safetensors, which may not fit sdxs" in line
    assert line.endswith("nothing was written")
    for noise in ("backtrace", "gdb", "#0 ", "Aborted", "Traceback"):
        assert noise not in proc.stderr
    assert len(proc.stderr.splitlines()) <= 3, proc.stderr  # at most the progress lines before
    assert not (tmp_path / "out.png").exists()


@dataclass
class UncheckedEngine(PipelineEngine):
    """The real engine with the add-on header check off in its worker process."""

    def start(self) -> dict[str, Any]:
        from sdcpp_service.models import addons

        addons.check_control_net = lambda *a, **k: None
        return super().start()


@pytest.fixture
def client(kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    from sdcpp_service.models import addons

    monkeypatch.setattr(addons, "check_control_net", lambda *a, **k: None)  # the server's check
    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    (models / "controlnet").mkdir()
    (models / "checkpoints" / "sdxs.safetensors").symlink_to(kit.path("sdxs"))
    # add-ons must lie inside the model folders (a symlink out is refused): a hard link
    os.link(kit.path("controlnet_sd1"), models / "controlnet" / "control_sd1.safetensors")
    settings = Settings(data_dir=tmp_path / "data", model_dirs=(models,), threads=2)
    app = create_app(settings, UncheckedEngine(settings), ServerOptions())
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.engine
def test_server_job_error_names_the_cause(client: TestClient) -> None:
    png = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 100, 50)).save(png, "PNG")
    body = {"prompt": "a fox", "model": "sdxs", "width": 64, "height": 64, "steps": 1,
            "control_net": "control_sd1",
            "control_image": base64.b64encode(png.getvalue()).decode()}  # fmt: skip
    created = client.post("/api/v1/jobs", json=body)
    assert created.status_code in (200, 201, 202), created.text
    job = wait_done(client, created.json()["id"], timeout=300)
    assert job["status"] == "failed"
    error = job["error"]
    assert error["type"] == "EngineAborted", error
    assert "GGML_ASSERT(" in error["message"]
    assert "likely cause: the ControlNet control_sd1.safetensors" in error["message"]
    assert client.get("/health").json()["status"] == "ok"  # a fresh worker takes the next job
    nxt = client.post(
        "/api/v1/jobs", json={k: body[k] for k in ("prompt", "model", "steps", "width", "height")}
    )
    assert wait_done(client, nxt.json()["id"], timeout=300)["status"] == "completed"
