"""What A1111's txt2img/img2img send back: the images (in ``samples_format``, with or without
infotext as ``enable_pnginfo`` says), ``save_images`` copies in A1111's sample folders, and the
``info`` JSON string with every field A1111's ``Processed.js()`` has."""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path
from typing import Any

from sdcpp_service._version import __version__
from sdcpp_service.engine import names
from sdcpp_service.server.jobs import Job
from sdcpp_service.server.routes.a1111_settings import current
from sdcpp_service.server.service import Service


def _encode(path: Path, options: dict[str, Any]) -> bytes:
    """One output in the client's ``samples_format`` (png keeps the infotext chunk unless
    ``enable_pnginfo`` is false; jpg/webp carry it as the EXIF UserComment, as A1111 does)."""
    from PIL import Image, PngImagePlugin

    fmt = str(options.get("samples_format", "png")).lower()
    keep_info = options.get("enable_pnginfo", True) is not False
    if fmt == "png" and keep_info:
        return path.read_bytes()
    with Image.open(path) as im:
        image = im.copy()
    text = image.info.get("parameters") if keep_info else None
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, format="PNG", pnginfo=PngImagePlugin.PngInfo())
        return out.getvalue()
    quality = int(options.get("jpeg_quality", 80))
    exif = Image.Exif()
    if isinstance(text, str):
        exif[0x9286] = b"UNICODE\0" + text.encode("utf-16-be")  # UserComment
    kind = "JPEG" if fmt in ("jpg", "jpeg") else "WEBP"
    image.convert("RGB").save(out, format=kind, quality=quality, exif=exif)
    return out.getvalue()


def images_b64(svc: Service, job: Job) -> list[str]:
    options = current(svc)
    outputs = (job.result or {}).get("outputs", [])
    return [base64.b64encode(_encode(svc.output_path(n), options)).decode() for n in outputs]


def save_samples(svc: Service, job: Job) -> list[Path]:
    """``save_images: true``: copies in A1111's sample folder (``outdir_samples`` or
    ``outdir_txt2img_samples``/``outdir_img2img_samples``, under the data dir; a date folder
    when ``save_to_dirs``), named ``NNNNN-seed.ext`` as A1111 names them."""
    options = current(svc)
    key = "outdir_txt2img_samples" if job.kind == "txt2img" else "outdir_img2img_samples"
    folder = Path(str(options.get("outdir_samples") or options.get(key) or "outputs"))
    folder = folder if folder.is_absolute() else svc.settings.data_dir / folder
    if options.get("save_to_dirs", True):
        folder = folder / time.strftime("%Y-%m-%d", time.localtime(job.created))
    folder.mkdir(parents=True, exist_ok=True)
    fmt = str(options.get("samples_format", "png")).lower()
    ext = {"jpeg": "jpg"}.get(fmt, fmt)
    number = sum(1 for p in folder.iterdir() if p.is_file())
    result = job.result or {}
    seeds = result.get("seeds", [])
    saved = []
    for i, name in enumerate(result.get("outputs", [])):
        seed = seeds[i] if i < len(seeds) else job.params.get("seed", -1)
        target = folder / f"{number + i:05d}-{seed}.{ext}"
        tmp = target.with_name(target.name + ".incomplete")
        tmp.write_bytes(_encode(svc.output_path(name), options))
        tmp.replace(target)
        saved.append(target)
    return saved


def _inpainting_model(svc: Service, job: Job) -> bool:
    if job.kind == "txt2img":
        return False
    arch = next((e.arch for e in svc.index.entries() if str(e.path) == job.model), None)
    return bool(arch and "inpaint" in arch)


def info(svc: Service, job: Job, request_styles: list[str], note: str = "") -> str:
    """A1111's ``info`` JSON string for a finished (or interrupted) job."""
    result, p = job.result or {}, job.params
    seeds = result.get("seeds", [])
    used = result.get("params", {})
    sha = svc.hashes.known(job.model)
    options = current(svc)
    vae = job.load.get("vae")
    count = len(seeds) or 1
    clip_skip = p.get("clip_skip")
    data = {
        "prompt": p.get("prompt", ""),
        "all_prompts": [p.get("prompt", "")] * count,
        "negative_prompt": p.get("negative_prompt", ""),
        "all_negative_prompts": [p.get("negative_prompt", "")] * count,
        "seed": seeds[0] if seeds else p.get("seed", -1),
        "all_seeds": seeds,
        "subseed": -1,
        "all_subseeds": [-1] * len(seeds),
        "subseed_strength": 0,
        "width": result.get("width", p.get("width")),
        "height": result.get("height", p.get("height")),
        "sampler_name": names.sampler_label(str(used.get("sampler", p.get("sampler", "")))),
        "scheduler": names.scheduler_label(str(used.get("scheduler", ""))),
        "cfg_scale": p.get("cfg_scale", 7.0),
        "steps": p.get("steps", 20),
        "batch_size": p.get("batch", 1),
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": svc.model_name(job.model),
        "sd_model_hash": sha[:10] if sha else None,
        "sd_vae_name": Path(str(vae)).stem if isinstance(vae, str) else None,
        "sd_vae_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": p.get("strength") if job.kind != "txt2img" else None,
        "extra_generation_params": {"Note": note} if note else {},
        "index_of_first_image": 0,
        "infotexts": result.get("infotexts", []),
        "styles": request_styles,
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job.created)),
        "clip_skip": clip_skip
        if isinstance(clip_skip, int) and clip_skip > 0
        else options.get("CLIP_stop_at_last_layers", 1),
        "is_using_inpainting_conditioning": _inpainting_model(svc, job),
        "version": f"sdcpp-service {__version__}",
        "interrupted": job.state == "cancelled",
    }
    return json.dumps(data)
