"""Hostile and broken input at every door: each is a 4xx naming the field (400/413 for the body),
never a 500, never a half-created job, never a huge input echoed back."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from sdcpp_service import rules
from tests.models import layouts as L
from tests.models.corpus import write_safetensors

SURROGATE = '{"prompt": "a \\ud800 cat", "steps": 1, "width": 64, "height": 64}'


def post_raw(client: TestClient, path: str, text: str) -> object:
    return client.post(path, content=text.encode(), headers={"content-type": "application/json"})


def job_count(client: TestClient) -> int:
    total: int = client.get("/api/v1/jobs").json()["total"]
    return total


@pytest.mark.parametrize(
    ("path", "field_of"),
    [
        ("/api/v1/jobs", lambda b: set(b["error"]["fields"])),
        ("/sdapi/v1/txt2img", lambda b: {d["loc"][-1] for d in b["detail"]}),
        ("/v1/images/generations", lambda b: {b["error"]["param"]}),
    ],
)
def test_lone_surrogate_is_422_naming_the_field(client: TestClient, path: str, field_of: object) -> None:  # fmt: skip
    r = post_raw(client, path, SURROGATE)
    assert r.status_code == 422, r.text  # type: ignore[attr-defined]
    assert field_of(r.json()) == {"prompt"}  # type: ignore[attr-defined,operator]
    assert job_count(client) == 0
    assert client.get("/api/v1/jobs").status_code == 200


def test_surrogates_in_nested_fields_and_keys(client: TestClient) -> None:
    r = post_raw(client, "/api/v1/jobs", '{"prompt": "x", "loras": [{"name": "\\udfff"}]}')
    assert r.status_code == 422 and set(r.json()["error"]["fields"]) == {"loras.0.name"}  # type: ignore[attr-defined]
    r = post_raw(client, "/api/v1/jobs", '{"\\ud800": 1}')
    assert r.status_code == 422  # type: ignore[attr-defined]
    assert job_count(client) == 0


def test_prompt_length_is_bounded_per_text_encoder_and_never_echoed(client: TestClient) -> None:
    limit = rules.MAX_CLIP_PROMPT_CHARS  # the fixture's checkpoints are SD1 (CLIP-L)
    r = client.post("/api/v1/jobs", json={"prompt": "y" * (limit + 1), "steps": 1})
    assert r.status_code == 422 and str(limit) in r.json()["error"]["fields"]["prompt"]
    huge = "z" * (2 * 1024 * 1024)
    for path in ("/api/v1/jobs", "/sdapi/v1/txt2img", "/v1/images/generations"):
        r = client.post(path, json={"prompt": huge})
        assert r.status_code == 422 and len(r.content) < 2000, path
    assert job_count(client) == 0
    schema = client.get("/openapi.json").json()["components"]["schemas"]["Job"]
    assert schema["properties"]["prompt"]["maxLength"] == rules.MAX_PROMPT_CHARS


def test_former_500s(client: TestClient) -> None:
    r = client.post("/sdapi/v1/png-info", json={})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "image"]
    r = client.post("/sdapi/v1/png-info", json={"image": ""})
    assert r.status_code == 200 and r.json()["info"] == ""
    for query in ("limit=--5", "limit=%C2%B2", "offset=-0x1", "limit=99999999999999999999"):
        r = client.get(f"/api/v1/jobs?{query}")
        assert r.status_code == 422, query
    r = client.get("/api/v1/outputs/nothing.png?thumb=--5")
    assert r.status_code in (404, 422)
    for value in (123, ["alpha"], {"a": 1}):
        r = client.post(
            "/sdapi/v1/txt2img",
            json={"prompt": "x", "override_settings": {"sd_model_checkpoint": value}},
        )
        assert r.status_code == 422, (value, r.text)
    r = client.post("/api/v1/jobs", json={"prompt": "x", "steps": 10**400})
    assert r.status_code == 422 and "steps" in r.json()["error"]["fields"]
    assert len(r.content) < 1000  # the 401 digits are not echoed
    deep = "[" * 100_000 + "]" * 100_000
    for path in ("/api/v1/jobs", "/sdapi/v1/txt2img", "/v1/images/generations"):
        r = post_raw(client, path, '{"prompt": ' + deep + "}")
        assert r.status_code == 400, path  # type: ignore[attr-defined]
    assert job_count(client) == 0


def test_lora_names_resolve_only_to_loras_inside_the_folders(
    client: TestClient, model_dir: Path, tmp_path: Path
) -> None:
    loras = model_dir / "loras"
    outside = tmp_path / "elsewhere" / "real_lora.safetensors"
    write_safetensors(outside, L.kohya_lora(768))
    os.symlink(outside, loras / "escape.safetensors")
    os.symlink("/etc/passwd", loras / "passwd.safetensors")
    write_safetensors(loras / "ckpt_as_lora.safetensors", L.esrgan(up=2))
    client.post("/api/v1/models/refresh")
    cases = {
        "escape": "outside the model folders",
        "passwd": "outside the model folders",
        "/etc/passwd": "unknown lora",
        "ckpt_as_lora": "not a LoRA",
        "alpha": "not a LoRA",  # a checkpoint's name
        "../elsewhere/real_lora": "unknown lora",
    }
    for name, says in cases.items():
        body = {"prompt": "x", "steps": 1, "loras": [{"name": name, "weight": 1}]}
        r = client.post("/api/v1/jobs", json=body)
        assert r.status_code == 422, (name, r.text)
        assert says in json.dumps(r.json()), (name, r.text)
        r = client.post("/sdapi/v1/txt2img", json={"prompt": f"x <lora:{name}:1>", "steps": 1})
        assert r.status_code == 422, name
    r = client.post("/api/v1/jobs", json={"prompt": "x", "steps": 1, "loras": ["style:0.5"]})
    assert r.status_code == 202, r.text
    r = client.post("/api/v1/jobs", json={"prompt": "x", "vae": "4x_test"})
    assert r.status_code == 422 and "vae" in r.json()["error"]["fields"]
