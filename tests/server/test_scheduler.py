"""Worker process, job store and queue with the fake engine (no HTTP)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sdcpp_service.server.jobs import Job, new_id
from sdcpp_service.server.scheduler import Live, Scheduler
from sdcpp_service.server.sqlite import SQLiteJobStore as JobStore
from sdcpp_service.server.worker import Worker
from tests.fakes import FakeEngine


def job(steps: int = 2, model: str = "a", prompt: str = "p", **params: Any) -> Job:
    fields = {"prompt": prompt, "steps": steps, "width": 64, "height": 64, "seed": 1, **params}
    return Job(new_id(), "txt2img", model, fields)


def run_with(
    tmp_path: Path,
    body: Callable[[Scheduler], Awaitable[None]],
    step_seconds: float = 0.01,
    max_queue: int = 100,
) -> None:
    async def main() -> None:
        store = JobStore(tmp_path / "jobs.db")
        worker = Worker(FakeEngine(step_seconds=step_seconds), tmp_path / "outputs", 60)
        sched = Scheduler(store, worker, max_queue=max_queue)
        await sched.start()
        try:
            await asyncio.wait_for(body(sched), 60)
        finally:
            await sched.stop()
            store.close()

    asyncio.run(main())


def test_events_in_order_and_output_written(tmp_path: Path) -> None:
    async def body(s: Scheduler) -> None:
        j = job(steps=3)
        await s.submit(j)
        events = [e async for e in s.events(j.id)]
        kinds = [k for k, _ in events]
        assert kinds[0] in ("queued", "started")
        assert kinds[-1] == "completed"
        steps = [d["step"] for k, d in events if k == "progress"]
        assert steps == [1, 2, 3]
        done = s.store.get(j.id)
        assert done is not None and done.state == "completed" and done.result is not None
        assert (tmp_path / "outputs" / done.result["outputs"][0]).is_file()

    run_with(tmp_path, body)


def test_cancel_running_then_next_job_runs(tmp_path: Path) -> None:
    async def body(s: Scheduler) -> None:
        slow, nxt = job(steps=500), job(steps=1)
        await s.submit(slow)
        await s.submit(nxt)
        while s.current is None or s.current.progress is None:
            await asyncio.sleep(0.02)
        s.cancel(slow.id)
        assert (await s.wait(slow.id)).state == "cancelled"
        assert (await s.wait(nxt.id)).state == "completed"

    run_with(tmp_path, body)


def test_kill_worker_fails_job_and_recovers(tmp_path: Path) -> None:
    async def body(s: Scheduler) -> None:
        slow, nxt = job(steps=500), job(steps=1)
        await s.submit(slow)
        await s.submit(nxt)
        while s.current is None or s.current.progress is None:
            await asyncio.sleep(0.02)
        pid = s.pool.slots[0].worker.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        failed = await s.wait(slow.id)
        assert failed.state == "failed" and failed.error is not None
        assert failed.error["type"] == "WorkerDied"
        assert (await s.wait(nxt.id)).state == "completed"
        assert s.pool.slots[0].worker.pid != pid

    run_with(tmp_path, body)


def test_engine_error_is_data(tmp_path: Path) -> None:
    async def body(s: Scheduler) -> None:
        bad, odd = job(prompt="fail: boom"), job(width=65)
        await s.submit(bad)
        await s.submit(odd)
        failed = await s.wait(bad.id)
        assert failed.error is not None and "boom" in failed.error["message"]
        wrong = await s.wait(odd.id)
        assert wrong.error is not None and wrong.error["field"] == "width"

    run_with(tmp_path, body)


def test_queue_limit(tmp_path: Path) -> None:
    from sdcpp_service.server.errors import QueueFull

    async def body(s: Scheduler) -> None:
        first = job(steps=500)
        await s.submit(first)
        while s.current is None:
            await asyncio.sleep(0.01)
        await s.submit(job())
        await s.submit(job())
        try:
            await s.submit(job())
        except QueueFull as exc:
            assert exc.retry_after >= 1
        else:
            raise AssertionError("queue limit not enforced")
        assert sorted(s.clear()) and not s.queue
        s.cancel(first.id)

    run_with(tmp_path, body, max_queue=2)


def test_reordering_prefers_loaded_model_without_starvation(tmp_path: Path) -> None:
    async def body(s: Scheduler) -> None:
        slot = s.pool.slots[0]
        jobs = [job(model="a"), *(job(model="b") for _ in range(6))]
        queue = [Live(j) for j in jobs]
        order: list[str] = []
        while queue:  # the order the loop would take, one worker, "b" warm
            slot.key = "b|{}"
            (picked,) = s.pool.plan(queue, s.window, s.max_skips)
            queue.remove(picked.live)
            order.append(picked.live.job.id)
        position = order.index(jobs[0].id)
        assert 0 < position <= s.max_skips

    run_with(tmp_path, body)


def test_restart_recovers_queued_and_running(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    queued, crashed, twice, elsewhere = job(), job(), job(), job()
    for j in (queued, crashed, twice, elsewhere):
        store.submit(j, {"init_image": b"x"})
    here = socket.gethostname()
    store.claim(crashed, here, 0)
    store.claim(twice, here, 1)
    store.requeue(twice)
    store.claim(twice, here, 0)  # second attempt also died with the server
    store.claim(elsewhere, "another-node", 0)  # not ours to recover
    store.close()

    async def body(s: Scheduler) -> None:
        assert (await s.wait(queued.id)).state == "completed"
        assert (await s.wait(crashed.id)).state == "completed"
        gone = s.store.get(twice.id)
        assert gone is not None and gone.state == "failed"
        assert s.store.inputs(queued.id) == {}
        other = s.store.get(elsewhere.id)
        assert other is not None and other.state == "running" and other.owner == "another-node"

    run_with(tmp_path, body)


class BrokenEngine(FakeEngine):
    """An engine whose start fails (as with missing bindings)."""

    def start(self) -> dict[str, Any]:
        from sdcpp_service.errors import EngineNotInstalled

        raise EngineNotInstalled("no engine here")


def test_engine_that_cannot_start_fails_jobs_not_the_server(tmp_path: Path) -> None:
    async def main() -> None:
        store = JobStore(tmp_path / "jobs.db")
        worker = Worker(BrokenEngine(), tmp_path / "outputs", 60)
        sched = Scheduler(store, worker)
        await sched.start()
        try:
            j = job()
            await sched.submit(j)
            failed = await asyncio.wait_for(sched.wait(j.id), 60)
            assert failed.state == "failed" and failed.error is not None
            assert failed.error["type"] == "EngineNotInstalled"
            assert "no engine here" in worker.error
        finally:
            await sched.stop()
            store.close()

    asyncio.run(main())
