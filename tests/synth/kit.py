"""Build kit models into a cache directory keyed by their content hash.

    from tests.synth.kit import build, Kit
    files = build("sdxs")            # {"model": Path(".../sdxs-<hash>/sdxs.safetensors")}
    kit = Kit(); kit.path("flux", "vae"); kit.engine_kwargs("flux")

The cache root is ``$SDCPP_KIT_DIR`` or ``~/.cache/sdcpp-service/kit``. A model's directory is
named ``<model>-<key>`` where the key hashes the writer version, the seed, the model's table entry
and its layouts, so any change produces a fresh directory and stale ones are never reused. Each
file is written atomically; a model is built only when one of its files is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
from gguf.quants import quantize

from .models import FileSpec, ModelSpec, default_models, model
from .plan import Planned, plan_file
from .pool import POOL_SIZE, Pool
from .writers import ST_DTYPES, TensorData, write_gguf, write_safetensors

WRITER_VERSION = 1
DEFAULT_SEED = 0
ENV_DIR = "SDCPP_KIT_DIR"


def default_root() -> Path:
    env = os.environ.get(ENV_DIR)
    return Path(env) if env else Path.home() / ".cache" / "sdcpp-service" / "kit"


def _plans(spec: ModelSpec) -> dict[str, list[Planned]]:
    return {f.filename: plan_file(f) for f in spec.files}


def cache_key(spec: ModelSpec, seed: int = DEFAULT_SEED) -> str:
    h = hashlib.sha256()
    entry = {k: v for k, v in asdict(spec).items() if k not in ("description", "default")}
    h.update(json.dumps([WRITER_VERSION, seed, POOL_SIZE, entry], sort_keys=True).encode())
    for filename, plans in _plans(spec).items():
        h.update(filename.encode())
        for p in plans:
            h.update(f"{p.name}|{p.shape}|{p.fill.describe()}|{p.dtype}\n".encode())
    return h.hexdigest()[:16]


def _np_dtype(dtype: str) -> np.dtype:
    np_name = ST_DTYPES[dtype][1]
    if np_name is None:
        raise ValueError(f"cannot generate values for dtype {dtype}")
    return np.dtype(np_name)


def _tensor_dtype(f: FileSpec, p: Planned) -> str:
    if p.dtype:
        return p.dtype
    if f.quant and len(p.shape) >= 2 and p.shape[-1] % 32 == 0:
        return f.quant
    if f.quant and len(p.shape) < 2:
        return "F32"  # GGUF convention: norms and biases in F32
    return f.dtype


def _values(pool: Pool, key: str, p: Planned, dtype: str) -> np.ndarray | None:
    store = "F32" if dtype.startswith("Q") else dtype
    kind = p.fill.kind
    if kind == "zeros":
        return None
    if kind in ("ones", "const"):
        value = 1.0 if kind == "ones" else p.fill.std
        values = np.full(p.numel, value, dtype=_np_dtype(store))
    elif kind == "normal" and p.fill.centered:
        rows = pool.normal(key, p.numel, p.fill.std, np.dtype(np.float32)).reshape(p.shape[0], -1)
        values = (rows - rows.mean(axis=1, keepdims=True)).astype(_np_dtype(store)).reshape(-1)
    elif kind == "normal":
        values = pool.normal(key, p.numel, p.fill.std, _np_dtype(store))
    else:
        assert p.fill.array is not None
        values = p.fill.array.astype(_np_dtype(store)).reshape(-1)
    if dtype.startswith("Q"):
        from gguf.constants import GGMLQuantizationType

        return quantize(values.reshape(p.shape), GGMLQuantizationType[dtype])
    return values


def _tensors(f: FileSpec, plans: list[Planned], pool: Pool) -> Iterator[TensorData]:
    for p in plans:
        dtype = _tensor_dtype(f, p)
        data = _values(pool, f"{f.layout}/{f.layout_file}/{p.name}", p, dtype)
        yield TensorData(p.name, p.shape, dtype, data)


def write_file(f: FileSpec, dest: Path, pool: Pool) -> Path:
    plans = plan_file(f)
    meta = {"sdcpp_kit": f"synthetic test weights, writer v{WRITER_VERSION}, seed {pool.seed}"}
    if dest.suffix == ".gguf":
        return write_gguf(dest, list(_tensors(f, plans, pool)), meta)
    return write_safetensors(dest, list(_tensors(f, plans, pool)), meta)


def model_dir(name: str, root: Path | None = None, seed: int = DEFAULT_SEED) -> Path:
    spec = model(name)
    return (root or default_root()) / f"{name}-{cache_key(spec, seed)}"


def build(
    name: str, root: Path | None = None, seed: int = DEFAULT_SEED, pool: Pool | None = None
) -> dict[str, Path]:
    """Generate ``name`` if needed; return its files by slot (``model``, ``vae``, ...)."""
    spec = model(name)
    folder = model_dir(name, root, seed)
    files = {f.slot: folder / f.filename for f in spec.files}
    missing = [f for f in spec.files if not files[f.slot].is_file()]
    if missing:
        pool = pool if pool is not None and pool.seed == seed else Pool(seed)
        for f in missing:
            write_file(f, files[f.slot], pool)
    return files


def build_all(
    names: Sequence[str] | None = None, root: Path | None = None, seed: int = DEFAULT_SEED
) -> dict[str, dict[str, Path]]:
    pool = Pool(seed)
    return {name: build(name, root, seed, pool) for name in (names or default_models())}


class Kit:
    """Lazy access to kit models; each model is generated on first use."""

    def __init__(self, root: Path | None = None, seed: int = DEFAULT_SEED) -> None:
        self.root = root or default_root()
        self.seed = seed
        self._pool: Pool | None = None
        self._built: dict[str, dict[str, Path]] = {}

    @property
    def pool(self) -> Pool:
        """The session's random pool (drawn on first use, ~0.4 GB of RAM)."""
        if self._pool is None:
            self._pool = Pool(self.seed)
        return self._pool

    def files(self, name: str) -> dict[str, Path]:
        if name not in self._built:
            spec = model(name)
            folder = model_dir(name, self.root, self.seed)
            if all((folder / f.filename).is_file() for f in spec.files):
                self._built[name] = {f.slot: folder / f.filename for f in spec.files}
            else:
                self._built[name] = build(name, self.root, self.seed, self.pool)
        return self._built[name]

    def path(self, name: str, slot: str | None = None) -> Path:
        files = self.files(name)
        if slot is None:
            if len(files) != 1:
                raise ValueError(f"{name} has several files {sorted(files)}; name a slot")
            return next(iter(files.values()))
        return files[slot]

    def engine_kwargs(self, name: str) -> dict[str, str]:
        """Keyword arguments for ``stable_diffusion_cpp.StableDiffusion`` (``<slot>_path``)."""
        return {f"{slot}_path": str(p) for slot, p in self.files(name).items()}

    def spec(self, name: str) -> ModelSpec:
        return model(name)


def prune(root: Path | None = None, seed: int = DEFAULT_SEED) -> list[Path]:
    """Remove cached model directories that no longer match the current table and layouts."""
    import shutil

    root = root or default_root()
    current = {model_dir(name, root, seed).name for name in default_models()}
    current |= {model_dir(name, root, seed).name for name in _all_models()}
    removed = []
    for folder in sorted(root.glob("*-*")):
        stem, _, key = folder.name.rpartition("-")
        if (
            folder.is_dir()
            and stem in _all_models()
            and len(key) == 16
            and folder.name not in current
        ):
            shutil.rmtree(folder)
            removed.append(folder)
    return removed


def _all_models() -> list[str]:
    from .models import MODELS

    return list(MODELS)


def _du(path: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.synth.kit")
    parser.add_argument("names", nargs="*", help="models to build (default: the default kit)")
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--prune", action="store_true", help="delete stale cached models first")
    args = parser.parse_args(argv)
    root = args.root or default_root()
    if args.prune:
        for folder in prune(root, args.seed):
            print(f"removed {folder}")
    pool = Pool(args.seed)
    t_all = time.perf_counter()
    for name in args.names or default_models():
        t0 = time.perf_counter()
        files = build(name, root, args.seed, pool)
        dt = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in files.values())
        used = sum(p.stat().st_blocks * 512 for p in files.values())
        print(
            f"{name:16s} {dt:6.2f} s  {size / 1e9:6.3f} GB apparent  {used / 1e9:6.3f} GB on disk"
        )
        for slot, p in files.items():
            print(f"    {slot:16s} {p}")
    print(f"total {time.perf_counter() - t_all:.2f} s, {_du(root) / 1e9:.3f} GB on disk in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
