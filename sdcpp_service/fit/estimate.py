"""``estimate(plan, request, switches) -> Estimate``: a job's peak memory, before it runs.

Peak RSS = the process's runtime + every weight the engine holds (from the headers, see
:mod:`~sdcpp_service.fit.weights`) + the largest phase's compute buffers (from the measured
table, see :mod:`~sdcpp_service.fit.costs`) + the decoded images. The engine frees each
runner's compute buffer when its phase ends, so phases do not add up; ``mmap`` maps each file
whole while loading, and those pages count too. On a GPU build weights and buffers of the
components on the device are counted as device memory instead (``*_on_cpu`` keep one on the
CPU; ``offload_to_cpu`` keeps weights in RAM and copies the running one over).

A one-shot run (``sdcpp generate``, ``Pipeline.load(one_shot=True)``: the engine's
``free_params_immediately``) frees each component's weights once its last phase is over
(:data:`HELD_ONE_SHOT`), and one that encodes nothing skips the VAE encoder's weights
(``vae_decode_only``); a warm process (a server worker) holds every weight in every phase.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdcpp_service.fit.costs import Table, default_table
from sdcpp_service.fit.shape import compute_buffers, pixels, shape_of
from sdcpp_service.fit.switches import Switches
from sdcpp_service.fit.weights import file_weights, sum_components
from sdcpp_service.models.assemble import LoadPlan
from sdcpp_service.types import LoadOptions

PHASES = ("load", "conditioning", "sampling", "decode", "upscale")
#: Which component runs in each phase.
ACTIVE = {"conditioning": "text_encoders", "sampling": "diffusion_model", "decode": "vae",
          "upscale": "upscaler"}  # fmt: skip
#: glibc's largest dynamic mmap threshold (64-bit): once a freed buffer raised the threshold,
#: buffers up to this size come from the heap and stay in the process when freed, so from the
#: second image of a batch (or job of a warm process) on, small buffers of other phases remain
#: (in a fresh process only those of the phases already run: a later phase allocated nothing).
HEAP_KEEP = 32 * 2**20
#: One-shot: the components whose weights are still held in each phase. The engine frees the
#: text encoders after conditioning, the diffusion model (with its LoRAs and ControlNet) after
#: sampling (after the hires pass, which runs the upscaler between two samplings), the VAE after
#: decoding; a hires upscaler is loaded for the hires pass only.
HELD_ONE_SHOT: dict[str, frozenset[str]] = {
    "load": frozenset({"text_encoders", "diffusion_model", "vae", "control_net", "loras", "other"}),
    "conditioning": frozenset(
        {"text_encoders", "diffusion_model", "vae", "control_net", "loras", "other"}
    ),
    "sampling": frozenset({"diffusion_model", "vae", "control_net", "loras"}),
    "decode": frozenset({"vae"}),
    "upscale": frozenset({"diffusion_model", "vae", "control_net", "loras", "upscaler"}),
}
_ON_CPU = {"text_encoders": "clip_on_cpu", "vae": "vae_on_cpu", "control_net": "control_net_on_cpu"}


@dataclass(frozen=True)
class Estimate:
    """Peak memory of one job. ``ram[phase][part]`` and ``device[phase][part]`` are bytes per
    component (weights, plus its compute buffer in the phase it runs) and per extra part
    (``runtime``, ``images``, ``mapped``)."""

    peak_ram_bytes: int
    peak_device_bytes: int
    peak_phase: str
    ram: Mapping[str, Mapping[str, int]]
    device: Mapping[str, Mapping[str, int]]
    weights: Mapping[str, int]
    switches: Switches
    backend: str = "cpu"
    measured: bool = True
    notes: tuple[str, ...] = ()
    one_shot: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "peak_ram_bytes": self.peak_ram_bytes,
            "peak_device_bytes": self.peak_device_bytes,
            "peak_phase": self.peak_phase,
            "backend": self.backend,
            "weights": dict(self.weights),
            "phases": {
                p: {"ram": dict(self.ram[p]), "device": dict(self.device.get(p, {}))}
                for p in self.ram
            },  # fmt: skip
            "switches": self.switches.to_dict(),
            "measured": self.measured,
            "one_shot": self.one_shot,
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        text = f"peak RAM {gb(self.peak_ram_bytes)} ({self.peak_phase})"
        if self.peak_device_bytes:
            text += f", {self.backend} memory {gb(self.peak_device_bytes)}"
        return text


def gb(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _slots(plan: LoadPlan | LoadOptions | Mapping[str, str]) -> tuple[dict[str, str], str, str]:
    """slot → path, the main model's arch, and the plan's wtype."""
    from sdcpp_service.models import inspect

    wtype = "default"
    if isinstance(plan, LoadPlan):
        slots = {k.removesuffix("_path"): v for k, v in plan.slots.items()}
        return slots, str(plan.info.arch), wtype
    if isinstance(plan, LoadOptions):
        slots, wtype = plan.components(), plan.wtype
    else:
        slots = {k.removesuffix("_path"): str(v) for k, v in plan.items()}
    main = slots.get("model") or slots.get("diffusion_model") or slots.get("upscaler", "")
    arch = "esrgan" if main == slots.get("upscaler") else str(inspect(Path(main)).arch)
    return slots, arch, wtype


def estimate(
    plan: LoadPlan | LoadOptions | Mapping[str, str],
    request: Any,
    switches: Switches | None = None,
    *,
    backend: str = "cpu",
    warm: bool = False,
    one_shot: bool = False,
    table: Table | None = None,
) -> Estimate:
    """Predict a job's peak RAM and device memory, split by phase and component.

    ``plan`` is a :class:`~sdcpp_service.models.LoadPlan`, the :class:`LoadOptions` of a
    pipeline, or a slot → path mapping; ``request`` a ``GenerateRequest``, ``VideoRequest``
    or :class:`~sdcpp_service.fit.shape.UpscaleJob`; ``switches`` default to those of ``plan``
    and ``request``;
    ``warm``: the process has run a job before (a server worker), see :data:`HEAP_KEEP`;
    ``one_shot``: the context serves this one job and frees each stage's weights when it is
    done (``sdcpp generate``), see :data:`HELD_ONE_SHOT`.
    """
    table = table or default_table()
    slots, arch, wtype = _slots(plan)
    if switches is None:
        switches = Switches.of(plan if isinstance(plan, LoadOptions) else None, request)
    wtype = switches.wtype if switches.wtype != "default" else wtype
    job = shape_of(request)
    wt = None if wtype in ("", "default") else wtype
    files = [file_weights(p, s, wt) for s, p in slots.items() if s != "upscaler" or job.upscaler]
    if job.upscaler and job.upscaler != "?" and "upscaler" not in slots:
        files.append(file_weights(job.upscaler, "upscaler"))
    lora_files = [file_weights(p, "lora") for p in job.loras]
    weights = sum_components([f.components for f in files])
    one_shot = one_shot and not warm and not job.esrgan
    if one_shot and not (job.encode or job.video) and weights.get("vae"):
        weights["vae"] -= sum(f.vae_encoder for f in files)  # vae_decode_only, as sd-cli
    if lora_files:
        weights["loras"] = sum(sum(f.components.values()) for f in lora_files)
    notes: list[str] = []
    family, measured = table.family(arch)
    if not measured:
        notes.append(f"no measured compute costs for {arch}; {family}'s were used (a guess)")
    gpu = backend != "cpu"
    if gpu:
        notes.append(f"{backend} figures use the CPU-measured buffer sizes")
    compute = compute_buffers(table, family, arch, slots, job, switches, notes)

    def on_device(comp: str) -> bool:
        if not gpu:
            return False
        flag = _ON_CPU.get("vae" if comp == "vae" else comp)
        return not (flag and getattr(switches, flag))

    ram: dict[str, dict[str, int]] = {}
    device: dict[str, dict[str, int]] = {}
    images = int(table.per_pixel_bytes * pixels(job))
    for phase in PHASES:
        if phase not in compute and phase != "load":
            continue
        runtime = table.upscale_runtime_bytes if job.esrgan else 0
        r: dict[str, int] = {"runtime": runtime or table.runtime_bytes}
        d: dict[str, int] = {}
        active = ACTIVE.get(phase)
        for comp, size in weights.items():
            if one_shot and comp not in HELD_ONE_SHOT[phase]:
                continue  # freed after its last phase, or not loaded yet
            held = "diffusion_model" if comp in ("loras", "control_net") else comp
            dev = on_device(held) and not switches.offload_to_cpu
            (d if dev else r)[comp] = size
            if switches.offload_to_cpu and on_device(held) and held == active:
                d[comp] = size
        for comp, size in compute.get(phase, {}).items():
            target = d if on_device(comp) else r
            target[comp] = target.get(comp, 0) + size
        if warm or job.batch > 1 or job.frames > 1:
            before = PHASES[: PHASES.index(phase)]
            kept = [
                size
                for other, parts in compute.items()
                if other != phase and (warm or other in before)
                for comp, size in parts.items()
                if size <= HEAP_KEEP and not on_device(comp)
            ]
            if kept and phase != "load":
                r["heap"] = sum(kept)
        if phase == "load" and switches.mmap:
            r["mapped"] = sum(f.file_bytes for f in files)
        if phase in ("decode", "upscale"):
            r["images"] = images
        ram[phase], device[phase] = r, d
    peak_phase = max(ram, key=lambda p: sum(ram[p].values()))
    return Estimate(
        peak_ram_bytes=sum(ram[peak_phase].values()),
        peak_device_bytes=max((sum(v.values()) for v in device.values()), default=0),
        peak_phase=peak_phase,
        ram=ram,
        device=device if gpu else {},
        weights=weights,
        switches=switches,
        backend=backend,
        measured=measured,
        notes=tuple(notes),
        one_shot=one_shot,
    )
