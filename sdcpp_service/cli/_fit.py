"""``--fit`` / ``--no-fit`` / ``--max-memory`` for the commands that run the engine.

Before anything loads, the job is estimated; switches the user did not set are turned on until
it fits the budget (said in one line on stderr), or the job is refused with the smallest budget
that would work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

FitOpt = Annotated[
    bool,
    typer.Option(
        "--fit/--no-fit",
        help="Estimate memory first and turn on the switches it needs (refuse if nothing fits).",
    ),
]
MaxMemoryOpt = Annotated[
    str | None,
    typer.Option(
        "--max-memory",
        help="Memory budget for --fit: 6G, 1500M, or ram=6G,vram=4G (default: available RAM).",
    ),
]
#: Switches kept in the request; the others are load options.
_REQUEST = {"vae_tiling"}


def budget_of(max_memory: str | None) -> Any:
    from sdcpp_service.fit import Budget

    return Budget.parse(max_memory) if max_memory else Budget.available()


def apply_fit(
    model: str,
    prompt: str,
    load: dict[str, Any],
    params: dict[str, Any],
    max_memory: str | None,
) -> None:
    """Estimate the job, update ``load``/``params`` with the chosen switches, say what changed.

    Raises :class:`~sdcpp_service.errors.DoesNotFit` before anything is loaded."""
    from sdcpp_service.config import Settings
    from sdcpp_service.engine import loras as lora_mod
    from sdcpp_service.engine.pipeline import plan_model
    from sdcpp_service.fit import choose

    settings = Settings.from_env()
    components = {k: v for k, v in load.items() if k != "slot" and v not in (None, False, "", 0)}
    components.update({k: v for k, v in load.items() if v is False and k in ("t5xxl",)})
    options, info = plan_model(model, settings, load.get("slot"), **components)
    defaults = getattr(info, "defaults", None)
    shape = {k: v for k, v in params.items() if v is not None}
    for key in ("width", "height"):
        shape.setdefault(key, getattr(defaults, key, None) or 512)
    if "frames" in params:
        shape.setdefault("frames", getattr(defaults, "video_frames", None) or 33)
    dirs = [d for root in settings.model_dirs for d in (root / "loras", root / "Lora", root)]
    specs = [lora_mod.parse_spec(s) for s in params.get("loras") or []]
    shape["loras"] = lora_mod.collect(prompt, specs, dirs)[1]
    if params.get("hires_model"):
        shape["hires_model"] = str(Path(params["hires_model"]))
    choice = choose(options, shape, budget_of(max_memory))
    for name in choice.changed:
        key, _, value = name.partition("=")
        (params if key in _REQUEST else load)[key] = value or True
    if choice.changed or not choice.estimate.measured:
        typer.echo(choice.line(), err=True)
