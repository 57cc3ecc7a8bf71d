"""The native API (/api/v1) on the fake engine."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image
from starlette.testclient import TestClient

from tests.server.conftest import MakeClient


def png(width: int = 64, height: int = 64, colour: str = "red") -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def wait_done(client: TestClient, job_id: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish")


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_txt2img_job_lifecycle(client: TestClient) -> None:
    r = client.post(
        "/api/v1/jobs", json={"prompt": "a fox", "width": 64, "height": 64, "steps": 3, "seed": 7}
    )
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/api/v1/jobs/{job['id']}"
    done = wait_done(client, job["id"])
    assert done["status"] == "completed", done
    assert done["model"] == "alpha"
    out = done["outputs"][0]
    assert out["seed"] == 7 and "Seed: 7" in out["infotext"]
    image = client.get(out["url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (64, 64)
    thumb = client.get(out["url"] + "?thumb=16")
    assert Image.open(io.BytesIO(thumb.content)).size == (16, 16)
    events = sse_events(client.get(f"/api/v1/jobs/{job['id']}/events").text)
    assert events[-1][0] == "completed" and events[-1][1]["seeds"] == [7]
    listing = client.get("/api/v1/jobs?status=completed").json()
    assert listing["total"] == 1 and listing["jobs"][0]["id"] == job["id"]


def test_events_stream_in_order(make_client: MakeClient) -> None:
    client = make_client(step_seconds=0.02)
    job = client.post(
        "/api/v1/jobs", json={"prompt": "x", "width": 64, "height": 64, "steps": 5}
    ).json()
    with client.stream("GET", f"/api/v1/jobs/{job['id']}/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.read().decode())
    kinds = [k for k, _ in events]
    assert kinds[0] in ("queued", "started") and kinds[-1] == "completed"
    steps = [d["step"] for k, d in events if k == "progress"]
    assert steps == sorted(steps) and steps[-1] == 5
    assert events[-1][1]["outputs"][0].startswith("/api/v1/outputs/")


def test_validation_names_fields(client: TestClient) -> None:
    r = client.post(
        "/api/v1/jobs",
        json={"prompt": 3, "steps": 0, "width": "wide", "bogus": 1, "kind": "img2img"},
    )
    assert r.status_code == 422
    fields = r.json()["error"]["fields"]
    assert set(fields) >= {"prompt", "steps", "width", "bogus", "init_image"}
    r = client.post(
        "/api/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and "body" in r.json()["error"]["fields"]
    r = client.post("/api/v1/jobs", json=[1, 2])
    assert r.status_code == 422
    r = client.post(
        "/api/v1/jobs", json={"prompt": "x", "init_image": "!!notbase64", "kind": "img2img"}
    )
    assert r.status_code == 422 and "init_image" in r.json()["error"]["fields"]
    r = client.post("/api/v1/jobs", json={"prompt": "x", "sampler": "nope"})
    assert r.status_code == 422 and "sampler" in r.json()["error"]["fields"]


def test_model_names_cannot_escape_the_folders(client: TestClient, tmp_path: Any) -> None:
    outside = tmp_path / "secret.safetensors"
    outside.write_bytes(b"x")
    for name in (str(outside), "../secret.safetensors", "../../etc/passwd", "/etc/passwd"):
        r = client.post("/api/v1/jobs", json={"prompt": "x", "model": name})
        assert r.status_code == 422, name
        assert "model" in r.json()["error"]["fields"]
    r = client.post("/api/v1/jobs", json={"prompt": f"x <lora:{outside}:1>"})
    assert r.status_code == 422 and "lora" in r.json()["error"]["fields"]
    r = client.post("/api/v1/jobs", json={"prompt": "x", "loras": [{"name": str(outside)}]})
    assert r.status_code == 422
    r = client.post(
        "/api/v1/jobs", json={"prompt": "x <lora:style:0.5>", "model": "beta", "vae": "myvae"}
    )
    assert r.status_code == 202, r.text
    r = client.get("/api/v1/outputs/..%2Fjobs.sqlite")
    assert r.status_code == 404
    r = client.get("/api/v1/models/..%2F..%2Fsecret")
    assert r.status_code == 422


def test_models_and_service_endpoints(client: TestClient) -> None:
    models = client.get("/api/v1/models").json()["models"]
    names = {(m["kind"], m["name"]) for m in models}
    assert {("checkpoint", "alpha"), ("checkpoint", "beta"), ("vae", "myvae")} <= names
    beta = client.get("/api/v1/models/beta").json()
    assert beta["filename"] == "beta.safetensors" and beta["arch"] == "sd1"
    assert beta["info"]["kind"] == "model" and beta["info"]["slot"] == "model_path"
    assert client.post("/api/v1/models/load", json={"model": "alpha"}).json()["loaded"] == "alpha"
    assert client.get("/system").json()["loaded_model"] == "alpha"
    assert client.post("/api/v1/models/unload").status_code == 200
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/version").json()["version"]
    spec = client.get("/openapi.json").json()
    assert "/api/v1/jobs" in spec["paths"]


def test_cancel_and_clear(make_client: MakeClient) -> None:
    client = make_client(step_seconds=0.05)
    body = {"prompt": "x", "width": 64, "height": 64, "steps": 100}
    first = client.post("/api/v1/jobs", json=body).json()
    second = client.post("/api/v1/jobs", json=body).json()
    third = client.post("/api/v1/jobs", json={**body, "steps": 1}).json()
    assert client.delete("/api/v1/jobs").json()["cancelled"] == [second["id"], third["id"]]
    client.post(f"/api/v1/jobs/{first['id']}/cancel")
    assert wait_done(client, first["id"])["status"] == "cancelled"
    again = client.post("/api/v1/jobs", json={**body, "steps": 1}).json()
    assert wait_done(client, again["id"])["status"] == "completed"
    assert client.get("/api/v1/jobs/nope").status_code == 404


def test_queue_full_is_429(make_client: MakeClient) -> None:
    client = make_client(step_seconds=0.05, max_queue=1)
    body = {"prompt": "x", "width": 64, "height": 64, "steps": 100}
    client.post("/api/v1/jobs", json=body)
    codes = [client.post("/api/v1/jobs", json=body).status_code for _ in range(3)]
    assert 429 in codes
    r = client.post("/api/v1/jobs", json=body)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    client.delete("/api/v1/jobs")


def test_limits(make_client: MakeClient) -> None:
    client = make_client(max_body_bytes=2000, max_steps=10, max_pixels=128 * 128)
    r = client.post("/api/v1/jobs", json={"prompt": "x" * 5000})
    assert r.status_code == 413
    r = client.post("/api/v1/jobs", json={"prompt": "x", "steps": 11, "width": 256, "height": 256})
    assert r.status_code == 422 and {"steps", "width"} <= set(r.json()["error"]["fields"])


def test_auth(make_client: MakeClient) -> None:
    client = make_client(api_keys=("k1", "k2"), api_auth=("user:pw",))
    assert client.get("/health").status_code == 200
    assert client.get("/api/v1/jobs").status_code == 401
    assert client.get("/api/v1/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/api/v1/jobs", headers={"Authorization": "Bearer k2"}).status_code == 200
    assert client.get("/api/v1/jobs", auth=("user", "pw")).status_code == 200
    assert client.get("/api/v1/jobs", auth=("user", "no")).status_code == 401
    r = client.get("/v1/models")
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_input_pixel_limit_and_streamed_body_limit(make_client: MakeClient) -> None:
    client = make_client(max_input_pixels=100 * 100, max_body_bytes=50_000)
    r = client.post(
        "/api/v1/jobs", json={"kind": "img2img", "prompt": "x", "init_image": png(200, 200)}
    )
    assert r.status_code == 422 and "pixel limit" in r.json()["error"]["fields"]["init_image"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams in
        yield b'{"prompt": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}'

    r = client.post("/api/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["type"] == "payload_too_large"


def test_unknown_route_and_method_are_json(client: TestClient) -> None:
    r = client.get("/api/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["type"] == "http_error"
    r = client.put("/api/v1/jobs")
    assert r.status_code == 405 and "error" in r.json()


def test_delete_a_finished_job_and_its_outputs(make_client: MakeClient, tmp_path: Any) -> None:
    client = make_client(step_seconds=0.05)
    body = {"prompt": "x", "width": 64, "height": 64, "steps": 1}
    job = client.post("/api/v1/jobs", json=body).json()
    done = wait_done(client, job["id"])
    url = done["outputs"][0]["url"]
    assert client.get(url).status_code == 200
    busy = client.post("/api/v1/jobs", json={**body, "steps": 100}).json()
    r = client.delete(f"/api/v1/jobs/{busy['id']}")
    assert r.status_code == 409 and "cancel it first" in r.json()["error"]["message"], r.text
    client.post(f"/api/v1/jobs/{busy['id']}/cancel")
    r = client.delete(f"/api/v1/jobs/{job['id']}")
    assert r.status_code == 200 and r.json() == {"deleted": job["id"]}
    assert client.get(f"/api/v1/jobs/{job['id']}").status_code == 404
    assert client.get(url).status_code == 404
    assert not (tmp_path / "data" / "outputs" / url.rsplit("/", 1)[1]).exists()
    assert client.delete(f"/api/v1/jobs/{job['id']}").status_code == 404
    wait_done(client, busy["id"])


def test_old_jobs_are_removed_at_start(make_client: MakeClient, tmp_path: Any) -> None:
    client = make_client(keep_jobs_hours=1.0)
    body = {"prompt": "x", "width": 64, "height": 64, "steps": 1}
    old, recent = (client.post("/api/v1/jobs", json=body).json() for _ in range(2))
    old_file = (
        tmp_path
        / "data"
        / "outputs"
        / wait_done(client, old["id"])["outputs"][0]["url"].rsplit("/", 1)[1]
    )
    wait_done(client, recent["id"])
    client.__exit__(None, None, None)
    from sdcpp_service.server.sqlite import SQLiteJobStore

    store = SQLiteJobStore(tmp_path / "data" / "jobs.sqlite")
    with store._tx() as db:  # finished two hours ago
        db.execute("UPDATE jobs SET finished=finished-7200 WHERE id=?", (old["id"],))
    store.close()
    assert old_file.is_file()
    again = make_client(keep_jobs_hours=1.0)
    assert again.get(f"/api/v1/jobs/{old['id']}").status_code == 404
    assert not old_file.exists()
    assert again.get(f"/api/v1/jobs/{recent['id']}").json()["status"] == "completed"
    forever = make_client(data="data", keep_jobs_hours=0)
    assert forever.get(f"/api/v1/jobs/{recent['id']}").status_code == 200


def test_outputs_over_the_disk_cap_remove_the_oldest_jobs(
    make_client: MakeClient, tmp_path: Any
) -> None:
    body = {"prompt": "x", "width": 64, "height": 64, "steps": 1}
    outputs = tmp_path / "data" / "outputs"

    def run(client: TestClient, seed: int) -> tuple[str, Path]:
        job = wait_done(
            client, client.post("/api/v1/jobs", json={**body, "seed": seed}).json()["id"]
        )
        return job["id"], outputs / job["outputs"][0]["url"].rsplit("/", 1)[1]

    # a 1-byte cap: each finished job removes every older one, never itself
    tight = make_client(keep_outputs_gb=1e-9)
    jobs = [run(tight, seed) for seed in (1, 2, 3)]
    assert [tight.get(f"/api/v1/jobs/{j}").status_code for j, _ in jobs] == [404, 404, 200]
    assert [f.exists() for _, f in jobs] == [False, False, True]
    tight.__exit__(None, None, None)

    # no cap, three more jobs; then a restart with room for the newest two only
    free = make_client(data="data")
    more = [run(free, seed) for seed in (4, 5, 6)]
    free.__exit__(None, None, None)
    newest = sum(f.stat().st_size for _, f in [jobs[2], *more][2:])
    capped = make_client(data="data", keep_outputs_gb=(newest + 1) / 1e9)
    status = [capped.get(f"/api/v1/jobs/{j}").status_code for j, _ in [jobs[2], *more]]
    assert status == [404, 404, 200, 200]
    assert sum(f.stat().st_size for f in outputs.iterdir()) <= newest + 1


def forged_png(width: int, height: int) -> str:
    """A few hundred bytes that claim ``width``×``height`` pixels: a decompression bomb."""
    import base64
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1000)
    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    return base64.b64encode(raw).decode()


def test_a_decompression_bomb_is_named_as_too_many_pixels(client: TestClient) -> None:
    bomb = forged_png(30_000, 30_000)  # 900 Mpx: PIL refuses it before reading a pixel
    r = client.post("/api/v1/jobs", json={"kind": "img2img", "prompt": "x", "init_image": bomb})
    assert r.status_code == 422, r.text
    assert "pixel limit" in r.json()["error"]["fields"]["init_image"]
    r = client.post("/sdapi/v1/img2img", json={"prompt": "x", "init_images": [bomb]})
    assert r.status_code == 422 and "pixel limit" in r.text
    r = client.post("/api/v1/jobs", json={"prompt": "x", "sampler": "nope"})
    assert r.status_code == 422 and "euler_a" in r.json()["error"]["fields"]["sampler"]
