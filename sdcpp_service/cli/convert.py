"""``sdcpp convert``: a model file or folder → GGUF of any weight type the engine writes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sdcpp_service.cli import _progress
from sdcpp_service.cli._errors import fail, handle_errors
from sdcpp_service.cli._options import ForceOpt, JsonOpt

if TYPE_CHECKING:
    from sdcpp_service.convert.batch import Skipped
    from sdcpp_service.convert.plan import Plan
    from sdcpp_service.convert.run import ConvertResult

Opt = typer.Option


def _size(n: float) -> str:
    from sdcpp_service.convert.meta import fmt_bytes

    return fmt_bytes(n)


class Bar(_progress.Bar):
    """Tensors and bytes on stderr (rich); silent when stderr is not a terminal."""

    description = "starting"
    lazy = True  # rich loads while the engine converts, not before the job is sent

    def columns(self) -> list[Any]:
        from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeElapsedColumn

        return [
            TextColumn("{task.description:<10}"),
            BarColumn(),
            DownloadColumn(binary_units=False),
            TextColumn("{task.fields[tensors]}"),
            TimeElapsedColumn(),
        ]

    def fields(self) -> dict[str, Any]:
        return {"tensors": ""}

    def update(self, p: Any) -> dict[str, Any]:  # a ConvertProgress
        return {
            "description": p.phase,
            "total": p.bytes_total,
            "completed": p.bytes,
            "tensors": f"{p.tensors}/{p.tensors_total} tensors",
        }


def summary(r: ConvertResult) -> str:
    line = (
        f"{Path(r.source).name} ({_size(r.source_bytes)}) → {r.output} "
        f"({_size(r.output_bytes)}, {r.ratio:.2f}×) in {r.seconds:.1f} s, "
        f"peak RSS {r.peak_rss / 2**20:.0f} MiB"
    )
    if r.verified:
        v = r.verified
        w, h = (v.get("image") or [0, 0])[:2]
        line += f"; verified: loaded in {v['load_s']:.1f} s, {w}x{h} image in {v['gen_s']:.1f} s"
    return line


def warn(p: Plan) -> None:
    """The plan's likely mistakes, one ``warning:`` line each on stderr."""
    for text in p.warnings:
        typer.echo(f"warning: {text}", err=True)


def print_plan(p: Plan, as_json: bool, output: str) -> None:
    warn(p)
    if as_json:
        typer.echo(json.dumps({**p.to_dict(), "output": output}))
        return
    m = p.meta
    typer.echo(f"{m.get('source')}: {m.get('arch')} {m.get('kind')} ({m.get('slot')} slot)")
    typer.echo(f"type {p.qtype}; rules, first match wins:")
    for i, r in enumerate(p.rules, 1):
        typer.echo(f"  {i}. {r.origin:<8} {r.spec()}" + (f"   # {r.why}" if r.why else ""))
    if not p.rules:
        typer.echo("  (none)")
    width = max((len(t.name) for t in p.tensors), default=10)
    for t in p.tensors:
        shape = "×".join(str(d) for d in t.shape) or "scalar"
        typer.echo(f"  {t.name:<{width}}  {shape:>16}  {t.source:>5} → {t.target:<6} {t.reason}")
    for name in p.dropped:
        typer.echo(f"  {name:<{width}}  dropped by the engine")
    for src, dst, n, b in p.summary():
        typer.echo(f"{src:>6} → {dst:<6} {n:5d} tensors  {_size(b):>10}")
    for note in p.notes:
        typer.echo(f"note: {note}")
    ratio = p.output_bytes / p.source_bytes if p.source_bytes else 0.0
    typer.echo(
        f"projected output: {output} {_size(p.output_bytes)} "
        f"({ratio:.2f}× of {_size(p.source_bytes)} of weights)"
    )


#: --verify-with slot → the catalog kind a name given for it is looked up in.
SLOT_KINDS = {
    "model": "model", "diffusion_model": "model", "vae": "vae", "taesd": "taesd",
    "clip_l": "text_encoder", "clip_g": "text_encoder", "t5xxl": "text_encoder",
    "llm": "text_encoder", "clip_vision": "clip_vision", "control_net": "controlnet",
    "photo_maker": "photomaker",
}  # fmt: skip


def _verify_with(values: list[str]) -> dict[str, str]:
    """``[SLOT=]PATH|NAME`` → slot → file; a catalog name is looked up among its slot's kind."""
    from sdcpp_service.models import locate

    out: dict[str, str] = {}
    for v in values:
        slot, sep, path = v.partition("=")
        if not sep:
            slot, path = "model", v
        slot = slot.strip().replace("-", "_")
        out[slot] = str(locate(path, kind=SLOT_KINDS.get(slot), label=f"--verify-with {slot}"))
    return out


@handle_errors
def convert(
    src: Annotated[
        Path | None,
        typer.Argument(
            help="Model file (safetensors, ckpt, GGUF), diffusers folder or catalog name."
        ),
    ] = None,
    output: Annotated[
        str | None,
        Opt(
            "--output",
            "-o",
            help="Output file or folder (default: SRC's folder, <stem>-<type>.gguf).",
        ),
    ] = None,
    qtype: Annotated[
        str, Opt("--type", help="Weight type: q8_0, q4_0, q4_k, f16, … (see --list-types).")
    ] = "q8_0",
    rule: Annotated[
        list[str] | None,
        Opt("--rule", help="'REGEX=TYPE' for matching tensor names; before the default rules."),
    ] = None,
    vae: Annotated[Path | None, Opt("--vae", help="Bake this VAE into a checkpoint.")] = None,
    verify: Annotated[
        bool, Opt("--verify", help="Load the output in the engine (and make one tiny image).")
    ] = False,
    verify_with: Annotated[
        list[str] | None,
        Opt(
            "--verify-with",
            help="[SLOT=]PATH or name to load with the output for --verify (a component needs "
            "a MODEL).",
        ),
    ] = None,
    plan_only: Annotated[
        bool, Opt("--plan", help="Print each tensor's type and the projected size; write nothing.")
    ] = False,
    all_dir: Annotated[
        Path | None, Opt("--all", help="Convert every model file in this folder (skips converted).")
    ] = None,
    catalog: Annotated[
        bool,
        Opt("--catalog", help="Write into the model folder of its kind (models/checkpoints…)."),
    ] = False,
    no_defaults: Annotated[
        bool, Opt("--no-default-rules", help="Only --rule and --type decide the types.")
    ] = False,
    list_types: Annotated[
        bool, Opt("--list-types", help="List the weight types the engine writes and exit.")
    ] = False,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Convert a model to GGUF (quantize): DST.incomplete is renamed only on success; the source
    is never modified. A sidecar DST.json records architecture, source sha256, type, tool."""
    from sdcpp_service.convert import run as conv

    if list_types:
        for name in conv.list_types():
            typer.echo(name)
        return
    rules = list(rule or [])
    if all_dir is not None:
        if src is not None:
            raise fail("give either SRC or --all DIR, not both")
        _convert_all(all_dir, output, qtype, rules, force, verify, catalog, as_json)
        return
    if src is None:
        raise fail("missing SRC (or --all DIR)")
    from sdcpp_service.models import locate

    src = locate(src, label="model")  # a path, or a catalog name (`sdcpp models list`)
    vae = None if vae is None else locate(vae, kind="vae", label="vae")
    verify_files = _verify_with(verify_with or [])
    if plan_only:
        from sdcpp_service.config import Settings
        from sdcpp_service.convert._engine import engine_types
        from sdcpp_service.convert.source import open_source

        table = engine_types()
        source = open_source(src, vae)
        p = conv.build_plan(source, qtype, rules, table, defaults=not no_defaults)
        settings = Settings.from_env()
        root = settings.model_dirs[0] if catalog and settings.model_dirs else None
        out = conv.output_path(source, output, p.qtype, table.writable(), root)
        print_plan(p, as_json, str(out))
        return
    with Bar(enabled=sys.stderr.isatty() and not as_json) as bar:
        result = conv.convert(
            src,
            output,
            qtype,
            rules,
            vae,
            force=force,
            verify=verify,
            verify_with=verify_files,
            catalog=catalog,
            defaults=not no_defaults,
            progress=bar,
        )
    warn(result.plan)
    typer.echo(json.dumps(result.to_dict()) if as_json else summary(result))


def _convert_all(
    folder: Path,
    output: str | None,
    qtype: str,
    rules: list[str],
    force: bool,
    verify: bool,
    catalog: bool,
    as_json: bool,
) -> None:
    from sdcpp_service.convert.batch import Skipped, convert_all

    failed = 0

    def show(r: ConvertResult | Skipped) -> None:
        nonlocal failed
        if as_json:
            typer.echo(json.dumps(r.to_dict()))
        elif isinstance(r, Skipped):
            typer.echo(f"{Path(r.source).name}: {r.status}: {r.reason}")
        else:
            warn(r.plan)
            typer.echo(summary(r))
        failed += isinstance(r, Skipped) and r.status == "failed"

    with Bar(enabled=sys.stderr.isatty() and not as_json) as bar:
        convert_all(
            folder,
            qtype,
            rules,
            dst_dir=output,
            force=force,
            verify=verify,
            catalog=catalog,
            progress=bar,
            on_result=show,
        )
    if failed:
        raise typer.Exit(5)
