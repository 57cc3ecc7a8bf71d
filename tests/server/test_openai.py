"""The OpenAI dialect (/v1) on the fake engine."""

from __future__ import annotations

import base64
import io

from PIL import Image
from starlette.testclient import TestClient


def png_bytes(
    width: int = 64, height: int = 64, mode: str = "RGB", colour: object = "red"
) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buf, format="PNG")  # type: ignore[arg-type]
    return buf.getvalue()


def test_generations_b64_and_url(client: TestClient) -> None:
    r = client.post(
        "/v1/images/generations",
        json={
            "prompt": "a fox",
            "model": "dall-e-3",
            "n": 2,
            "size": "64x64",
            "steps": 1,
            "quality": "hd",
        },
    )
    assert r.status_code == 200, r.text
    data = r.json()
    assert len(data["data"]) == 2 and data["size"] == "64x64"
    image = Image.open(io.BytesIO(base64.b64decode(data["data"][0]["b64_json"])))
    assert image.size == (64, 64) and image.format == "PNG"
    r = client.post(
        "/v1/images/generations",
        json={
            "prompt": "x",
            "model": "beta",
            "size": "64x64",
            "steps": 1,
            "response_format": "url",
            "output_format": "jpeg",
        },
    )
    assert r.status_code == 200, r.text
    url = r.json()["data"][0]["url"]
    assert url.startswith("http://testserver/api/v1/outputs/") and url.endswith(".jpg")
    fetched = client.get(url)
    assert fetched.headers["content-type"] == "image/jpeg"
    r = client.post(
        "/v1/images/generations",
        json={"prompt": "x", "size": "64x64", "steps": 1, "output_format": "webp"},
    )
    raw = base64.b64decode(r.json()["data"][0]["b64_json"])
    assert Image.open(io.BytesIO(raw)).format == "WEBP"


def test_generation_errors(client: TestClient) -> None:
    r = client.post("/v1/images/generations", json={"size": "big", "n": 0, "model": "nope"})
    assert r.status_code == 422
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and err["param"] in (
        "prompt",
        "size",
        "n",
        "model",
    )
    for field in ("prompt", "size", "n", "model"):
        assert field in err["message"]
    r = client.post(
        "/v1/images/generations", content=b"nope", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["error"]["param"] == "body"


def test_edits_multipart(client: TestClient) -> None:
    image = png_bytes(130, 70)
    r = client.post(
        "/v1/images/edits",
        data={"prompt": "make it blue", "n": "1", "steps": "1"},
        files={"image": ("in.png", image, "image/png")},
    )
    assert r.status_code == 200, r.text
    assert r.json()["size"] == "128x64"
    mask = png_bytes(130, 70, "RGBA", (0, 0, 0, 0))
    r = client.post(
        "/v1/images/edits",
        data={"prompt": "x", "size": "64x64", "steps": "1"},
        files=[("image[]", ("a.png", image, "image/png")), ("mask", ("m.png", mask, "image/png"))],
    )
    assert r.status_code == 200, r.text
    r = client.post(
        "/v1/images/edits",
        data={"prompt": "x", "size": "64x64", "steps": "1"},
        files=[
            ("image[]", ("a.png", image, "image/png")),
            ("image[]", ("b.png", image, "image/png")),
        ],
    )
    assert r.status_code == 200, r.text
    r = client.post(
        "/v1/images/edits", data={"prompt": "x"}, files={"image": ("x.png", b"junk", "image/png")}
    )
    assert r.status_code == 422 and r.json()["error"]["param"] == "image"
    r = client.post("/v1/images/edits", json={"prompt": "x"})
    assert r.status_code == 422


def test_models(client: TestClient) -> None:
    data = client.get("/v1/models").json()
    assert data["object"] == "list"
    assert {m["id"] for m in data["data"]} == {"alpha", "beta"}
