"""The fake engine: the :class:`~sdcpp_service.engine.base.Engine` protocol without the native
library, for fast server and CLI tests. It applies the same checks as the real engine where
they are the package's own (sizes, frames, preview modes, upscale helpers), and the contract
suite (``tests/engine/test_contract.py``) holds it to the real engine's behaviour."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from sdcpp_service import rules
from sdcpp_service.engine.base import EngineJob, ImageJob, JobOutput, UpscaleJob, VideoJob
from sdcpp_service.engine.images import infotext
from sdcpp_service.errors import EngineError, InvalidRequest
from sdcpp_service.server.engine import builtin_job, finish_scale, job_image, upscale_result
from sdcpp_service.server.options import PREVIEW_MODES
from sdcpp_service.types import Progress, ProgressCallback

SAMPLERS = ["euler", "euler_a", "dpm++2m", "lcm"]


def _seed(value: Any) -> int:
    seed = int(value) if value is not None else -1
    return seed if seed >= 0 else random.randint(0, rules.MAX_SEED)


@dataclass
class FakeEngine:
    """Solid-colour images (colour from the seed), one progress report per step. A prompt
    ``fail: why`` fails the job with ``EngineError(why)``."""

    step_seconds: float = 0.0
    load_seconds: float = 0.0
    #: a file path: each load waits until that file exists (a test opens the gate)
    load_gate: str = ""
    loaded: str = ""
    loads: int = 0
    model: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)

    def start(self) -> dict[str, Any]:
        return {
            "engine": "fake",
            "system_info": "fake engine",
            "physical_cores": 1,
            "samplers": SAMPLERS,
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

    def load(self, model: str, load: dict[str, Any]) -> dict[str, Any]:
        key = f"{model}|{sorted(load.items())}"
        if key != self.loaded:
            time.sleep(self.load_seconds)
            while self.load_gate and not os.path.exists(self.load_gate):
                time.sleep(0.01)
            self.loaded, self.loads = key, self.loads + 1
            self.model, self.overrides = model, dict(load)
        return {"model": model, "loads": self.loads}

    def unload(self) -> None:
        self.loaded, self.model, self.overrides = "", "", {}

    def state(self) -> dict[str, Any]:
        return {"model": self.model, "load": self.overrides, "loads": self.loads}

    def run(self, job: EngineJob, progress: ProgressCallback) -> JobOutput:
        if isinstance(job, UpscaleJob):
            return self._upscale(job, progress)
        self.load(job.model, job.load)
        p = job.params
        width, height = p.width or 512, p.height or 512
        steps, batch = p.steps or 20, (p.batch if isinstance(job, ImageJob) else None) or 1
        for name, value in (("width", width), ("height", height)):
            if value % 8:
                raise InvalidRequest(name, f"{value} is not a multiple of 8 for this model")
        if job.prompt.startswith("fail:"):
            raise EngineError(f"generation failed: {job.prompt[5:].strip()}")
        preview, every = "none", 1
        if isinstance(job, ImageJob):
            preview, every = job.params.preview or "none", job.params.preview_interval or 1
        if preview not in PREVIEW_MODES:
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
        seed = _seed(p.seed)
        if isinstance(job, VideoJob):
            return self._video(job, seed, steps, time.perf_counter() - t0)
        return self._images(job, seed, steps, batch, (width, height), t0)

    def _images(
        self, job: ImageJob, seed: int, steps: int, batch: int, size: tuple[int, int], t0: float
    ) -> JobOutput:
        p = job.params
        width, height = size
        seeds = [seed + i for i in range(batch)]
        if p.hires:  # the second pass's size, as the engine would
            scale = p.hires_scale or 2.0
            width = int(p.hires_width or width * scale)
            height = int(p.hires_height or height * scale)
        images = []
        for s in seeds:
            colour = (s * 37 % 256, s * 91 % 256, s * 13 % 256)
            image = Image.new("RGB", (width, height), colour)
            fields = {"Steps": steps, "Sampler": "Euler", "Seed": s, "Size": f"{width}x{height}"}
            negative = p.negative_prompt or ""
            image.info["parameters"] = infotext(job.prompt, negative, fields)
            image.info["sdcpp"] = {"seed": s, "model": job.model}
            images.append(image)
        total = time.perf_counter() - t0
        params = {**p.given(), "prompt": job.prompt, "loras": [list(x) for x in job.loras]}
        params.update(sampler="euler", scheduler="discrete", seed=seed, seeds=seeds)
        return JobOutput(images, seeds, params, {"engine": total, "total": total})

    def _video(self, job: VideoJob, seed: int, steps: int, seconds: float) -> JobOutput:
        p = job.params
        width, height = p.width or 64, p.height or 64
        count, fps = p.frames or 5, p.fps or 16.0
        rules.check_frames(count)
        frames = [
            Image.new("RGB", (width, height), (seed * 37 % 256, 16 * i % 256, 0))
            for i in range(count)
        ]
        fields = {"Steps": steps, "Seed": seed, "Size": f"{width}x{height}", "Frames": count}
        frames[0].info["parameters"] = infotext(job.prompt, "", fields)
        params = {**p.given(), "prompt": job.prompt, "format": job.format}
        params.update(seed=seed, fps=fps, frames=count)
        timings = {"engine": seconds, "total": seconds}
        return JobOutput(frames, [seed], params, timings, fps=fps)

    def _upscale(self, job: UpscaleJob, progress: ProgressCallback) -> JobOutput:
        """The ESRGAN stand-in: a nearest-neighbour ×4 "network", then the requested scale."""
        t0 = time.perf_counter()
        image = job_image(job)
        done = builtin_job(job, image, t0)
        if done is not None:
            return done
        out = image.resize((image.width * 4, image.height * 4), Image.Resampling.NEAREST)
        out = finish_scale(out, image.size, job.scale or 4.0)
        progress(Progress(1, 1, time.perf_counter() - t0, 0.0, "upscaling"))
        return upscale_result(job, image, out, job.model, time.perf_counter() - t0)
