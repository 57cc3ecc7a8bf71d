"""The cluster on the fake engine (fast): placement, refusal, late results, cancel, events
across API nodes, restarts, 30 jobs exactly once, retention, every route. On the real engine
(and ``kill -9`` → re-run → ``worker_lost``): tests/cluster/test_cluster_engine.py."""

from __future__ import annotations

import os
import signal
import time

import psycopg

from tests.cluster.conftest import Cluster, row, sse_events, wait_for

JOB = {"prompt": "a fox", "width": 64, "height": 64}


def submit(api, model: str, steps: int = 3, **extra):  # type: ignore[no-untyped-def]
    r = api.post("/api/v1/jobs", json={**JOB, "model": model, "steps": steps, **extra})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_placement_by_model_refusal_and_any(cluster: Cluster) -> None:
    cluster.worker("alpha", name="wa")
    api = cluster.node()
    cluster.wait_workers(api, 1)
    refused = api.post("/api/v1/jobs", json={**JOB, "model": "beta", "steps": 2})
    assert refused.status_code == 503
    message = refused.json()["error"]["message"]
    assert "no live worker serves model 'beta'" in message and "\n" not in message
    a1111 = api.post("/sdapi/v1/txt2img", json={**JOB, "prompt": "x", "steps": 2,
                                                 "override_settings": {"sd_model_checkpoint": "beta"}})  # fmt: skip
    assert a1111.status_code in (503, 422) or a1111.json().get("images")
    cluster.worker("beta", name="wb")
    cluster.worker(any_model=True, name="wany")
    cluster.wait_workers(api, 3)
    jobs = {submit(api, m): m for m in ("alpha", "beta", "alpha", "beta")}
    for job_id, model in jobs.items():
        assert cluster.wait_job(api, job_id, ("completed", "failed"))["status"] == "completed"
        assert row(cluster.url, job_id)["owner"] == {"alpha": "wa", "beta": "wb"}[model]
    listed = {w["id"]: w for w in api.get("/api/v1/workers").json()["workers"]}
    assert set(listed) == {"wa", "wb", "wany"}
    assert listed["wa"]["models"] == ["alpha"] and listed["wany"]["any"] is True
    assert all(w["host"] and w["last_heartbeat"] > 0 and w["state"] == "idle"
               for w in listed.values())  # fmt: skip
    # with beta's worker gone, beta jobs go to the --any worker
    os.kill(cluster.procs[1].pid, signal.SIGKILL)
    wait_for(lambda: api.get("/api/v1/workers").json()["workers"][1]["state"] == "lost"
             or any(w["id"] == "wb" and w["state"] == "lost"
                    for w in api.get("/api/v1/workers").json()["workers"]), 30, "lost worker")  # fmt: skip
    job_id = submit(api, "beta")
    assert cluster.wait_job(api, job_id, ("completed",))["status"] == "completed"
    assert row(cluster.url, job_id)["owner"] == "wany"


def test_late_result_of_a_lost_claim_is_discarded(cluster: Cluster) -> None:
    cluster.worker("alpha", step=0.1, name="s0")
    api = cluster.node()
    cluster.wait_workers(api, 1)
    job_id = submit(api, "alpha", steps=30)
    wait_for(lambda: row(cluster.url, job_id)["state"] == "running", 30, "running")
    frozen = cluster.procs[0]
    frozen.send_signal(signal.SIGSTOP)  # its heartbeats stop; its engine runs on
    try:
        wait_for(lambda: row(cluster.url, job_id)["state"] == "queued", 30, "re-queue")
        cluster.worker("alpha", step=0.01, name="s1")
        done = cluster.wait_job(api, job_id, ("completed", "failed"), 60)
        assert done["status"] == "completed"
    finally:
        frozen.send_signal(signal.SIGCONT)
    time.sleep(3.5)  # the frozen worker's own run has finished and tried to store its result
    after = row(cluster.url, job_id)
    assert after == {"owner": "s1", "attempts": 2, "state": "completed", "error": None}
    with psycopg.connect(cluster.url) as conn:
        (count,) = conn.execute("SELECT count(*) FROM sdcpp_outputs WHERE job_id = %s",
                                (job_id,)).fetchone()  # fmt: skip
    assert count == 1
    frozen.send_signal(signal.SIGTERM)
    frozen.wait(15)
    assert b"result of attempt 1 discarded" in frozen.stderr.read()


def test_cancel_from_another_api_node_stops_the_job(cluster: Cluster) -> None:
    cluster.worker("alpha", step=0.2, name="c0")
    a, b = cluster.node("api-a"), cluster.node("api-b")
    cluster.wait_workers(a, 1)
    running, queued = submit(a, "alpha", steps=150), submit(a, "alpha", steps=2)
    wait_for(lambda: a.get(f"/api/v1/jobs/{running}").json()["progress"], 30, "progress")
    t0 = time.monotonic()
    assert b.post(f"/api/v1/jobs/{queued}/cancel").json()["status"] == "cancelled"
    b.post(f"/api/v1/jobs/{running}/cancel")
    view = cluster.wait_job(a, running, ("cancelled", "completed", "failed"), 10)
    took = time.monotonic() - t0
    assert view["status"] == "cancelled"
    print(f"cancel across API nodes: {took * 1000:.0f} ms")
    wait_for(lambda: a.get("/api/v1/workers").json()["workers"][0]["state"] == "idle", 10,
             "idle worker")  # fmt: skip
    # the worker's engine was stopped and restarted: the next job runs
    assert cluster.wait_job(a, submit(b, "alpha"), ("completed",), 30)["status"] == "completed"


def test_events_outputs_and_progress_on_every_node(cluster: Cluster) -> None:
    cluster.worker("alpha", step=0.05, name="e0")
    a, b = cluster.node("api-a"), cluster.node("api-b")
    cluster.wait_workers(a, 1)
    job_id = submit(a, "alpha", steps=12, preview="proj", seed=5)
    wait_for(lambda: b.get("/sdapi/v1/progress").json()["progress"] > 0, 30, "A1111 progress")
    with b.stream("GET", f"/api/v1/jobs/{job_id}/events") as r:
        events = sse_events(r.read().decode())
    kinds = [k for k, _ in events]
    assert kinds[0] in ("started", "progress") and kinds[-1] == "completed", kinds
    steps = [d["step"] for k, d in events if k == "progress"]
    assert steps == sorted(steps) and steps[-1] == 12
    assert any(k == "preview" and d["image"].startswith("data:image/png") for k, d in events)
    late = sse_events(a.get(f"/api/v1/jobs/{job_id}/events").text)
    assert late == [events[-1]]
    va, vb = a.get(f"/api/v1/jobs/{job_id}").json(), b.get(f"/api/v1/jobs/{job_id}").json()
    assert va["outputs"] == vb["outputs"] and va["seeds"] == [5]
    url = va["outputs"][0]["url"]
    assert a.get(url).content == b.get(url).content and a.get(url).content[:4] == b"\x89PNG"
    assert b.get("/sdapi/v1/progress").json()["progress"] == 0
    health = b.get("/health").json()
    assert health["worker"] == "ready" and health["workers"] == {"idle": 1}
    assert b.get("/system").status_code == 200
    assert "euler_a" in str(b.get("/sdapi/v1/samplers").json())
    sync = b.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 2, "width": 64,
                                             "height": 64, "seed": 9})  # fmt: skip
    assert sync.status_code == 200 and sync.json()["images"], sync.text
    listing = b.get("/api/v1/jobs").json()
    assert listing["total"] == 2 and listing["jobs"][1]["id"] == job_id


def test_api_node_restart_loses_nothing(cluster: Cluster) -> None:
    cluster.worker("alpha", step=0.1, name="r0")
    api = cluster.node("api")
    cluster.wait_workers(api, 1)
    ids = [submit(api, "alpha", steps=10) for _ in range(3)]
    wait_for(lambda: row(cluster.url, ids[0])["state"] == "running", 30, "running")
    cluster.clients.remove(api)
    api.__exit__(None, None, None)  # the API node goes away mid-job, two jobs queued
    again = cluster.node("api")
    for job_id in ids:
        assert cluster.wait_job(again, job_id, ("completed", "failed"))["status"] == "completed"


def test_thirty_mixed_jobs_complete_exactly_once(cluster: Cluster) -> None:
    cluster.worker("alpha", step=0.01, name="m0")
    cluster.worker("beta", step=0.01, name="m1")
    cluster.worker("alpha", any_model=True, step=0.01, name="m2")
    api = cluster.node()
    cluster.wait_workers(api, 3)
    ids = [submit(api, ("alpha", "beta")[i % 2], steps=2, seed=i) for i in range(30)]
    views = [cluster.wait_job(api, i, ("completed", "failed", "cancelled")) for i in ids]
    assert [v["status"] for v in views] == ["completed"] * 30
    assert [v["seeds"] for v in views] == [[i] for i in range(30)]
    with psycopg.connect(cluster.url) as conn:
        attempts = conn.execute("SELECT attempts, count(*) FROM sdcpp_jobs GROUP BY 1").fetchall()
        outputs = conn.execute("SELECT count(*) FROM sdcpp_outputs").fetchone()
        pjobs = conn.execute("SELECT status, count(*) FROM procrastinate_jobs GROUP BY 1")
        assert attempts == [(1, 30)] and outputs == (30,)
        assert pjobs.fetchall() == [("succeeded", 30)]
    owners = {row(cluster.url, i)["owner"] for i in ids}
    assert {"m0", "m1"} <= owners


def test_retention_removes_jobs_and_their_outputs(cluster: Cluster) -> None:
    cluster.worker("alpha", name="t0")
    api = cluster.node()
    cluster.wait_workers(api, 1)
    first = submit(api, "alpha")
    view = cluster.wait_job(api, first, ("completed",))
    assert api.delete(f"/api/v1/jobs/{first}").json() == {"deleted": first}
    assert api.get(view["outputs"][0]["url"]).status_code == 404
    ids = [submit(api, "alpha", seed=i) for i in range(3)]
    for job_id in ids:
        cluster.wait_job(api, job_id, ("completed",))
    node = api.app.state.service  # type: ignore[attr-defined]
    node.options = type(node.options)(**{**node.options.__dict__, "keep_outputs_gb": 1e-9})
    removed = node.cap_outputs(keep=ids[-1])
    assert removed == ids[:-1]
    assert api.get("/api/v1/jobs").json()["total"] == 1
    node.options = type(node.options)(**{**node.options.__dict__, "keep_jobs_hours": 1e-9})
    time.sleep(0.01)
    assert node.prune() == [ids[-1]]
    with psycopg.connect(cluster.url) as conn:
        assert conn.execute("SELECT count(*) FROM sdcpp_outputs").fetchone() == (0,)


def test_output_cap_applies_as_jobs_finish(cluster: Cluster) -> None:
    cluster.worker("alpha", name="q0")
    api = cluster.node("api", keep_outputs_gb=1e-9)  # any output is over the cap
    cluster.wait_workers(api, 1)
    first = submit(api, "alpha", seed=1)
    cluster.wait_job(api, first, ("completed",))
    second = submit(api, "alpha", seed=2)
    cluster.wait_job(api, second, ("completed",))
    gone = wait_for(lambda: api.get(f"/api/v1/jobs/{first}").status_code == 404, 10, "cap")
    assert gone and api.get(f"/api/v1/jobs/{second}").status_code == 200


def test_every_route_answers_on_an_api_node(cluster: Cluster) -> None:
    """No route of the embedded server is a 500 on an API node."""
    cluster.worker("alpha", name="x0")
    api = cluster.node()
    cluster.wait_workers(api, 1)
    job_id = submit(api, "alpha")
    cluster.wait_job(api, job_id, ("completed",))
    paths = [r.path for r in api.app.routes if "GET" in (getattr(r, "methods", None) or ())]  # type: ignore[attr-defined]
    bad = {}
    for path in paths:
        if "{" in path:
            path = path.replace("{id}", job_id).replace("{name:path}", "alpha").replace(
                "{name}", f"{job_id}-0.png")  # fmt: skip
        r = api.get(path)
        if r.status_code >= 500:
            bad[path] = r.text[:200]
    posts = {
        "/api/v1/models/load": {"model": "alpha"},
        "/api/v1/models/unload": {},
        "/sdapi/v1/options": {"sd_model_checkpoint": "alpha"},
        "/sdapi/v1/interrupt": {},
        "/v1/images/generations": {"prompt": "x", "model": "alpha", "size": "64x64"},
        "/sdcpp/v1/img_gen": {"prompt": "x", "width": 64, "height": 64},
    }
    for path, body in posts.items():
        r = api.post(path, json=body)
        if r.status_code >= 500:
            bad[path] = r.text[:200]
    assert bad == {}
    assert api.post("/api/v1/models/load", json={"model": "beta"}).status_code == 503

    # the library's submit-and-wait on an API node

    from sdcpp_service.server.jobs import Job

    node = api.app.state.service  # type: ignore[attr-defined]
    model = str(node.resolve_model("alpha").path)
    job = Job(id="lib-run-1", kind="txt2img", model=model,
              params={"prompt": "x", "width": 64, "height": 64, "steps": 2, "seed": 6})  # fmt: skip
    done = api.portal.call(node.run, job, {})  # type: ignore[union-attr]
    assert done.state == "completed" and done.result["seeds"] == [6]


def test_upscale_jobs_run_on_any_worker(cluster: Cluster) -> None:
    import base64
    import io

    from PIL import Image

    cluster.worker("alpha", name="u0")
    api = cluster.node()
    cluster.wait_workers(api, 1)
    buf = io.BytesIO()
    Image.new("RGB", (16, 8), (10, 200, 30)).save(buf, format="PNG")
    r = api.post("/api/v1/jobs", json={"kind": "upscale", "model": "nearest", "scale": 2,
                                       "image": base64.b64encode(buf.getvalue()).decode()})  # fmt: skip
    assert r.status_code == 202, r.text
    view = cluster.wait_job(api, r.json()["id"], ("completed", "failed"))
    assert view["status"] == "completed", view
    image = Image.open(io.BytesIO(api.get(view["outputs"][0]["url"]).content))
    assert image.size == (32, 16) and image.getpixel((5, 5)) == (10, 200, 30)


def test_outputs_travel_in_chunks_both_ways(cluster: Cluster, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A worker uploads an output a chunk per row (never whole in its memory) and an API node
    copies it a chunk per query into its cache: the bytes served are the worker's, exactly."""
    import sdcpp_service.cluster.store as store

    reads: list[int] = []
    real_copy = store.PgStore.copy_output

    def counting(self, name, out):  # type: ignore[no-untyped-def]
        size = real_copy(self, name, out)
        reads.append(out.tell())
        return size

    monkeypatch.setattr(store, "OUTPUT_CHUNK", 89)
    monkeypatch.setattr(store.PgStore, "copy_output", counting)
    cluster.worker("alpha", name="c0", args=("--output-chunk", "97"))
    api = cluster.node()
    cluster.wait_workers(api, 1)
    job_id = submit(api, "alpha", steps=2)
    view = cluster.wait_job(api, job_id, ("completed", "failed"))
    name = view["outputs"][0]["name"]
    with psycopg.connect(cluster.url) as conn:
        rows = conn.execute("SELECT seq, data FROM sdcpp_output_chunks WHERE name = %s "
                            "ORDER BY seq", (name,)).fetchall()  # fmt: skip
        (size,) = conn.execute("SELECT size FROM sdcpp_outputs WHERE name = %s",
                               (name,)).fetchone()  # fmt: skip
    stored = b"".join(bytes(d) for _, d in rows)
    assert len(stored) == size > 3 * 97
    assert [s for s, _ in rows] == list(range(len(rows))) == list(range(-(-size // 97)))
    assert all(len(d) == 97 for _, d in rows[:-1]) and 0 < len(rows[-1][1]) <= 97
    served = api.get(view["outputs"][0]["url"])
    assert served.status_code == 200 and served.content == stored
    assert stored.startswith(b"\x89PNG\r\n\x1a\n")
    assert reads == [len(stored)]
    assert api.get(view["outputs"][0]["url"]).content == stored and len(reads) == 1  # cached
    missing = api.get(f"/api/v1/outputs/{'0' * 32}-0.png")
    assert missing.status_code == 404 and reads[1:] == [0]  # asked, nothing written


def test_jobs_waiting_for_a_lost_model_worker_move_to_an_any_worker(cluster: Cluster) -> None:
    """A model's only worker dies with a job running and one waiting on the model's queue: both
    move to the --any worker (the running one as its second attempt) instead of waiting forever."""
    cluster.worker("alpha", step=0.2, name="only")
    cluster.worker("beta", any_model=True, name="spare")
    api = cluster.node()
    cluster.wait_workers(api, 2)
    running = submit(api, "alpha", steps=60)
    wait_for(lambda: row(cluster.url, running)["owner"] == "only", 30, "claim by 'only'")
    waiting = submit(api, "alpha")
    os.kill(cluster.procs[0].pid, signal.SIGKILL)
    for job_id, attempts in ((running, 2), (waiting, 1)):
        view = cluster.wait_job(api, job_id, ("completed", "failed"), 60)
        assert view["status"] == "completed", view
        assert row(cluster.url, job_id) | {"error": None} == {
            "owner": "spare",
            "attempts": attempts,
            "state": "completed",
            "error": None,
        }
