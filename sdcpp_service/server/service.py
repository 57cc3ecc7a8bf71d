"""The service behind every route: options, job submission shared by all dialects, models.

Created by the app's lifespan (no module-level state); routes reach it as
``request.app.state.service``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdcpp_service.config import Settings
from sdcpp_service.engine import loras as lora_mod
from sdcpp_service.engine import names
from sdcpp_service.errors import Cancelled, InvalidRequest
from sdcpp_service.server import fields, models
from sdcpp_service.server.engine import JOB_KINDS, Engine
from sdcpp_service.server.errors import NotFound, Timeout
from sdcpp_service.server.jobs import Job, JobStore, new_id
from sdcpp_service.server.scheduler import Live, Scheduler
from sdcpp_service.server.worker import JobError, Worker

#: Component slots a request may name (resolved inside the model folders) → kinds accepted.
LOAD_SLOTS: dict[str, tuple[str, ...]] = {
    "vae": ("vae",),
    "taesd": ("taesd", "vae"),
    "control_net": ("controlnet",),
    "clip_l": ("text_encoder",),
    "clip_g": ("text_encoder",),
    "t5xxl": ("text_encoder",),
    "llm": ("text_encoder",),
}

log = logging.getLogger("sdcpp_service.server")

_OUTPUT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}\.(png|jpg|jpeg|webp)$")


@dataclass(frozen=True)
class ServerOptions:
    """Service limits and access; the CLI's flags. Zero means "no limit" only where stated."""

    api_keys: tuple[str, ...] = ()
    #: A1111-style basic credentials, ``user:pass`` each
    api_auth: tuple[str, ...] = ()
    max_queue: int = 100
    preload: str = ""
    max_body_bytes: int = 64 * 1024 * 1024
    #: width × height × batch of one request
    max_pixels: int = 16 * 1024 * 1024
    max_steps: int = 150
    #: decoded input image limit (decompression-bomb guard)
    max_input_pixels: int = 16 * 1024 * 1024
    worker_start_timeout: float = 120.0
    #: the job an A1111/OpenAI request waits for; past it, the request gets 504 (job goes on)
    sync_timeout: float = 3600.0


class Service:
    def __init__(self, settings: Settings, engine: Engine, options: ServerOptions) -> None:
        self.settings = settings
        self.options = options
        self.outputs = settings.data_dir / "outputs"
        self.outputs.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(settings.data_dir / "jobs.sqlite")
        self.worker = Worker(engine, self.outputs, options.worker_start_timeout)
        self.scheduler = Scheduler(self.store, self.worker, max_queue=options.max_queue)
        self.hashes = models.HashCache(settings)
        self.started = time.time()
        #: A1111 options set by clients (echoed back by GET /sdapi/v1/options)
        self.a1111_options: dict[str, Any] = {}
        self._warming: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.scheduler.start()
        self._warming = asyncio.get_running_loop().create_task(self._warm())

    async def _warm(self) -> None:
        try:
            await self.worker.ensure()
            if self.options.preload:
                entry = self.resolve_model(self.options.preload)
                await self.scheduler.control("load", str(entry.path), {})
        except Cancelled:  # a job was cancelled while the worker was starting
            pass
        except Exception as exc:  # reported by /health; the next job tries again
            log.error("start-up: %s", exc)

    async def stop(self) -> None:
        if self._warming is not None and not self._warming.done():
            self._warming.cancel()
        await self.scheduler.stop()
        self.store.close()

    # -- models -------------------------------------------------------------------------------

    @property
    def model_dirs(self) -> tuple[Path, ...]:
        return self.settings.model_dirs

    def resolve_model(self, name: str, field: str = "model") -> models.ModelEntry:
        return models.resolve(name, self.settings, models.MAIN_KINDS, field)

    def loaded_model(self) -> str:
        return self.scheduler.loaded.partition("|")[0]

    def default_model(self) -> str:
        if self.options.preload:
            return str(self.resolve_model(self.options.preload).path)
        if self.loaded_model():
            return self.loaded_model()
        for entry in models.scan(self.settings):
            if entry.kind in models.MAIN_KINDS:
                return str(entry.path)
        raise InvalidRequest("model", "no model given and none found in the model folders")

    def model_name(self, path: str) -> str:
        for entry in models.scan(self.settings):
            if str(entry.path) == path:
                return entry.name
        return Path(path).stem

    # -- jobs ---------------------------------------------------------------------------------

    def prepare(
        self,
        kind: str,
        values: Mapping[str, Any],
        images: Mapping[str, bytes | list[bytes]],
        loras: list[tuple[str, float]],
        model: str | None = None,
        load: Mapping[str, str] | None = None,
        errors: Mapping[str, str] | None = None,
    ) -> Job:
        """Check a request against the limits and folders (every problem at once) → a Job."""
        problems = dict(errors or {})
        if kind not in JOB_KINDS:
            problems["kind"] = f"must be one of {', '.join(JOB_KINDS)}"
        for need in JOB_KINDS.get(kind, ()):
            if need not in images and need not in problems:
                problems[need] = f"required for {kind}"
        width, height = int(values.get("width", 512)), int(values.get("height", 512))
        batch = int(values.get("batch", 1))
        if width * height * batch > self.options.max_pixels:
            problems.setdefault(
                "width",
                f"{width}x{height} × {batch} images is over the {self.options.max_pixels} "
                "pixel limit of this server",
            )
        if int(values.get("steps", 20)) > self.options.max_steps:
            problems.setdefault("steps", f"must be at most {self.options.max_steps} here")
        self._check_names(values, problems)
        main = ""
        try:
            main = str(self.resolve_model(model).path) if model else self.default_model()
        except InvalidRequest as exc:
            problems["model"] = exc.reason
        overrides: dict[str, str] = {}
        for slot, name in (load or {}).items():
            try:
                entry = models.resolve(name, self.settings, LOAD_SLOTS[slot], slot)
                overrides[slot] = str(entry.path)
            except InvalidRequest as exc:
                problems[slot] = exc.reason
        values = dict(values)
        if values.get("hires_model"):
            try:
                found = models.resolve(values["hires_model"], self.settings, ("upscaler",))
                values["hires_model"] = str(found.path)
            except InvalidRequest as exc:
                problems["hires_model"] = exc.reason
        if values.get("hires"):
            scale = float(values.get("hires_scale", 2.0))
            hw = values.get("hires_width") or int(width * scale)
            hh = values.get("hires_height") or int(height * scale)
            if hw * hh * batch > self.options.max_pixels:
                problems.setdefault("hires_scale", f"{hw}x{hh} × {batch} is over the limit")
        try:
            _, tags = lora_mod.split_prompt(str(values.get("prompt", "")))
            models.check_lora_names([n for n, _ in [*loras, *tags]], self.model_dirs)
        except InvalidRequest as exc:
            problems.setdefault(exc.field, exc.reason)
        fields.check(problems)
        params = {**values, "loras": [[n, w] for n, w in loras]}
        return Job(new_id(), kind, main, params, overrides)

    def _check_names(self, values: Mapping[str, Any], problems: dict[str, str]) -> None:
        info = self.worker.info
        sampler, scheduler = values.get("sampler"), values.get("scheduler")
        known = {*names.A1111_SAMPLERS.values(), *info.get("samplers", ())}
        if sampler and names.sampler_from_label(sampler)[0] not in known | {"default"}:
            problems["sampler"] = f"unknown sampler '{sampler}'"
        known = {*names.A1111_SCHEDULERS.values(), *info.get("schedulers", ())}
        if scheduler and names.scheduler_from_label(scheduler) not in known | {"default"}:
            problems["scheduler"] = f"unknown scheduler '{scheduler}'"

    def submit(self, job: Job, images: Mapping[str, bytes | list[bytes]]) -> Live:
        return self.scheduler.submit(job, images)

    async def run(self, job: Job, images: Mapping[str, bytes | list[bytes]]) -> Job:
        """Submit and wait (the synchronous dialects); a failed job raises its error."""
        live = self.submit(job, images)
        try:
            done = await asyncio.wait_for(
                self.scheduler.wait(live.job.id), self.options.sync_timeout
            )
        except asyncio.TimeoutError:
            raise Timeout(f"job {job.id} is still running; follow /api/v1/jobs/{job.id}") from None
        if done.state == "failed":
            raise JobError(done.error or {})
        return done

    def output_path(self, name: str) -> Path:
        if not _OUTPUT_NAME.match(name):
            raise NotFound(f"no output '{name}'")
        path = self.outputs / name
        if not path.is_file() or not path.resolve().is_relative_to(self.outputs.resolve()):
            raise NotFound(f"no output '{name}'")
        return path

    def job(self, job_id: str) -> Job:
        live = self.scheduler.live.get(job_id)
        job = live.job if live is not None else self.store.get(job_id)
        if job is None:
            raise NotFound(f"no job '{job_id}'")
        return job


async def decode(
    service: Service, raw: Mapping[str, Any]
) -> tuple[dict[str, bytes | list[bytes]], dict[str, str]]:
    """Decode the request's images off the event loop."""
    return await asyncio.to_thread(fields.decode_images, raw, service.options.max_input_pixels)
