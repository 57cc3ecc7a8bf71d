"""``sdcpp generate`` / ``img2img`` / ``inpaint``: images from a prompt, with a live progress bar."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from sdcpp_service.cli._errors import handle_errors
from sdcpp_service.cli._fit import FitOpt, MaxMemoryOpt, apply_fit
from sdcpp_service.cli._interrupt import interruptible, stdout_to_stderr
from sdcpp_service.cli._options import (
    ClipOnCpuOpt,
    FlashAttnOpt,
    ForceOpt,
    JsonOpt,
    MmapOpt,
    ModelOpt,
    OffloadOpt,
    ThreadsOpt,
    VaeOnCpuOpt,
    VaeTilingOpt,
    engine_switches,
    ruled,
)
from sdcpp_service.cli._outputs import DEFAULT_OUTPUT, check_output, output_paths
from sdcpp_service.cli._photomaker import (
    PhotoMakerOpt,
    PmIdEmbedOpt,
    PmIdImagesOpt,
    PmStyleStrengthOpt,
    pm_params,
)
from sdcpp_service.cli._progress import Bar
from sdcpp_service.cli._pull import PullOpt, ensure_model
from sdcpp_service.errors import MissingComponent

Opt = typer.Option


def run(
    prompt: str,
    model: str,
    output: str | None,
    force: bool,
    as_json: bool,
    load: dict[str, Any],
    params: dict[str, Any],
) -> None:
    from sdcpp_service.engine.generate import encodes
    from sdcpp_service.engine.images import save_image
    from sdcpp_service.engine.pipeline import Pipeline

    slot = load.pop("slot", None)
    load = {
        k: v
        for k, v in load.items()
        if v not in (None, False, "", 0) or (k == "t5xxl" and v is False)  # False: without it
    }
    # one image per process: free each stage's weights when it is done, and skip the VAE
    # encoder when nothing is encoded, as sd-cli does (the peak is then one stage, not all)
    load.setdefault("vae_decode_only", not encodes(params))
    with (
        interruptible(),
        stdout_to_stderr(),
        Pipeline.load(model, slot=slot, one_shot=True, **load) as pipe,
    ):
        request = pipe.request(prompt, **params)
        tty = sys.stderr.isatty()
        with Bar(enabled=tty and not as_json, lines=not tty and not as_json) as bar:
            result = pipe.run(request, progress=bar)
    paths = output_paths(output, len(result.images), result.seeds, force)
    for image, seed, path in zip(result.images, result.seeds, paths, strict=True):
        save_image(image, path, image.info["parameters"], image.info["sdcpp"], force=force)
        if as_json:
            record = {
                "path": str(path),
                "seed": seed,
                "width": image.width,
                "height": image.height,
                "sampler": result.params["sampler"],
                "scheduler": result.params["scheduler"],
                "timings": {**result.timings, "load": pipe.context.load_seconds},
            }
            typer.echo(json.dumps(record))
        else:
            typer.echo(f"{path}  seed {seed}  {image.width}x{image.height}")


def hires_params(
    scale: float, size: str | None, upscaler: str, steps: int, denoise: float
) -> dict[str, Any]:
    """The hires-fix request fields; a non-built-in upscaler name is an ESRGAN model."""
    from sdcpp_service.config import Settings
    from sdcpp_service.engine.sdcpp import native
    from sdcpp_service.engine.upscale import resolve_upscaler
    from sdcpp_service.errors import InvalidRequest

    width = height = 0
    if size:
        w, sep, h = size.lower().partition("x")
        if not (sep and w.isdigit() and h.isdigit()):
            raise InvalidRequest("hires_size", f"'{size}' is not WIDTHxHEIGHT, e.g. 1024x1024")
        width, height = int(w), int(h)
    out: dict[str, Any] = {
        "hires": True,
        "hires_scale": scale,
        "hires_width": width,
        "hires_height": height,
        "hires_steps": steps,
        "hires_denoise": denoise,
    }
    builtins = set(native().enum_names("hires_upscaler")) - {"none", "model"}
    if upscaler.lower() in builtins:
        out["hires_upscaler"] = upscaler.lower()
    else:
        out["hires_model"] = resolve_upscaler(upscaler, Settings.from_env())
    return out


@handle_errors
def generate(
    prompt: Annotated[str, typer.Argument(help="What to draw; <lora:name:weight> tags work.")],
    model: ModelOpt,
    output: Annotated[
        str | None,
        Opt(
            "--output",
            "-o",
            help="out.png, .jpg, .jpeg, .webp, or DIR/ (created) for sdcpp-SEED.png files "
            f"(default: ./{DEFAULT_OUTPUT}, numbered if taken).",
        ),
    ] = None,
    negative: Annotated[str, Opt("--negative", "-n", help="Negative prompt.")] = "",
    width: Annotated[int | None, ruled("width", "--width", "-W", help="Width in pixels.")] = None,
    height: Annotated[
        int | None, ruled("height", "--height", "-H", help="Height in pixels.")
    ] = None,
    steps: Annotated[
        int | None, ruled("steps", "--steps", help="Sampling steps (default: suits the model).")
    ] = None,
    cfg: Annotated[
        float | None, ruled("cfg_scale", "--cfg", help="CFG scale (default: suits the model).")
    ] = None,
    guidance: Annotated[
        float | None, ruled("guidance", "--guidance", help="Distilled guidance (Flux).")
    ] = None,
    seed: Annotated[int, ruled("seed", "--seed", "-s", help="Seed; -1 picks one.")] = -1,
    sampler: Annotated[
        str | None, Opt("--sampler", help="e.g. euler_a, dpm++2m, 'Euler a'.")
    ] = None,
    scheduler: Annotated[str | None, Opt("--scheduler", help="e.g. karras, discrete.")] = None,
    batch: Annotated[
        int, ruled("batch", "--batch", "-b", help="Images to make (seeds seed, seed+1…).")
    ] = 1,
    clip_skip: Annotated[
        int, ruled("clip_skip", "--clip-skip", help="CLIP layers to skip (-1: model default).")
    ] = -1,
    eta: Annotated[float | None, ruled("eta", "--eta", help="Sampler noise multiplier.")] = None,
    init_image: Annotated[Path | None, Opt("--init-image", "-i", help="img2img input.")] = None,
    strength: Annotated[
        float, ruled("strength", "--strength", help="img2img denoising strength.")
    ] = 0.75,
    mask: Annotated[Path | None, Opt("--mask", help="Inpaint mask (white = repaint).")] = None,
    control_net: Annotated[Path | None, Opt("--control-net", help="ControlNet model file.")] = None,
    control_image: Annotated[Path | None, Opt("--control-image", help="Control image.")] = None,
    control_strength: Annotated[
        float,
        ruled(
            "control_strength", "--control-strength", help="How strongly the control image steers."
        ),
    ] = 0.9,
    canny: Annotated[bool, Opt("--canny", help="Canny-preprocess the control image.")] = False,
    ref_image: Annotated[
        list[Path] | None, Opt("--ref-image", help="Reference image (edit models).")
    ] = None,
    lora: Annotated[
        list[str] | None, Opt("--lora", help="LoRA NAME or PATH, optionally :WEIGHT.")
    ] = None,
    vae: Annotated[Path | None, Opt("--vae")] = None,
    taesd: Annotated[
        Path | None, Opt("--taesd", help="Tiny autoencoder for fast decoding.")
    ] = None,
    clip_l: Annotated[Path | None, Opt("--clip-l")] = None,
    clip_g: Annotated[Path | None, Opt("--clip-g")] = None,
    t5xxl: Annotated[Path | None, Opt("--t5xxl")] = None,
    llm: Annotated[Path | None, Opt("--llm", help="LLM text encoder (Qwen, Mistral…).")] = None,
    no_t5: Annotated[
        bool,
        Opt(
            "--no-t5",
            help="Run Flux/SD3 without T5-XXL (its context is zeros: less memory and time, "
            "prompts followed less closely).",
        ),
    ] = False,
    photo_maker: PhotoMakerOpt = None,
    pm_id_images: PmIdImagesOpt = None,
    pm_id_embed: PmIdEmbedOpt = None,
    pm_style_strength: PmStyleStrengthOpt = None,
    diffusion_model: Annotated[
        bool, Opt("--diffusion-model", help="Load MODEL in the diffusion_model (DiT) slot.")
    ] = False,
    threads: ThreadsOpt = 0,
    offload: OffloadOpt = False,
    vae_tiling: VaeTilingOpt = False,
    flash_attn: FlashAttnOpt = False,
    mmap: MmapOpt = False,
    clip_on_cpu: ClipOnCpuOpt = False,
    vae_on_cpu: VaeOnCpuOpt = False,
    cache_mode: Annotated[
        str, Opt("--cache-mode", help="Step caching: easycache, ucache, …")
    ] = "disabled",
    lora_apply_mode: Annotated[
        str, Opt("--lora-apply-mode", help="at_runtime or immediately.")
    ] = "at_runtime",
    hires: Annotated[
        bool, Opt("--hires", help="Hires fix: a second pass at a larger size.")
    ] = False,
    hires_scale: Annotated[
        float, ruled("hires_scale", "--hires-scale", help="Hires target scale.")
    ] = 2.0,
    hires_size: Annotated[
        str | None, Opt("--hires-size", help="Hires target WxH (overrides scale).")
    ] = None,
    hires_upscaler: Annotated[
        str,
        Opt(
            "--hires-upscaler",
            help="latent, 'latent (nearest)', lanczos, nearest, or an ESRGAN model.",
        ),
    ] = "latent",
    hires_steps: Annotated[
        int, ruled("hires_steps", "--hires-steps", help="Second-pass steps (0: same as --steps).")
    ] = 0,
    hires_denoise: Annotated[
        float, ruled("hires_denoise", "--hires-denoise", help="Second-pass denoising strength.")
    ] = 0.7,
    style: Annotated[
        list[str] | None,
        Opt(
            "--style",
            help="A1111 prompt style from styles.csv (data dir or model folders; repeatable).",
        ),
    ] = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    fit: FitOpt = True,
    max_memory: MaxMemoryOpt = None,
    pull: PullOpt = False,
) -> None:
    """Generate images from a text prompt (txt2img; img2img with --init-image; inpaint with
    --mask; ControlNet with --control-net/--control-image; editing with --ref-image)."""
    load = {
        "slot": "diffusion_model" if diffusion_model else None,
        "vae": vae,
        "taesd": taesd,
        "clip_l": clip_l,
        "clip_g": clip_g,
        "t5xxl": False if no_t5 else t5xxl,
        "llm": llm,
        "control_net": control_net,
        "photo_maker": photo_maker,
        **engine_switches(threads, offload, flash_attn, mmap, clip_on_cpu, vae_on_cpu),
        "lora_apply_mode": lora_apply_mode,
    }
    params: dict[str, Any] = {
        "negative_prompt": negative,
        "width": width,
        "height": height,
        "steps": steps,
        "cfg_scale": cfg,
        "guidance": guidance,
        "seed": seed,
        "sampler": sampler,
        "scheduler": scheduler,
        "batch": batch,
        "clip_skip": clip_skip,
        "eta": eta,
        "init_image": init_image,
        "strength": strength,
        "mask": mask,
        "control_image": control_image,
        "control_strength": control_strength,
        "canny": canny,
        "ref_images": ref_image or None,
        "loras": lora or None,
        "vae_tiling": vae_tiling,
        "cache_mode": cache_mode,
        **pm_params(pm_id_images, pm_id_embed, pm_style_strength),
    }
    if hires:
        params.update(
            hires_params(hires_scale, hires_size, hires_upscaler, hires_steps, hires_denoise)
        )
    if style:
        from sdcpp_service.styles import apply_styles

        prompt, params["negative_prompt"] = apply_styles(prompt, negative, style)
    if no_t5 and t5xxl is not None:
        from sdcpp_service.errors import InvalidRequest

        raise InvalidRequest("t5xxl", "--no-t5 and --t5xxl contradict each other; give one")
    from sdcpp_service import rules

    params = {k: v for k, v in params.items() if v is not None}
    # what can be checked without the model is refused first: before it is resolved or fitted
    rules.check_limits(params)
    check_output(output, int(params.get("batch") or 1), force)
    ensure_model(model, pull)
    try:
        if fit:
            apply_fit(model, prompt, load, params, max_memory)
        run(prompt, model, output, force, as_json, load, params)
    except MissingComponent as exc:
        if exc.kind != "t5xxl":
            raise
        raise MissingComponent(
            exc.path, exc.kind, f"{exc.reason}; or add --no-t5 to run without it", exc.looked_for
        ) from None
