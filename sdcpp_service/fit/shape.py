"""A job's shape as memory sees it (size, batch, frames, what it encodes, its LoRAs, hires and
upscaler), and the compute buffers each phase of it needs, from the measured table (see
:mod:`~sdcpp_service.fit.costs`). :func:`~sdcpp_service.fit.estimate.estimate` adds the weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from sdcpp_service.fit.costs import Table, decode_family
from sdcpp_service.fit.switches import Switches

#: Default VAE tile of the engine (latent pixels per side).
VAE_TILE = 32


@dataclass(frozen=True)
class UpscaleJob:
    """An ESRGAN upscale of one ``width``×``height`` image, ``tile`` pixels at a time."""

    width: int
    height: int
    tile: int = 128
    vae_tiling: bool = False


@dataclass
class Shape:
    """What of a job decides its memory (read by :func:`shape_of`)."""

    width: int
    height: int
    batch: int = 1
    frames: int = 1
    encode: bool = False
    control: bool = False
    loras: list[str] = field(default_factory=list)
    hires: tuple[int, int] | None = None
    upscaler: str = ""
    tile: int = 128
    video: bool = False
    esrgan: bool = False  # an upscale job (ESRGAN only), not a generation


_SHAPE_DEFAULTS: dict[str, Any] = {
    "batch": 1, "init_image": None, "end_image": None, "control_image": None, "loras": (),
    "hires": False, "hires_width": 0, "hires_height": 0, "hires_scale": 2.0, "hires_model": "",
}  # fmt: skip


_ENCODE_FIELDS = ("init_image", "ref_images", "hires", "hires_model", "hires_upscaler")


def shape_of(request: Any) -> Shape:
    """The shape of a request, a door's parsed fields (a mapping) or an :class:`UpscaleJob`."""
    if isinstance(request, Mapping):  # a door's parsed fields, before images are read
        request = SimpleNamespace(**{**_SHAPE_DEFAULTS, **request})
    if isinstance(request, UpscaleJob):
        return Shape(request.width, request.height, upscaler="?", tile=request.tile, esrgan=True)
    job = Shape(int(request.width), int(request.height))
    job.batch = max(1, int(getattr(request, "batch", 1) or 1))
    frames = getattr(request, "frames", None)
    if frames is not None:
        job.frames, job.video = max(1, int(frames)), True
    from sdcpp_service.engine.generate import encodes

    fields = {k: getattr(request, k, None) for k in _ENCODE_FIELDS}
    job.encode = encodes(fields) or getattr(request, "end_image", None) is not None
    job.control = getattr(request, "control_image", None) is not None
    job.loras = [lo.path for lo in getattr(request, "loras", None) or []]
    if getattr(request, "hires", False):
        w, h = request.hires_width, request.hires_height
        if not (w and h):
            w, h = int(job.width * request.hires_scale), int(job.height * request.hires_scale)
        job.hires = (w // 8 * 8, h // 8 * 8)
        job.upscaler = request.hires_model or ""
    return job


def latent(arch: str, job: Shape, size: tuple[int, int], tiling: bool) -> tuple[int, int]:
    """Latent pixels of the whole job and of what the VAE decodes at once."""
    f = 16 if arch == "wan2_2_ti2v" else 8
    lw, lh = -(-size[0] // f), -(-size[1] // f)
    lf = (job.frames - 1) // 4 + 1 if job.video else 1
    tile = min(lw, VAE_TILE) * min(lh, VAE_TILE) if tiling else lw * lh
    return lw * lh * lf, tile * lf


def pixels(job: Shape) -> int:
    w, h = job.hires or (job.width, job.height)
    if job.upscaler == "?":
        w, h = w * 4, h * 4
    return w * h * job.batch * job.frames


def compute_buffers(
    table: Table,
    family: str,
    arch: str,
    slots: Mapping[str, str],
    job: Shape,
    sw: Switches,
    notes: list[str],
) -> dict[str, dict[str, int]]:
    """Phase → component → compute-buffer bytes."""
    out: dict[str, dict[str, int]] = {}
    if job.upscaler == "?":
        tokens = min(job.tile, job.width) * min(job.tile, job.height)
        out["upscale"] = {"upscaler": cost(table, "esrgan", "esrgan", False, tokens, notes)}
        return out
    size = job.hires or (job.width, job.height)
    tokens, tile = latent(arch, job, size, sw.vae_tiling)
    fam_decode = decode_family(family)
    tae = "taesd" in slots or "taesd" in table.phase_runners(family, "decode")
    for phase, comp in (("conditioning", "text_encoders"), ("sampling", "diffusion_model")):
        runners = table.phase_runners(family, phase) or (
            ("clip",) if phase == "conditioning" else ("unet",)
        )
        costs = [cost(table, r, family, sw.flash_attn, tokens, notes) for r in runners]
        out[phase] = {comp: max(costs, default=0)}
    if job.control:
        extra = cost(table, "control_net", family, sw.flash_attn, tokens, notes)
        out["sampling"]["control_net"] = extra or out["sampling"]["diffusion_model"]
    runner = "taesd" if tae else "vae"
    out["decode"] = {"vae": cost(table, runner, fam_decode, False, tile, notes)}
    if job.upscaler:
        t = 128 * 128
        out["upscale"] = {"upscaler": cost(table, "esrgan", "esrgan", False, t, notes)}
    if job.encode:
        notes.append("the VAE encoder is counted as costing what the decoder does")
    return out


def cost(table: Table, runner: str, family: str, flash: bool, tokens: int, notes: list[str]) -> int:
    curve = table.curve(runner, family, flash)
    if curve is None:
        for fam in ("sd", "sd1", "sdxs_512_ds"):
            curve = table.curve(runner, fam, flash)
            if curve is not None:
                break
    if curve is None:
        notes.append(f"no measured {runner} buffer; counted as 0")
        return 0
    return curve.at(tokens)
