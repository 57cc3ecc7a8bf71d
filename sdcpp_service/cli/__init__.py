"""The ``sdcpp`` command: one typer group assembled from a table; no engine import at start-up.

``main()`` builds only the command being run (typer inspects every registered function's
signature before parsing, ~0.2 s for all of them), so ``sdcpp convert`` and friends start
as fast as a one-command script; ``sdcpp --help`` and an unknown name get the whole group.
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated, Any

import typer

#: name → (module in sdcpp_service.cli, attribute, help override); a ``typer.Typer`` attribute
#: is a sub-group.
COMMANDS: dict[str, tuple[str, str, str | None]] = {
    "generate": ("generate", "generate", None),
    "img2img": (
        "generate", "generate", "Image-to-image: `generate` with --init-image (and --strength)."
    ),
    "inpaint": ("generate", "generate", "Inpainting: `generate` with --init-image and --mask."),
    "upscale": ("upscale", "upscale", None),
    "video": ("video", "video", None),
    "info": ("info", "info", None),
    "backend": ("backend", "app", None),
    "serve": ("serve", "serve", None),
    "models": ("models", "app", None),
    "pull": ("models", "pull_cmd", None),
    "convert": ("convert", "convert", None),
    "worker": ("worker", "worker", None),
    "queue": ("queue", "app", None),
}  # fmt: skip


HELP = "stable-diffusion.cpp for everyone: generate, convert, serve."


def build(only: str | None = None) -> typer.Typer:
    """The ``sdcpp`` group with every command, or with ``only`` that one (same usage lines)."""
    group = typer.Typer(
        name="sdcpp",
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for name, (module, attr, help_text) in COMMANDS.items():
        if only is not None and name != only:
            continue
        obj = getattr(importlib.import_module(f"sdcpp_service.cli.{module}"), attr)
        if isinstance(obj, typer.Typer):
            group.add_typer(obj, name=name)
        else:
            group.command(name, help=help_text)(obj)
    # The callback carries --version; it also keeps a group of one command (``only``) from
    # collapsing into that command, so `sdcpp NAME …` stays the usage line.
    group.callback(help=HELP)(_group)
    return group


def version_line() -> str:
    """``sdcpp-service 0.1.0 (stable-diffusion-cpp-python 0.4.7, stable-diffusion.cpp …)``,
    from package metadata: the engine is not loaded."""
    from importlib import metadata

    from sdcpp_service._version import VENDORED_ENGINE, __version__

    try:
        bindings = metadata.version("stable-diffusion-cpp-python")
    except metadata.PackageNotFoundError:
        return f"sdcpp-service {__version__} (stable-diffusion-cpp-python not installed)"
    engine = VENDORED_ENGINE.get(bindings)
    tail = f", stable-diffusion.cpp {engine[0]}" if engine else ""
    return f"sdcpp-service {__version__} (stable-diffusion-cpp-python {bindings}{tail})"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit()


def _group(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the package, bindings and engine versions and exit.",
            is_eager=True,
            callback=_show_version,
        ),
    ] = False,
) -> None:
    pass


_app: typer.Typer | None = None


def __getattr__(name: str) -> Any:
    """``app``: the whole group, built on first use (tests invoke it with CliRunner)."""
    global _app
    if name == "app":
        if _app is None:
            _app = build()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else None
    build(name if name in COMMANDS else None)()
