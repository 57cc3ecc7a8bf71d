"""A worker's two writes that decide a job, each one statement (one round trip, atomic):
the claim (queued → running, one attempt more, ``started`` notified) and the outcome (stored
with its outputs and notified only while this attempt still holds the job; outputs beyond a
chunk streamed in the same transaction)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from sdcpp_service.cluster.store import CHANNEL, NOW, OUTPUT_CHUNK

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
), t AS (
    SELECT * FROM unnest(%(names)s::text[], %(sizes)s::bigint[], %(datas)s::bytea[])
        AS t(name, size, data)
), o AS (
    INSERT INTO sdcpp_outputs (name, job_id, size)
    SELECT t.name, u.id, t.size FROM u, t
    ON CONFLICT (name) DO UPDATE SET job_id = excluded.job_id, size = excluded.size
), d AS (
    DELETE FROM sdcpp_output_chunks c USING u, t
    WHERE c.name = t.name AND (t.data IS NULL OR c.seq > 0)
), c AS (
    INSERT INTO sdcpp_output_chunks (name, seq, data)
    SELECT t.name, 0, t.data FROM u, t WHERE t.data IS NOT NULL
    ON CONFLICT (name, seq) DO UPDATE SET data = excluded.data
)
SELECT pg_notify(%(channel)s, %(payload)s) FROM u
"""
COPY_CHUNKS = "COPY sdcpp_output_chunks (name, seq, data) FROM STDIN (FORMAT BINARY)"


async def claim(conn: Any, job_id: str, owner: str, slot: int, pworker: int | None) -> Any:
    """(attempts, kind, model, params, load, inputs), or None when the job is not queued."""
    cur = await conn.execute(CLAIM, {"id": job_id, "owner": owner, "slot": slot,
                                     "pworker": pworker, "channel": CHANNEL})  # fmt: skip
    row = await cur.fetchone()
    return row[:6] if row else None


async def finish(conn: Any, job_id: str, attempts: int, owner: str, state: str,
                 result: dict[str, Any] | None, error: dict[str, Any] | None,
                 files: list[tuple[str, Path]], chunk: int = OUTPUT_CHUNK) -> bool:  # fmt: skip
    """Store the outcome and the output files; False when this attempt no longer holds the job
    (discarded). Outputs of ``chunk`` bytes in all go with the outcome in one statement; larger
    ones are streamed a ``chunk`` per row (COPY) in the same transaction, so at most one chunk
    of them is ever in memory here."""
    sizes = [path.stat().st_size for _, path in files]
    inline = sum(sizes) <= chunk
    datas = await asyncio.to_thread(lambda: [p.read_bytes() for _, p in files]) if inline else (
        [None] * len(files))  # fmt: skip
    args = {
        "id": job_id, "attempts": attempts, "owner": owner, "state": state,
        "result": json.dumps(result) if result is not None else None,
        "error": json.dumps(error) if error is not None else None,
        "names": [n for n, _ in files], "sizes": sizes, "datas": datas, "channel": CHANNEL,
        "payload": json.dumps({"id": job_id, "event": state, "data": {}}),
    }  # fmt: skip
    if inline:
        cur = await conn.execute(FINISH, args)
        return await cur.fetchone() is not None
    async with conn.transaction():  # the notification goes out at commit, with every chunk
        cur = await conn.execute(FINISH, args)
        if await cur.fetchone() is None:
            return False
        for name, path in files:
            await upload(conn, name, path, chunk)
    return True


async def upload(conn: Any, name: str, path: Path, chunk: int) -> int:
    """Copy one file into its chunk rows, ``chunk`` bytes at a time; returns the rows written."""
    seq = 0
    with open(path, "rb") as f:
        async with conn.cursor() as cur, cur.copy(COPY_CHUNKS) as copy:
            copy.set_types(["text", "int4", "bytea"])
            while data := await asyncio.to_thread(f.read, chunk):
                await copy.write_row((name, seq, data))
                seq += 1
    return seq
