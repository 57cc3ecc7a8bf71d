"""A full disk never stalls the queue: the job that meets it fails with ``storage_full``, its
stream ends, submissions get 507 while it lasts, ``/health`` says so, and jobs run again once
there is room, with no restart.

How the full disk is made here (fake engine, fast, no privileges needed):
- the job store: SQLite's own ``PRAGMA max_page_count``, which makes SQLite answer exactly as on
  a full disk (``SQLITE_FULL``, "database or disk is full");
- the store refusing writes at the :class:`JobStore` boundary (a wrapper raising
  ``StorageFull``) for the calls the page limit cannot single out (claim, finish);
- output files: ``save_outputs`` with the image writer raising ``OSError(ENOSPC)``.
A real full disk (a small tmpfs data dir under a real ``sdcpp serve`` on the real engine) is in
``test_reliability.py``.
"""

from __future__ import annotations

import errno
import io
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from starlette.testclient import TestClient

from sdcpp_service.engine.base import ImageJob, JobOutput
from sdcpp_service.errors import StorageFull
from sdcpp_service.server import outputs
from sdcpp_service.server.jobs import Job, new_id
from sdcpp_service.server.service import Service
from sdcpp_service.server.sqlite import SQLiteJobStore
from tests.server.conftest import MakeClient
from tests.server.test_native import png, sse_events, wait_done

SMALL = {"prompt": "x", "width": 64, "height": 64, "steps": 1}


def noise_png(side: int = 512) -> str:
    """An incompressible PNG (so its bytes need new database pages)."""
    import base64
    import os

    buf = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def fill_store(store: SQLiteJobStore) -> None:
    """No new page may be added to the database and no free one is left: SQLite answers
    SQLITE_FULL to any write that needs a page."""
    import sqlite3

    db = store._db
    db.execute("CREATE TABLE IF NOT EXISTS filler (data BLOB)")
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
    for size in (65536, 4096, 512, 64):  # the free pages, then what is left in the last ones
        try:
            while True:
                db.execute("INSERT INTO filler VALUES (?)", (b"\0" * size,))
        except sqlite3.OperationalError as exc:
            assert "full" in str(exc)


def free_store(store: SQLiteJobStore) -> None:
    store._db.execute("DROP TABLE IF EXISTS filler")
    store._db.execute("PRAGMA max_page_count = 1073741823")


def disk_full(svc: Service, full: bool) -> None:
    """The store full, and the service's probe of the data dir finding it full too (the real
    disk under the test has room)."""
    store: SQLiteJobStore = svc.store  # type: ignore[assignment]
    if full:
        fill_store(store)

        def probe() -> bool:
            svc.storage.failed(StorageFull(svc.settings.data_dir))
            return False

        svc.storage.probe = probe  # type: ignore[method-assign]
    else:
        free_store(store)
        del svc.storage.probe


def service_of(client: TestClient) -> Service:
    svc: Service = client.app.state.service  # type: ignore[attr-defined]
    return svc


def test_store_full_rolls_back_and_the_next_write_works(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.db")
    first = store.submit(Job(new_id(), "txt2img", "m", {"prompt": "p"}))
    fill_store(store)
    with pytest.raises(StorageFull) as caught:
        store.submit(Job(new_id(), "img2img", "m", {}), {"init_image": b"\x01" * 2_000_000})
    assert "no space left" in str(caught.value) and str(tmp_path) in str(caught.value)
    assert store.list_jobs()[1] == 1  # nothing half-written
    assert store.claim(first, "node", 0)  # not stuck in the failed transaction
    free_store(store)
    store.submit(Job(new_id(), "img2img", "m", {}), {"init_image": b"\x01" * 2_000_000})
    assert store.list_jobs()[1] == 2


def test_full_store_is_507_on_every_door_then_jobs_run_again(client: TestClient) -> None:
    svc = service_of(client)
    big = noise_png()
    disk_full(svc, True)
    r = client.post("/api/v1/jobs", json={**SMALL, "kind": "img2img", "init_image": big})
    assert r.status_code == 507, r.text
    assert r.json()["error"]["type"] == "storage_full"
    assert "no space left" in r.json()["error"]["message"]
    health = client.get("/health").json()
    assert health["status"] == "storage_full" and health["storage"]["status"] == "full"
    assert "no space left" in health["storage"]["error"]
    r = client.post("/api/v1/jobs", json=SMALL)  # while it lasts, even a small job is refused
    assert r.status_code == 507, r.text
    disk_full(svc, False)  # room again: the next submission's probe ends the condition
    r = client.post("/api/v1/jobs", json={**SMALL, "kind": "img2img", "init_image": big})
    assert r.status_code == 202, r.text
    assert wait_done(client, r.json()["id"])["status"] == "completed"
    assert client.get("/health").json()["status"] == "ok"

    doors: list[tuple[str, dict[str, Any]]] = [
        ("/sdapi/v1/img2img", {**SMALL, "init_images": [big]}),
        ("/sdcpp/v1/img_gen", {**SMALL, "init_image": big}),
    ]
    for path, body in doors:
        disk_full(svc, True)
        r = client.post(path, json=body)
        assert r.status_code == 507, (path, r.text)
        assert "no space left" in r.text
        disk_full(svc, False)
    disk_full(svc, True)
    import base64

    files = {"image": ("a.png", base64.b64decode(big), "image/png")}
    r = client.post("/v1/images/edits", data={"prompt": "x", "size": "64x64"}, files=files)
    assert r.status_code == 507 and r.json()["error"]["code"] == "storage_full", r.text
    disk_full(svc, False)
    assert client.get("/api/v1/jobs").json()["total"] == 1  # none half-created


class RefusingStore:
    """The service's store, refusing ``claim``/``finish``/``progress`` while ``full`` is set, as
    any store does on a full disk."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.full = threading.Event()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in ("claim", "finish", "progress", "submit"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.full.is_set():
                raise StorageFull("/the/data/dir")
            return attr(*args, **kwargs)

        return call


def test_a_refused_finish_ends_the_stream_and_the_queue_goes_on(make_client: MakeClient) -> None:
    client = make_client(step_seconds=0.05)
    svc = service_of(client)
    store = RefusingStore(svc.store)
    svc.store = svc.scheduler.store = store  # type: ignore[assignment]
    first = client.post("/api/v1/jobs", json={**SMALL, "steps": 10}).json()["id"]
    second = client.post("/api/v1/jobs", json={**SMALL, "steps": 1}).json()["id"]
    deadline = time.monotonic() + 20
    while client.get(f"/api/v1/jobs/{first}").json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    store.full.set()  # the disk fills while the first job runs, the second is queued
    events = sse_events(client.get(f"/api/v1/jobs/{first}/events").text)  # must end
    assert events[-1][0] == "completed"
    done = wait_done(client, second)  # its claim is refused: it fails, the queue does not stall
    assert done["status"] == "failed" and done["error"]["type"] == "StorageFull", done
    assert "no space left" in done["error"]["message"]
    assert sse_events(client.get(f"/api/v1/jobs/{second}/events").text)[-1][0] == "failed"
    listed = {j["id"]: j["status"] for j in client.get("/api/v1/jobs").json()["jobs"]}
    assert listed == {first: "completed", second: "failed"}  # as the clients saw them
    assert client.get("/health").json()["status"] == "storage_full"
    assert store.inner.get(first).state == "running"  # not stored yet

    store.full.clear()  # room again: both are stored, and new jobs run
    deadline = time.monotonic() + 20
    while svc.scheduler.unsaved:
        assert time.monotonic() < deadline, "finished jobs were never stored"
        time.sleep(0.05)
    assert store.inner.get(first).state == "completed"
    assert store.inner.get(second).state == "failed"
    assert client.get("/health").json()["status"] == "ok"
    third = client.post("/api/v1/jobs", json=SMALL).json()["id"]
    assert wait_done(client, third)["status"] == "completed"
    assert client.delete(f"/api/v1/jobs/{first}").status_code == 200


def test_a_full_disk_while_writing_outputs_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sdcpp_service.engine import images

    written: list[Path] = []

    def save_image(image: Image.Image, path: Path, *args: Any, **kwargs: Any) -> Path:
        if written:  # the second image meets the full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        image.save(path, format="PNG")
        written.append(path)
        return path

    monkeypatch.setattr(images, "save_image", save_image)
    job = ImageJob(id=new_id(), kind="txt2img", model="m")
    result = JobOutput([Image.new("RGB", (8, 8))] * 2, [1, 2], {}, {})
    with pytest.raises(StorageFull):
        outputs.save_outputs(result, job, tmp_path)
    assert written and list(tmp_path.iterdir()) == []  # the first image went too


def test_health_without_credentials_shows_counts_only(make_client: MakeClient) -> None:
    client = make_client(step_seconds=0.05, api_keys=("k",))
    auth = {"Authorization": "Bearer k"}
    job = client.post("/api/v1/jobs", json={**SMALL, "steps": 40}, headers=auth).json()["id"]
    deadline = time.monotonic() + 20
    while client.get("/health", headers=auth).json()["running_jobs"] != [job]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    open_view = client.get("/health")
    assert open_view.status_code == 200 and job not in open_view.text
    body = open_view.json()
    assert body["running_count"] == 1 and body["storage"] == {"status": "ok"}
    assert "running_jobs" not in body and "worker_error" not in body
    wrong = client.get("/health", headers={"Authorization": "Bearer nope"}).json()
    assert "running_jobs" not in wrong
    assert client.post(f"/api/v1/jobs/{job}/cancel", headers=auth).status_code in (200, 202)
    open_client = make_client(data="open")  # no credentials configured: everything shown
    assert "running_jobs" in open_client.get("/health").json()
    assert png()  # the helper module is shared with the native tests
