"""The real engine behind the server (a warm Pipeline in the worker process) and the upscale
helpers every engine shares (the fake one in ``tests/fakes.py`` too).

The protocol, the typed jobs and the output are in :mod:`sdcpp_service.engine.base`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from sdcpp_service.config import Settings
from sdcpp_service.engine.base import (
    BUILTIN_UPSCALERS,
    IMAGE_FIELDS,
    IMAGE_LISTS,
    JOB_KINDS,
    PIPELINE_KINDS,
    EngineJob,
    JobOutput,
    UpscaleJob,
    VideoJob,
)
from sdcpp_service.types import ProgressCallback

#: the job vocabulary, also read from here by older callers
__all__ = [
    "BUILTIN_UPSCALERS",
    "IMAGE_FIELDS",
    "IMAGE_LISTS",
    "JOB_KINDS",
    "PIPELINE_KINDS",
    "PipelineEngine",
    "builtin_job",
    "builtin_upscale",
    "finish_scale",
    "job_image",
    "target_size",
    "upscale_result",
]


def job_image(job: UpscaleJob) -> Image.Image:
    """The ``upscale`` job's input image (alpha kept; already checked by the server)."""
    from sdcpp_service.engine.images import load_image

    return load_image(job.image, "image", mode="auto")


def builtin_job(job: UpscaleJob, image: Image.Image, t0: float) -> JobOutput | None:
    """The output of an ``upscale`` job naming a built-in resizer (``lanczos``…), else None."""
    if not job.upscaler:
        return None
    out = builtin_upscale(image, job.scale or 2.0, job.upscaler)
    return upscale_result(job, image, out, job.upscaler, time.perf_counter() - t0)


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
    job: UpscaleJob, source: Image.Image, out: Image.Image, upscaler: str, seconds: float
) -> JobOutput:
    """The upscaled image carrying the input's infotext plus ``Postprocess upscale by``."""
    from pathlib import Path

    scale = out.width / source.width
    label = Path(upscaler).stem if "/" in upscaler or "\\" in upscaler else upscaler.capitalize()
    note = f"Postprocess upscale by: {scale:g}, Postprocess upscaler: {label}"
    before = source.info.get("parameters")
    out.info["parameters"] = f"{before}, {note}" if isinstance(before, str) and before else note
    out.info["sdcpp"] = {"upscaler": upscaler, "scale": scale, "source": list(source.size)}
    params = {"tile": job.tile, "upscaler": label, "scale": scale, "source_size": list(source.size)}
    timings = {"engine": seconds, "total": seconds}
    return JobOutput([out], [-1], params, timings)


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
        info["threads"] = self.settings.default_threads  # --threads, else every core
        return info

    def load(self, model: str, load: dict[str, Any]) -> dict[str, Any]:
        from sdcpp_service.engine.pipeline import Pipeline
        from sdcpp_service.models.loadplan import plan_model
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
        # the infotext waits for no hash: only cached ones are written (the service hashes
        # the job's files in the background, at idle priority)
        self.pipe = Pipeline(options, self.settings, hash_fn=hashes.known, info=info)
        self.model, self.overrides, self.loads = model, dict(load), self.loads + 1
        return {"model": model, "load_seconds": self.pipe.context.load_seconds}

    def state(self) -> dict[str, Any]:
        """What is warm, and the threads its engine context was made with (read back)."""
        threads = self.pipe.context.threads if self.pipe is not None else None
        out = {"model": self.model, "load": self.overrides, "loads": self.loads}
        return {**out, "threads": threads or self.settings.default_threads}

    def unload(self) -> None:
        self.model, self.overrides = "", {}
        pipe, self.pipe = self.pipe, None
        if pipe is not None:
            pipe.close()
        up, self.upscaler, self.upscaler_key = self.upscaler, None, ("", 0)
        if up is not None:
            up.close()

    def run(self, job: EngineJob, progress: ProgressCallback) -> JobOutput:
        if isinstance(job, UpscaleJob):
            return self._upscale(job, progress)
        self.load(job.model, job.load)
        loras = list(job.loras)
        if isinstance(job, VideoJob):
            return self._video(job, loras, progress)
        request = self.pipe.request(
            job.prompt, loras=loras, **job.params.given(), **job.images.given()
        )
        result = self.pipe.run(request, progress)
        return JobOutput(result.images, list(result.seeds), result.params, result.timings)

    def _video(
        self, job: VideoJob, loras: list[tuple[str, float]], progress: ProgressCallback
    ) -> JobOutput:
        params, images = job.params.given(), job.images.given()
        request = self.pipe.video_request(job.prompt, loras=loras, **params, **images)
        video = self.pipe.run_video(request, progress)
        used = {**video.params, "format": job.format, "fps": video.fps}
        used["frames"] = len(video.frames)
        return JobOutput(video.frames, [video.seed], used, video.timings, fps=video.fps)

    def _upscale(self, job: UpscaleJob, progress: ProgressCallback) -> JobOutput:
        from sdcpp_service.engine.upscale import Upscaler

        t0 = time.perf_counter()
        image = job_image(job)
        done = builtin_job(job, image, t0)
        if done is not None:
            return done
        key = (job.model, job.tile)
        if self.upscaler is None or self.upscaler_key != key:
            if self.upscaler is not None:
                self.upscaler.close()
                self.upscaler = None
            self.upscaler = Upscaler(key[0], self.settings.default_threads, key[1])
            self.upscaler_key = key
        out = self.upscaler.upscale(image, job.scale, progress)
        return upscale_result(job, image, out, job.model, time.perf_counter() - t0)
