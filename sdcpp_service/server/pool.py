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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdcpp_service.engine.base import PIPELINE_KINDS, Engine
from sdcpp_service.engine.images import TRANSPORT_PNG_LEVEL
from sdcpp_service.errors import InvalidRequest
from sdcpp_service.server.slot import Slot, default_budget, files_size, gb, model_key
from sdcpp_service.server.worker import Worker

if TYPE_CHECKING:
    from sdcpp_service.server.jobs import Job
    from sdcpp_service.server.scheduler import Live


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
