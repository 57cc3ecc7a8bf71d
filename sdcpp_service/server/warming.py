"""Model load and unload requests (``POST /api/v1/models/load``, A1111's checkpoint option,
the preloads): on a worker that has the model, else the least wanted idle one, making room in
the memory budget first; between that worker's jobs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sdcpp_service.errors import SdcppError
from sdcpp_service.server.slot import Slot, model_key

if TYPE_CHECKING:
    from sdcpp_service.server.scheduler import Scheduler


async def load_model(sched: Scheduler, model: str, load: dict[str, Any]) -> dict[str, Any]:
    """Warm ``model`` on a worker (one that has it, else the least wanted idle one)."""
    sched.pool.check_fits(model, load)
    key = model_key(model, load)
    evict: list[Slot] = []

    def pick() -> Slot | None:
        holding = sched.pool.holding(key)
        if holding:
            return next((h for h in holding if h.idle), None)
        idle = [x for x in sched.pool.slots if x.idle]
        if not idle:
            return None
        slot = sched.pool.least_wanted(idle, sched.queue)
        room = sched.pool.make_room(model, load, slot, idle)
        if room is None:
            return None
        for other in room:
            other.busy = "unload"
        evict[:] = room
        return slot

    slot = await sched.acquire(pick, "load")
    try:
        for other in evict:
            await sched.unload_slot(other)
        await slot.worker.ensure()
        try:
            reply = await slot.worker.call("load", model, load)
        except SdcppError:
            slot.sync(slot.worker.engine_state)
            raise
        except Exception:
            slot.forget()
            raise
        slot.sync(slot.worker.engine_state)
        return {**reply, "worker": slot.index}
    finally:
        sched.release(slot)


async def unload_models(sched: Scheduler) -> None:
    """Free every worker's model (each once it is idle)."""
    for slot in sched.pool.slots:
        if not slot.key:
            continue
        await sched.acquire(_when_idle(slot), "unload")
        await sched.unload_slot(slot)


def _when_idle(slot: Slot) -> Callable[[], Slot | None]:
    return lambda: slot if slot.idle else None
