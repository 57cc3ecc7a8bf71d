"""The request rules at every door: a request the model cannot run is a 422 naming the field
before anything is queued (native, A1111, OpenAI alike), and nothing is half-created."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.models import layouts as L
from tests.models.corpus import write_safetensors
from tests.server.conftest import MakeClient, write_wan
from tests.server.test_native import png


def jobs(client: TestClient) -> list[object]:
    listed: list[object] = client.get("/api/v1/jobs").json()["jobs"]
    return listed


def test_native_size_multiple_is_422_before_queueing(client: TestClient) -> None:
    r = client.post("/api/v1/jobs", json={"prompt": "x", "width": 63, "height": 64})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert set(error["fields"]) == {"width"}
    assert "multiple of 64" in error["fields"]["width"] and "64" in error["fields"]["width"]
    assert jobs(client) == []


def test_a1111_and_openai_refuse_the_same_size(client: TestClient) -> None:
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "width": 63, "height": 64})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "width"]
    r = client.post("/v1/images/generations", json={"prompt": "x", "size": "100x64"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "width"
    assert jobs(client) == []


def test_pixel_limit_names_the_limit_and_a_size_that_fits(make_client: MakeClient) -> None:
    client = make_client(max_pixels=1024 * 1024)
    r = client.post("/api/v1/jobs", json={"prompt": "x", "width": 2048, "height": 2048, "batch": 4})
    assert r.status_code == 422
    message = r.json()["error"]["fields"]["width"]
    assert "1048576 pixel limit" in message and "512x512 × 4 fits" in message
    assert jobs(client) == []


@pytest.fixture
def wan(model_dir: Path) -> Path:
    return write_wan(model_dir)


def test_video_rules_of_the_model_at_submission(wan: Path, client: TestClient) -> None:
    base = {"kind": "video", "model": "wan_t2v", "prompt": "x", "steps": 1}
    r = client.post("/api/v1/jobs", json={**base, "frames": 6, "width": 40, "height": 32})
    assert r.status_code == 422
    fields = r.json()["error"]["fields"]
    assert set(fields) == {"frames", "width"}
    assert "nearest valid count is 5" in fields["frames"]
    assert "multiple of 16 for Wan T2V" in fields["width"] and "48" in fields["width"]
    r = client.post("/api/v1/jobs", json={**base, "frames": 5, "init_image": png(16, 16)})
    assert (
        r.status_code == 422 and "text-to-video only" in r.json()["error"]["fields"]["init_image"]
    )
    r = client.post("/api/v1/jobs", json={**base, "model": "alpha", "frames": 5})
    assert r.status_code == 422 and "not a video model" in r.json()["error"]["fields"]["model"]
    assert jobs(client) == []


@pytest.fixture
def flux(model_dir: Path) -> Path:
    """A Flux DiT alone: its VAE, CLIP-L and T5-XXL are not in the model folder."""
    path = model_dir / "diffusion_models" / "fluxy.safetensors"
    write_safetensors(path, L.flux())
    return path


FLUX = {"model": "fluxy", "prompt": "x", "width": 64, "height": 64, "steps": 1}
T5_PULL = "sdcpp pull comfyanonymous/flux_text_encoders t5xxl_fp16.safetensors"
VAE_PULL = "sdcpp pull black-forest-labs/FLUX.1-schnell ae.safetensors"


def test_missing_components_are_422_naming_each_and_its_pull_command(
    flux: Path, client: TestClient
) -> None:
    r = client.post("/api/v1/jobs", json=FLUX)
    assert r.status_code == 422, r.text
    fields = r.json()["error"]["fields"]
    assert set(fields) == {"vae", "clip_l", "t5xxl"}
    assert "needs a t5xxl" in fields["t5xxl"] and T5_PULL in fields["t5xxl"]
    assert '"t5xxl": false runs without it' in fields["t5xxl"]
    assert VAE_PULL in fields["vae"] and "false" not in fields["vae"]  # a VAE cannot be left out
    r = client.post("/api/v1/jobs", json={**FLUX, "t5xxl": False, "clip_l": False})
    assert r.status_code == 422 and set(r.json()["error"]["fields"]) == {"vae"}
    assert jobs(client) == []
    view = client.get("/api/v1/models/fluxy").json()
    hints = {m["field"]: m["hint"] for m in view["missing"]}
    assert hints == {
        "vae": VAE_PULL,
        "clip_l": "sdcpp pull comfyanonymous/flux_text_encoders clip_l.safetensors",
        "t5xxl": T5_PULL,
    }
    assert {m["field"]: m["optional"] for m in view["missing"]} == {
        "vae": False,
        "clip_l": True,
        "t5xxl": True,  # text encoders may be left out
    }
    assert client.get("/api/v1/models/alpha").json()["missing"] == []


def test_missing_components_at_every_door(flux: Path, client: TestClient) -> None:
    r = client.post("/sdapi/v1/txt2img", json={**FLUX, "override_settings": {"sd_model_checkpoint": "fluxy"}})  # fmt: skip
    assert r.status_code == 422, r.text
    assert {d["loc"][-1] for d in r.json()["detail"]} == {"vae", "clip_l", "t5xxl"}
    assert any(T5_PULL in d["msg"] for d in r.json()["detail"])
    r = client.post("/v1/images/generations", json={"prompt": "x", "model": "fluxy", "size": "64x64"})  # fmt: skip
    assert r.status_code == 422 and VAE_PULL in r.json()["error"]["message"]
    r = client.post("/api/v1/models/load", json={"model": "fluxy"})
    assert r.status_code == 422 and T5_PULL in r.text
    assert jobs(client) == []


def test_components_in_the_folder_are_found(flux: Path, model_dir: Path, client: TestClient) -> None:  # fmt: skip
    write_safetensors(model_dir / "vae" / "ae.safetensors", L.kl_vae(16))
    write_safetensors(model_dir / "text_encoders" / "clip_l.safetensors", L.clip_text(768))
    r = client.post("/api/v1/jobs", json={**FLUX, "t5xxl": False})
    assert r.status_code == 202, r.text
    assert [m["field"] for m in client.get("/api/v1/models/fluxy").json()["missing"]] == ["t5xxl"]
