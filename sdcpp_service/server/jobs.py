"""A job as the service keeps it (:class:`Job`), its states and ids. Where jobs are kept is a
:class:`~sdcpp_service.server.store.JobStore` (SQLite: :mod:`~sdcpp_service.server.sqlite`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STATES = ("queued", "running", "completed", "failed", "cancelled")
FINISHED = ("completed", "failed", "cancelled")
#: A job interrupted by a server crash this many times is failed instead of re-run.
MAX_ATTEMPTS = 2

Images = Mapping[str, "bytes | list[bytes]"]


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass
class Job:
    """One job row (``params`` without images; ``result`` once completed, ``error`` if failed)."""

    id: str
    kind: str
    model: str
    params: dict[str, Any]
    load: dict[str, Any] = field(default_factory=dict)
    state: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    seq: int = 0
    #: the node and worker slot that claimed it (while running), its last heartbeat
    owner: str = ""
    slot: int | None = None
    heartbeat: float | None = None
    #: someone asked for it to be cancelled (any node may ask; its owner stops it)
    cancel_requested: bool = False

    @property
    def finished_state(self) -> bool:
        return self.state in FINISHED

    def timings(self) -> dict[str, float | None]:
        queued = (self.started or self.finished or time.time()) - self.created
        running = None
        if self.started is not None:
            running = (self.finished or time.time()) - self.started
        return {"queued_seconds": queued, "running_seconds": running}
