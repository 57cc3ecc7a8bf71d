"""Shared ``Annotated`` option aliases, so every command spells an option the same way."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sdcpp_service import rules
from sdcpp_service.errors import InvalidRequest

if TYPE_CHECKING:
    from sdcpp_service.config import Settings


def host_settings(models: list[Path] | None, data_dir: Path | None, threads: int) -> Settings:
    """The environment's settings with ``--models`` (added), ``--data-dir`` and ``--threads``, as
    ``sdcpp serve`` and ``sdcpp worker`` take them."""
    from sdcpp_service.config import Settings

    settings = Settings.from_env()
    if models:
        settings = settings.with_model_dirs(tuple(m.expanduser().resolve() for m in models))
    if data_dir is not None:
        settings = replace(settings, data_dir=data_dir.expanduser())
    if threads:
        settings = replace(settings, threads=threads)
    return settings


def check_pool(workers: int, parallel: int, preloads: int) -> None:
    """``--workers``, ``--parallel`` and ``--preload`` as ``sdcpp serve`` and ``sdcpp worker``
    take them: one line (exit 2) for a pool that cannot be."""
    from sdcpp_service.cli._errors import fail

    if not 1 <= workers <= 64:
        raise fail("--workers must be between 1 and 64")
    if not 0 <= parallel <= workers:
        raise fail(f"--parallel must be between 0 (automatic) and --workers ({workers})")
    if preloads > workers:
        raise fail(f"--preload names {preloads} models but there are {workers} worker(s): each "
                   f"worker keeps one model warm; add --workers {preloads}")  # fmt: skip


def ruled(field: str, *flags: str, help: str = "") -> Any:
    """A ``typer.Option`` for a request field whose help shows the bounds or choices declared in
    :mod:`sdcpp_service.rules` and whose value is checked by the same rule as the server's
    (``error: --steps: must be between 1 and 1000, got 0``, one line, exit 2)."""
    rule = rules.rule_of(field)

    def check(value: Any) -> Any:
        if value is None:
            return None
        try:
            if field in ("width", "height"):  # a side past the limit: suggest one inside it
                rules.check_limits({field: value})
            return rules.coerce(field, value, rule)
        except InvalidRequest as exc:  # one line, as every other refusal (not typer's box)
            typer.echo(f"error: {flags[0]}: {exc.reason}", err=True)
            raise typer.Exit(2) from None

    bounds = rules.describe(rule)
    text = f"{help} [{bounds}]" if help and bounds else help or f"[{bounds}]"
    return typer.Option(*flags, help=text, callback=check)


ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="Model file, or a name from `sdcpp models list`.")
]
OutOpt = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Output file or folder (default: ./output.png)."),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object per output.")]
ThreadsOpt = Annotated[
    int, typer.Option("--threads", "-t", help="CPU threads (default: physical cores).")
]
ParallelOpt = Annotated[
    int,
    typer.Option(
        "--parallel",
        help="Jobs run at once (0: every worker on a GPU; on the CPU, as many as the physical "
        "cores hold at --threads each).",
    ),
]
OffloadOpt = Annotated[
    bool, typer.Option("--offload", help="Keep weights in RAM, move to VRAM on use.")
]
VaeTilingOpt = Annotated[bool, typer.Option("--vae-tiling", help="Decode in tiles (less memory).")]
FlashAttnOpt = Annotated[bool, typer.Option("--flash-attn", help="Flash attention (less memory).")]
MmapOpt = Annotated[bool, typer.Option("--mmap", help="Memory-map the model files.")]
ClipOnCpuOpt = Annotated[
    bool, typer.Option("--clip-on-cpu", help="Keep the text encoders on the CPU.")
]
VaeOnCpuOpt = Annotated[bool, typer.Option("--vae-on-cpu", help="Keep the VAE on the CPU.")]


def engine_switches(
    threads: int, offload: bool, flash_attn: bool, mmap: bool, clip_on_cpu: bool, vae_on_cpu: bool
) -> dict[str, int | bool]:
    """The options above as ``Pipeline.load`` arguments."""
    return {
        "threads": threads,
        "offload_to_cpu": offload,
        "flash_attn": flash_attn,
        "mmap": mmap,
        "clip_on_cpu": clip_on_cpu,
        "vae_on_cpu": vae_on_cpu,
    }
