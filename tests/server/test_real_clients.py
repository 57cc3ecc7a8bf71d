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
from sdcpp_service.server.options import ServerOptions
from tests.fakes import FakeEngine


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


def test_webuiapi_every_list_and_setting(live_url: str, tmp_path: Path) -> None:
    """Each A1111 route webuiapi has a method for, through that method."""
    (tmp_path / "data" / "styles.csv").write_text(
        "name,prompt,negative_prompt\nfox,{prompt} fox,\n"
    )
    api = webuiapi.WebUIApi(host="127.0.0.1", port=int(live_url.rsplit(":", 1)[1]))
    assert api.get_cmd_flags()["api"] is True
    assert api.get_embeddings() == {"loaded": {}, "skipped": {}}
    assert api.get_face_restorers() == [] and api.get_hypernetworks() == []
    assert [m["name"] for m in api.get_realesrgan_models()] == ["4x_test"]
    assert api.get_prompt_styles() == [
        {"name": "fox", "prompt": "{prompt} fox", "negative_prompt": ""}
    ]
    assert api.get_scripts() == {"txt2img": [], "img2img": []}
    assert api.get_memory()["ram"]["total"] > 0
    assert any(s["label"] == "Karras" for s in api.get_schedulers())
    assert api.get_loras()[0]["name"] == "style" and api.get_sd_vae()[0]["model_name"] == "myvae"
    options = api.get_options()
    api.set_options({**options, "send_seed": False})
    assert api.get_options() == {**options, "send_seed": False}
    result = api.txt2img(prompt="a", styles=["fox"], width=64, height=64, steps=1, seed=1)
    assert result.info["prompt"] == "a fox" and result.info["styles"] == ["fox"]
    with pytest.raises(RuntimeError) as err:
        api.interrogate(Image.new("RGB", (64, 64)))
    assert err.value.args[0] == 501
    assert api.refresh_checkpoints() is None and api.skip() == {}
