"""sd-server's API on the real engine: api.md's img_gen and vid_gen examples (made small: the
kit's SDXS at 64², its Wan 2.1 at 16² × 5 frames, one step) and ``<sd_cpp_extra_args>``."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image
from starlette.testclient import TestClient

from sdcpp_service.config import Settings
from sdcpp_service.server.app import create_app
from tests.server.test_sdserver import IMG_GEN_EXAMPLE, VID_GEN_EXAMPLE, poll
from tests.synth.kit import Kit

pytestmark = pytest.mark.engine


def test_img_gen_vid_gen_and_extra_args(kit: Kit, tmp_path: Path) -> None:
    wan = kit.files("wan21")
    links = {
        "checkpoints/sdxs.safetensors": kit.path("sdxs"),
        f"diffusion_models/{wan['diffusion_model'].name}": wan["diffusion_model"],
        f"vae/{wan['vae'].name}": wan["vae"],
    }
    for rel, target in links.items():
        (tmp_path / "models" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "models" / rel).symlink_to(target)
    settings = Settings(data_dir=tmp_path / "data", model_dirs=(tmp_path / "models",), threads=2)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        sample = {**IMG_GEN_EXAMPLE["sample_params"], "sample_steps": 1}
        body = {**IMG_GEN_EXAMPLE, "width": 64, "height": 64, "seed": 5, "sample_params": sample}
        body["model"] = "sdxs"
        r = client.post("/sdcpp/v1/img_gen", json=body)
        assert r.status_code == 202, r.text
        job = poll(client, r.json()["poll_url"], timeout=300)
        assert job["status"] == "completed", job
        with Image.open(io.BytesIO(base64.b64decode(job["result"]["images"][0]["b64_json"]))) as im:
            assert im.size == (64, 64)
            text = im.info["parameters"]
        assert text.startswith("a cat sitting on a chair\n") and "Sampler: Euler a" in text

        extra = json.dumps({"sample_params": {"sample_steps": 2}, "seed": 8})
        a1111 = {"prompt": f"a cat <sd_cpp_extra_args>{extra}</sd_cpp_extra_args>", "steps": 1}
        a1111 |= {"width": 64, "height": 64, "override_settings": {"sd_model_checkpoint": "sdxs"}}
        r = client.post("/sdapi/v1/txt2img", json=a1111)
        assert r.status_code == 200, r.text
        info = json.loads(r.json()["info"])
        assert info["prompt"] == "a cat" and info["steps"] == 2 and info["seed"] == 8

        sample = {**VID_GEN_EXAMPLE["sample_params"], "sample_steps": 1}
        sample["guidance"] = {**sample["guidance"], "txt_cfg": 1.0}
        video = {**VID_GEN_EXAMPLE, "width": 16, "height": 16, "video_frames": 5, "seed": 3}
        video |= {"sample_params": sample, "t5xxl": False}
        r = client.post("/sdcpp/v1/vid_gen", json=video)
        assert r.status_code == 202, r.text
        job = poll(client, r.json()["poll_url"], timeout=600)
        assert job["status"] == "completed", job
        result = job["result"]
        assert result["mime_type"] == "video/webm" and result["frame_count"] == 5
        assert (
            result["fps"] == 16 and base64.b64decode(result["b64_json"])[:4] == b"\x1a\x45\xdf\xa3"
        )
