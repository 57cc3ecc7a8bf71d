"""Video on a loaded Pipeline: the request, the run, the infotext (the one-shot library call
``generate_video("a fox running", "wan2.1_t2v_1.3B")`` is :mod:`~sdcpp_service.engine.oneshot`).

Assembly is the model planner's (:func:`~sdcpp_service.models.loadplan.plan_model`): a Wan
model gets its Wan VAE (2.1, or 2.2 for TI2V 5B), the umT5-XXL text encoder, and CLIP vision H
for the Wan2.1 image-conditioned models; a Wan2.2 A14B pair is the low-noise model as ``model``
plus ``high_noise_diffusion_model``. ``t5xxl=False`` runs without a text encoder (the engine feeds
zeros; the prompt is then ignored). Checks, the C request and the engine call live in
:mod:`sdcpp_service.engine.videogen`; encoding in :mod:`sdcpp_service.engine.videofile`.
"""

from __future__ import annotations

import dataclasses
import random
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from sdcpp_service._version import __version__
from sdcpp_service.engine import names
from sdcpp_service.engine.images import infotext, load_image, lora_hashes
from sdcpp_service.engine.videofile import check_target, save_video, video_target
from sdcpp_service.engine.videogen import check_high_noise, generate, validate
from sdcpp_service.errors import InvalidImage, InvalidRequest
from sdcpp_service.rules import MAX_SEED, family_of
from sdcpp_service.types import LoadOptions, ProgressCallback, VideoRequest, VideoResult

if TYPE_CHECKING:
    from sdcpp_service.engine.pipeline import Pipeline

ImageInput = str | Path | bytes | Image.Image
_REQUEST_FIELDS = {f.name for f in dataclasses.fields(VideoRequest)}
_LOAD_FIELDS = {f.name for f in dataclasses.fields(LoadOptions)} | {"slot"}
#: Friendly aliases accepted by ``video_request`` / ``generate_video``.
_ALIASES = {
    "negative": "negative_prompt",
    "cfg": "cfg_scale",
    "video_frames": "frames",
    "high_noise_cfg": "high_noise_cfg_scale",
    "high_noise_model": "high_noise_diffusion_model",
}
#: Request fields where None is meaningful (engine default), not "unset".
_NULLABLE = {"eta", "flow_shift", "sampler", "scheduler", "high_noise_steps"}
_FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def load_frames(source: str | Path | Sequence[ImageInput], field: str) -> list[Image.Image]:
    """Frames from a folder (image files in natural name order) or a sequence of images."""
    if isinstance(source, str | Path):
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise InvalidImage(field, f"'{source}' is not a folder of frames", str(source))
        files = [p for p in folder.iterdir() if p.suffix.lower() in _FRAME_SUFFIXES]
        key = lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]  # noqa: E731
        items: Sequence[ImageInput] = sorted(files, key=key)
        if not items:
            raise InvalidImage(field, f"no image files in '{source}'", str(source))
    else:
        items = source
    return [load_image(item, field, "RGB") for item in items]


def video_request(pipe: Pipeline, prompt: str, **params: Any) -> VideoRequest:
    """A :class:`VideoRequest` from friendly arguments; unset values get the model's defaults."""
    values: dict[str, Any] = {}
    for key, value in params.items():
        key = _ALIASES.get(key, key)
        if key not in _REQUEST_FIELDS:
            raise InvalidRequest(key, "not a video generation parameter")
        values[key] = value
    info = pipe.model_info()
    family = family_of(info)
    defaults = info.defaults
    fallback = {
        "width": getattr(defaults, "width", None),
        "height": getattr(defaults, "height", None),
        "steps": getattr(defaults, "steps", None),
        "cfg_scale": getattr(defaults, "cfg_scale", None),
        "sampler": getattr(defaults, "sampler", None),
        "frames": getattr(defaults, "video_frames", None),
        "fps": family.fps,
    }
    for key, value in fallback.items():
        if values.get(key) is None and value is not None:
            values[key] = value
    values = {k: v for k, v in values.items() if v is not None or k in _NULLABLE}
    for key in ("init_image", "end_image"):
        if values.get(key) is not None:
            values[key] = load_image(values[key], key, "RGB")
    frames = values.get("control_frames")
    values["control_frames"] = load_frames(frames, "control_frames") if frames else []
    specs: Sequence[Any] = values.pop("loras", None) or []
    from sdcpp_service.engine import loras as lora_mod

    pairs = [
        lora_mod.parse_spec(s) if isinstance(s, str) else (str(s[0]), float(s[1])) for s in specs
    ]
    clean, items = lora_mod.collect(prompt, pairs, pipe.lora_dirs())
    pipe.check_loras(items)
    return VideoRequest(prompt=clean, loras=items, **values)


def run_video(
    pipe: Pipeline, req: VideoRequest, progress: ProgressCallback | None = None
) -> VideoResult:
    """Generate ``req`` on ``pipe``; frame 0 carries ``info["parameters"]`` and ``["sdcpp"]``."""
    t_start = time.perf_counter()
    info = pipe.model_info()
    family = family_of(info)
    check_high_noise(pipe.options, info)
    validate(pipe, family, req)
    seed = req.seed if req.seed >= 0 else random.randint(0, MAX_SEED)
    frames, native_seconds, resolved = generate(pipe, req, seed, progress)
    used: dict[str, Any] = {
        **req.summary(),
        **resolved,
        "seed": seed,
        "frames_out": len(frames),
        "model": pipe.options.main_path,
        "family": family.label,
    }
    if pipe.options.high_noise_diffusion_model:
        used["high_noise_model"] = pipe.options.high_noise_diffusion_model
    text = video_infotext(pipe, req, used, frames[0].size, len(frames))
    frames[0].info["parameters"], frames[0].info["sdcpp"] = text, used
    total = time.perf_counter() - t_start
    timings = {"engine": native_seconds, "total": total, "overhead": total - native_seconds}
    return VideoResult(frames, seed, req.fps, used, timings, text)


def video_infotext(
    pipe: Pipeline, req: VideoRequest, used: dict[str, Any], size: tuple[int, int], count: int
) -> str:
    """A1111-style infotext for a video (its ``Size`` is one frame's; ``Frames``/``FPS`` added)."""
    main = pipe.options.main_path
    fields: dict[str, Any] = {
        "Steps": req.steps,
        "Sampler": names.sampler_label(used["sampler"]),
        "Schedule type": names.scheduler_label(used["scheduler"]),
        "CFG scale": req.cfg_scale,
        "Seed": used["seed"],
        "Size": f"{size[0]}x{size[1]}",
        "Frames": count,
        "FPS": f"{req.fps:g}",
        "Flow shift": req.flow_shift,
        "Model hash": pipe.short_hash(main),
        "Model": Path(main).stem,
    }
    high = pipe.options.high_noise_diffusion_model
    if high:
        fields["High noise model"] = Path(high).stem
        fields["High noise model hash"] = pipe.short_hash(high)
        fields["High noise steps"] = req.high_noise_steps or "auto"
        fields["High noise CFG scale"] = req.high_noise_cfg_scale
    for key, image in (("Init image", req.init_image), ("End image", req.end_image)):
        if image is not None:
            fields[key] = f"{image.width}x{image.height}"
    if req.control_frames:
        fields["Control frames"] = len(req.control_frames)
        fields["VACE strength"] = req.vace_strength
    if req.loras:
        fields["Lora hashes"] = lora_hashes(
            [(Path(lo.path).stem, pipe.short_hash(lo.path)) for lo in req.loras]
        )
    fields["Version"] = f"sdcpp-service {__version__}"
    return infotext(req.prompt, req.negative_prompt, fields)


def render_video(
    pipe: Pipeline,
    prompt: str,
    output: str | Path | None = None,
    *,
    force: bool = False,
    progress: ProgressCallback | None = None,
    **params: Any,
) -> VideoResult:
    """Request, generate and (with ``output``) write: the one call every door makes on a loaded
    pipeline. The output is checked before the engine runs; ``result.paths`` lists the files."""
    request = video_request(pipe, prompt, **params)
    if output is not None:
        check_target(video_target(output), request.frames, force)
    result = run_video(pipe, request, progress)
    if output is not None:
        result.paths = save_video(
            result.frames, output, result.fps, result.infotext, result.params, force=force
        )
    return result
