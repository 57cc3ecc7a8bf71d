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

#: Job kinds and the inputs each one needs (checked at submission, before queueing).
JOB_KINDS: dict[str, tuple[str, ...]] = {
    "txt2img": (),
    "img2img": ("init_image",),
    "inpaint": ("init_image", "mask"),
    "controlnet": ("control_image",),
    "edit": ("ref_images",),
}


#: Request fields that carry encoded images (``ref_images`` is a list of them).
IMAGE_FIELDS = ("init_image", "mask", "control_image", "ref_images")


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

    def start(self) -> dict[str, Any]:
        return {
            "engine": "fake",
            "system_info": "fake engine",
            "physical_cores": 1,
            "samplers": ["euler", "euler_a", "dpm++2m", "lcm"],
            "schedulers": ["discrete", "karras", "simple"],
            "hires_upscalers": ["latent", "model"],
        }

    def load(self, model: str, load: Mapping[str, Any]) -> dict[str, Any]:
        key = f"{model}|{sorted(load.items())}"
        if key != self.loaded:
            time.sleep(self.load_seconds)
            self.loaded, self.loads = key, self.loads + 1
        return {"model": model, "loads": self.loads}

    def unload(self) -> None:
        self.loaded = ""

    def run(self, spec: JobSpec, progress: ProgressCallback) -> GenerateResult:
        from sdcpp_service.engine.images import infotext

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
        t0 = time.perf_counter()
        for step in range(1, steps + 1):
            time.sleep(self.step_seconds)
            elapsed = time.perf_counter() - t0
            progress(Progress(step, steps, elapsed, (steps - step) * self.step_seconds))
        seed = _seed(p.get("seed"))
        seeds = [seed + i for i in range(batch)]
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


@dataclass
class PipelineEngine:
    """The real engine: a :class:`~sdcpp_service.engine.pipeline.Pipeline` kept warm between
    jobs, reloaded only when the model or its load options change."""

    settings: Settings
    pipe: Any = None

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
            return {"model": model, "load_seconds": 0.0}
        self.unload()
        hashes = HashCache(self.settings)
        self.pipe = Pipeline(options, self.settings, hash_fn=hashes.sha256, info=info)
        return {"model": model, "load_seconds": self.pipe.context.load_seconds}

    def unload(self) -> None:
        pipe, self.pipe = self.pipe, None
        if pipe is not None:
            pipe.close()

    def run(self, spec: JobSpec, progress: ProgressCallback) -> GenerateResult:
        self.load(spec.model, spec.load)
        params = dict(spec.params)
        prompt = str(params.pop("prompt", ""))
        loras = [(str(name), float(weight)) for name, weight in params.pop("loras", None) or []]
        request = self.pipe.request(prompt, loras=loras, **params)
        result: GenerateResult = self.pipe.run(request, progress)
        return result
