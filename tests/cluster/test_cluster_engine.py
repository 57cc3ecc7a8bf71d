"""The cluster on the real engine (kit models): 1 API node (+ a second for cross-node reads)
and 3 ``sdcpp worker`` processes, each with its own data dir. Placement by model, SSE events
from a remote worker in order, outputs through every node, cancel, and ``kill -9`` → re-run
once elsewhere → ``worker_lost``."""

from __future__ import annotations

import io
import signal
import time
from collections.abc import Iterator

import pytest
from PIL import Image

from tests.cluster.conftest import Cluster, row, sse_events, wait_for
from tests.synth.kit import Kit

pytestmark = pytest.mark.engine

SMALL = {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 3}
#: long enough (several seconds on two loaded cores) to be interrupted mid-job
LONG = {"prompt": "a lighthouse", "width": 256, "height": 256, "steps": 40}


@pytest.fixture(scope="module")
def real(
    kit: Kit, pg_module_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster")
    models = tmp / "models"
    models.mkdir()
    (models / "sdxs.safetensors").symlink_to(kit.path("sdxs"))
    (models / "sdxs_b.safetensors").symlink_to(kit.path("sdxs"))
    c = Cluster(pg_module_url, tmp, models)
    c.worker("sdxs", name="g0", real=True)
    c.worker("sdxs", name="g1", real=True)
    c.worker("sdxs_b", any_model=True, name="g2", real=True)
    try:
        c.wait_workers(c.node("api-a"), 3, timeout=240)
        c.node("api-b")
        yield c
    finally:
        c.close()


def submit(api, body):  # type: ignore[no-untyped-def]
    r = api.post("/api/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_placement_events_and_outputs_on_the_real_engine(real: Cluster) -> None:
    a, b = real.clients
    first = submit(a, {**SMALL, "model": "sdxs", "seed": 11})
    with b.stream("GET", f"/api/v1/jobs/{first}/events") as r:
        events = sse_events(r.read().decode())
    kinds = [k for k, _ in events]
    assert kinds[-1] == "completed", events
    assert kinds.index("started") < kinds.index("progress") if "started" in kinds else True
    steps = [d["step"] for k, d in events if k == "progress" and d["phase"] == "sampling"]
    assert steps == sorted(steps) and steps[-1] == 3, events
    other = submit(b, {**SMALL, "model": "sdxs_b", "seed": 11})
    done = real.wait_job(a, other, ("completed", "failed"))
    assert done["status"] == "completed", done
    assert row(real.url, first)["owner"] in ("g0", "g1")
    assert row(real.url, other)["owner"] == "g2"
    url = a.get(f"/api/v1/jobs/{first}").json()["outputs"][0]["url"]
    png = a.get(url).content
    assert png == b.get(url).content
    image = Image.open(io.BytesIO(png))
    assert image.size == (64, 64) and "Seed: 11" in image.info["parameters"]
    # the same model and seed on another worker: the same image
    again = b.get(f"/api/v1/jobs/{other}").json()["outputs"][0]["url"]
    assert Image.open(io.BytesIO(b.get(again).content)).tobytes() == image.tobytes()


def test_cancel_stops_a_real_job(real: Cluster) -> None:
    a, b = real.clients
    job_id = submit(a, {**LONG, "model": "sdxs_b"})
    wait_for(lambda: a.get(f"/api/v1/jobs/{job_id}").json()["progress"], 120, "progress")
    t0 = time.monotonic()
    b.post(f"/api/v1/jobs/{job_id}/cancel")
    view = real.wait_job(a, job_id, ("cancelled", "completed", "failed"), 30)
    took = time.monotonic() - t0
    assert view["status"] == "cancelled", view
    print(f"real engine cancel across API nodes: {took * 1000:.0f} ms")
    after = submit(a, {**SMALL, "model": "sdxs_b"})
    assert real.wait_job(a, after, ("completed", "failed"), 120)["status"] == "completed"


def test_killed_worker_job_reruns_once_then_worker_lost(real: Cluster) -> None:
    a, _ = real.clients
    by_name = {"g0": real.procs[0], "g1": real.procs[1]}
    job_id = submit(a, {**LONG, "model": "sdxs"})
    first = wait_for(lambda: (r := row(real.url, job_id))["state"] == "running" and r["owner"],
                     60, "first claim")  # fmt: skip
    wait_for(lambda: a.get(f"/api/v1/jobs/{job_id}").json()["progress"], 120, "progress")
    by_name[first].send_signal(signal.SIGKILL)
    second = wait_for(lambda: (r := row(real.url, job_id))["attempts"] == 2
                      and r["state"] == "running" and r["owner"], 60, "re-run")  # fmt: skip
    assert second != first and second in by_name
    by_name[second].send_signal(signal.SIGKILL)
    view = real.wait_job(a, job_id, ("failed", "completed"), 60)
    assert view["status"] == "failed" and view["error"]["code"] == "worker_lost", view
    workers = {w["id"]: w["state"] for w in a.get("/api/v1/workers").json()["workers"]}
    wait_for(lambda: {w["id"]: w["state"] for w in a.get("/api/v1/workers").json()["workers"]}
             ["g0"] == "lost", 30, "lost g0")  # fmt: skip
    assert workers["g2"] != "lost"
    refused = a.post("/api/v1/jobs", json={**SMALL, "model": "sdxs"})
    # g2 is an --any worker: sdxs jobs now go to it
    assert refused.status_code == 202
    assert (
        real.wait_job(a, refused.json()["id"], ("completed", "failed"), 120)["status"]
        == "completed"
    )
    assert row(real.url, refused.json()["id"])["owner"] == "g2"
