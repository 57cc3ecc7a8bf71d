"""The worker pool on the fake engine: placement, memory budget, per-job cancel and crash, the
workers endpoint, A1111 progress per client (the real engine: ``test_pool_engine.py``)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from starlette.testclient import TestClient

from sdcpp_service.server.jobs import Job, new_id
from sdcpp_service.server.pool import Pool
from sdcpp_service.server.scheduler import Live
from sdcpp_service.server.slot import Slot, model_key
from sdcpp_service.server.worker import Worker
from tests.fakes import FakeEngine
from tests.server.conftest import MakeClient
from tests.server.test_native import wait_done

WINDOW, SKIPS = 4, 3


def pool(tmp_path: Path, n: int, max_memory: int = 0) -> Pool:
    slots = [Slot(i, Worker(FakeEngine(), tmp_path, 60)) for i in range(n)]
    return Pool(slots, max_memory)


def live(model: str) -> Live:
    return Live(Job(new_id(), "txt2img", model, {"prompt": "p"}))


def warm(slot: Slot, model: str, used: float = 0.0, size: int = 0) -> None:
    slot.key, slot.model, slot.last_used, slot.model_bytes = model_key(model, {}), model, used, size


def placed(p: Pool, queue: list[Live]) -> list[tuple[str, int]]:
    return [(a.live.job.model, a.slot.index) for a in p.plan(queue, WINDOW, SKIPS)]


def test_each_job_goes_to_the_worker_with_its_model(tmp_path: Path) -> None:
    p = pool(tmp_path, 2)
    warm(p.slots[0], "a")
    warm(p.slots[1], "b")
    assert placed(p, [live("b"), live("a")]) == [("b", 1), ("a", 0)]


def test_a_job_waits_for_its_busy_warm_worker_but_a_second_one_does_not(tmp_path: Path) -> None:
    p = pool(tmp_path, 2)
    warm(p.slots[0], "a")
    warm(p.slots[1], "b")
    p.slots[0].busy = "job"
    queue = [live("a")]
    assert placed(p, queue) == []  # worker 0 will take it: no reload of "a" over "b"
    assert placed(p, [live("a"), live("a")]) == [("a", 1)]  # two waiting: use the idle worker


def test_new_model_replaces_the_least_recently_used_unwanted_one(tmp_path: Path) -> None:
    p = pool(tmp_path, 3)
    warm(p.slots[0], "a", used=1.0)
    warm(p.slots[1], "b", used=2.0)
    warm(p.slots[2], "c", used=3.0)
    assert placed(p, [live("d")]) == [("d", 0)]  # a: least recently used
    assert placed(p, [live("d"), live("a")]) == [("d", 1), ("a", 0)]  # a is wanted: b goes
    p.slots[2].forget()
    assert placed(p, [live("d")]) == [("d", 2)]  # an empty worker first


def test_no_job_starves_behind_warm_models(tmp_path: Path) -> None:
    p = pool(tmp_path, 1)
    queue = [live("a"), *(live("b") for _ in range(8))]
    first = queue[0]
    order = []
    while queue:
        warm(p.slots[0], "b")
        (a,) = p.plan(queue, WINDOW, SKIPS)
        queue.remove(a.live)
        order.append(a.live)
    assert 0 < order.index(first) <= SKIPS


def test_first_in_line_for_a_busy_warm_worker_is_not_passed_over(tmp_path: Path) -> None:
    """A,B,A,B… queued at once on two workers warm for a and b: while a's worker is busy, b's
    worker takes the b jobs behind the first a job, which waits for its own worker; it is never
    counted as passed over, so it never moves model a onto b's worker (a reload for nothing)."""
    p = pool(tmp_path, 2)
    warm(p.slots[0], "a")
    warm(p.slots[1], "b")
    p.slots[0].busy = "job"
    head = live("a")
    queue = [head, *(live(m) for m in "ba" * 8)]
    for _ in range(2 * SKIPS):
        (a,) = p.plan(queue, 3 * WINDOW, SKIPS)
        assert (a.live.job.model, a.slot.index) == ("b", 1)
        queue.remove(a.live)
        warm(p.slots[1], "b")
    assert [q.skips for q in queue if q.job.model == "a"] == [0] * 9 and queue[0] is head
    p.slots[0].busy = ""
    assert placed(p, queue)[0] == ("a", 0)


def test_jobs_take_turns_where_the_cores_hold_one_engine(tmp_path: Path) -> None:
    """On the CPU with every core per engine, one job computes at a time: the next one waits
    for its turn on its own warm worker; a GPU, or --parallel, lets every worker run."""
    p = pool(tmp_path, 2)
    warm(p.slots[0], "a")
    warm(p.slots[1], "b")
    assert p.parallel() == 2  # no worker has said where it computes yet
    p.slots[0].worker.info = {"device": {"type": "cpu"}, "physical_cores": 2, "threads": 2}
    assert p.parallel() == 1
    assert placed(p, [live("a"), live("b")]) == [("a", 0)]
    p.slots[0].busy = "job"
    assert placed(p, [live("b")]) == []  # b's worker is idle and warm, but it is not b's turn
    p.slots[0].busy = ""
    assert placed(p, [live("b"), live("a")]) == [("b", 1)]
    p.slots[0].worker.info["threads"] = 1  # two engines of one thread each fit two cores
    assert placed(p, [live("b"), live("a")]) == [("b", 1), ("a", 0)]
    p.slots[0].worker.info = {"device": {"type": "gpu"}, "physical_cores": 2, "threads": 2}
    assert p.parallel() == 2
    p.max_parallel = 1  # --parallel 1
    assert placed(p, [live("b"), live("a")]) == [("b", 1)]


def test_memory_budget_evicts_idle_models_waits_for_busy_ones(tmp_path: Path) -> None:
    model = tmp_path / "big.safetensors"
    model.write_bytes(b"\0" * 600)
    p = pool(tmp_path, 3, max_memory=1000)
    warm(p.slots[0], "x", used=1.0, size=300)
    warm(p.slots[1], "y", used=2.0, size=300)
    (a,) = p.plan([live(str(model))], WINDOW, SKIPS)
    assert a.slot.index == 2 and [s.index for s in a.evict] == [0]  # 300 + 600 ≤ 1000
    p.slots[0].busy = p.slots[1].busy = "job"
    assert p.plan([live(str(model))], WINDOW, SKIPS) == []  # room only once a job ends
    small = pool(tmp_path, 1, max_memory=500)
    try:
        small.check_fits(str(model), {})
    except Exception as exc:
        assert "big.safetensors" in str(exc) and "--max-memory" in str(exc)
    else:
        raise AssertionError("a model over the whole budget was accepted")


JOB = {"prompt": "p", "width": 64, "height": 64, "seed": 1}


def busy_together(client: TestClient, ids: list[str], timeout: float = 60) -> None:
    """Wait until every job in ``ids`` is running on a worker and has reported a step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = {w["current_job"] for w in client.get("/api/v1/workers").json()["workers"]}
        stepped = all(client.get(f"/api/v1/jobs/{i}").json()["progress"] for i in ids)
        if set(ids) <= jobs and stepped:
            return
        time.sleep(0.02)
    raise AssertionError("the jobs never ran at the same time")


def test_two_models_run_at_once_and_workers_are_listed(make_client: MakeClient) -> None:
    client = make_client(step_seconds=0.05, workers=2, preload="alpha,beta")
    a = client.post("/api/v1/jobs", json={**JOB, "model": "alpha", "steps": 60}).json()
    b = client.post("/api/v1/jobs", json={**JOB, "model": "beta", "steps": 60}).json()
    busy_together(client, [a["id"], b["id"]])
    listed = client.get("/api/v1/workers").json()
    names = sorted(w["model_name"] for w in listed["workers"])
    assert names == ["alpha", "beta"] and all(w["state"] == "busy" for w in listed["workers"])
    assert all(w["pid"] and w["resident_bytes"] > 0 for w in listed["workers"])
    assert listed["max_memory_bytes"] > 0 and listed["models_bytes"] > 0
    health = client.get("/health").json()
    assert health["workers"] == {"busy": 2} and sorted(health["running_jobs"]) == sorted(
        [a["id"], b["id"]]
    )
    system = client.get("/system").json()
    assert sorted(system["loaded_models"]) == ["alpha", "beta"] and len(system["workers"]) == 2
    client.post(f"/api/v1/jobs/{a['id']}/cancel")
    assert wait_done(client, a["id"])["status"] == "cancelled"
    assert client.get(f"/api/v1/jobs/{b['id']}").json()["status"] == "running"
    assert wait_done(client, b["id"])["status"] == "completed"
    loads = [w["loads"] for w in client.get("/api/v1/workers").json()["workers"]]
    assert sorted(loads) == [1, 1]  # the cancelled worker restarted; alpha not reloaded yet


def test_kill_one_worker_only_its_job_fails(make_client: MakeClient) -> None:
    client = make_client(step_seconds=0.05, workers=2, preload="alpha,beta")
    a = client.post("/api/v1/jobs", json={**JOB, "model": "alpha", "steps": 60}).json()
    b = client.post("/api/v1/jobs", json={**JOB, "model": "beta", "steps": 40}).json()
    busy_together(client, [a["id"], b["id"]])
    workers = client.get("/api/v1/workers").json()["workers"]
    victim = next(w for w in workers if w["current_job"] == a["id"])
    os.kill(victim["pid"], signal.SIGKILL)
    failed = wait_done(client, a["id"])
    assert failed["status"] == "failed" and failed["error"]["type"] == "WorkerDied"
    assert wait_done(client, b["id"])["status"] == "completed"
    again = client.post("/api/v1/jobs", json={**JOB, "model": "alpha", "steps": 1}).json()
    assert wait_done(client, again["id"])["status"] == "completed"


def test_many_mixed_jobs_all_complete_once(make_client: MakeClient, model_dir: Path) -> None:
    (model_dir / "checkpoints" / "gamma.safetensors").symlink_to(
        model_dir / "checkpoints" / "alpha.safetensors"
    )
    client = make_client(step_seconds=0.002, workers=2)
    names = ["alpha", "beta", "gamma"]
    ids = [
        client.post("/api/v1/jobs", json={**JOB, "model": names[i % 3], "steps": 3}).json()["id"]
        for i in range(20)
    ]
    done = [wait_done(client, job_id) for job_id in ids]
    assert [d["status"] for d in done] == ["completed"] * 20
    assert all(d["attempts"] == 1 for d in done)
    assert sum(w["jobs"] for w in client.get("/api/v1/workers").json()["workers"]) == 20


def test_a1111_progress_reports_the_callers_job(make_client: MakeClient) -> None:
    client = make_client(step_seconds=0.05, workers=2, preload="alpha,beta")
    mine = {"prompt": "p", "width": 64, "height": 64, "steps": 60, "seed": 1}
    other = client.post("/api/v1/jobs", json={**JOB, "model": "beta", "steps": 60}).json()
    busy_together(client, [other["id"]])
    headers = {"Authorization": "Basic " + "YTpi"}  # another client: other credentials
    reply: list[int] = []

    def wait_mine() -> None:
        body = {**mine, "override_settings": {"sd_model_checkpoint": "alpha"}}
        reply.append(client.post("/sdapi/v1/txt2img", json=body, headers=headers).status_code)

    thread = threading.Thread(target=wait_mine)
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = client.get("/sdapi/v1/progress", headers=headers).json()
        if state["state"]["job"] and state["state"]["job"] != other["id"]:
            break
        time.sleep(0.02)
    else:
        raise AssertionError("progress never showed the caller's job")
    assert client.get("/sdapi/v1/progress").json()["state"]["job"] == other["id"]
    client.post("/sdapi/v1/interrupt", headers=headers)
    thread.join(60)
    assert client.get(f"/api/v1/jobs/{other['id']}").json()["status"] == "running"
    client.post(f"/api/v1/jobs/{other['id']}/cancel")
    assert reply and reply[0] in (200, 409)
