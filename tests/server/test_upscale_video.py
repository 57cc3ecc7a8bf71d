"""Upscale jobs, A1111 extras and hires fields, live previews and video jobs on the fake engine
(its "ESRGAN" is an exact nearest-neighbour ×4)."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from starlette.testclient import TestClient

from tests.models import layouts as L
from tests.models.corpus import write_safetensors
from tests.server.conftest import MakeClient, write_wan
from tests.server.test_native import sse_events, wait_done


def pattern(width: int = 6, height: int = 5) -> Image.Image:
    image = Image.new("RGB", (width, height))
    image.putdata(
        [
            (x * 40 % 256, y * 50 % 256, (x + y) * 20 % 256)
            for y in range(height)
            for x in range(width)
        ]
    )
    return image


def b64(image: Image.Image, info: str | None = None) -> str:
    from PIL import PngImagePlugin

    buf = io.BytesIO()
    meta = PngImagePlugin.PngInfo()
    if info:
        meta.add_text("parameters", info)
    image.save(buf, format="PNG", pnginfo=meta)
    return base64.b64encode(buf.getvalue()).decode()


def unb64(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text)))


def fields_of(r: Any) -> dict[str, str]:
    body: dict[str, Any] = r.json()
    if "detail" in body:
        return {".".join(d["loc"][1:]): d["msg"] for d in body["detail"]}
    return dict(body["error"]["fields"])


# -- native upscale ------------------------------------------------------------------------------


def test_upscale_job_esrgan_and_builtin(client: TestClient) -> None:
    source = pattern()
    r = client.post(
        "/api/v1/jobs",
        json={
            "kind": "upscale",
            "image": "data:image/png;base64," + b64(source, "a cat, Steps: 2"),
        },
    )
    assert r.status_code == 202, r.text
    job = wait_done(client, r.json()["id"])
    assert job["status"] == "completed" and job["model"] == "4x_test", job
    out = job["outputs"][0]
    assert out["media_type"] == "image/png" and (out["width"], out["height"]) == (24, 20)
    assert out["infotext"].startswith("a cat, Steps: 2, Postprocess upscale by: 4")
    image = Image.open(io.BytesIO(client.get(out["url"]).content)).convert("RGB")
    assert image.tobytes() == source.resize((24, 20), Image.Resampling.NEAREST).tobytes()
    events = sse_events(client.get(f"/api/v1/jobs/{job['id']}/events").text)
    assert events[-1][0] == "completed"

    r = client.post(
        "/api/v1/jobs",
        json={"kind": "upscale", "image": b64(source), "model": "nearest", "scale": 3, "tile": 64},
    )
    job = wait_done(client, r.json()["id"])
    image = Image.open(io.BytesIO(client.get(job["outputs"][0]["url"]).content))
    assert image.tobytes() == source.resize((18, 15), Image.Resampling.NEAREST).tobytes()


def test_upscale_leaves_the_loaded_model(client: TestClient) -> None:
    r = client.post("/api/v1/jobs", json={"width": 64, "height": 64, "steps": 1})
    wait_done(client, r.json()["id"])
    assert client.get("/system").json()["loaded_model"] == "alpha"
    r = client.post("/api/v1/jobs", json={"kind": "upscale", "image": b64(pattern())})
    assert wait_done(client, r.json()["id"])["status"] == "completed"
    assert client.get("/system").json()["loaded_model"] == "alpha"


def test_upscale_validation(client: TestClient) -> None:
    r = client.post("/api/v1/jobs", json={"kind": "upscale", "image": "bm90IGFuIGltYWdl"})
    assert r.status_code == 422 and "image" in fields_of(r)
    r = client.post("/api/v1/jobs", json={"kind": "upscale"})
    assert r.status_code == 422 and "image" in fields_of(r)
    r = client.post(
        "/api/v1/jobs", json={"kind": "upscale", "image": b64(pattern()), "model": "zz"}
    )
    assert r.status_code == 422 and "'zz'" in fields_of(r)["model"]
    r = client.post(
        "/api/v1/jobs", json={"kind": "upscale", "image": b64(pattern()), "model": "style"}
    )
    assert r.status_code == 422 and "is a lora" in fields_of(r)["model"]
    r = client.post(
        "/api/v1/jobs",
        json={"kind": "upscale", "image": b64(pattern()), "model": "/etc/passwd", "prompt": "x"},
    )
    assert r.status_code == 422 and {"model", "prompt"} <= set(fields_of(r))
    r = client.post("/api/v1/jobs", json={"kind": "upscale", "image": b64(pattern()), "scale": 99})
    assert r.status_code == 422 and "scale" in fields_of(r)
    r = client.post("/api/v1/jobs", json={"image": b64(pattern()), "scale": 2})
    assert r.status_code == 422 and set(fields_of(r)) == {"image", "scale"}


# -- A1111 extras and hires ---------------------------------------------------------------------


def test_extras_single_and_batch(client: TestClient) -> None:
    source = pattern()
    r = client.post(
        "/sdapi/v1/extra-single-image",
        json={"image": b64(source), "upscaling_resize": 4, "upscaler_1": "4x_test"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["html_info"] == ""
    assert unb64(r.json()["image"]).convert("RGB").tobytes() == (
        source.resize((24, 20), Image.Resampling.NEAREST).tobytes()
    )
    r = client.post(
        "/sdapi/v1/extra-single-image",
        json={"image": b64(source), "upscaling_resize": 2, "upscaler_1": "Nearest"},
    )
    assert unb64(r.json()["image"]).size == (12, 10)
    r = client.post("/sdapi/v1/extra-single-image", json={"image": b64(source)})  # "None"
    assert unb64(r.json()["image"]).tobytes() == source.tobytes()
    r = client.post(
        "/sdapi/v1/extra-single-image",
        json={
            "image": b64(source),
            "upscaler_1": "Lanczos",
            "resize_mode": 1,
            "upscaling_resize_w": 10,
            "upscaling_resize_h": 10,
        },
    )
    assert unb64(r.json()["image"]).size == (10, 10)
    r = client.post(
        "/sdapi/v1/extra-batch-images",
        json={
            "imageList": [{"data": b64(source), "name": "a.png"}, {"data": b64(pattern(3, 3))}],
            "upscaling_resize": 2,
            "upscaler_1": "Lanczos",
        },
    )
    assert r.status_code == 200, r.text
    assert [unb64(i).size for i in r.json()["images"]] == [(12, 10), (6, 6)]


def test_extras_validation(client: TestClient) -> None:
    url = "/sdapi/v1/extra-single-image"
    r = client.post(url, json={"image": "bm90IGFuIGltYWdl", "upscaler_1": "Lanczos"})
    assert r.status_code == 422 and "image" in fields_of(r)
    r = client.post(url, json={"image": b64(pattern()), "upscaler_1": "R-ESRGAN 9x"})
    assert r.status_code == 422 and "'R-ESRGAN 9x'" in fields_of(r)["upscaler_1"]
    r = client.post(url, json={"image": b64(pattern()), "upscaler_1": "style"})
    assert r.status_code == 422 and "is a lora" in fields_of(r)["upscaler_1"]
    r = client.post(url, json={"image": b64(pattern()), "upscaling_resize": 0})
    assert r.status_code == 422 and "upscaling_resize" in fields_of(r)
    r = client.post(
        "/sdapi/v1/extra-batch-images",
        json={"imageList": [{"data": b64(pattern())}, {"data": "xx"}], "upscaler_1": "Nearest"},
    )
    assert r.status_code == 422 and "imageList.1.data" in fields_of(r)
    r = client.post("/sdapi/v1/extra-batch-images", json={"imageList": []})
    assert r.status_code == 422 and "imageList" in fields_of(r)


def test_upscalers_list(client: TestClient, model_dir: Path) -> None:
    write_safetensors(model_dir / "upscale_models" / "two.safetensors", L.esrgan(up=1))
    items = client.get("/sdapi/v1/upscalers").json()
    assert [i["name"] for i in items][:3] == ["None", "Lanczos", "Nearest"]
    esrgan = next(i for i in items if i["name"] == "4x_test")
    assert esrgan["model_path"].endswith("4x_test.safetensors") and esrgan["scale"] == 4
    assert set(esrgan) == {"name", "model_name", "model_path", "model_url", "scale"}
    assert next(i for i in items if i["name"] == "two")["scale"] == 2  # read from the header


def test_txt2img_hires_fields(client: TestClient) -> None:
    base = {"steps": 1, "width": 64, "height": 64, "enable_hr": True, "denoising_strength": 0.4}
    r = client.post("/sdapi/v1/txt2img", json={**base, "hr_scale": 2, "hr_upscaler": "Latent"})
    assert r.status_code == 200, r.text
    assert unb64(r.json()["images"][0]).size == (128, 128)
    info = json.loads(r.json()["info"])
    assert (info["width"], info["height"]) == (128, 128)
    job = client.get("/api/v1/jobs?limit=1").json()["jobs"][0]
    assert job["params"]["hires_upscaler"] == "latent" and job["params"]["hires_denoise"] == 0.4
    r = client.post(
        "/sdapi/v1/txt2img",
        json={
            **base,
            "hr_resize_x": 96,
            "hr_resize_y": 80,
            "hr_upscaler": "4x_test",
            "hr_second_pass_steps": 2,
        },
    )
    assert unb64(r.json()["images"][0]).size == (96, 80)
    params = client.get("/api/v1/jobs?limit=1").json()["jobs"][0]["params"]
    assert params["hires_model"].endswith("4x_test.safetensors") and params["hires_steps"] == 2
    for name in ("Latent (nearest)", "Nearest", "None"):
        r = client.post("/sdapi/v1/txt2img", json={**base, "hr_upscaler": name})
        assert r.status_code == 200, (name, r.text)
    r = client.post("/sdapi/v1/txt2img", json={**base, "hr_upscaler": "style"})
    assert r.status_code == 422 and "is a lora" in fields_of(r)["hr_upscaler"]
    r = client.post("/sdapi/v1/txt2img", json={**base, "hr_upscaler": "SwinIR 4x"})
    assert r.status_code == 422 and "'SwinIR 4x'" in fields_of(r)["hr_upscaler"]
    r = client.post("/sdapi/v1/txt2img", json={**base, "hr_upscaler": "Latent (bogus)"})
    assert r.status_code == 422 and "hr_upscaler" in fields_of(r)


# -- previews -------------------------------------------------------------------------------------


def test_native_preview_events(client: TestClient) -> None:
    body = {"width": 64, "height": 64, "steps": 4, "preview": "proj", "preview_interval": 2}
    job = client.post("/api/v1/jobs", json=body).json()
    wait_done(client, job["id"])
    job = client.post("/api/v1/jobs", json=body).json()
    events = sse_events(client.get(f"/api/v1/jobs/{job['id']}/events").text)
    previews = [d for k, d in events if k == "preview"]
    if previews:  # the job may have finished before the stream started
        assert [p["step"] for p in previews] in ([2, 4], [4])
        image = previews[-1]["image"]
        assert image.startswith("data:image/png;base64,")
        assert unb64(image.partition(",")[2]).size == (8, 8)
    plain = client.post("/api/v1/jobs", json={**body, "preview": "none"}).json()
    assert all(
        k != "preview" for k, _ in sse_events(client.get(f"/api/v1/jobs/{plain['id']}/events").text)
    )
    r = client.post("/api/v1/jobs", json={**body, "preview": "fancy"})
    assert r.status_code == 422 and "preview" in fields_of(r)


def test_native_preview_stream_while_running(make_client: MakeClient) -> None:
    client = make_client(step_seconds=0.03)
    job = client.post(
        "/api/v1/jobs", json={"width": 64, "height": 64, "steps": 5, "preview": "tae"}
    ).json()
    with client.stream("GET", f"/api/v1/jobs/{job['id']}/events") as r:
        events = sse_events(r.read().decode())
    previews = [d["step"] for k, d in events if k == "preview"]
    assert previews and previews == sorted(previews) and previews[-1] == 5


def test_a1111_progress_current_image(make_client: MakeClient) -> None:
    client = make_client(step_seconds=0.05)
    done: dict[str, int] = {}

    def call() -> None:
        r = client.post("/sdapi/v1/txt2img", json={"steps": 40, "width": 64, "height": 64})
        done["status"] = r.status_code

    thread = threading.Thread(target=call)
    thread.start()
    seen = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and seen is None:
        p = client.get("/sdapi/v1/progress").json()
        if p["current_image"]:
            seen = p
        time.sleep(0.02)
    assert seen is not None
    assert unb64(seen["current_image"]).format == "PNG"
    assert client.get("/sdapi/v1/progress?skip_current_image=true").json()["current_image"] is None
    client.post("/sdapi/v1/interrupt")
    thread.join(20)
    options = {"live_previews_enable": False}
    assert client.post("/sdapi/v1/options", json=options).status_code == 200
    client.post("/sdapi/v1/txt2img", json={"steps": 1, "width": 64, "height": 64})
    assert "preview" not in client.get("/api/v1/jobs?limit=1").json()["jobs"][0]["params"]


# -- video ------------------------------------------------------------------------------------------


@pytest.fixture
def wan(model_dir: Path) -> Path:
    """A Wan T2V DiT (header only) beside the SD1 checkpoints: video jobs need a video model."""
    return write_wan(model_dir)


def test_video_job_formats(wan: Path, client: TestClient) -> None:
    for fmt, media in (("webm", "video/webm"), ("gif", "image/gif"), ("mp4", "video/mp4")):
        body = {
            "kind": "video",
            "model": "wan_t2v",
            "prompt": "a fox",
            "width": 32,
            "height": 32,
            "frames": 5,
            "steps": 2,
            "format": fmt,
            "seed": 4,
        }
        r = client.post("/api/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        job = wait_done(client, r.json()["id"], timeout=60)
        assert job["status"] == "completed", job
        out = job["outputs"][0]
        assert out["name"].endswith(f".{fmt}") and out["media_type"] == media
        assert out["frames"] == 5 and out["fps"] == 16 and out["seed"] == 4
        got = client.get(out["url"])
        assert got.status_code == 200 and got.headers["content-type"] == media
    events = sse_events(client.get(f"/api/v1/jobs/{job['id']}/events").text)
    assert events[-1][0] == "completed" and events[-1][1]["outputs"][0].endswith(".mp4")
    assert client.get(out["url"] + "?thumb=16").status_code == 422


def test_video_progress_and_validation(wan: Path, make_client: MakeClient) -> None:
    client = make_client(step_seconds=0.02)
    job = client.post(
        "/api/v1/jobs",
        json={
            "kind": "video",
            "model": "wan_t2v",
            "width": 16,
            "height": 16,
            "frames": 5,
            "steps": 4,
            "format": "webp",
        },
    ).json()
    with client.stream("GET", f"/api/v1/jobs/{job['id']}/events") as r:
        events = sse_events(r.read().decode())
    assert [d["step"] for k, d in events if k == "progress"][-1] == 4
    assert events[-1][0] == "completed"
    r = client.post(
        "/api/v1/jobs",
        json={"kind": "video", "frames": 4, "format": "avi", "batch": 2, "image": "xx"},
    )
    assert r.status_code == 422
    assert {"frames", "format", "batch", "image"} <= set(fields_of(r))
    r = client.post("/api/v1/jobs", json={"frames": 5, "fps": 8})
    assert r.status_code == 422 and set(fields_of(r)) == {"frames", "fps"}
