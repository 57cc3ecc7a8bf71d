"""The engine the server talks to: a small protocol, a fake for fast tests, and the real one.

An :class:`Engine` lives in the worker process (``server/worker.py``); the server never calls it
directly. Everything crossing the process boundary is plain picklable data: a :class:`JobSpec`
in, a :class:`~sdcpp_service.types.GenerateResult` out (the worker writes the images to disk).
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from sdcpp_service.config import Settings
from sdcpp_service.errors import EngineError, InvalidRequest
from sdcpp_service.types import GenerateResult, Progress, ProgressCallback

#: Upscaler keyword arguments the ``upscale`` kind takes (the rest of ``params`` is ignored).
UPSCALE_FIELDS = ("image", "scale", "tile", "upscaler")
#: Fields of a ``video`` job that are not VideoRequest fields.
VIDEO_ONLY = ("format",)

#: Job kinds and the inputs each one needs (checked at submission, before queueing).
JOB_KINDS: dict[str, tuple[str, ...]] = {
    "txt2img": (),
    "img2img": ("init_image",),
    "inpaint": ("init_image", "mask"),
    "controlnet": ("control_image",),
    "edit": ("ref_images",),
    "upscale": ("image",),
    "video": (),
}

#: Kinds that generate on the warm Pipeline (the others leave the loaded model alone).
PIPELINE_KINDS = ("txt2img", "img2img", "inpaint", "controlnet", "edit", "video")

#: Built-in (PIL) upscalers of the ``upscale`` kind; anything else names an ESRGAN file.
BUILTIN_UPSCALERS = {"lanczos": "LANCZOS", "nearest": "NEAREST"}

#: Video container → file suffix (``frames`` folders are not offered by the server).
VIDEO_FORMATS = ("mp4", "webm", "gif", "webp")

#: Request fields that carry encoded images (those in ``IMAGE_LISTS`` carry a list of them).
IMAGE_FIELDS = (
    "init_image", "mask", "control_image", "image", "end_image", "ref_images", "control_frames",
)  # fmt: skip
IMAGE_LISTS = ("ref_images", "control_frames")


@dataclass
class JobSpec:
    """One generation as the worker receives it: model path, load overrides, request fields.

    ``params`` holds :class:`~sdcpp_service.types.GenerateRequest` fields; images are encoded
    bytes (decoded in the worker with the pixel limit), LoRAs ``[name, weight]`` pairs.
    """

    id: str
    kind: str
    model: str
    load: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


class Engine(Protocol):
    """What the worker process drives. Implementations must be picklable (spawned workers)."""

    def start(self) -> dict[str, Any]:
        """Called once in the worker; returns system information for ``/system``."""
        ...

    def load(self, model: str, load: Mapping[str, Any]) -> dict[str, Any]:
        """Make ``model`` (with ``load`` overrides) the warm model; no-op when it already is."""
        ...

    def unload(self) -> None:
        """Free the loaded model, if any."""
        ...

    def run(self, spec: JobSpec, progress: ProgressCallback) -> GenerateResult:
        """Generate; each image carries ``info["parameters"]`` (infotext) and ``info["sdcpp"]``."""
        ...

    def state(self) -> dict[str, Any]:
        """What is warm: ``{"model": path or "", "load": overrides, "loads": models built}``."""
        ...


def _seed(value: Any) -> int:
    seed = int(value) if value is not None else -1
    return seed if seed >= 0 else random.randint(0, 2**32 - 1)


@dataclass
class FakeEngine:
    """Solid-colour images (colour from the seed), one progress report per step. For tests."""

    step_seconds: float = 0.0
    load_seconds: float = 0.0
    loaded: str = ""
    loads: int = 0
    model: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)

    def start(self) -> dict[str, Any]:
        return {
            "engine": "fake",
            "system_info": "fake engine",
            "physical_cores": 1,
            "samplers": ["euler", "euler_a", "dpm++2m", "lcm"],
            "schedulers": ["discrete", "karras", "simple"],
            "hires_upscalers": [
                "none",
                "latent",
                "latent (nearest)",
                "lanczos",
                "nearest",
                "model",
            ],
        }

    def load(self, model: str, load: Mapping[str, Any]) -> dict[str, Any]:
        key = f"{model}|{sorted(load.items())}"
        if key != self.loaded:
            time.sleep(self.load_seconds)
            self.loaded, self.loads = key, self.loads + 1
            self.model, self.overrides = model, dict(load)
        return {"model": model, "loads": self.loads}

    def unload(self) -> None:
        self.loaded, self.model, self.overrides = "", "", {}

    def state(self) -> dict[str, Any]:
        return {"model": self.model, "load": self.overrides, "loads": self.loads}

    def run(self, spec: JobSpec, progress: ProgressCallback) -> GenerateResult:
        from sdcpp_service.engine.images import infotext

        if spec.kind == "upscale":
            return self._upscale(spec, progress)
        self.load(spec.model, spec.load)
        p = spec.params
        prompt = str(p.get("prompt", ""))
        width, height = int(p.get("width", 512)), int(p.get("height", 512))
        steps, batch = int(p.get("steps", 20)), int(p.get("batch", 1))
        for name, value in (("width", width), ("height", height)):
            if value % 8:
                raise InvalidRequest(name, f"{value} is not a multiple of 8 for this model")
        if prompt.startswith("fail:"):
            raise EngineError(f"generation failed: {prompt[5:].strip()}")
        preview, every = str(p.get("preview") or "none"), int(p.get("preview_interval") or 1)
        if preview not in ("none", "proj", "tae", "vae"):
            raise InvalidRequest("preview", f"unknown preview mode '{preview}'")
        t0 = time.perf_counter()
        for step in range(1, steps + 1):
            time.sleep(self.step_seconds)
            elapsed = time.perf_counter() - t0
            eta = (steps - step) * self.step_seconds
            if preview != "none" and step % every == 0:
                shade = (255 * step // steps, 0, 0)
                small = Image.new("RGB", (max(1, width // 8), max(1, height // 8)), shade)
                progress(Progress(step, steps, elapsed, eta, "preview", small))
            progress(Progress(step, steps, elapsed, eta))
        seed = _seed(p.get("seed"))
        if spec.kind == "video":
            return self._video(spec, seed, steps, time.perf_counter() - t0)
        seeds = [seed + i for i in range(batch)]
        if p.get("hires"):  # the second pass's size, as the engine would
            scale = float(p.get("hires_scale", 2.0))
            width = int(p.get("hires_width") or width * scale)
            height = int(p.get("hires_height") or height * scale)
        images = []
        for s in seeds:
            colour = (s * 37 % 256, s * 91 % 256, s * 13 % 256)
            image = Image.new("RGB", (width, height), colour)
            fields = {"Steps": steps, "Sampler": "Euler", "Seed": s, "Size": f"{width}x{height}"}
            image.info["parameters"] = infotext(prompt, str(p.get("negative_prompt", "")), fields)
            image.info["sdcpp"] = {"seed": s, "model": spec.model}
            images.append(image)
        total = time.perf_counter() - t0
        params = {k: v for k, v in p.items() if k not in IMAGE_FIELDS}
        params["seeds"] = seeds
        params.update(sampler="euler", scheduler="discrete", seed=seed)
        return GenerateResult(images, seeds, params, {"engine": total, "total": total})

    def _video(self, spec: JobSpec, seed: int, steps: int, seconds: float) -> GenerateResult:
        from sdcpp_service.engine.images import infotext

        p = spec.params
        width, height = int(p.get("width", 64)), int(p.get("height", 64))
        count, fps = int(p.get("frames", 5)), float(p.get("fps", 16.0))
        if count % 4 != 1:
            raise InvalidRequest("frames", f"must be 4k+1 (1, 5, 9, …), got {count}")
        frames = [
            Image.new("RGB", (width, height), (seed * 37 % 256, 16 * i % 256, 0))
            for i in range(count)
        ]
        fields = {"Steps": steps, "Seed": seed, "Size": f"{width}x{height}", "Frames": count}
        frames[0].info["parameters"] = infotext(str(p.get("prompt", "")), "", fields)
        params = {k: v for k, v in p.items() if k not in IMAGE_FIELDS}
        params.update(seed=seed, fps=fps, frames=count)
        return GenerateResult(frames, [seed], params, {"engine": seconds, "total": seconds})

    def _upscale(self, spec: JobSpec, progress: ProgressCallback) -> GenerateResult:
        """The ESRGAN stand-in: a nearest-neighbour ×4 "network", then the requested scale."""
        t0 = time.perf_counter()
        image = job_image(spec)
        done = builtin_job(spec, image, t0)
        if done is not None:
            return done
        scale = float(spec.params.get("scale") or 4.0)
        out = image.resize((image.width * 4, image.height * 4), Image.Resampling.NEAREST)
        out = finish_scale(out, image.size, scale)
        progress(Progress(1, 1, time.perf_counter() - t0, 0.0, "upscaling"))
        return upscale_result(spec, image, out, spec.model, time.perf_counter() - t0)


def job_image(spec: JobSpec) -> Image.Image:
    """The ``upscale`` job's input image (alpha kept; already checked by the server)."""
    from sdcpp_service.engine.images import load_image

    return load_image(spec.params["image"], "image", mode="auto")


def builtin_job(spec: JobSpec, image: Image.Image, t0: float) -> GenerateResult | None:
    """The result of an ``upscale`` job naming a built-in resizer (``lanczos``…), else None."""
    method = str(spec.params.get("upscaler") or "")
    if not method:
        return None
    out = builtin_upscale(image, float(spec.params.get("scale") or 2.0), method)
    return upscale_result(spec, image, out, method, time.perf_counter() - t0)


def target_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def finish_scale(image: Image.Image, source: tuple[int, int], scale: float) -> Image.Image:
    """Lanczos from a network's native output to exactly ``scale`` × ``source``."""
    target = target_size(source, scale)
    return image if image.size == target else image.resize(target, Image.Resampling.LANCZOS)


def builtin_upscale(image: Image.Image, scale: float, method: str) -> Image.Image:
    """A PIL resize for the built-in upscalers (``lanczos``, ``nearest``)."""
    resample = getattr(Image.Resampling, BUILTIN_UPSCALERS[method.lower()])
    return image.resize(target_size(image.size, scale), resample)


def upscale_result(
    spec: JobSpec, source: Image.Image, out: Image.Image, upscaler: str, seconds: float
) -> GenerateResult:
    """The upscaled image carrying the input's infotext plus ``Postprocess upscale by``."""
    from pathlib import Path

    scale = out.width / source.width
    label = Path(upscaler).stem if "/" in upscaler or "\\" in upscaler else upscaler.capitalize()
    note = f"Postprocess upscale by: {scale:g}, Postprocess upscaler: {label}"
    before = source.info.get("parameters")
    out.info["parameters"] = f"{before}, {note}" if isinstance(before, str) and before else note
    out.info["sdcpp"] = {"upscaler": upscaler, "scale": scale, "source": list(source.size)}
    params = {k: v for k, v in spec.params.items() if k not in IMAGE_FIELDS}
    params.update(upscaler=label, scale=scale, source_size=list(source.size))
    timings = {"engine": seconds, "total": seconds}
    return GenerateResult([out], [-1], params, timings)


@dataclass
class PipelineEngine:
    """The real engine: a :class:`~sdcpp_service.engine.pipeline.Pipeline` kept warm between
    jobs, reloaded only when the model or its load options change."""

    settings: Settings
    pipe: Any = None
    #: the warm ESRGAN upscaler (kept next to the Pipeline) and its (path, tile)
    upscaler: Any = None
    upscaler_key: tuple[str, int] = ("", 0)
    #: the warm model as asked for (path, overrides) and how many models this process built
    model: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    loads: int = 0

    def start(self) -> dict[str, Any]:
        from sdcpp_service.engine import sdcpp

        info = sdcpp.system_info()
        nat = sdcpp.native()
        info["samplers"] = list(nat.enum_names("sample_method"))
        info["schedulers"] = list(nat.enum_names("scheduler"))
        info["hires_upscalers"] = list(nat.enum_names("hires_upscaler"))
        return info

    def load(self, model: str, load: Mapping[str, Any]) -> dict[str, Any]:
        from sdcpp_service.engine.pipeline import Pipeline, plan_model
        from sdcpp_service.server.models import HashCache

        options, info = plan_model(model, self.settings, **dict(load))
        if self.pipe is not None and self.pipe.options == options:
            self.model, self.overrides = model, dict(load)
            return {"model": model, "load_seconds": 0.0}
        pipe, self.pipe = self.pipe, None
        if pipe is not None:
            pipe.close()
        self.model, self.overrides = "", {}
        hashes = HashCache(self.settings)
        self.pipe = Pipeline(options, self.settings, hash_fn=hashes.sha256, info=info)
        self.model, self.overrides, self.loads = model, dict(load), self.loads + 1
        return {"model": model, "load_seconds": self.pipe.context.load_seconds}

    def state(self) -> dict[str, Any]:
        return {"model": self.model, "load": self.overrides, "loads": self.loads}

    def unload(self) -> None:
        self.model, self.overrides = "", {}
        pipe, self.pipe = self.pipe, None
        if pipe is not None:
            pipe.close()
        up, self.upscaler, self.upscaler_key = self.upscaler, None, ("", 0)
        if up is not None:
            up.close()

    def run(self, spec: JobSpec, progress: ProgressCallback) -> GenerateResult:
        if spec.kind == "upscale":
            return self._upscale(spec, progress)
        self.load(spec.model, spec.load)
        params = dict(spec.params)
        prompt = str(params.pop("prompt", ""))
        loras = [(str(name), float(weight)) for name, weight in params.pop("loras", None) or []]
        if spec.kind == "video":
            return self._video(prompt, loras, params, progress)
        request = self.pipe.request(prompt, loras=loras, **params)
        result: GenerateResult = self.pipe.run(request, progress)
        return result

    def _video(
        self,
        prompt: str,
        loras: list[tuple[str, float]],
        params: dict[str, Any],
        progress: ProgressCallback,
    ) -> GenerateResult:
        extra = {k: params.pop(k) for k in VIDEO_ONLY if k in params}
        request = self.pipe.video_request(prompt, loras=loras, **params)
        video = self.pipe.run_video(request, progress)
        used = {**video.params, **extra, "fps": video.fps, "frames": len(video.frames)}
        return GenerateResult(video.frames, [video.seed], used, video.timings)

    def _upscale(self, spec: JobSpec, progress: ProgressCallback) -> GenerateResult:
        from sdcpp_service.engine.upscale import Upscaler

        t0 = time.perf_counter()
        image = job_image(spec)
        done = builtin_job(spec, image, t0)
        if done is not None:
            return done
        key = (spec.model, int(spec.params.get("tile") or 128))
        if self.upscaler is None or self.upscaler_key != key:
            if self.upscaler is not None:
                self.upscaler.close()
                self.upscaler = None
            self.upscaler = Upscaler(key[0], self.settings.default_threads, key[1])
            self.upscaler_key = key
        scale = spec.params.get("scale")
        out = self.upscaler.upscale(image, None if scale is None else float(scale), progress)
        return upscale_result(spec, image, out, spec.model, time.perf_counter() - t0)
