"""Request checks shared by every dialect: a request's values, images and model names against
the server's limits and folders, every problem at once (one 422), then a :class:`Job`."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdcpp_service import rules
from sdcpp_service.engine import loras as lora_mod
from sdcpp_service.engine import names
from sdcpp_service.engine.base import BUILTIN_UPSCALERS, JOB_KINDS, VIDEO_ONLY
from sdcpp_service.errors import InvalidRequest, SdcppError
from sdcpp_service.server import fields, models
from sdcpp_service.server.jobs import Job, new_id
from sdcpp_service.server.options import KIND_ONLY, LOAD_SLOTS, OPTIONAL_SLOTS

if TYPE_CHECKING:
    from sdcpp_service.server.service import Service


def prepare(
    service: Service,
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
        return prepare_upscale(service, values, images, model, errors)
    problems = dict(errors or {})
    if kind not in JOB_KINDS:
        problems["kind"] = f"must be one of {', '.join(JOB_KINDS)}"
    for other, only in KIND_ONLY.items():
        for name in only:
            if other != kind and (name in values or name in images):
                problems.setdefault(name, f"only for kind {other}")
    if kind == "video":
        _check_video(service, values, images, problems)
    for need in JOB_KINDS.get(kind, ()):
        if need not in images and need not in problems:
            problems[need] = f"required for {kind}"
    values = _init_image_size(service, values, images, model)
    width, height = int(values.get("width", 512)), int(values.get("height", 512))
    batch = int(values.get("batch", 1))
    try:
        rules.check_pixels(
            width, height, batch, service.options.max_pixels, 16, where="this server"
        )
    except InvalidRequest as exc:
        problems.setdefault("width", exc.reason)
    if int(values.get("steps", 20)) > service.options.max_steps:
        problems.setdefault("steps", f"must be at most {service.options.max_steps} here")
    _check_names(service, values, problems)
    main = ""
    try:
        main = str(service.resolve_model(model).path) if model else service.default_model()
    except InvalidRequest as exc:
        problems["model"] = exc.reason
    if main and kind in JOB_KINDS:
        _check_for_model(main, kind, values, images, problems)
    overrides: dict[str, str | bool] = {}
    for slot, given in (load or {}).items():
        if given is False and slot in OPTIONAL_SLOTS:
            overrides[slot] = False
            continue
        try:
            entry = service.index.resolve(str(given), LOAD_SLOTS[slot], slot, True)
            overrides[slot] = str(entry.path)
        except InvalidRequest as exc:
            problems[slot] = exc.reason
    values = dict(values)
    if values.get("hires_model"):
        try:
            found = service.resolve_upscaler(str(values["hires_model"]), "hires_model")
            values["hires_model"] = str(found.path)
        except InvalidRequest as exc:
            problems["hires_model"] = exc.reason
    if values.get("hires"):
        scale = float(values.get("hires_scale", 2.0))
        hw = values.get("hires_width") or int(width * scale)
        hh = values.get("hires_height") or int(height * scale)
        if hw * hh * batch > service.options.max_pixels:
            problems.setdefault("hires_scale", f"{hw}x{hh} × {batch} is over the limit")
    lora_paths: list[Path] = []
    try:
        _, tags = lora_mod.split_prompt(str(values.get("prompt", "")))
        lora_paths = models.resolve_loras([n for n, _ in [*loras, *tags]], service.model_dirs)
    except InvalidRequest as exc:
        problems.setdefault(exc.field, exc.reason)
    if main:
        _check_addons(main, lora_paths, overrides.get("control_net"), problems)
        _check_photo_maker(main, overrides.get("photo_maker"), values, images, problems)
    if main and kind in JOB_KINDS:
        _check_components(service, main, overrides, problems)
    fields.check(problems)
    params = {**values, "loras": [[n, w] for n, w in loras]}
    peak = _fit(service, kind, main, params, overrides, "init_image" in images)
    job = Job(new_id(), kind, main, params, overrides)
    if peak:  # the pool charges the running job this much (see server/pool.py)
        service.footprints[job.id] = peak
    return job


def _fit(service: Service, kind: str, main: str, params: dict[str, Any],
         load: dict[str, str | bool], has_init: bool) -> int:  # fmt: skip
    """Refuse (DoesNotFit → 422) a job whose estimate exceeds the memory budget, before any
    load; turn on the switches it needs to fit (see :mod:`sdcpp_service.fit.job`). Returns the
    job's estimated peak beyond a worker's runtime (0 when it cannot be estimated)."""
    from sdcpp_service.fit.job import fit_job, server_budget

    budget = server_budget(int(service.options.max_memory_gb * 1e9))
    choice = fit_job(kind, main, params, load, service.settings, budget, has_init)
    if choice is None:
        return 0
    est = choice.estimate
    return est.peak_ram_bytes - est.ram["load"].get("runtime", 0)


def _init_image_size(
    service: Service, values: Mapping[str, Any], images: Mapping[str, Any], model: str | None
) -> Mapping[str, Any]:
    """img2img/inpaint without a width or height: the size follows the init image, rounded to
    the model's multiple (as in the CLI and the library)."""
    init = images.get("init_image")
    if not isinstance(init, bytes) or ("width" in values and "height" in values):
        return values
    from PIL import Image

    from sdcpp_service.engine.images import size_for_image
    from sdcpp_service.models import inspect

    try:
        with Image.open(io.BytesIO(init)) as im:
            size = im.size
        main = str(service.resolve_model(model).path) if model else service.default_model()
        multiple = 64 if inspect(main).slot == "model_path" else 16
    except (SdcppError, OSError, ValueError):
        return values  # the image's or the model's own problem is reported where it is checked
    width, height = size_for_image(size, multiple, values.get("width"), values.get("height"))
    return {**values, "width": width, "height": height}


def _check_addons(
    main: str, loras: list[Path], control_net: object, problems: dict[str, str]
) -> None:
    """LoRAs and a ControlNet that do not fit the model (read from both headers): 422 naming
    both files, never an engine abort."""
    from sdcpp_service.errors import ModelError
    from sdcpp_service.models import addons

    try:
        addons.check_loras(main, [p for p in loras if not str(p).startswith("|high_noise|")])
    except ModelError as exc:
        problems.setdefault("loras", f"{Path(exc.path).name} {exc.reason}")
    if isinstance(control_net, str) and control_net:
        try:
            addons.check_control_net(main, control_net)
        except ModelError as exc:
            problems.setdefault("control_net", f"{Path(exc.path).name} {exc.reason}")


def _check_photo_maker(
    main: str,
    photo_maker: object,
    values: Mapping[str, Any],
    images: Mapping[str, bytes | list[bytes]],
    problems: dict[str, str],
) -> None:
    """A PhotoMaker the model cannot use, or one without ID images or trigger word: 422 naming
    the field (the engine would abort, or quietly ignore it)."""
    from sdcpp_service.engine.photomaker import TRIGGER
    from sdcpp_service.errors import ModelError
    from sdcpp_service.models import addons

    if not isinstance(photo_maker, str) or not photo_maker:
        if images.get("pm_id_images"):
            problems.setdefault("pm_id_images", "ID images need a PhotoMaker model (photo_maker)")
        return
    try:
        addons.check_photo_maker(main, photo_maker)
    except ModelError as exc:
        problems.setdefault("photo_maker", f"{Path(exc.path).name} {exc.reason}")
        return
    if not images.get("pm_id_images"):
        problems.setdefault("pm_id_images", "a PhotoMaker model needs ID images of the person")
    if not re.search(rf"\b{TRIGGER}\b", str(values.get("prompt", ""))):
        problems.setdefault(
            "prompt", f"PhotoMaker needs the trigger word '{TRIGGER}' after the class word"
        )
    if "v2" in Path(photo_maker).name:
        problems.setdefault(
            "photo_maker",
            "PhotoMaker v2 needs an ID embed file, which this API does not take; use v1, or "
            "sdcpp generate --pm-id-embed",
        )


def _check_components(
    service: Service, main: str, overrides: Mapping[str, object], problems: dict[str, str]
) -> None:
    """A component the model needs (VAE, text encoder…) that neither the request nor the model
    folders provide: 422 naming the component and the ``sdcpp pull`` command, before queueing."""
    from sdcpp_service.models import inspect
    from sdcpp_service.models.assemble import missing

    try:
        absent = missing(inspect(main), overrides, service.settings)
    except SdcppError:
        return  # the model's own problem is reported when it loads
    for exc in absent:
        field = component_field(exc.kind)
        off = f'; or "{field}": false runs without it' if field in OPTIONAL_SLOTS else ""
        problems.setdefault(field, exc.reason + off)


def component_field(component: str) -> str:
    """The request field that provides a component (``umt5xxl`` → ``t5xxl``)."""
    from sdcpp_service.models.assemble import need_key

    return need_key(component)


def _check_for_model(
    main: str,
    kind: str,
    values: Mapping[str, Any],
    images: Mapping[str, Any],
    problems: dict[str, str],
) -> None:
    """The rules that depend on the model (size multiple, frames, which images it takes),
    read off its header, before anything is queued."""
    from sdcpp_service.models import inspect

    try:
        info = inspect(main)
    except SdcppError:
        return  # the model's own problem is reported when it loads
    for field, reason in rules.for_model(info, kind, values, set(images)).items():
        problems.setdefault(field, reason)


def _check_video(
    service: Service, values: Mapping[str, Any], images: Mapping[str, Any], problems: dict[str, str]
) -> None:
    from sdcpp_service.types import VideoRequest

    known = {f.name for f in dataclass_fields(VideoRequest)} | set(VIDEO_ONLY)
    for name in [*values, *images]:
        if name not in known:
            problems.setdefault(name, "not a video parameter")
    frames = int(values.get("frames", 33))
    try:
        rules.check_frames(frames)
    except InvalidRequest as exc:
        problems.setdefault("frames", exc.reason)
    control = images.get("control_frames")
    if isinstance(control, list) and len(control) > frames:
        problems.setdefault(
            "control_frames",
            f"{len(control)} control frames for {frames} frames; give at most {frames}",
        )
    width, height = int(values.get("width", 512)), int(values.get("height", 512))
    if width * height * frames > service.options.max_pixels * 8:
        problems.setdefault(
            "frames", f"{width}x{height} × {frames} frames is over the limit of this server"
        )


def prepare_upscale(
    service: Service,
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
            path = str(service.resolve_upscaler(model, field).path)
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
        if width * scale * height * scale > service.options.max_pixels:
            problems.setdefault(
                "scale",
                f"{width}x{height} × {scale:g} is over the {service.options.max_pixels} "
                "pixel limit of this server",
            )
    fields.check(problems)
    params = {"scale": values.get("scale"), "tile": values.get("tile", 128), "upscaler": method}
    return Job(new_id(), "upscale", path, params)


def _check_names(service: Service, values: Mapping[str, Any], problems: dict[str, str]) -> None:
    info = service.engine_info
    sampler, scheduler = values.get("sampler"), values.get("scheduler")
    known = {*names.A1111_SAMPLERS.values(), *info.get("samplers", ())}
    if sampler and names.sampler_from_label(sampler)[0] not in known | {"default"}:
        problems["sampler"] = f"unknown sampler '{sampler}' (known: {', '.join(sorted(known))})"
    known = {*names.A1111_SCHEDULERS.values(), *info.get("schedulers", ())}
    if scheduler and names.scheduler_from_label(scheduler) not in known | {"default"}:
        problems["scheduler"] = (
            f"unknown scheduler '{scheduler}' (known: {', '.join(sorted(known))})"
        )
    upscaler, known = values.get("hires_upscaler"), set(info.get("hires_upscalers", ()))
    if values.get("hires") and upscaler and known and upscaler not in known:
        problems["hires_upscaler"] = f"unknown hires upscaler '{upscaler}'"
