"""The A1111 dialect (/sdapi/v1) on the fake engine."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

from PIL import Image
from starlette.testclient import TestClient

from tests.server.conftest import MakeClient
from tests.server.test_native import png


def test_txt2img_shape(client: TestClient) -> None:
    body = {
        "prompt": "a cat",
        "negative_prompt": "dog",
        "seed": 5,
        "steps": 2,
        "width": 64,
        "height": 64,
        "batch_size": 2,
        "sampler_name": "Euler a",
        "scheduler": "Automatic",
        "unknown_field": {"ignored": True},
        "alwayson_scripts": {},
    }
    r = client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert len(data["images"]) == 2
    first = Image.open(io.BytesIO(base64.b64decode(data["images"][0])))
    assert first.size == (64, 64) and "Seed: 5" in first.info["parameters"]
    assert isinstance(data["info"], str)
    info = json.loads(data["info"])
    assert info["seed"] == 5 and info["all_seeds"] == [5, 6]
    assert len(info["infotexts"]) == 2 and info["sd_model_name"] == "alpha"
    assert data["parameters"]["prompt"] == "a cat"


def test_img2img_and_inpaint(client: TestClient) -> None:
    init = "data:image/png;base64," + png(64, 64)
    r = client.post(
        "/sdapi/v1/img2img",
        json={
            "init_images": [init],
            "denoising_strength": 0.5,
            "steps": 1,
            "width": 64,
            "height": 64,
        },
    )
    assert r.status_code == 200, r.text
    r = client.post(
        "/sdapi/v1/img2img",
        json={
            "init_images": [init],
            "mask": png(64, 64, "white"),
            "inpainting_mask_invert": 1,
            "steps": 1,
            "width": 64,
            "height": 64,
        },
    )
    assert r.status_code == 200, r.text
    r = client.post("/sdapi/v1/img2img", json={"steps": 1})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "init_images"]


def test_validation_uses_a1111_names(client: TestClient) -> None:
    r = client.post("/sdapi/v1/txt2img", json={"sampler_name": "Nope", "steps": -1})
    assert r.status_code == 422
    locs = {tuple(d["loc"]) for d in r.json()["detail"]}
    assert {("body", "sampler_name"), ("body", "steps")} <= locs
    r = client.post("/sdapi/v1/txt2img", json={"override_settings": {"sd_model_checkpoint": "zzz"}})
    assert r.status_code == 422


def test_progress_idle_and_busy(make_client: MakeClient) -> None:
    client = make_client(step_seconds=0.05)
    idle = client.get("/sdapi/v1/progress").json()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0
    result: dict[str, object] = {}

    def call() -> None:
        r = client.post("/sdapi/v1/txt2img", json={"steps": 40, "width": 64, "height": 64})
        result["status"] = r.status_code
        result["images"] = len(r.json()["images"])
        result["interrupted"] = json.loads(r.json()["info"])["interrupted"]

    thread = threading.Thread(target=call)
    thread.start()
    busy = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        p = client.get("/sdapi/v1/progress").json()
        if p["state"]["sampling_step"] >= 2:
            busy = p
            break
        time.sleep(0.02)
    assert busy is not None
    assert 0 < busy["progress"] < 1 and busy["state"]["sampling_steps"] == 40
    assert busy["state"]["job_count"] == 1 and 0 < busy["eta_relative"] <= 1
    client.post("/sdapi/v1/interrupt")
    thread.join(20)
    # the job had a live preview: interrupt returns it (A1111's live_preview_fast_interrupt)
    assert result == {"status": 200, "images": 1, "interrupted": True}


def test_lists_and_options(client: TestClient) -> None:
    models = client.get("/sdapi/v1/sd-models").json()
    titles = {m["title"] for m in models}
    alpha = next(m for m in models if m["model_name"] == "alpha")
    assert (
        alpha["title"] == f"alpha [{alpha['sha256'][:10]}]"
        and alpha["hash"] == alpha["sha256"][:10]
    )
    assert len(titles) == 2
    assert client.get("/sdapi/v1/sd-vae").json()[0]["model_name"] == "myvae"
    assert client.get("/sdapi/v1/loras").json()[0]["name"] == "style"
    samplers = {s["name"] for s in client.get("/sdapi/v1/samplers").json()}
    assert {"Euler a", "Euler"} <= samplers
    assert any(s["label"] == "Karras" for s in client.get("/sdapi/v1/schedulers").json())
    assert client.get("/sdapi/v1/upscalers").json()[0]["name"] == "None"
    assert client.get("/sdapi/v1/latent-upscale-modes").json()[0]["name"] == "Latent"
    assert client.post("/sdapi/v1/refresh-checkpoints").status_code == 200
    assert client.get("/sdapi/v1/memory").json()["ram"]["total"] > 0
    options = client.get("/sdapi/v1/options").json()
    beta = next(m for m in models if m["model_name"] == "beta")
    options["sd_model_checkpoint"] = beta["title"]
    assert client.post("/sdapi/v1/options", json=options).status_code == 200
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == beta["title"]
    r = client.post("/sdapi/v1/txt2img", json={"steps": 1, "width": 64, "height": 64})
    assert json.loads(r.json()["info"])["sd_model_name"] == "beta"
    r = client.post(
        "/sdapi/v1/txt2img",
        json={
            "steps": 1,
            "width": 64,
            "height": 64,
            "override_settings": {"sd_model_checkpoint": "alpha"},
        },
    )
    assert json.loads(r.json()["info"])["sd_model_name"] == "alpha"
    bad = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "nope"})
    assert bad.status_code == 422


def test_png_info_roundtrip(client: TestClient) -> None:
    r = client.post(
        "/sdapi/v1/txt2img",
        json={"prompt": "hello", "seed": 9, "steps": 1, "width": 64, "height": 64},
    )
    image = r.json()["images"][0]
    info = client.post(
        "/sdapi/v1/png-info", json={"image": "data:image/png;base64," + image}
    ).json()
    assert info["parameters"]["Seed"] == "9" and info["parameters"]["Prompt"] == "hello"
    assert client.post("/sdapi/v1/png-info", json={"image": "xx"}).status_code == 422
