"""A worker's job events, in order, on one connection: the latest state stored in the job's
row and a NOTIFY for every API node — only while this attempt still holds the job."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from sdcpp_service.cluster.schema import CHANNEL

log = logging.getLogger("sdcpp_service.cluster")

GUARD = "WHERE id = %s AND attempts = %s AND state = 'running' RETURNING id"


class Publisher:
    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.queue: asyncio.Queue[tuple[str, int, str, dict[str, Any], bytes | None]] = (
            asyncio.Queue()
        )
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def put(self, job_id: str, attempt: int, event: str, data: dict[str, Any],
            preview: bytes | None = None) -> None:  # fmt: skip
        self.queue.put_nowait((job_id, attempt, event, data, preview))

    async def flush(self) -> None:
        """Wait until every event put so far is sent."""
        await self.queue.join()

    async def _run(self) -> None:
        while True:
            item = await self.queue.get()
            try:
                await self._send(*item)
            except Exception as exc:  # the database is briefly away: drop one event
                log.error("event of job %s: %s", item[0], exc)
            finally:
                self.queue.task_done()

    async def _send(self, job_id: str, attempt: int, event: str, data: dict[str, Any],
                    preview: bytes | None) -> None:  # fmt: skip
        payload = json.dumps({"id": job_id, "event": event, "data": data})
        args: list[Any]
        if event == "progress":
            update, args = "SET progress = %s", [json.dumps(data)]
        elif event == "preview":
            update, args = "SET preview = %s, preview_step = %s", [preview, data["step"]]
        else:
            update, args = "SET owner = owner", []
        async with self.pool.connection() as conn:
            await conn.execute(
                f"WITH u AS (UPDATE sdcpp_jobs {update} {GUARD}) SELECT pg_notify(%s, %s) FROM u",
                (*args, job_id, attempt, CHANNEL, payload),
            )

    async def close(self) -> None:
        if self._task is not None:
            try:
                await asyncio.wait_for(self.flush(), 5)
            except asyncio.TimeoutError:
                pass
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
