"""``sdcpp models …``: inspect, hash, list and plan model files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sdcpp_service.cli._errors import handle_errors
from sdcpp_service.cli._fit import MaxMemoryOpt
from sdcpp_service.cli._options import FlashAttnOpt, MmapOpt, VaeTilingOpt

if TYPE_CHECKING:
    from sdcpp_service.models import Entry

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
    file: Annotated[
        str, typer.Argument(help="A model file or diffusers folder, or a catalog name.")
    ],
    as_json: JsonOption = False,
) -> None:
    """Say what a model file is, which loader slot takes it and what else it needs."""
    from sdcpp_service.config import Settings
    from sdcpp_service.models import inspect, locate

    info = inspect(locate(file, Settings.from_env()))
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
    files: Annotated[list[str], typer.Argument(help="Files or catalog names to hash.")],
    as_json: JsonOption = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Re-read even if cached.")] = False,
) -> None:
    """SHA-256 and A1111 short hash (first 10 hex digits), cached by size and mtime."""
    from sdcpp_service.config import Settings
    from sdcpp_service.models import hash_file, locate

    settings = Settings.from_env()
    paths = [locate(f, settings) for f in files]  # every name checked before any is read
    results = [hash_file(p, settings, cache=not no_cache) for p in paths]
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], indent=2))
        return
    for r in results:
        typer.echo(f"{r.sha256}  [{r.short}]  {r.path}")


@app.command("list")
@handle_errors
def list_cmd(
    kind: Annotated[
        str | None, typer.Option("--kind", help="Only this kind (model, vae, lora, …).")
    ] = None,
    as_json: JsonOption = False,
    all_files: Annotated[
        bool, typer.Option("--all", help="Also list unreadable and unsupported files.")
    ] = False,
) -> None:
    """List the model folders' files by kind, with their unique short names."""
    from sdcpp_service.config import Settings
    from sdcpp_service.errors import UnknownName
    from sdcpp_service.models import scan
    from sdcpp_service.models.catalog import KINDS

    if kind is not None and kind not in KINDS:
        raise UnknownName("kind", kind, list(KINDS))
    catalog = scan(Settings.from_env())
    wanted = [e for e in catalog.entries if kind is None or e.kind == kind]
    entries = [e for e in wanted if all_files or (e.info is not None and e.info.supported)]
    skipped = [e for e in wanted if e not in entries]
    if skipped:
        typer.echo(skipped_line(skipped), err=True)
    if as_json:
        typer.echo(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    if not entries:
        roots = ", ".join(str(r.path) for r in catalog.roots) or "none"
        typer.echo(f"no models found (folders: {roots})", err=True)
        return
    width = max(len(e.name) for e in entries)
    for e in sorted(entries, key=lambda e: (e.kind, e.name)):
        what = e.info.title if e.info else f"error: {e.error}"
        if e.info and not e.info.supported:
            what += f" (unsupported: {e.info.reason})"
        typer.echo(f"{e.kind:<12} {e.name:<{width}}  {what}")


def skipped_line(skipped: list[Entry]) -> str:
    """``skipped 3 files: 2 unreadable (…), 1 unsupported (…); --all lists them``."""
    groups: dict[str, list[str]] = {"unreadable": [], "unsupported": []}
    for e in skipped:
        if e.info is None:
            groups["unreadable"].append(e.error or "unreadable")
        else:
            groups["unsupported"].append(e.info.reason or "the engine cannot load it")
    parts = []
    for label, reasons in groups.items():
        if reasons:
            distinct = list(dict.fromkeys(reasons))
            why = "; ".join(distinct[:2]) + ("; …" if len(distinct) > 2 else "")
            parts.append(f"{len(reasons)} {label} ({why})")
    n = len(skipped)
    return f"skipped {n} file{'s' if n > 1 else ''}: {', '.join(parts)}; --all lists them"


@app.command("plan")
@handle_errors
def plan_cmd(
    model: Annotated[str, typer.Argument(help="A model name from `sdcpp models list`, or a path.")],
    vae: Annotated[str | None, typer.Option("--vae", help="VAE file or name.")] = None,
    clip_l: Annotated[str | None, typer.Option("--clip-l", help="CLIP-L file or name.")] = None,
    clip_g: Annotated[str | None, typer.Option("--clip-g", help="CLIP-G file or name.")] = None,
    t5xxl: Annotated[str | None, typer.Option("--t5xxl", help="T5-XXL/umT5 file or name.")] = None,
    llm: Annotated[str | None, typer.Option("--llm", help="LLM text encoder file or name.")] = None,
    clip_vision: Annotated[
        str | None, typer.Option("--clip-vision", help="CLIP vision file or name.")
    ] = None,
    taesd: Annotated[str | None, typer.Option("--taesd", help="Tiny autoencoder.")] = None,
    size: Annotated[
        str | None, typer.Option("--size", help="WxH: also estimate the memory of a job.")
    ] = None,
    batch: Annotated[int, typer.Option("--batch", help="Images per job (with --size).")] = 1,
    frames: Annotated[
        int | None, typer.Option("--frames", help="Video frames (with --size).")
    ] = None,
    vae_tiling: VaeTilingOpt = False,
    flash_attn: FlashAttnOpt = False,
    mmap: MmapOpt = False,
    max_memory: MaxMemoryOpt = None,
    server: Annotated[
        bool,
        typer.Option(
            "--server",
            help="Estimate as a warm `sdcpp serve` worker holds the model (default: as "
            "`sdcpp generate` runs it, freeing each stage's weights when done).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show which file goes to which loader slot for MODEL (components found by content);
    with --size, the job's estimated peak memory per phase and the switches that fit it."""
    from sdcpp_service.config import Settings
    from sdcpp_service.models import plan

    given = {"vae": vae, "clip_l": clip_l, "clip_g": clip_g, "t5xxl": t5xxl, "llm": llm,
             "clip_vision": clip_vision, "taesd": taesd}  # fmt: skip
    overrides = {k: (None if v == "none" else v) for k, v in given.items() if v is not None}
    result = plan(model, overrides, Settings.from_env())
    data = result.to_dict()
    fitted = None
    if size is not None:
        from sdcpp_service.cli._fit import plan_estimate

        fitted = plan_estimate(result, size, batch, frames, vae_tiling, flash_attn, mmap,
                               max_memory, warm=server)  # fmt: skip
        data.update(fitted)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(f"{result.info.name}: {result.info.title}")
    width = max(len(s) for s in result.slots)
    for slot, path in result.slots.items():
        typer.echo(f"  {slot:<{width}}  {path}  [{result.sources[slot]}]")
    if fitted is not None:
        from sdcpp_service.cli._fit import estimate_lines

        typer.echo("\n".join(estimate_lines(fitted)))


@app.command("pull")
@handle_errors
def pull_cmd(
    repo_or_recipe: Annotated[
        str, typer.Argument(help="A recipe name (below), or a Hugging Face repository and FILE…")
    ],
    files: Annotated[list[str] | None, typer.Argument(help="Files in the repository.")] = None,
    dest: Annotated[
        Path | None, typer.Option("--dir", help="Target folder (default: ./models).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Download even if present.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Download model files or a recipe from the Hugging Face Hub; say what each one is.

    Recipes fetch a model with everything it needs; the recipe's name is then a model name:
    sd-turbo, sd15, sd15-inpainting, sdxl, sdxl-turbo, flux1-schnell, wan2.1-t2v-1.3b,
    z-image-turbo, taesd, esrgan-x4."""
    from sdcpp_service.config import Settings
    from sdcpp_service.models import pull

    results = pull(repo_or_recipe, files or (), Settings.from_env(), dest=dest, force=force)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], indent=2))
        return
    for r in results:
        what = f"{r.info.kind} {r.info.title}" if r.info else f"unreadable: {r.error}"
        state = "downloaded" if r.downloaded else "present"
        typer.echo(f"{state:<10} {r.path}  ({what})")
