"""Import and read engine layout manifests (tensor names, shapes and inits).

A manifest lists, per file, every tensor the pinned engine builds for a model, as
``[name, shape, init]`` with init one of ``normal``, ``ones``, ``zeros``. They are read off the
engine once (see ``tests/README.md``) and stored compactly under ``tests/synth/layouts/`` as
deterministic gzip'd JSON.

Regenerate after an engine upgrade::

    python -m tests.synth.manifests import /path/to/manifests/*.json
    python -m tests.synth.manifests show sd1
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

LAYOUT_DIR = Path(__file__).resolve().parent / "layouts"
INITS = ("normal", "ones", "zeros")


@dataclass(frozen=True)
class TensorEntry:
    name: str
    shape: tuple[int, ...]
    init: str

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Layout:
    name: str
    version: str
    note: str
    files: dict[str, tuple[TensorEntry, ...]]

    def tensors(self, filename: str) -> tuple[TensorEntry, ...]:
        return self.files[filename]


def _canonical(manifest: dict[str, object]) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def _validate(manifest: dict[str, object]) -> None:
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        raise ValueError("manifest has no files")
    for filename, spec in files.items():
        seen: set[str] = set()
        for name, shape, init in spec["tensors"]:
            if init not in INITS:
                raise ValueError(f"{filename}: {name}: unknown init {init!r}")
            if name in seen:
                raise ValueError(f"{filename}: duplicate tensor {name}")
            if not all(isinstance(d, int) and d > 0 for d in shape):
                raise ValueError(f"{filename}: {name}: bad shape {shape}")
            seen.add(name)
        params = sum(math.prod(s) for _, s, _ in spec["tensors"])
        if "params" in spec and spec["params"] != params:
            raise ValueError(f"{filename}: params {spec['params']} != sum of shapes {params}")


def import_manifest(src: Path, dest_dir: Path = LAYOUT_DIR) -> Path:
    """Store ``src`` (a manifest read off the engine) as ``<dest_dir>/<stem>.json.gz``."""
    manifest = json.loads(src.read_text())
    _validate(manifest)
    out = dest_dir / f"{src.stem}.json.gz"
    buf = io.BytesIO()
    # mtime=0 and no file name in the gzip header: the same manifest gives the same bytes.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(_canonical(manifest))
    out.write_bytes(buf.getvalue())
    return out


@cache
def load_layout(name: str, layout_dir: Path = LAYOUT_DIR) -> Layout:
    raw = json.loads(gzip.decompress((layout_dir / f"{name}.json.gz").read_bytes()))
    files = {
        filename: tuple(TensorEntry(n, tuple(s), i) for n, s, i in spec["tensors"])
        for filename, spec in raw["files"].items()
    }
    return Layout(
        name=raw.get("name", name),
        version=raw.get("sdcpp_detected_version", ""),
        note=raw.get("note", ""),
        files=files,
    )


def available() -> list[str]:
    return sorted(p.name.removesuffix(".json.gz") for p in LAYOUT_DIR.glob("*.json.gz"))


def _show(name: str) -> None:
    layout = load_layout(name)
    print(f"{name}: engine reports {layout.version!r}")
    for filename, tensors in layout.files.items():
        params = sum(t.numel for t in tensors)
        print(f"  {filename}: {len(tensors)} tensors, {params / 1e6:.2f} M params")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.synth.manifests")
    sub = parser.add_subparsers(dest="cmd", required=True)
    imp = sub.add_parser("import", help="store engine manifests (JSON) as kit layouts")
    imp.add_argument("manifests", nargs="+", type=Path)
    show = sub.add_parser("show", help="summarise stored layouts")
    show.add_argument("names", nargs="*")
    args = parser.parse_args(argv)
    if args.cmd == "import":
        for src in args.manifests:
            print(import_manifest(src))
    else:
        for name in args.names or available():
            _show(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
