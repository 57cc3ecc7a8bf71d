"""Upscaling, hires, previews and video through the real engine: the synthesized exact
nearest-neighbour ×4 ESRGAN, SDXS (64×64, 1 step) and Wan2.1 T2V 1.3B without umT5 (16×16,
5 frames, 1 step). Few and small on purpose."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from starlette.testclient import TestClient

from sdcpp_service.config import Settings
from sdcpp_service.server.app import create_app
from sdcpp_service.server.options import ServerOptions
from tests.server.test_native import sse_events, wait_done
from tests.server.test_upscale_video import b64, pattern, unb64
from tests.synth.kit import Kit

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def client(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("serve-extras")
    links = {
        "checkpoints/sdxs.safetensors": kit.path("sdxs"),
        "upscale_models/esrgan_x4.safetensors": kit.path("esrgan_x4"),
    }
    for name, target in links.items():
        (root / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "models" / name).symlink_to(target)
    settings = Settings(data_dir=root / "data", model_dirs=(root / "models",), threads=2)
    with TestClient(create_app(settings, options=ServerOptions(max_queue=4))) as c:
        yield c


def test_extras_esrgan_is_exact_nearest(client: TestClient) -> None:
    source = pattern(12, 10)
    r = client.post(
        "/sdapi/v1/extra-single-image",
        json={"image": b64(source), "upscaling_resize": 4, "upscaler_1": "esrgan_x4"},
    )
    assert r.status_code == 200, r.text
    out = unb64(r.json()["image"]).convert("RGB")
    assert out.tobytes() == source.resize((48, 40), Image.Resampling.NEAREST).tobytes()
    r = client.post(
        "/api/v1/jobs", json={"kind": "upscale", "image": b64(source), "model": "esrgan_x4"}
    )
    job = wait_done(client, r.json()["id"], timeout=120)
    assert job["status"] == "completed", job
    image = Image.open(io.BytesIO(client.get(job["outputs"][0]["url"]).content)).convert("RGB")
    assert image.tobytes() == out.tobytes()
    r = client.post(
        "/sdapi/v1/extra-single-image", json={"image": b64(source), "upscaler_1": "sdxs"}
    )
    assert r.status_code == 422 and "is a checkpoint" in r.json()["detail"][0]["msg"]


def test_hires_txt2img_and_preview(client: TestClient) -> None:
    body = {
        "prompt": "a lighthouse",
        "steps": 1,
        "width": 64,
        "height": 64,
        "seed": 3,
        "enable_hr": True,
        "hr_scale": 2,
        "hr_upscaler": "Latent",
        "hr_second_pass_steps": 1,
        "denoising_strength": 0.5,
        "override_settings": {"sd_model_checkpoint": "sdxs"},
    }
    r = client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 200, r.text
    image = unb64(r.json()["images"][0])
    assert image.size == (128, 128)
    assert json.loads(r.json()["info"])["width"] == 128
    assert "Hires upscaler: Latent" in image.info["parameters"]
    small = {"prompt": "x", "model": "sdxs", "width": 64, "height": 64, "steps": 2}
    job = client.post("/api/v1/jobs", json={**small, "preview": "proj"}).json()
    with client.stream("GET", f"/api/v1/jobs/{job['id']}/events") as stream:
        events = sse_events(stream.read().decode())
    previews = [d for k, d in events if k == "preview"]
    assert events[-1][0] == "completed" and previews, [k for k, _ in events]
    frame = Image.open(io.BytesIO(base64.b64decode(previews[-1]["image"].partition(",")[2])))
    assert frame.format == "PNG" and frame.width > 0


def test_video_job(kit: Kit, tmp_path: Path) -> None:
    import av

    wan = kit.files("wan21")
    vace = kit.files("wan21_vace")["diffusion_model"]
    models = tmp_path / "models"
    for sub, path in (
        ("diffusion_models", wan["diffusion_model"]), ("vae", wan["vae"]), ("diffusion_models", vace)
    ):  # fmt: skip
        (models / sub).mkdir(parents=True, exist_ok=True)
        if sub == "vae":  # a component slot takes only files inside the model folders
            try:
                os.link(path, models / sub / path.name)
            except OSError:  # another filesystem
                shutil.copyfile(path, models / sub / path.name)
        else:
            (models / sub / path.name).symlink_to(path)
    settings = Settings(data_dir=tmp_path / "data", model_dirs=(models,), threads=2)
    with TestClient(create_app(settings)) as client:
        body = {
            "kind": "video",
            "model": wan["diffusion_model"].stem,
            "t5xxl": False,
            "prompt": "a fox",
            "width": 16,
            "height": 16,
            "frames": 5,
            "steps": 1,
            "cfg_scale": 1.0,
            "seed": 3,
            "format": "webm",
        }
        r = client.post("/api/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        with client.stream("GET", f"/api/v1/jobs/{r.json()['id']}/events") as stream:
            events = sse_events(stream.read().decode())
        assert events[-1][0] == "completed", events[-1]
        assert any(k == "progress" and d["phase"] == "sampling" for k, d in events)
        job = client.get(f"/api/v1/jobs/{r.json()['id']}").json()
        out = job["outputs"][0]
        assert out["frames"] == 5 and out["media_type"] == "video/webm"
        got = client.get(out["url"])
        assert got.headers["content-type"] == "video/webm"
        with av.open(io.BytesIO(got.content)) as container:
            frames = list(container.decode(video=0))
        assert len(frames) == 5 and (frames[0].width, frames[0].height) == (16, 16)

        # control frames: only a VACE model takes them, at most `frames` of them
        red = b64(Image.new("RGB", (16, 16), (255, 0, 0)))
        r = client.post("/api/v1/jobs", json={**body, "control_frames": [red] * 5})
        assert r.status_code == 422 and "VACE" in r.json()["error"]["fields"]["control_frames"]
        vace_body = {**body, "model": vace.stem, "vae": wan["vae"].stem, "format": "webp"}
        r = client.post("/api/v1/jobs", json={**vace_body, "control_frames": [red] * 6})
        assert r.status_code == 422 and "at most 5" in r.json()["error"]["fields"]["control_frames"]
        r = client.post("/api/v1/jobs", json={**vace_body, "control_frames": [red, "not-an-image"]})
        assert r.status_code == 422 and "control_frames.1" in r.json()["error"]["fields"]
        r = client.post(
            "/api/v1/jobs", json={**vace_body, "kind": "txt2img", "control_frames": [red]}
        )
        assert r.status_code == 422 and "control_frames" in r.json()["error"]["fields"]
        r = client.post(
            "/api/v1/jobs", json={**vace_body, "control_frames": [red] * 5, "vace_strength": 0.8}
        )
        assert r.status_code == 202, r.text
        job = wait_done(client, r.json()["id"], timeout=120)
        assert job["status"] == "completed", job
        text = job["outputs"][0]["infotext"]
        assert "Control frames: 5" in text and "Model: wan21_vace_1.3b_q4_0" in text
