"""The request rules at every door: a request the model cannot run is a 422 naming the field
before anything is queued (native, A1111, OpenAI alike), and nothing is half-created."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.models import layouts as L
from tests.models.corpus import write_safetensors
from tests.server.conftest import MakeClient
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
    path = model_dir / "diffusion_models" / "wan_t2v.safetensors"
    write_safetensors(path, L.wan(1536, 16))
    return path


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
