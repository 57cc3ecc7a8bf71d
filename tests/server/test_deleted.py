"""Deleted means deleted: every file a job leaves on disk (its outputs, the converted formats an
OpenAI ``response_format: url`` request makes, partial writes) goes with the job: on
``DELETE /api/v1/jobs/{id}``, with the retention and under the disk cap; thumbnails and previews
are never written to disk at all; a file whose job is gone is swept at start. Fake engine here;
``test_reliability.py`` runs the same through the real engine."""

from __future__ import annotations

import time
from pathlib import Path

from starlette.testclient import TestClient

from sdcpp_service.server.service import Service
from tests.server.conftest import MakeClient
from tests.server.test_native import wait_done

BODY = {"prompt": "x", "size": "64x64", "response_format": "url", "n": 2}


def openai_job(client: TestClient, fmt: str) -> tuple[str, list[str]]:
    """An OpenAI url request in ``fmt`` → (job id, the URLs it returned)."""
    r = client.post("/v1/images/generations", json={**BODY, "output_format": fmt})
    assert r.status_code == 200, r.text
    urls = [d["url"].split("testserver", 1)[1] for d in r.json()["data"]]
    return urls[0].rsplit("/", 1)[1].split("-", 1)[0], urls


def files_of(outputs: Path, job_id: str) -> list[str]:
    return sorted(p.name for p in outputs.iterdir() if p.name.startswith(job_id))


def test_delete_removes_converted_formats_and_every_url_404s(
    client: TestClient, tmp_path: Path
) -> None:
    outputs = tmp_path / "data" / "outputs"
    job_id, webp = openai_job(client, "webp")
    _, jpeg = openai_job(client, "jpeg")  # another job: must stay
    assert [u.rsplit(".", 1)[1] for u in webp] == ["webp", "webp"]
    assert all(client.get(u).status_code == 200 for u in webp)
    png = [p["url"] for p in client.get(f"/api/v1/jobs/{job_id}").json()["outputs"]]
    before = set(outputs.iterdir())
    assert client.get(f"{png[0]}?thumb=32").status_code == 200
    assert set(outputs.iterdir()) == before  # a thumbnail is made in memory, never stored
    assert files_of(outputs, job_id) == sorted(
        [f"{job_id}-0.png", f"{job_id}-0.webp", f"{job_id}-1.png", f"{job_id}-1.webp"]
    )

    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 200
    assert files_of(outputs, job_id) == []
    for url in [*webp, *png, f"{png[0]}?thumb=32"]:
        assert client.get(url).status_code == 404, url
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 404
    assert client.get(f"/sdcpp/v1/jobs/{job_id}").status_code == 404
    assert all(client.get(u).status_code == 200 for u in jpeg)


def test_retention_and_disk_cap_remove_converted_formats(
    make_client: MakeClient, tmp_path: Path
) -> None:
    outputs = tmp_path / "data" / "outputs"
    tight = make_client(keep_outputs_gb=1e-9)  # each finished job removes every older one
    first, urls = openai_job(tight, "webp")
    second, _ = openai_job(tight, "webp")
    deadline = time.monotonic() + 10
    while files_of(outputs, first) and time.monotonic() < deadline:  # the cap runs off-loop
        time.sleep(0.02)
    assert files_of(outputs, first) == [] and all(tight.get(u).status_code == 404 for u in urls)
    assert files_of(outputs, second)  # the job just finished always stays
    tight.__exit__(None, None, None)

    kept = make_client(data="data", keep_jobs_hours=1)
    svc: Service = kept.app.state.service  # type: ignore[attr-defined]
    assert second in svc.prune(now=time.time() + 2 * 3600)
    assert list(outputs.iterdir()) == []


def test_files_of_no_job_are_swept_at_start(make_client: MakeClient, tmp_path: Path) -> None:
    outputs = tmp_path / "data" / "outputs"
    client = make_client()
    job = wait_done(client, client.post("/api/v1/jobs", json={"prompt": "x", "steps": 1,
                                                               "width": 64, "height": 64}).json()["id"])  # fmt: skip
    client.__exit__(None, None, None)
    kept = outputs / job["outputs"][0]["url"].rsplit("/", 1)[1]
    orphans = ["0" * 32 + "-0.png", "0" * 32 + "-0.webp", f"{job['id']}-1.png.incomplete"]
    for name in orphans:
        (outputs / name).write_bytes(b"x")
    again = make_client(data="data")
    assert sorted(p.name for p in outputs.iterdir()) == [kept.name]
    assert again.get(job["outputs"][0]["url"]).status_code == 200
