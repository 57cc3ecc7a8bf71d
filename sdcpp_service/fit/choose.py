"""``choose(plan, request, budget)``: the fastest switches whose estimate fits a memory budget.

Every combination of the switches the caller left free is estimated; the cheapest (by the
rough time costs in :data:`~sdcpp_service.fit.switches.CANDIDATES`) that fits wins. Asked to
(``quantize=True``), a weight type converted at load (q8_0, then q4_0) is tried after the
switches alone fail. Nothing fits: :class:`~sdcpp_service.errors.DoesNotFit`, naming the
smallest budget that would work and how it is reached.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sdcpp_service.errors import DoesNotFit, InvalidRequest
from sdcpp_service.fit.costs import Table
from sdcpp_service.fit.estimate import Estimate, estimate, gb
from sdcpp_service.fit.switches import CANDIDATES, DEVICE_ONLY, QUANT_STEPS, Switches
from sdcpp_service.models.assemble import LoadPlan
from sdcpp_service.types import LoadOptions

#: Kept free of the budget the machine reports: the estimate's error and everything else.
MARGIN = 0.10
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


@dataclass(frozen=True)
class Budget:
    """Bytes a job may use: ``ram_bytes`` always, ``device_bytes`` on a GPU (None: unchecked)."""

    ram_bytes: int
    device_bytes: int | None = None
    source: str = "--max-memory"

    @classmethod
    def available(cls, margin: float = MARGIN) -> Budget:
        """The machine's available RAM (``MemAvailable``) less ``margin``."""
        free = _meminfo_available()
        return cls(int(free * (1 - margin)), None, "available RAM less 10 %")

    @classmethod
    def parse(cls, text: str, field: str = "max_memory") -> Budget:
        """``6G``, ``6144M``, ``1.5GB`` (RAM) or ``ram=6G,vram=4G``."""
        ram: int | None = None
        device: int | None = None
        for part in text.replace(" ", "").split(","):
            name, _, value = part.rpartition("=")
            if name in ("", "ram"):
                ram = parse_bytes(value, field)
            elif name in ("vram", "device"):
                device = parse_bytes(value, field)
            else:
                raise InvalidRequest(field, f"'{part}': use SIZE or ram=SIZE,vram=SIZE")
        if ram is None:
            ram = int(Budget.available().ram_bytes)
        return cls(ram, device, "--max-memory")

    def describe(self) -> str:
        dev = f", device {gb(self.device_bytes)}" if self.device_bytes is not None else ""
        return f"{gb(self.ram_bytes)} RAM{dev} ({self.source})"

    def fits(self, est: Estimate) -> bool:
        if est.peak_ram_bytes > self.ram_bytes:
            return False
        return self.device_bytes is None or est.peak_device_bytes <= self.device_bytes


def parse_bytes(text: str, field: str = "max_memory") -> int:
    """``6G`` / ``6GB`` / ``6GiB`` / ``512M`` / ``1e9`` → bytes (binary units)."""
    raw = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = raw[-1:] if raw[-1:] in _UNITS and not raw[-1:].isdigit() else ""
    try:
        value = float(raw[: len(raw) - len(unit)] if unit else raw)
    except ValueError:
        raise InvalidRequest(field, f"'{text}' is not a size (e.g. 6G, 1500M)") from None
    if value <= 0:
        raise InvalidRequest(field, f"'{text}' must be more than 0")
    return int(value * _UNITS[unit])


def _meminfo(key: str) -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _meminfo_available() -> int:
    found = _meminfo("MemAvailable")
    if found is not None:
        return found
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def total_ram() -> int:
    """This machine's physical RAM in bytes."""
    found = _meminfo("MemTotal")
    if found is not None:
        return found
    return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


@dataclass(frozen=True)
class Choice:
    """The switches chosen, their estimate, and which switches the choice turned on."""

    switches: Switches
    estimate: Estimate
    changed: tuple[str, ...]
    budget: Budget

    def line(self) -> str:
        """One line for the user: what was chosen and why."""
        fit = f"{self.estimate.summary()} within {self.budget.describe()}"
        if not self.budget.fits(self.estimate):
            fit = f"{self.estimate.summary()}, a guess above {self.budget.describe()}"
        if not self.changed:
            return f"fit: defaults fit: {fit}"
        return f"fit: turned on {', '.join(self.changed)}: {fit}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "switches": self.switches.to_dict(),
            "changed": list(self.changed),
            "estimate": self.estimate.to_dict(),
            "budget": {"ram_bytes": self.budget.ram_bytes,
                       "device_bytes": self.budget.device_bytes},
        }  # fmt: skip


def choose(
    plan: LoadPlan | LoadOptions | Mapping[str, str],
    request: Any,
    budget: Budget | None = None,
    *,
    fixed: Mapping[str, Any] | None = None,
    base: Switches | None = None,
    quantize: bool = False,
    backend: str = "cpu",
    warm: bool = False,
    one_shot: bool = False,
    table: Table | None = None,
) -> Choice:
    """The fastest switches that fit ``budget`` (default: available RAM less a margin).

    ``base`` are the job's switches (default: read from ``plan`` and ``request``); names in
    ``fixed`` were set by the user and are never changed; ``warm``/``one_shot`` say how the
    process holds its weights (see :func:`~sdcpp_service.fit.estimate`). Raises
    :class:`DoesNotFit`.
    """
    budget = budget or Budget.available()
    if base is None:
        base = Switches.of(plan if isinstance(plan, LoadOptions) else None, request)
    fixed = dict(fixed or {})
    if fixed:
        base = dataclasses.replace(base, **fixed)
    free = [(n, c) for n, c in CANDIDATES if n not in fixed and not getattr(base, n)]
    if backend == "cpu":
        free = [(n, c) for n, c in free if n not in DEVICE_ONLY]
    types = [("default", 0)]
    if quantize and "wtype" not in fixed and base.wtype == "default":
        types += list(QUANT_STEPS)
    combos: list[tuple[int, int, Switches, tuple[str, ...]]] = []
    for wtype, wcost in types:
        for k in range(len(free) + 1):
            for subset in itertools.combinations(free, k):
                names = tuple(n for n, _ in subset)
                sw = dataclasses.replace(base, wtype=wtype, **dict.fromkeys(names, True))
                changed = names + ((f"wtype={wtype}",) if wtype != "default" else ())
                combos.append((wcost + sum(c for _, c in subset), k, sw, changed))
    combos.sort(key=lambda c: (c[0], c[1]))
    best: Choice | None = None
    for _, _, sw, changed in combos:
        est = estimate(
            plan, request, sw, backend=backend, warm=warm, one_shot=one_shot, table=table
        )
        if budget.fits(est):
            return Choice(sw, est, changed, budget)
        if best is None or _need(est) < _need(best.estimate):
            best = Choice(sw, est, changed, budget)
    assert best is not None  # combos always holds the base switches
    if not best.estimate.measured and _weights_fit(best.estimate, budget):
        return best  # only the guessed buffers exceed it: run with the least memory, not refuse
    raise _refusal(best.estimate, budget, quantize, _main(plan))


def _main(plan: LoadPlan | LoadOptions | Mapping[str, str]) -> str:
    if isinstance(plan, LoadPlan):
        return str(plan.info.path)
    if isinstance(plan, LoadOptions):
        return plan.main_path
    return str(plan.get("model") or plan.get("diffusion_model") or "MODEL")


def _weights_fit(est: Estimate, budget: Budget) -> bool:
    """Whether the certain part (runtime and weights, from the headers) fits the budget."""
    load = est.ram.get("load", {})
    return sum(load.values()) - load.get("mapped", 0) <= budget.ram_bytes


def _need(est: Estimate) -> tuple[int, int]:
    return est.peak_ram_bytes, est.peak_device_bytes


def _refusal(best: Estimate, budget: Budget, quantized: bool, model: str) -> DoesNotFit:
    on = best.switches.on()
    how = f" with {', '.join(on)}" if on else ""
    device = budget.device_bytes is not None and best.peak_device_bytes > budget.device_bytes
    need = best.peak_device_bytes if device else best.peak_ram_bytes
    have = budget.device_bytes if device and budget.device_bytes is not None else budget.ram_bytes
    what = "device memory" if device else "RAM"
    hint = "; try a smaller size"
    if not quantized and best.switches.wtype == "default":
        hint += f", or a quantized model (sdcpp convert {model} --type q4_0)"
    message = (
        f"needs at least {gb(need)} of {what}{how} (estimated); the budget is {gb(have)} "
        f"({budget.source}){hint}"
    )
    return DoesNotFit(message, budget_bytes=have, needed_bytes=need, estimate=best.to_dict())


#: ESRGAN tile sizes an upscale may drop to, largest (fastest) first.
TILES = (128, 96, 64, 48, 32)


def choose_tile(
    upscaler: str, width: int, height: int, budget: Budget, tile: int | None = None
) -> tuple[int, Estimate]:
    """The largest ESRGAN tile (from ``tile``, else 128, down to 32) whose upscale of a
    ``width``×``height`` image fits ``budget``; a fixed ``tile`` is only checked. Raises
    :class:`DoesNotFit` naming the smallest budget that would work."""
    from sdcpp_service.fit.shape import UpscaleJob

    tiles = [tile] if tile else list(TILES)
    best: Estimate | None = None
    for size in tiles:
        est = estimate({"upscaler": upscaler}, UpscaleJob(width, height, size))
        if budget.fits(est):
            return size, est
        best = est
    assert best is not None  # tiles is never empty
    hint = "; try a smaller image" + ("" if tile is None else " or a smaller --tile")
    message = (
        f"needs at least {gb(best.peak_ram_bytes)} of RAM (estimated, tile {tiles[-1]}); the "
        f"budget is {gb(budget.ram_bytes)} ({budget.source}){hint}"
    )
    raise DoesNotFit(message, budget_bytes=budget.ram_bytes, needed_bytes=best.peak_ram_bytes,
                     estimate=best.to_dict())  # fmt: skip
