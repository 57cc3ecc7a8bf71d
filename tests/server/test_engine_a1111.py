"""The A1111 door on the real engine (the synthesized SDXS checkpoint, 64², one step): every
A1111 sampler name produces an image and ``info``/infotext name the sampler that ran; styles and
the options the service acts on reach the engine."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image
from starlette.testclient import TestClient

from sdcpp_service.config import Settings
from sdcpp_service.engine import names
from sdcpp_service.server.app import create_app
from sdcpp_service.server.options import ServerOptions
from tests.synth.kit import Kit

pytestmark = pytest.mark.engine

SMALL = {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 1, "seed": 3}


@pytest.fixture(scope="module")
def client(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("a1111")
    (root / "models" / "checkpoints").mkdir(parents=True)
    (root / "models" / "checkpoints" / "sdxs.safetensors").symlink_to(kit.path("sdxs"))
    (root / "data").mkdir()
    (root / "data" / "styles.csv").write_text(
        "name,prompt,negative_prompt\nnight,{prompt} at night,sunny\n", encoding="utf-8"
    )
    settings = Settings(data_dir=root / "data", model_dirs=(root / "models",), threads=2)
    app = create_app(settings, options=ServerOptions(preload="sdxs"))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def infotext(b64: str) -> str:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
        assert im.size == (64, 64)
        return str(im.info["parameters"])


def test_every_a1111_sampler_name_makes_an_image(client: TestClient) -> None:
    listed = {s["name"] for s in client.get("/sdapi/v1/samplers").json()}
    for name in names.A1111_NAMES:  # A1111's own list (the aliases map by table: fast tests)
        r = client.post("/sdapi/v1/txt2img", json={**SMALL, "sampler_name": name})
        assert r.status_code == 200, (name, r.text)
        engine, _ = names.sampler_from_label(name)
        ran = names.sampler_label(engine)
        info = json.loads(r.json()["info"])
        assert info["sampler_name"] == ran and ran in listed, name
        assert f"Sampler: {ran}," in infotext(r.json()["images"][0]), name
    # /samplers lists what runs: the mapped names appear as aliases, not as samplers
    assert not listed & set(names.A1111_NEAREST)


def test_styles_and_options_reach_the_engine(client: TestClient) -> None:
    r = client.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 2})
    assert r.status_code == 200, r.text
    r = client.post("/sdapi/v1/txt2img", json={**SMALL, "styles": ["night"]})
    assert r.status_code == 200, r.text
    text = infotext(r.json()["images"][0])
    assert text.startswith("a lighthouse at night\nNegative prompt: sunny\n")
    assert "Clip skip: 2" in text
    assert client.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 1}).status_code == 200


def test_interrupt_returns_the_last_preview(client: TestClient) -> None:
    """Interrupt ends the request at once with the image the job had reached (its last live
    preview), as A1111's live_preview_fast_interrupt does."""
    out: dict[str, Any] = {}

    def call() -> None:
        out["r"] = client.post("/sdapi/v1/txt2img", json={**SMALL, "steps": 40})

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 300
    while client.get("/sdapi/v1/progress").json()["state"]["sampling_step"] < 2:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.05)
    assert client.post("/sdapi/v1/interrupt").status_code == 200
    thread.join(60)
    r: Any = out["r"]
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert info["interrupted"] is True
    assert info["extra_generation_params"]["Note"].startswith("interrupted at step")
    [image] = r.json()["images"]
    with Image.open(io.BytesIO(base64.b64decode(image))) as im:
        assert im.size[0] > 0
    # the engine process was replaced; the next request runs
    assert client.post("/sdapi/v1/txt2img", json=SMALL).status_code == 200
