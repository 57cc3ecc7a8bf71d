"""``sdcpp models …``: inspect and hash model files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sdcpp_service.cli._errors import handle_errors

app = typer.Typer(
    help="Inspect, hash, list and plan model files (detected by content, not by name).",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _human_count(n: float) -> str:
    for unit in ("", "K", "M", "B"):
        if n < 1000:
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.2f}{unit}"
        n /= 1000
    return f"{n:.2f}T"


@app.command("inspect")
@handle_errors
def inspect_cmd(
    file: Annotated[Path, typer.Argument(help="A model file or diffusers folder.")],
    as_json: JsonOption = False,
) -> None:
    """Say what a model file is, which loader slot takes it and what else it needs."""
    from sdcpp_service.models import inspect

    info = inspect(file)
    if as_json:
        typer.echo(json.dumps(info.to_dict(), indent=2))
        return
    d = info.defaults
    rows = [
        ("file", info.path),
        ("format", f"{info.format}, {_human_size(info.size)}"),
        (
            "kind",
            info.kind + (f" ({info.component})" if info.component not in (None, info.kind) else ""),
        ),
        ("arch", info.title),
        ("slot", info.slot or "-"),
        ("contains", ", ".join(info.contains) or "-"),
        ("needs", ", ".join(str(n) for n in info.needs) or "-"),
        ("dtypes", ", ".join(f"{k}: {v}" for k, v in info.dtypes.items()) or "-"),
        ("params", f"{_human_count(info.params)} in {info.tensors} tensors"),
    ]
    if info.engine_version:
        rows.append(("engine", info.engine_version))
    if d is not None:
        rows.append(
            ("defaults", f"{d.width}x{d.height}, {d.steps} steps, cfg {d.cfg_scale:g}, {d.sampler}")
        )
    if info.modelspec:
        rows.append(("modelspec", info.modelspec))
    rows.extend((k, str(v)) for k, v in info.details.items())
    rows.append(("supported", "yes" if info.supported else f"no: {info.reason}"))
    if info.supported and info.reason:
        rows.append(("note", info.reason))
    typer.echo("\n".join(f"{k:<10} {v}" for k, v in rows))


@app.command("hash")
@handle_errors
def hash_cmd(
    files: Annotated[list[Path], typer.Argument(help="Files to hash.")],
    as_json: JsonOption = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Re-read even if cached.")] = False,
) -> None:
    """SHA-256 and A1111 short hash (first 10 hex digits), cached by size and mtime."""
    from sdcpp_service.config import Settings
    from sdcpp_service.models import hash_file

    settings = Settings.from_env()
    results = [hash_file(f, settings, cache=not no_cache) for f in files]
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], indent=2))
        return
    for r in results:
        typer.echo(f"{r.sha256}  [{r.short}]  {r.path}")
