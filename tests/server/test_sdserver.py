"""sd-server's own API (/sdcpp/v1) and ``<sd_cpp_extra_args>`` on the fake engine: the request
examples of the engine's ``examples/server/api.md``, verbatim, pass against us with sd-server's
response shapes (the real engine runs them in test_engine_sdserver.py)."""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from starlette.testclient import TestClient

from tests.server.conftest import MakeClient, write_wan

#: ``POST /sdcpp/v1/img_gen`` "Request Body" example of api.md, verbatim.
IMG_GEN_EXAMPLE: dict[str, Any] = {
    "prompt": "a cat sitting on a chair", "negative_prompt": "", "clip_skip": -1,
    "width": 1024, "height": 1024, "strength": 0.75, "seed": -1, "batch_count": 1,
    "auto_resize_ref_image": True, "increase_ref_index": False, "control_strength": 0.9,
    "embed_image_metadata": True, "init_image": None, "ref_images": [], "mask_image": None,
    "control_image": None,
    "sample_params": {
        "scheduler": "discrete", "sample_method": "euler_a", "sample_steps": 28, "eta": 1.0,
        "shifted_timestep": 0, "custom_sigmas": [], "flow_shift": 0.0,
        "guidance": {
            "txt_cfg": 7.0, "img_cfg": 7.0, "distilled_guidance": 3.5,
            "slg": {"layers": [7, 8, 9], "layer_start": 0.01, "layer_end": 0.2, "scale": 0.0},
        },
    },
    "lora": [],
    "hires": {
        "enabled": False, "upscaler": "Latent", "scale": 2.0, "target_width": 0,
        "target_height": 0, "steps": 0, "denoising_strength": 0.7, "upscale_tile_size": 128,
    },
    "vae_tiling_params": {
        "enabled": False, "tile_size_x": 0, "tile_size_y": 0, "target_overlap": 0.5,
        "rel_size_x": 0.0, "rel_size_y": 0.0,
    },
    "cache_mode": "disabled", "cache_option": "", "scm_mask": "", "scm_policy_dynamic": True,
    "output_format": "png", "output_compression": 100,
}  # fmt: skip

#: ``POST /sdcpp/v1/vid_gen`` "Request Body" example of api.md, verbatim.
VID_GEN_EXAMPLE: dict[str, Any] = {
    "prompt": "a cat walking through a rainy alley", "negative_prompt": "", "clip_skip": -1,
    "width": 832, "height": 480, "strength": 0.75, "seed": -1, "video_frames": 33, "fps": 16,
    "moe_boundary": 0.875, "vace_strength": 1.0, "init_image": None, "end_image": None,
    "control_frames": [],
    "sample_params": {
        "scheduler": "discrete", "sample_method": "euler", "sample_steps": 28, "eta": 1.0,
        "shifted_timestep": 0, "custom_sigmas": [], "flow_shift": 0.0,
        "guidance": {
            "txt_cfg": 7.0, "img_cfg": 7.0, "distilled_guidance": 3.5,
            "slg": {"layers": [7, 8, 9], "layer_start": 0.01, "layer_end": 0.2, "scale": 0.0},
        },
    },
    "high_noise_sample_params": {
        "scheduler": "discrete", "sample_method": "euler", "sample_steps": -1, "eta": 1.0,
        "shifted_timestep": 0, "flow_shift": 0.0,
        "guidance": {
            "txt_cfg": 7.0, "img_cfg": 7.0, "distilled_guidance": 3.5,
            "slg": {"layers": [7, 8, 9], "layer_start": 0.01, "layer_end": 0.2, "scale": 0.0},
        },
    },
    "lora": [],
    "vae_tiling_params": {
        "enabled": False, "tile_size_x": 0, "tile_size_y": 0, "target_overlap": 0.5,
        "rel_size_x": 0.0, "rel_size_y": 0.0,
    },
    "cache_mode": "disabled", "cache_option": "", "scm_mask": "", "scm_policy_dynamic": True,
    "output_format": "webm", "output_compression": 100,
}  # fmt: skip

JOB_KEYS = {"id", "kind", "status", "created", "started", "completed", "queue_position"}
JOB_KEYS |= {"result", "error"}


def poll(client: TestClient, url: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(url).json()
        assert set(job) == JOB_KEYS, job
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        assert job["status"] in ("queued", "generating")
        time.sleep(0.02)
    raise AssertionError("job did not finish")


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


@pytest.fixture
def video_dir(model_dir: Path) -> Path:
    """The model folder plus a Wan 2.1 T2V diffusion model (header only; the fake reads none)."""
    write_wan(model_dir, "wan")
    return model_dir


def test_capabilities_shape(video_dir: Path, client: TestClient) -> None:
    caps = client.get("/sdcpp/v1/capabilities").json()
    top = {"model", "current_mode", "supported_modes", "defaults", "output_formats", "features"}
    top |= {"defaults_by_mode", "output_formats_by_mode", "features_by_mode", "samplers"}
    top |= {"schedulers", "loras", "upscalers", "limits"}
    assert top <= set(caps)
    assert set(caps["model"]) == {"name", "stem", "path"} and caps["model"]["name"] == "alpha"
    assert caps["supported_modes"] == ["img_gen", "vid_gen"] and caps["current_mode"] == "img_gen"
    assert caps["defaults"] == caps["defaults_by_mode"]["img_gen"]
    assert set(IMG_GEN_EXAMPLE) - {"init_image", "ref_images", "mask_image", "control_image"} - {
        "lora",
        "embed_image_metadata",
    } <= set(caps["defaults_by_mode"]["img_gen"])
    assert {"video_frames", "fps", "high_noise_sample_params"} <= set(
        caps["defaults_by_mode"]["vid_gen"]
    )
    assert caps["features_by_mode"]["img_gen"]["cancel_generating"] is True
    assert caps["loras"] == [
        {"name": "style", "path": str(video_dir / "loras" / "style.safetensors")}
    ]
    assert {"name": "4x_test"} in caps["upscalers"] and {"name": "Latent"} in caps["upscalers"]
    assert set(caps["limits"]) == {
        "min_width", "max_width", "min_height", "max_height", "max_batch_count", "max_queue_size"
    }  # fmt: skip


def test_img_gen_documented_example(client: TestClient) -> None:
    r = client.post("/sdcpp/v1/img_gen", json=IMG_GEN_EXAMPLE)
    assert r.status_code == 202, r.text
    sub = r.json()
    assert set(sub) == {"id", "kind", "status", "created", "poll_url"}
    assert sub["kind"] == "img_gen" and sub["status"] == "queued"
    assert sub["poll_url"] == f"/sdcpp/v1/jobs/{sub['id']}"
    job = poll(client, sub["poll_url"])
    assert job["status"] == "completed" and job["error"] is None, job
    assert job["started"] >= job["created"] and job["completed"] >= job["started"]
    assert job["result"]["output_format"] == "png"
    [item] = job["result"]["images"]
    image = decode(item["b64_json"])
    assert item["index"] == 0 and image.size == (1024, 1024) and "parameters" in image.info


def test_img_gen_outputs_and_kinds(client: TestClient) -> None:
    body = {
        "prompt": "a", "width": 64, "height": 64, "batch_count": 2, "output_format": "jpeg",
        "output_compression": 50, "sample_params": {"sample_steps": 2},
    }  # fmt: skip
    job = poll(client, client.post("/sdcpp/v1/img_gen", json=body).json()["poll_url"])
    images = [decode(i["b64_json"]) for i in job["result"]["images"]]
    assert [im.format for im in images] == ["JPEG", "JPEG"] and job["result"][
        "output_format"
    ] == "jpeg"
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (9, 9, 9)).save(buf, format="PNG")
    init = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    body = {"prompt": "b", "init_image": init, "strength": 0.5, "embed_image_metadata": False}
    job = poll(client, client.post("/sdcpp/v1/img_gen", json=body).json()["poll_url"])
    assert "parameters" not in decode(job["result"]["images"][0]["b64_json"]).info
    jobs = client.get("/api/v1/jobs", params={"limit": 1}).json()["jobs"]
    assert jobs[0]["kind"] == "img2img"


def test_vid_gen_documented_example(video_dir: Path, client: TestClient) -> None:
    r = client.post("/sdcpp/v1/vid_gen", json=VID_GEN_EXAMPLE)
    assert r.status_code == 202, r.text
    assert r.json()["kind"] == "vid_gen"
    job = poll(client, r.json()["poll_url"])
    assert job["status"] == "completed", job
    result = job["result"]
    assert set(result) == {"output_format", "mime_type", "fps", "frame_count", "b64_json"}
    assert result["output_format"] == "webm" and result["mime_type"] == "video/webm"
    assert result["fps"] == 16 and result["frame_count"] == 33
    assert base64.b64decode(result["b64_json"])[:4] == b"\x1a\x45\xdf\xa3"  # EBML: a WebM file
    listed = client.get("/api/v1/jobs", params={"limit": 1}).json()["jobs"][0]
    assert listed["model"] == "wan"


def test_errors_in_sdserver_shape(client: TestClient) -> None:
    r = client.post("/sdcpp/v1/img_gen", content=b"")
    assert (r.status_code, r.json()) == (400, {"error": "empty body"})
    r = client.post("/sdcpp/v1/img_gen", content=b"{nope")
    assert (r.status_code, r.json()["error"]) == (400, "invalid json")
    r = client.post(
        "/sdcpp/v1/img_gen", json={"prompt": "a", "sample_params": {"sample_steps": -3}}
    )
    assert r.status_code == 400 and "sample_params.sample_steps" in r.json()["error"]
    r = client.post("/sdcpp/v1/vid_gen", json={"prompt": "a", "output_format": "avi"})
    assert r.status_code == 400 and "avi" in r.json()["error"]
    r = client.post("/sdcpp/v1/vid_gen", json={"prompt": "a"})  # no video model here
    assert r.status_code == 400 and "Wan" in r.json()["error"]
    r = client.post("/sdcpp/v1/img_gen", json={"prompt": "a", "lora": [{"path": "nope"}]})
    assert r.status_code == 400 and "lora" in r.json()["error"]
    assert client.get("/sdcpp/v1/jobs/zzz").json() == {"error": "job not found"}
    assert client.post("/sdcpp/v1/jobs/zzz/cancel").status_code == 404


def test_cancel_generating_job(make_client: MakeClient) -> None:
    client = make_client(step_seconds=0.05)
    body = {"prompt": "a", "width": 64, "height": 64, "sample_params": {"sample_steps": 100}}
    first = client.post("/sdcpp/v1/img_gen", json=body).json()
    second = client.post("/sdcpp/v1/img_gen", json=body).json()
    queued = client.get(second["poll_url"]).json()
    assert queued["status"] == "queued" and queued["queue_position"] == 1
    deadline = time.monotonic() + 20
    while client.get(first["poll_url"]).json()["status"] != "generating":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    for sub in (second, first):
        r = client.post(f"/sdcpp/v1/jobs/{sub['id']}/cancel")
        assert r.status_code == 200
        assert r.json()["status"] == "cancelled", r.json()
        assert r.json()["error"] == {"code": "cancelled", "message": "job cancelled by client"}


@pytest.mark.parametrize("route", ["/sdapi/v1/txt2img", "/v1/images/generations"])
def test_extra_args_in_the_prompt(client: TestClient, route: str) -> None:
    extra = {"sample_params": {"sample_steps": 3, "sample_method": "euler"}, "seed": 11}
    prompt = f"a cat <sd_cpp_extra_args>{json.dumps(extra)}</sd_cpp_extra_args>"
    body = {"prompt": prompt, "width": 64, "height": 64, "size": "64x64", "steps": 1}
    r = client.post(route, json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    b64 = data["images"][0] if "images" in data else data["data"][0]["b64_json"]
    text = decode(b64).info["parameters"]
    assert text.startswith("a cat\n") and "Steps: 3" in text and "Seed: 11" in text
    bad = client.post(route, json={**body, "prompt": "a <sd_cpp_extra_args>{x</sd_cpp_extra_args>"})
    assert 400 <= bad.status_code < 500 and "sd_cpp_extra_args" in bad.text


def test_sdserver_openai_model_id(client: TestClient) -> None:
    """sd-server's /v1/models has one fixed id, sd-cpp-local; scripts send it back."""
    body = {"prompt": "a", "model": "sd-cpp-local", "size": "64x64", "steps": 1}
    assert client.post("/v1/images/generations", json=body).status_code == 200


def test_sdapi_structured_lora(client: TestClient) -> None:
    body = {"prompt": "a", "steps": 1, "width": 64, "height": 64}
    r = client.post(
        "/sdapi/v1/txt2img", json={**body, "lora": [{"path": "style", "multiplier": 0.5}]}
    )
    assert r.status_code == 200, r.text
    r = client.post("/sdapi/v1/txt2img", json={**body, "lora": [{"path": "nope"}]})
    assert r.status_code == 422


def test_cors_as_sdserver(client: TestClient) -> None:
    """sd-server's frontend can be pointed at another origin: preflights and answers allow it."""
    origin = {"Origin": "http://frontend.example:5173"}
    pre = client.options(
        "/sdcpp/v1/img_gen",
        headers={**origin, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"},
    )  # fmt: skip
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == origin["Origin"]
    got = client.get("/sdcpp/v1/capabilities", headers=origin)
    assert got.headers["access-control-allow-origin"] == origin["Origin"]
    assert "access-control-allow-origin" not in client.get("/api/v1/models", headers=origin).headers
