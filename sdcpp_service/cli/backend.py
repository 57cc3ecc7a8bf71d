"""``sdcpp backend``: engine build presets."""

from __future__ import annotations

import subprocess
from typing import Annotated

import typer

from sdcpp_service import backends
from sdcpp_service.cli._errors import handle_errors

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


@app.command("install")
@handle_errors
def install(
    preset: PresetArg,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the command, run nothing.")
    ] = False,
) -> None:
    """Rebuild the stable-diffusion-cpp-python bindings with PRESET (needs a compiler)."""
    argv, env = backends.install_command(backends.get_preset(preset))
    typer.echo(backends.describe_command(argv, env))
    if dry_run:
        return
    code = subprocess.call(argv, env=backends.merged_env(env))
    if code != 0:
        typer.echo(
            f"error: the engine build failed (exit {code}); see pip's output above", err=True
        )
        raise typer.Exit(code)
