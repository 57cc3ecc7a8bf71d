"""The service behind every route: options, job submission shared by all dialects, models.

Created by the app's lifespan (no module-level state); routes reach it as
``request.app.state.service``.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Mapping
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

from sdcpp_service.config import Settings
from sdcpp_service.engine import loras as lora_mod
from sdcpp_service.engine import names
from sdcpp_service.errors import Cancelled, InvalidRequest
from sdcpp_service.server import fields, models
from sdcpp_service.server.engine import (
    BUILTIN_UPSCALERS,
    JOB_KINDS,
    VIDEO_FORMATS,
    VIDEO_ONLY,
    Engine,
)
from sdcpp_service.server.errors import JobNotDone, NotFound, Timeout
from sdcpp_service.server.jobs import FINISHED, Job, JobStore, new_id
from sdcpp_service.server.options import (
    KIND_ONLY,
    LOAD_SLOTS,
    OPTIONAL_SLOTS,
    OUTPUT_NAME,
    PREVIEW_MODES,
    PRUNE_INTERVAL,
    ServerOptions,
)
from sdcpp_service.server.scheduler import Live, Scheduler
from sdcpp_service.server.worker import JobError, Worker

log = logging.getLogger("sdcpp_service.server")


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
        self._pruning: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.prune()
        await self.scheduler.start()
        loop = asyncio.get_running_loop()
        self._warming = loop.create_task(self._warm())
        if self.options.keep_jobs_hours > 0:
            self._pruning = loop.create_task(self._prune_hourly())

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

    async def _prune_hourly(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_INTERVAL)
            try:
                await asyncio.to_thread(self.prune)
            except Exception as exc:  # a full disk or a locked file must not stop the service
                log.error("removing old jobs: %s", exc)

    async def stop(self) -> None:
        for task in (self._warming, self._pruning):
            if task is not None and not task.done():
                task.cancel()
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

    def resolve_upscaler(self, name: str | None, field: str = "model") -> models.ModelEntry:
        """An ESRGAN file by name or path inside the model folders (None: the first one); a
        file of another kind (a LoRA, a checkpoint) is refused naming what it is."""
        if name is None:
            found = [e for e in models.scan(self.settings) if e.kind == "upscaler"]
            if not found:
                raise InvalidRequest(
                    field, "no ESRGAN upscaler in the model folders; name one, or lanczos/nearest"
                )
            return found[0]
        try:
            return models.resolve(name, self.settings, ("upscaler",), field)
        except InvalidRequest as exc:
            try:
                other = models.resolve(name, self.settings, models.ALL_KINDS, field)
            except InvalidRequest:
                raise exc from None
            raise InvalidRequest(
                field, f"'{name}' is a {other.kind}, not an ESRGAN upscaler"
            ) from None

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
        load: Mapping[str, str | bool] | None = None,
        errors: Mapping[str, str] | None = None,
    ) -> Job:
        """Check a request against the limits and folders (every problem at once) → a Job."""
        if kind == "upscale":
            return self.prepare_upscale(values, images, model, errors)
        problems = dict(errors or {})
        if kind not in JOB_KINDS:
            problems["kind"] = f"must be one of {', '.join(JOB_KINDS)}"
        for other, only in KIND_ONLY.items():
            for name in only:
                if other != kind and (name in values or name in images):
                    problems.setdefault(name, f"only for kind {other}")
        if kind == "video":
            self._check_video(values, images, problems)
        preview = values.get("preview")
        if preview is not None and preview not in PREVIEW_MODES:
            problems["preview"] = f"must be one of {', '.join(PREVIEW_MODES)}"
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
        overrides: dict[str, str | bool] = {}
        for slot, given in (load or {}).items():
            if given is False and slot in OPTIONAL_SLOTS:
                overrides[slot] = False
                continue
            try:
                entry = models.resolve(str(given), self.settings, LOAD_SLOTS[slot], slot)
                overrides[slot] = str(entry.path)
            except InvalidRequest as exc:
                problems[slot] = exc.reason
        values = dict(values)
        if values.get("hires_model"):
            try:
                found = self.resolve_upscaler(str(values["hires_model"]), "hires_model")
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

    def _check_video(
        self, values: Mapping[str, Any], images: Mapping[str, Any], problems: dict[str, str]
    ) -> None:
        from sdcpp_service.types import VideoRequest

        known = {f.name for f in dataclass_fields(VideoRequest)} | set(VIDEO_ONLY)
        for name in [*values, *images]:
            if name not in known:
                problems.setdefault(name, "not a video parameter")
        fmt = values.get("format", "mp4")
        if fmt not in VIDEO_FORMATS:
            problems["format"] = f"must be one of {', '.join(VIDEO_FORMATS)}"
        frames = int(values.get("frames", 33))
        if frames % 4 != 1:
            near = max(1, round((frames - 1) / 4) * 4 + 1)
            problems.setdefault("frames", f"must be 4k+1 (1, 5, 9, …, 33, 81); nearest {near}")
        width, height = int(values.get("width", 512)), int(values.get("height", 512))
        if width * height * frames > self.options.max_pixels * 8:
            problems.setdefault(
                "frames", f"{width}x{height} × {frames} frames is over the limit of this server"
            )

    def prepare_upscale(
        self,
        values: Mapping[str, Any],
        images: Mapping[str, bytes | list[bytes]],
        model: str | None,
        errors: Mapping[str, str] | None = None,
        field: str = "model",
    ) -> Job:
        """An ``upscale`` job: ``image`` through an ESRGAN model (by name or path inside the
        model folders; None: the first one) or a built-in (``lanczos``, ``nearest``, ``none``)."""
        problems = dict(errors or {})
        for name in values:
            if name not in ("scale", "tile"):
                problems.setdefault(name, "not an upscale parameter")
        path, method = "", ""
        if model is not None and model.strip().lower() in BUILTIN_UPSCALERS:
            method = model.strip().lower()
        else:
            try:
                path = str(self.resolve_upscaler(model, field).path)
            except InvalidRequest as exc:
                problems[field] = exc.reason
        data = images.get("image")
        if not isinstance(data, bytes):
            problems.setdefault("image", "required for upscale")
        else:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
            scale = float(values.get("scale") or (2.0 if method else 4.0))
            if width * scale * height * scale > self.options.max_pixels:
                problems.setdefault(
                    "scale",
                    f"{width}x{height} × {scale:g} is over the {self.options.max_pixels} "
                    "pixel limit of this server",
                )
        fields.check(problems)
        params = {"scale": values.get("scale"), "tile": values.get("tile", 128), "upscaler": method}
        return Job(new_id(), "upscale", path, params)

    def _check_names(self, values: Mapping[str, Any], problems: dict[str, str]) -> None:
        info = self.worker.info
        sampler, scheduler = values.get("sampler"), values.get("scheduler")
        known = {*names.A1111_SAMPLERS.values(), *info.get("samplers", ())}
        if sampler and names.sampler_from_label(sampler)[0] not in known | {"default"}:
            problems["sampler"] = f"unknown sampler '{sampler}'"
        known = {*names.A1111_SCHEDULERS.values(), *info.get("schedulers", ())}
        if scheduler and names.scheduler_from_label(scheduler) not in known | {"default"}:
            problems["scheduler"] = f"unknown scheduler '{scheduler}'"
        upscaler, known = values.get("hires_upscaler"), set(info.get("hires_upscalers", ()))
        if values.get("hires") and upscaler and known and upscaler not in known:
            problems["hires_upscaler"] = f"unknown hires upscaler '{upscaler}'"

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
        if not OUTPUT_NAME.match(name):
            raise NotFound(f"no output '{name}'")
        path = self.outputs / name
        if not path.is_file() or not path.resolve().is_relative_to(self.outputs.resolve()):
            raise NotFound(f"no output '{name}'")
        return path

    def prune(self, now: float | None = None) -> list[str]:
        """Remove the jobs (and output files) older than the retention; returns their ids."""
        hours = self.options.keep_jobs_hours
        if hours <= 0:
            return []
        cutoff = (time.time() if now is None else now) - hours * 3600
        old = self.store.prune(cutoff)
        for job in old:
            self._remove_outputs(job)
        if old:
            log.info("removed %d finished job(s) older than %g h", len(old), hours)
        return [j.id for j in old]

    def delete_job(self, job_id: str) -> Job:
        """Remove a finished job and its output files; a queued or running one is refused."""
        job = self.job(job_id)  # 404 when unknown
        if job.state not in FINISHED:
            raise JobNotDone(f"job '{job_id}' is {job.state}: cancel it first")
        deleted = self.store.delete(job_id)
        if deleted is None:  # deleted by another request meanwhile
            raise NotFound(f"no job '{job_id}'")
        self._remove_outputs(deleted)
        return deleted

    def _remove_outputs(self, job: Job) -> None:
        for name in (job.result or {}).get("outputs", []):
            if isinstance(name, str) and OUTPUT_NAME.match(name):
                (self.outputs / name).unlink(missing_ok=True)

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
