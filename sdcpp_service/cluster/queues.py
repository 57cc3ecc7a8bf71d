"""The procrastinate side: the app on a URL, the one task name, and queue names (one queue per
model, plus ``any`` for models no worker preloads)."""

from __future__ import annotations

import hashlib
from typing import Any

#: the task every job runs as (its only argument: our job id)
TASK = "sdcpp.run"
#: jobs for a model no live worker preloads go here (taken by ``--any`` workers)
ANY = "any"
#: upscale jobs (no model to keep warm): every worker takes them
UPSCALE = "upscale"


def queue_for(model_name: str) -> str:
    """The queue of a model (short: PostgreSQL channel names stop at 63 bytes)."""
    name = f"m:{model_name}"
    if len(name.encode()) <= 40:
        return name
    return f"m:{hashlib.sha1(model_name.encode()).hexdigest()[:16]}"


def make_app(url: str, max_size: int = 4) -> Any:
    """A procrastinate app on ``url`` (not opened)."""
    import procrastinate

    connector = procrastinate.PsycopgConnector(conninfo=url, min_size=1, max_size=max_size)
    return procrastinate.App(connector=connector)


async def abort(app: Any, pjob: int) -> bool:
    """Cancel a todo job, or ask its worker to abort a running one (over LISTEN/NOTIFY)."""
    return bool(await app.job_manager.cancel_job_by_id_async(pjob, abort=True))
