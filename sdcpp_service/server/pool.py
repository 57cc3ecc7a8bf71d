"""N supervised engine workers, each keeping one model warm; where the next job goes.

Placement (:meth:`Pool.plan`), for the queue in order:

1. an idle worker that has the job's model *and* load options warm takes it;
2. else, when a busy worker has it warm and no earlier queued job waits for that worker, the job
   waits for it (a reload costs more than a short wait), unless it was passed over
   ``max_skips`` times already (no starvation; waiting in line for such a worker, which takes
   its model's jobs in order, is not being passed over);
3. else an idle worker takes it, replacing the model no queued job wants, least recently used
   first; but when every idle worker is warm for a job a little further back (within
   ``window``), that job goes first, again at most ``max_skips`` times past the same job.

Memory: every warm model is charged its resident size (what its worker grew by when it loaded,
at least the files' size); a running job is charged its estimated peak
(:mod:`sdcpp_service.fit`: weights plus the compute buffers of its size and switches, the
``footprint`` the service estimated at submission). A job or load that would take the total
over ``max_memory`` first unloads idle workers' models (least recently used first), waits for
busy ones, and a model larger than the whole budget is refused with a message naming both sizes.

Compute: at most :meth:`Pool.parallel` jobs run at once. Engines computing on the CPU each use
``threads`` cores, and engines sharing cores only slow each other down (two SD1 jobs at once on
2 cores, 2 threads each: 1.23x the time of one after the other), so there it is as many as
the physical cores hold; on a GPU, every worker. Workers beyond it still keep their models warm:
a job for one waits for a turn, not for a reload.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdcpp_service.engine.base import PIPELINE_KINDS, Engine
from sdcpp_service.engine.images import TRANSPORT_PNG_LEVEL
from sdcpp_service.errors import InvalidRequest
from sdcpp_service.server.worker import Worker, rss

if TYPE_CHECKING:
    from sdcpp_service.server.jobs import Job
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


@dataclass
class Assignment:
    """A job for a worker, and the idle workers to unload first to make room."""

    live: Live
    slot: Slot
    evict: list[Slot] = field(default_factory=list)


@dataclass
class Pool:
    slots: list[Slot]
    max_memory: int
    #: a job's estimated peak bytes beyond its worker's runtime (None: not estimated)
    footprint: Callable[[Job], int | None] | None = None
    #: jobs that may run at once (``--parallel``; 0: as the engine's device allows)
    max_parallel: int = 0

    @classmethod
    def create(
        cls,
        engine: Engine,
        outputs: Path,
        workers: int,
        start_timeout: float,
        max_memory: int,
        png_level: int = TRANSPORT_PNG_LEVEL,
        parallel: int = 0,
    ) -> Pool:
        slots = [
            Slot(i, Worker(engine, outputs, start_timeout, png_level))
            for i in range(max(1, workers))
        ]
        return cls(slots, max_memory or default_budget(), max_parallel=parallel)

    def parallel(self) -> int:
        """How many jobs may run at once: ``--parallel`` when given; else, where the engine
        computes on the CPU, as many as its physical cores hold at each engine's ``threads``
        (at least one); on a GPU (or before a worker has said), every worker."""
        if self.max_parallel:
            return min(self.max_parallel, len(self.slots))
        info = next((s.worker.info for s in self.slots if s.worker.info), None) or {}
        device = info.get("device") or {}
        cores, threads = info.get("physical_cores"), info.get("threads")
        if device.get("type") != "cpu" or not cores or not threads:
            return len(self.slots)
        return max(1, min(len(self.slots), int(cores) // int(threads)))

    def used(self, without: Slot | None = None) -> int:
        return sum(s.model_bytes for s in self.slots if s is not without)

    def check_fits(self, model: str, load: Mapping[str, Any]) -> None:
        """Refuse a model that cannot fit the budget even alone (``InvalidRequest('model')``)."""
        need = files_size(model, load)
        if self.max_memory and need > self.max_memory:
            raise InvalidRequest(
                "model",
                f"{Path(model).name} needs about {gb(need)}, more than this server's memory "
                f"budget of {gb(self.max_memory)} (raise --max-memory)",
            )

    def need(self, model: str, load: Mapping[str, Any], job: Job | None = None) -> int:
        """Bytes ``model`` needs on a worker: ``job``'s estimated peak, else its files' size.
        An estimate over the whole budget (a guess the submission let through: an unmeasured
        family whose weights fit) asks for the whole budget, so the job runs alone."""
        estimated = self.footprint(job) if job is not None and self.footprint else None
        if estimated and self.max_memory:
            estimated = min(estimated, self.max_memory)
        return estimated or files_size(model, load)

    def holding(self, key: str) -> list[Slot]:
        return [s for s in self.slots if s.key == key]

    def plan(self, queue: Sequence[Live], window: int, max_skips: int) -> list[Assignment]:
        """Which queued jobs start now, on which idle workers (see the module docstring)."""
        idle = [s for s in self.slots if s.idle and not s.worker.closing]
        turns = self.parallel() - sum(1 for s in self.slots if s.busy == "job")
        out: list[Assignment] = []
        waiting: dict[str, int] = {}  # key → queued jobs already waiting for its busy workers
        #: jobs in line for a busy worker warm for them: not passed over when a job behind them
        #: starts elsewhere, for that worker takes them in order (counting them moved models
        #: between workers for nothing when several models' jobs are queued at once)
        in_line: set[str] = set()
        for i, live in enumerate(queue):
            if not idle or len(out) >= turns:
                break
            key, urgent = live.key, live.skips >= max_skips
            if live.job.kind not in PIPELINE_KINDS:  # an upscale: any worker, model kept
                out.append(Assignment(live, _pop(idle, self.least_wanted(idle, queue))))
                continue
            warm = [s for s in idle if s.key == key]
            if warm:  # its estimated peak may still need an idle worker's model unloaded
                room = self.make_room(live.job.model, live.job.load, warm[0], idle, live.job)
                if room is None:
                    continue
                for s in room:
                    idle.remove(s)
                out.append(Assignment(live, _pop(idle, warm[0]), room))
                continue
            busy = [s for s in self.holding(key) if not s.idle]
            if busy:
                in_line.add(live.job.id)
            if not urgent and waiting.get(key, 0) < len(busy):
                waiting[key] = waiting.get(key, 0) + 1
                continue
            later = {q.key for q in queue[i + 1 : i + window]}
            free = [s for s in idle if s.key not in later]
            if not urgent and not free:  # every idle worker is warm for a job just behind
                continue
            slot = self.least_wanted(free or idle, queue[i + 1 :])
            evict = self.make_room(live.job.model, live.job.load, slot, idle, live.job)
            if evict is None:  # busy workers hold the memory: wait for one to finish
                continue
            for s in evict:
                idle.remove(s)
            out.append(Assignment(live, _pop(idle, slot), evict))
        started = {a.live.job.id for a in out}
        last = max((queue.index(a.live) for a in out), default=-1)
        for live in queue[:last]:
            if live.job.id not in started and live.job.id not in in_line:
                live.skips += 1
        return out

    def make_room(
        self,
        model: str,
        load: Mapping[str, Any],
        slot: Slot,
        idle: Sequence[Slot],
        job: Job | None = None,
    ) -> list[Slot] | None:
        """Idle workers to unload so ``model`` (running ``job``) fits on ``slot``; None: it
        must wait."""
        if not self.max_memory:
            return []
        warm = slot.key == model_key(model, load)
        need = max(self.need(model, load, job), slot.model_bytes if warm else 0)
        used = self.used(without=slot)
        evict: list[Slot] = []
        for other in sorted(idle, key=lambda s: s.last_used):
            if used + need <= self.max_memory:
                break
            if other is not slot and other.model_bytes:
                evict.append(other)
                used -= other.model_bytes
        return evict if used + need <= self.max_memory else None

    @staticmethod
    def least_wanted(idle: Sequence[Slot], queue: Sequence[Live]) -> Slot:
        """The idle worker to give a new model: empty first, then one whose model no queued
        job wants, then the least recently used."""
        wanted = {q.key for q in queue}
        return min(idle, key=lambda s: (bool(s.key), s.key in wanted, s.last_used))


def _pop(idle: list[Slot], slot: Slot) -> Slot:
    idle.remove(slot)
    return slot
