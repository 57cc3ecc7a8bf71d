"""A worker's two writes that decide a job, each one statement (one round trip, atomic):
the claim (queued → running, one attempt more, ``started`` notified) and the outcome (stored
with its outputs and notified only while this attempt still holds the job)."""

from __future__ import annotations

import json
from typing import Any

from sdcpp_service.cluster.store import CHANNEL, NOW

CLAIM = f"""
WITH u AS (
    UPDATE sdcpp_jobs SET state = 'running', attempts = attempts + 1, owner = %(owner)s,
        slot = %(slot)s, pworker = %(pworker)s, started = {NOW}, progress = NULL, preview = NULL
    WHERE id = %(id)s AND state = 'queued' AND NOT cancel_requested
    RETURNING id, attempts, kind, model, params, load, inputs
)
SELECT attempts, kind, model, params, load, inputs,
    pg_notify(%(channel)s, json_build_object('id', id, 'event', 'started',
        'data', json_build_object('id', id, 'attempt', attempts))::text)
FROM u
"""

FINISH = f"""
WITH u AS (
    UPDATE sdcpp_jobs SET state = %(state)s, result = %(result)s, error = %(error)s,
        finished = {NOW}, inputs = NULL, slot = NULL
    WHERE id = %(id)s AND attempts = %(attempts)s AND owner = %(owner)s AND state = 'running'
    RETURNING id
), o AS (
    INSERT INTO sdcpp_outputs (name, job_id, size, data)
    SELECT t.name, u.id, length(t.data), t.data
    FROM u, unnest(%(names)s::text[], %(datas)s::bytea[]) AS t(name, data)
    ON CONFLICT (name) DO UPDATE SET job_id = excluded.job_id, size = excluded.size,
        data = excluded.data
)
SELECT pg_notify(%(channel)s, %(payload)s) FROM u
"""


async def claim(conn: Any, job_id: str, owner: str, slot: int, pworker: int | None) -> Any:
    """(attempts, kind, model, params, load, inputs), or None when the job is not queued."""
    cur = await conn.execute(CLAIM, {"id": job_id, "owner": owner, "slot": slot,
                                     "pworker": pworker, "channel": CHANNEL})  # fmt: skip
    row = await cur.fetchone()
    return row[:6] if row else None


async def finish(conn: Any, job_id: str, attempts: int, owner: str, state: str,
                 result: dict[str, Any] | None, error: dict[str, Any] | None,
                 files: list[tuple[str, bytes]]) -> bool:  # fmt: skip
    """Store the outcome; False when this attempt no longer holds the job (discarded)."""
    cur = await conn.execute(FINISH, {
        "id": job_id, "attempts": attempts, "owner": owner, "state": state,
        "result": json.dumps(result) if result is not None else None,
        "error": json.dumps(error) if error is not None else None,
        "names": [n for n, _ in files], "datas": [d for _, d in files], "channel": CHANNEL,
        "payload": json.dumps({"id": job_id, "event": state, "data": {}}),
    })  # fmt: skip
    return await cur.fetchone() is not None
