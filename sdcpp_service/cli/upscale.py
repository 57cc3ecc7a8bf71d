"""``sdcpp upscale``: ESRGAN upscaling of files, folders and globs."""

from __future__ import annotations

import glob
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated

import typer

from sdcpp_service.cli._errors import fail, handle_errors
from sdcpp_service.cli._fit import FitOpt, MaxMemoryOpt, fit_upscale
from sdcpp_service.cli._interrupt import interruptible, stdout_to_stderr
from sdcpp_service.cli._options import ForceOpt, JsonOpt, ThreadsOpt, ruled
from sdcpp_service.cli._pull import PullOpt, ensure_model

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def expand_inputs(items: list[str]) -> list[Path]:
    """Files, folders (their images, sorted) and glob patterns → image files, in order."""
    out: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.exists():
            out.append(path)
        elif any(ch in item for ch in "*?["):
            out += sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
        else:
            raise fail(f"{item}: no such file, folder or matching pattern")
    return list(dict.fromkeys(out))


def _track(items: list[tuple[Path, Path]], enabled: bool) -> Iterator[tuple[Path, Path]]:
    if not enabled:
        yield from items
        return
    from rich.console import Console
    from rich.progress import track

    seq: Iterable[tuple[Path, Path]] = track(
        items, description="upscaling", console=Console(stderr=True), transient=True
    )
    yield from seq


def output_for(src: Path, output: Path | None, many: bool, scale_label: str) -> Path:
    if output is None:
        return src.with_name(f"{src.stem}-x{scale_label}{src.suffix}")
    if many or output.is_dir() or str(output).endswith(("/", "\\")):
        return output / f"{src.stem}-x{scale_label}{src.suffix}"
    return output


@handle_errors
def upscale(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output file (one input) or folder (default: beside each input, NAME-xS.ext).",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="ESRGAN file or catalog name, or lanczos/nearest (a plain resize, ×2 by "
            "default); default: the first cataloged upscaler.",
        ),
    ] = None,
    scale: Annotated[
        float | None,
        ruled("scale", "--scale", "-s", help="Target scale (default: the model's own factor)."),
    ] = None,
    tile: Annotated[
        int | None,
        ruled(
            "tile",
            "--tile",
            help="Tile size in pixels (bounds memory; default 128, or "
            "the largest that fits with --fit).",
        ),
    ] = None,
    fit: FitOpt = True,
    max_memory: MaxMemoryOpt = None,
    threads: ThreadsOpt = 0,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    pull: PullOpt = False,
) -> None:
    """Upscale images with an ESRGAN model (native factor, then Lanczos to --scale); alpha and
    metadata are kept, EXIF orientation is applied."""
    from dataclasses import replace

    from sdcpp_service.config import Settings
    from sdcpp_service.engine.images import load_image, save_image
    from sdcpp_service.engine.upscale import is_builtin, open_upscaler, upscale_infotext
    from sdcpp_service.errors import OutputExists

    settings = Settings.from_env()
    if threads:
        settings = replace(settings, threads=threads)
    sources = expand_inputs(inputs)
    if not sources:
        raise fail("no images found in the given inputs")
    if not is_builtin(model):
        ensure_model(model, pull, kind="upscaler")
    if fit and not is_builtin(model):  # before the upscaler loads
        from sdcpp_service.engine.upscale import resolve_upscaler

        tile = fit_upscale(resolve_upscaler(model, settings), sources, tile, max_memory)
    with interruptible(), open_upscaler(model, settings, tile or 128) as up:
        path = up.path
        label = f"{scale:g}" if scale is not None else str(up.factor)
        plan = [(src, output_for(src, output, len(sources) > 1, label)) for src in sources]
        for _, dst in plan:
            if dst.exists() and not force:
                raise OutputExists(dst)
        tty = sys.stderr.isatty()
        for src, dst in _track(plan, enabled=tty and not as_json):
            if not tty and not as_json:  # progress still shows in a log: a line per image
                typer.echo(f"upscaling {src}…", err=True)
            image = load_image(src, "image", mode="auto")
            with stdout_to_stderr():
                out = up.upscale(image, scale)
            text = upscale_infotext(image.info.get("parameters"), label, path)
            save_image(out, dst, text, {"upscaled_from": str(src), "model": path}, force=force)
            if as_json:
                record = {
                    "input": str(src),
                    "path": str(dst),
                    "width": out.width,
                    "height": out.height,
                }
                typer.echo(json.dumps(record))
            else:
                typer.echo(f"{dst}  {image.width}x{image.height} -> {out.width}x{out.height}")
