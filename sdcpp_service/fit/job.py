"""Fit a queued job (the server's view: kind, model path, parameters, component overrides).

:func:`fit_job` is what the server calls at submission and what a worker pool can call to
learn a job's footprint: it estimates the job on a warm process, turns on the switches the job
did not set until it fits, and raises :class:`~sdcpp_service.errors.DoesNotFit` (→ 422)
when nothing does, before anything is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from sdcpp_service.config import Settings
from sdcpp_service.errors import DoesNotFit, SdcppError
from sdcpp_service.fit.choose import Budget, Choice, choose, total_ram
from sdcpp_service.fit.shape import UpscaleJob
from sdcpp_service.fit.switches import REQUEST_SWITCHES, Switches

#: Load-option switches a queued job may carry in its ``load`` mapping.
_LOAD_SWITCHES = ("flash_attn",)


def server_budget(max_memory_bytes: int = 0) -> Budget:
    """``sdcpp serve --max-memory`` (bytes), else 90 % of this machine's RAM (the server's own
    warm models already hold part of what is "available", so that is not the measure)."""
    if max_memory_bytes > 0:
        return Budget(max_memory_bytes, None, "sdcpp serve --max-memory")
    return Budget(int(total_ram() * 0.9), None, "this machine's RAM less 10 %")


def job_plan(
    kind: str,
    model: str,
    params: Mapping[str, Any],
    load: Mapping[str, Any],
    settings: Settings,
    has_init: bool = False,
) -> tuple[Any, Any, Switches]:
    """(plan, request shape, switches) of a queued job, for :func:`~sdcpp_service.fit.estimate`."""
    from sdcpp_service.engine import loras as lora_mod
    from sdcpp_service.models import plan

    if kind == "upscale":
        job = UpscaleJob(int(params["width"]), int(params["height"]), int(params.get("tile", 128)))
        return {"upscaler": model}, job, Switches()
    overrides = {k: (None if v is False else v) for k, v in load.items()
                 if k not in _LOAD_SWITCHES}  # fmt: skip
    load_plan = plan(model, overrides, settings)
    shape: dict[str, Any] = {
        k: params[k]
        for k in ("width", "height", "batch", "frames", "hires", "hires_width", "hires_height",
                  "hires_scale", "hires_model")
        if params.get(k) is not None
    }  # fmt: skip
    defaults = load_plan.info.defaults
    for key in ("width", "height"):
        shape.setdefault(key, getattr(defaults, key, None) or 512)
    if kind == "video":
        shape.setdefault("frames", getattr(defaults, "video_frames", None) or 33)
    if has_init or kind in ("img2img", "inpaint"):
        shape["init_image"] = True
    dirs = [d for root in settings.model_dirs for d in (root / "loras", root / "Lora", root)]
    pairs = [(str(n), float(w)) for n, w in params.get("loras") or []]
    shape["loras"] = lora_mod.collect(str(params.get("prompt", "")), pairs, dirs)[1]
    switches = Switches(
        flash_attn=bool(load.get("flash_attn")), vae_tiling=bool(params.get("vae_tiling"))
    )
    return load_plan, shape, switches


def fit_job(
    kind: str,
    model: str,
    params: MutableMapping[str, Any],
    load: MutableMapping[str, Any],
    settings: Settings,
    budget: Budget,
    has_init: bool = False,
) -> Choice | None:
    """Choose switches for a queued job in place (``params``/``load``), or raise DoesNotFit.

    Returns None when the job cannot be estimated here (a model problem the worker reports)."""
    if not model or not Path(model).exists():
        return None
    try:
        plan, shape, switches = job_plan(kind, model, params, load, settings, has_init)
    except DoesNotFit:
        raise
    except SdcppError:
        return None  # the worker reports the model's own problem, with its message
    choice = choose(plan, shape, budget, base=switches, warm=True)
    for name in choice.changed:
        if name in REQUEST_SWITCHES:
            params[name] = True
        elif name in _LOAD_SWITCHES:
            load[name] = True
    return choice


def estimate_view(
    kind: str,
    model: str,
    params: Mapping[str, Any],
    load: Mapping[str, Any],
    settings: Settings,
    max_memory_bytes: int,
    has_init: bool,
    asked: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``POST /api/v1/estimate`` answer for a prepared (already fitted) job."""
    from sdcpp_service.fit.estimate import estimate

    budget = server_budget(max_memory_bytes)
    out: dict[str, Any] = {"fits": True, "budget_bytes": budget.ram_bytes}
    try:
        plan, shape, switches = job_plan(kind, model, params, load, settings, has_init)
        est = estimate(plan, shape, switches, warm=True)
    except (SdcppError, KeyError, ValueError, OSError) as exc:  # e.g. an upscale's size is in
        return {**out, "fits": None, "message": f"cannot estimate: {exc}"}  # its image
    changed = [n for n in ("flash_attn", "vae_tiling") if getattr(switches, n) and not asked.get(n)]
    return {**out, "switches": switches.to_dict(), "changed": changed, "estimate": est.to_dict()}
