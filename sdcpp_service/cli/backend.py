"""``sdcpp backend``: engine build presets."""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated

import typer

from sdcpp_service import backends, errors, toolchain
from sdcpp_service.cli._errors import handle_errors
from sdcpp_service.config import Settings

app = typer.Typer(
    help="Engine build presets (CPU, CUDA, Vulkan, Metal, ROCm, …).", no_args_is_help=True
)

PresetArg = Annotated[
    str, typer.Argument(help="Preset name: " + ", ".join(p.name for p in backends.PRESETS))
]


@app.command("list")
@handle_errors
def list_presets() -> None:
    """List the presets and the cmake flags each one sets."""
    for preset in backends.PRESETS:
        typer.echo(f"{preset.name:9} {preset.cmake_args():60} {preset.description}")


@app.command("args")
@handle_errors
def args(preset: PresetArg) -> None:
    """Print the CMAKE_ARGS string for PRESET."""
    typer.echo(backends.get_preset(preset).cmake_args())


@app.command("check")
@handle_errors
def check(preset: PresetArg) -> None:
    """Check that PRESET's toolchain is present (what `install` checks first); exit 8 if not."""
    name = backends.get_preset(preset).name
    missing = _preflight(name)
    if missing:
        raise errors.ToolchainMissing(name, missing)
    typer.echo(f"the {name} toolchain is complete")


@app.command("install")
@handle_errors
def install(
    preset: PresetArg,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Check the toolchain and show the command; build nothing."),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Build even when the preflight finds pieces missing.")
    ] = False,
) -> None:
    """Rebuild the stable-diffusion-cpp-python bindings with PRESET.

    First checks the preset's toolchain (compilers, SDK versions, a device) and stops with one
    line per missing piece saying how to get it; the compiler's output goes to a log file, and a
    failed build ends with its last compiler error and the log's path.
    """
    chosen = backends.get_preset(preset)
    argv, env = backends.install_command(chosen)
    missing = _preflight(chosen.name)
    typer.echo(backends.describe_command(argv, env))
    if missing and force:
        typer.echo(f"warning: --force: building without {', '.join(missing)}", err=True)
    elif missing:
        raise errors.ToolchainMissing(chosen.name, missing)
    if dry_run:
        return
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log = Settings.from_env().data_dir / "logs" / f"backend-{chosen.name}-{stamp}.log"
    typer.echo(f"building the engine ({chosen.name}); this takes minutes; log: {log}", err=True)
    started = time.monotonic()
    tty = sys.stderr.isatty()

    def step(done: int, total: int) -> None:
        if tty:
            typer.echo(f"\r  compiling {done}/{total}", err=True, nl=False)

    backends.build(chosen, log, step)
    if tty:
        typer.echo("", err=True)
    typer.echo(
        f"built and installed the {chosen.name} engine in {time.monotonic() - started:.0f} s; "
        "`sdcpp info` shows the devices it sees",
        err=True,
    )


def _preflight(preset: str) -> list[str]:
    """Print one line per check; return the names of the missing pieces."""
    checks = toolchain.preflight(preset, toolchain.Host(env=dict(os.environ)))
    for item in checks:
        typer.echo(item.line(), err=True)
    return [c.name for c in checks if c.status == "missing"]
