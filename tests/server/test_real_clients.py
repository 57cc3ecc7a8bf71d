"""The real client packages (``openai``, ``webuiapi``) against a live server on loopback.

The server runs on the fake engine here (the dialects are what is under test); the real-engine
path through each dialect is covered in ``test_engine_e2e.py``.
"""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import uvicorn
import webuiapi
from PIL import Image

from sdcpp_service.config import Settings
from sdcpp_service.server.app import create_app
from sdcpp_service.server.engine import FakeEngine
from sdcpp_service.server.options import ServerOptions


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_url(tmp_path: Path, model_dir: Path) -> Iterator[str]:
    settings = Settings(data_dir=tmp_path / "data", model_dirs=(model_dir,), threads=1)
    app = create_app(settings, FakeEngine(step_seconds=0.0), ServerOptions(worker_start_timeout=60))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_openai_client_generations_and_models(live_url: str) -> None:
    client = openai.OpenAI(base_url=f"{live_url}/v1", api_key="unused", max_retries=0)
    try:
        result = client.images.generate(
            prompt="a fox", model="alpha", n=2, size="64x64", response_format="b64_json"
        )
        assert len(result.data) == 2
        image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json or "")))
        assert image.size == (64, 64)
        assert "alpha" in [m.id for m in client.models.list().data]
        with pytest.raises(openai.APIStatusError) as err:
            client.images.generate(prompt="a fox", size="65x64")
        assert 400 <= err.value.status_code < 500 and "65" in err.value.message
        png = io.BytesIO()
        Image.new("RGB", (64, 64), (1, 2, 3)).save(png, format="PNG")
        edited = client.images.edit(
            image=("in.png", png.getvalue(), "image/png"), prompt="night", size="64x64"
        )
        assert len(edited.data) == 1
    finally:
        client.close()


def test_webuiapi_txt2img_img2img_options(live_url: str) -> None:
    port = int(live_url.rsplit(":", 1)[1])
    api = webuiapi.WebUIApi(host="127.0.0.1", port=port)
    result = api.txt2img(prompt="a fox", width=64, height=64, steps=2, seed=7, batch_size=2)
    assert len(result.images) == 2 and result.images[0].size == (64, 64)
    assert result.info["seed"] == 7 and result.info["all_seeds"][:2] == [7, 8]
    init = Image.new("RGB", (64, 64), (200, 10, 10))
    out = api.img2img(images=[init], prompt="blue", denoising_strength=0.5, width=64, height=64)
    assert out.image.size == (64, 64)
    assert [m["model_name"] for m in api.get_sd_models()] == ["alpha", "beta"]
    api.util_set_model("beta")
    assert api.get_options()["sd_model_checkpoint"].startswith("beta")
    assert any(s["name"] == "Euler a" for s in api.get_samplers())
    progress = api.get_progress()
    assert progress["progress"] == 0 and progress["state"]["job_count"] == 0
