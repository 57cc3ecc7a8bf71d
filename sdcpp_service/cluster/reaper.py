"""Stalled jobs (their worker stopped heartbeating: ``kill -9``, a host gone): found through
procrastinate's worker heartbeats, re-run once on another worker, failed with ``worker_lost``
the second time. Any node may run it; a row lock makes each decision once."""

from __future__ import annotations

import json
import logging
from typing import Any

from sdcpp_service.cluster.schema import CHANNEL
from sdcpp_service.cluster.store import NOW
from sdcpp_service.server.jobs import MAX_ATTEMPTS

log = logging.getLogger("sdcpp_service.cluster")


def lost_error(attempts: int, owner: str) -> dict[str, Any]:
    return {
        "type": "WorkerLost",
        "code": "worker_lost",
        "message": f"the worker running this job was lost {attempts} time(s) (last: {owner}); "
        "not run again",
    }


async def reap(app: Any, conn: Any, lost_after: float) -> tuple[list[str], list[str]]:
    """One pass: (re-queued ids, failed ids). ``conn``: an async autocommit connection."""
    from procrastinate.jobs import Status

    from sdcpp_service.cluster.queues import TASK

    stalled = await app.job_manager.get_stalled_jobs(
        task_name=TASK, seconds_since_heartbeat=lost_after
    )
    requeued: list[str] = []
    failed: list[str] = []
    for pj in stalled:
        retry = finish = None
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT id, state, attempts, owner, pworker FROM sdcpp_jobs WHERE pjob = %s "
                "FOR UPDATE",
                (pj.id,),
            )
            row = await cur.fetchone()
            if row is None or row[1] in ("completed", "failed", "cancelled"):
                finish = Status.SUCCEEDED if row and row[1] == "completed" else Status.FAILED
            elif row[1] == "running" and (pj.worker_id is None or row[4] == pj.worker_id):
                job_id, _, attempts, owner, _ = row
                if attempts < MAX_ATTEMPTS:
                    await conn.execute(
                        "UPDATE sdcpp_jobs SET state = 'queued', owner = '', slot = NULL, "
                        "progress = NULL, preview = NULL, preview_step = 0 WHERE id = %s",
                        (job_id,),
                    )
                    event = {"id": job_id, "event": "requeued",
                             "data": {"id": job_id, "attempt": attempts, "reason": "worker_lost"}}  # fmt: skip
                    requeued.append(job_id)
                    retry = pj
                else:
                    await conn.execute(
                        f"UPDATE sdcpp_jobs SET state = 'failed', error = %s, finished = {NOW}, "
                        "inputs = NULL, owner = '' WHERE id = %s",
                        (json.dumps(lost_error(attempts, owner)), job_id),
                    )
                    event = {"id": job_id, "event": "failed", "data": {}}
                    failed.append(job_id)
                    finish = Status.FAILED
                await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps(event)))
        try:
            if retry is not None:
                await app.job_manager.retry_job(retry)
            elif finish is not None:
                await app.job_manager.finish_job_by_id_async(pj.id, finish, delete_job=False)
        except Exception as exc:  # another node got there first
            log.info("stalled job %s: %s", pj.id, exc)
    if requeued or failed:
        log.warning("lost workers: %d job(s) re-queued, %d failed", len(requeued), len(failed))
    return requeued, failed


async def rehome(conn: Any, lost_after: float) -> int:
    """Jobs waiting on the queue of a model whose every worker is gone move to ``any`` while an
    ``--any`` worker is alive (else they wait for one that serves the model); returns how many."""
    from sdcpp_service.cluster.queues import ANY, queue_for

    cur = await conn.execute(
        "SELECT models, any_model FROM sdcpp_workers "
        "WHERE now() - heartbeat < make_interval(secs => %s)",
        (lost_after,),
    )
    live = await cur.fetchall()
    if not any(any_model for _, any_model in live):
        return 0
    served = sorted({queue_for(str(m)) for models, _ in live for m in models})
    cur = await conn.execute(
        "UPDATE procrastinate_jobs SET queue_name = %s WHERE status = 'todo' "
        "AND queue_name LIKE 'm:%%' AND NOT (queue_name = ANY(%s)) RETURNING id",
        (ANY, served),
    )
    moved = len(await cur.fetchall())
    if moved:
        log.warning("%d job(s) for models no live worker serves moved to the --any workers", moved)
    return moved
