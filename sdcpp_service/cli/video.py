"""``sdcpp video``: a video from a prompt (Wan 2.1 / 2.2), written as MP4, WebM, GIF, WebP or PNGs."""

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
from sdcpp_service.cli._progress import Bar
from sdcpp_service.cli._pull import PullOpt, ensure_model

Opt = typer.Option
DEFAULT_OUTPUT = "video.mp4"


class VideoBar(Bar):
    """The image progress bar, labelled with the stage (high noise, sampling)."""

    def update(self, p: Any) -> dict[str, Any]:
        return {**super().update(p), "description": p.phase}


def run(
    prompt: str,
    model: str,
    output: str | None,
    force: bool,
    as_json: bool,
    load: dict[str, Any],
    params: dict[str, Any],
) -> None:
    from sdcpp_service.config import Settings
    from sdcpp_service.engine.images import unique_path
    from sdcpp_service.engine.oneshot import generate_video

    if output is None:  # the default name never overwrites: video-1.mp4, video-2.mp4, …
        output = str(Path(DEFAULT_OUTPUT) if force else unique_path(Path(DEFAULT_OUTPUT)))
    load = {k: v for k, v in load.items() if v or v is False and k == "t5xxl"}
    params = {k: v for k, v in params.items() if v is not None}
    settings = Settings.from_env()
    tty = sys.stderr.isatty()
    with (
        interruptible(),
        stdout_to_stderr(),
        VideoBar(enabled=tty and not as_json, lines=not (tty or as_json)) as bar,
    ):
        result = generate_video(
            prompt, model, output, force=force, progress=bar, settings=settings, **load, **params
        )
    width, height = result.frames[0].size
    shown = result.paths[0] if len(result.paths) == 1 else result.paths[0].parent
    if as_json:
        record = {
            "path": str(shown),
            "files": [str(p) for p in result.paths],
            "seed": result.seed,
            "width": width,
            "height": height,
            "frames": len(result.frames),
            "fps": result.fps,
            "sampler": result.params["sampler"],
            "scheduler": result.params["scheduler"],
            "timings": result.timings,
        }
        typer.echo(json.dumps(record))
    else:
        typer.echo(
            f"{shown}  seed {result.seed}  {width}x{height}  "
            f"{len(result.frames)} frames @ {result.fps:g} fps"
        )


@handle_errors
def video(
    prompt: Annotated[str, typer.Argument(help="What happens; <lora:name:weight> tags work.")],
    model: ModelOpt,
    output: Annotated[
        str | None,
        Opt(
            "--output",
            "-o",
            help="out.mp4 (H.264), .webm (VP9), .gif, .webp, or DIR/ for numbered PNG frames "
            f"(default: ./{DEFAULT_OUTPUT}, never overwritten).",
        ),
    ] = None,
    frames: Annotated[
        int | None,
        ruled("frames", "--frames", "-f", help="Frames, 4k+1 (default: suits the model, 33)."),
    ] = None,
    fps: Annotated[
        float | None, ruled("fps", "--fps", help="Playback rate (default: 16; Wan2.2 TI2V 24).")
    ] = None,
    init_image: Annotated[
        Path | None, Opt("--init-image", "-i", help="First frame (image-to-video).")
    ] = None,
    end_image: Annotated[
        Path | None, Opt("--end-image", help="Last frame (first-last-frame models).")
    ] = None,
    negative: Annotated[str, Opt("--negative", "-n", help="Negative prompt.")] = "",
    width: Annotated[int | None, ruled("width", "--width", "-W", help="Width in pixels.")] = None,
    height: Annotated[
        int | None, ruled("height", "--height", "-H", help="Height in pixels.")
    ] = None,
    steps: Annotated[
        int | None, ruled("steps", "--steps", help="Sampling steps (default: 20).")
    ] = None,
    cfg: Annotated[
        float | None, ruled("cfg_scale", "--cfg", help="CFG scale (default: suits the model).")
    ] = None,
    flow_shift: Annotated[
        float | None,
        ruled(
            "flow_shift", "--flow-shift", help="Flow shift (default: the engine's; 3.0 is common)."
        ),
    ] = None,
    seed: Annotated[int, ruled("seed", "--seed", "-s", help="Seed; -1 picks one.")] = -1,
    sampler: Annotated[str | None, Opt("--sampler", help="e.g. euler, dpm++2m.")] = None,
    scheduler: Annotated[str | None, Opt("--scheduler", help="e.g. discrete, simple.")] = None,
    control_frames: Annotated[
        Path | None, Opt("--control-frames", help="Folder of control frames (VACE models).")
    ] = None,
    vace_strength: Annotated[
        float | None,
        ruled("vace_strength", "--vace-strength", help="How strongly control frames steer (VACE)."),
    ] = None,
    high_noise_model: Annotated[
        Path | None,
        Opt(
            "--high-noise-model",
            help="Wan2.2 A14B high-noise model (file or name); -m is the low-noise one.",
        ),
    ] = None,
    high_noise_steps: Annotated[
        int | None,
        Opt("--high-noise-steps", help="Steps on the high-noise model (default: by sigma)."),
    ] = None,
    high_noise_cfg: Annotated[
        float | None, Opt("--high-noise-cfg", help="CFG scale of the high-noise model.")
    ] = None,
    lora: Annotated[
        list[str] | None, Opt("--lora", help="LoRA NAME or PATH, optionally :WEIGHT.")
    ] = None,
    vae: Annotated[Path | None, Opt("--vae", help="Wan VAE (2.1, or 2.2 for TI2V 5B).")] = None,
    taesd: Annotated[Path | None, Opt("--taesd", help="Tiny video autoencoder.")] = None,
    t5xxl: Annotated[Path | None, Opt("--t5xxl", help="umT5-XXL text encoder.")] = None,
    clip_vision: Annotated[
        Path | None, Opt("--clip-vision", help="CLIP vision H (Wan2.1 I2V/FLF2V).")
    ] = None,
    no_text_encoder: Annotated[
        bool,
        Opt("--no-text-encoder", help="Run without umT5 (the prompt is ignored; for smoke tests)."),
    ] = False,
    threads: ThreadsOpt = 0,
    offload: OffloadOpt = False,
    vae_tiling: VaeTilingOpt = False,
    flash_attn: FlashAttnOpt = False,
    mmap: MmapOpt = False,
    vae_on_cpu: VaeOnCpuOpt = False,
    clip_on_cpu: ClipOnCpuOpt = False,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    fit: FitOpt = True,
    max_memory: MaxMemoryOpt = None,
    pull: PullOpt = False,
) -> None:
    """Generate a video from a text prompt (Wan2.1 T2V/I2V/FLF2V/VACE, Wan2.2 TI2V 5B and the
    A14B high+low-noise pair); image-to-video with --init-image (and --end-image)."""
    load: dict[str, Any] = {
        "vae": vae,
        "taesd": taesd,
        "t5xxl": False if no_text_encoder else t5xxl,
        "clip_vision": clip_vision,
        "high_noise_diffusion_model": high_noise_model,
        **engine_switches(threads, offload, flash_attn, mmap, clip_on_cpu, vae_on_cpu),
    }
    params: dict[str, Any] = {
        "negative_prompt": negative,
        "frames": frames,
        "fps": fps,
        "width": width,
        "height": height,
        "steps": steps,
        "cfg_scale": cfg,
        "flow_shift": flow_shift,
        "seed": seed,
        "sampler": sampler,
        "scheduler": scheduler,
        "init_image": init_image,
        "end_image": end_image,
        "control_frames": control_frames,
        "vace_strength": vace_strength,
        "high_noise_steps": high_noise_steps,
        "high_noise_cfg_scale": high_noise_cfg,
        "loras": lora or None,
        "vae_tiling": vae_tiling,
    }
    # what can be checked without the model is refused before it is resolved or fitted
    from sdcpp_service import rules
    from sdcpp_service.engine.videofile import check_target, video_target

    if params.get("frames") is not None:
        rules.check_frames(params["frames"])
    target = video_target(output) if output is not None else None
    if target is not None and target.kind != "frames":  # a frames folder is checked per frame
        check_target(target, 1, force)
    ensure_model(model, pull)
    if fit:
        apply_fit(model, prompt, load, params, max_memory)
    run(prompt, model, output, force, as_json, load, params)
