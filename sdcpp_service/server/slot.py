"""One engine worker of the pool and what it holds: its warm model (path, load options and
what that is charged against the memory budget), what it is doing, its counts; and the sizes the
budget is made of (files on disk, the machine's RAM)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sdcpp_service.server.worker import Worker, rss

if TYPE_CHECKING:
    from sdcpp_service.server.scheduler import Live

GB = 1e9


def model_key(model: str, load: Mapping[str, Any]) -> str:
    """What a worker must have warm for a job: the model and its load options."""
    return f"{model}|{json.dumps(dict(load), sort_keys=True)}"


def machine_memory() -> int:
    """Total RAM in bytes (0 when unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def default_budget() -> int:
    """The memory budget when none is given: 90 % of the machine's RAM."""
    return int(machine_memory() * 0.9)


def files_size(model: str, load: Mapping[str, Any]) -> int:
    """Bytes of the model file and every component file its load options name."""
    total = 0
    for path in (model, *(v for v in load.values() if isinstance(v, str))):
        try:
            total += os.path.getsize(path)
        except OSError:
            pass
    return total


def gb(n: int) -> str:
    return f"{n / GB:.2f} GB"


@dataclass
class Slot:
    """One worker process and what it holds."""

    index: int
    worker: Worker
    #: the warm model (``model_key``; "" for none), its path and load options
    key: str = ""
    model: str = ""
    load: dict[str, Any] = field(default_factory=dict)
    #: "" when idle, else what it is doing: "job", "load", "unload"
    busy: str = ""
    live: Live | None = None
    last_used: float = 0.0
    jobs: int = 0
    #: models the engine in this worker built (its own count, summed across restarts)
    loads: int = 0
    #: the engine process whose count ``loads`` last took, and that count
    _pid: int | None = None
    _seen: int = 0
    #: what the warm model is charged against the budget
    model_bytes: int = 0
    #: the CPU threads the engine's context was made with, as the engine last reported them
    threads: int | None = None

    @property
    def idle(self) -> bool:
        return not self.busy

    def state(self) -> str:
        if self.busy:
            return self.busy if self.busy != "job" else "busy"
        if self.worker.alive and self.worker.info:
            return "idle"
        return "failed" if self.worker.error else "starting"

    def forget(self) -> None:
        """The worker's model is gone (it died, was killed or unloaded)."""
        self.key, self.model, self.load, self.model_bytes = "", "", {}, 0

    def sync(self, state: Mapping[str, Any] | None) -> None:
        """Take the engine's own word on what it holds (sent with every worker reply)."""
        if state is None:
            return
        if self.worker.pid != self._pid:  # a fresh engine process counts from zero
            self._pid, self._seen = self.worker.pid, 0
        count = int(state.get("loads") or 0)
        self.loads, self._seen = self.loads + max(0, count - self._seen), count
        self.threads = state.get("threads") or self.threads
        if state.get("model"):
            self.warm(str(state["model"]), state.get("load") or {})
        else:
            self.forget()

    def expect(self, model: str, load: Mapping[str, Any], need: int = 0) -> None:
        """A job for ``model`` starts here: the worker loads it first (if it has not); while it
        runs it is charged ``need`` (its estimated peak) when that is more."""
        if self.key != model_key(model, load):
            self.key, self.model, self.load = model_key(model, load), model, dict(load)
            self.model_bytes = files_size(model, load)
        self.model_bytes = max(self.model_bytes, need)
        self.last_used = time.monotonic()

    def warm(self, model: str, load: Mapping[str, Any]) -> None:
        """The worker holds ``model``: charge what it grew by (at least the files' size)."""
        self.key, self.model, self.load = model_key(model, load), model, dict(load)
        grown = rss(self.worker.pid) - self.worker.baseline
        self.model_bytes = max(files_size(model, load), grown)
        self.last_used = time.monotonic()

    def view(self) -> dict[str, Any]:
        live = self.live
        return {
            "id": self.index,
            "state": self.state(),
            "pid": self.worker.pid,
            "model": self.model or None,
            "load": self.load,
            "resident_bytes": rss(self.worker.pid),
            "model_bytes": self.model_bytes,
            "current_job": live.job.id if live is not None else None,
            "jobs": self.jobs,
            "loads": self.loads,
            "threads": self.threads or self.worker.info.get("threads"),
            "starts": self.worker.starts,
            "error": self.worker.error or None,
        }
