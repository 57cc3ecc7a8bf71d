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
    one_shot: bool = True,
) -> None:
    """Estimate the job, update ``load``/``params`` with the chosen switches, say what changed.
    The command runs one job per process (``one_shot``: each stage's weights freed when done).

    Raises :class:`~sdcpp_service.errors.DoesNotFit` before anything is loaded."""
    from sdcpp_service.config import Settings
    from sdcpp_service.engine import loras as lora_mod
    from sdcpp_service.errors import DoesNotFit, SdcppError
    from sdcpp_service.fit import choose
    from sdcpp_service.models.loadplan import plan_model

    settings = Settings.from_env()
    components = {k: v for k, v in load.items() if k != "slot" and v not in (None, False, "", 0)}
    components.update({k: v for k, v in load.items() if v is False and k in ("t5xxl",)})
    options, info = plan_model(model, settings, load.get("slot"), **components)
    defaults = getattr(info, "defaults", None)
    shape = {k: v for k, v in params.items() if v is not None}
    if params.get("init_image") and not (params.get("width") and params.get("height")):
        from PIL import Image

        with Image.open(params["init_image"]) as im:  # the size follows the init image
            shape.setdefault("width", im.width)
            shape.setdefault("height", im.height)
    for key in ("width", "height"):
        shape.setdefault(key, getattr(defaults, key, None) or 512)
    if "frames" in params:
        shape.setdefault("frames", getattr(defaults, "video_frames", None) or 33)
    dirs = [d for root in settings.model_dirs for d in (root / "loras", root / "Lora", root)]
    specs = [lora_mod.parse_spec(s) for s in params.get("loras") or []]
    shape["loras"] = lora_mod.collect(prompt, specs, dirs)[1]
    if params.get("hires_model"):
        shape["hires_model"] = str(Path(params["hires_model"]))
    budget = budget_of(max_memory)
    try:
        choice = choose(options, shape, budget, one_shot=one_shot)
    except DoesNotFit:
        raise
    except (SdcppError, OSError, ValueError):
        return  # a model the estimate cannot read: the load reports its own problem
    for name in choice.changed:
        key, _, value = name.partition("=")
        (params if key in _REQUEST else load)[key] = value or True
    # said when it changes something, or when a guess (unmeasured family) is above the budget
    if choice.changed or not choice.budget.fits(choice.estimate):
        typer.echo(choice.line(), err=True)


def fit_upscale(
    upscaler: str, sources: list[Path], tile: int | None, max_memory: str | None
) -> int:
    """The ESRGAN tile for these images under the budget (the largest that fits the largest
    image; said in one line when it is not 128); a ``tile`` the user set is only checked.
    Raises :class:`~sdcpp_service.errors.DoesNotFit` before anything is loaded."""
    from PIL import Image

    from sdcpp_service.fit.choose import TILES, choose_tile

    width = height = 0
    for src in sources:
        try:
            with Image.open(src) as im:  # the header only
                if im.width * im.height > width * height:
                    width, height = im.width, im.height
        except OSError:
            continue  # the image reports its own problem when it is read
    if not width:
        return tile or TILES[0]
    chosen, est = choose_tile(upscaler, width, height, budget_of(max_memory), tile)
    if tile is None and chosen != TILES[0]:
        typer.echo(
            f"fit: tile {chosen}: {est.summary()} for {width}x{height} within "
            f"{budget_of(max_memory).describe()}",
            err=True,
        )
    return chosen


def parse_size(text: str) -> tuple[int, int]:
    from sdcpp_service.errors import InvalidRequest

    w, sep, h = text.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0):
        raise InvalidRequest("size", f"'{text}' is not WIDTHxHEIGHT, e.g. 1024x1024")
    return int(w), int(h)


def plan_estimate(
    plan: Any,
    size: str,
    batch: int,
    frames: int | None,
    vae_tiling: bool,
    flash_attn: bool,
    mmap: bool,
    max_memory: str | None,
    warm: bool = False,
) -> dict[str, Any]:
    """``estimate`` (with the given switches) and ``fit`` (the choice for the budget, or the
    refusal) of a ``size`` job on ``plan``, as JSON-ready data: as ``sdcpp generate`` runs it
    (one shot), or as a warm server worker holds it (``warm``)."""
    from sdcpp_service.errors import DoesNotFit
    from sdcpp_service.fit import Switches, choose, estimate

    width, height = parse_size(size)
    shape: dict[str, Any] = {"width": width, "height": height, "batch": max(1, batch)}
    if frames is not None:
        shape["frames"] = frames
    switches = Switches(vae_tiling=vae_tiling, flash_attn=flash_attn, mmap=mmap)
    est = estimate(plan, shape, switches, warm=warm, one_shot=not warm)
    budget = budget_of(max_memory)
    out: dict[str, Any] = {"estimate": est.to_dict()}
    try:
        choice = choose(plan, shape, budget, base=switches, warm=warm, one_shot=not warm)
        out["fit"] = {**choice.to_dict(), "fits": True}
    except DoesNotFit as exc:
        out["fit"] = {"fits": False, "error": str(exc), "needed_bytes": exc.needed_bytes,
                      "budget_bytes": exc.budget_bytes}  # fmt: skip
    return out


def estimate_lines(data: dict[str, Any]) -> list[str]:
    """The estimate as a small table: phase, RAM (device), and its biggest parts."""
    est = data["estimate"]
    gb = 2**30
    lines = [f"estimate: peak RAM {est['peak_ram_bytes'] / gb:.2f} GiB in {est['peak_phase']}"
             + (f", device {est['peak_device_bytes'] / gb:.2f} GiB"
                if est["peak_device_bytes"] else "")]  # fmt: skip
    for phase, parts in est["phases"].items():
        ram = sum(parts["ram"].values())
        top = sorted(parts["ram"].items(), key=lambda kv: -kv[1])[:4]
        detail = ", ".join(f"{k} {v / gb:.2f}" for k, v in top)
        lines.append(f"  {phase:<13} {ram / gb:6.2f} GiB  ({detail})")
    lines += [f"  note: {n}" for n in est["notes"]]
    fit = data["fit"]
    if fit["fits"]:
        changed = ", ".join(fit["changed"]) or "no switch needed"
        lines.append(f"fit: {changed} (budget {fit['budget']['ram_bytes'] / gb:.2f} GiB RAM)")
    else:
        lines.append(f"fit: {fit['error']}")
    return lines
