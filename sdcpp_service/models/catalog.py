"""The catalog: every model file under the model roots, detected by content and cached.

Roots are ``Settings.model_dirs`` (``./models`` and ``SDCPP_MODELS``). A root that is a
ComfyUI or AUTOMATIC1111 install (or a ComfyUI ``models`` folder) is used in place: only its
model folders are scanned. Any other root is walked recursively. Each file's
:class:`ModelInfo` is cached under the data dir keyed by (path, size, mtime), so an unchanged
folder is re-listed from the cache without opening a single model file.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sdcpp_service.config import Settings
from sdcpp_service.errors import ModelError, UnknownName
from sdcpp_service.models._cache import FileCache
from sdcpp_service.models.inspect import MODEL_SUFFIXES, ModelInfo, inspect, short_name
from sdcpp_service.models.recipes import recipe_aliases

COMFYUI_FOLDERS = (
    "checkpoints", "diffusion_models", "unet", "vae", "text_encoders", "clip", "clip_vision",
    "loras", "controlnet", "upscale_models", "embeddings", "vae_approx", "photomaker",
)  # fmt: skip
A1111_FOLDERS = (
    "Stable-diffusion", "Lora", "LyCORIS", "VAE", "VAE-approx", "ESRGAN", "RealESRGAN",
    "ControlNet", "text_encoder",
)  # fmt: skip
#: The kinds a catalog entry has (``inspect``'s, plus ``invalid`` for unreadable files).
KINDS = (
    "model", "vae", "taesd", "text_encoder", "lora", "controlnet", "upscaler", "embedding",
    "photomaker", "clip_vision", "invalid",
)  # fmt: skip
#: Quantisation / precision tags stripped from a stem to make an alias (``flux1-schnell``).
_TAG = re.compile(
    r"[-_.](q\d(_[01k])?(_[sml])?|iq\d\w*|f16|fp16|bf16|f32|fp32|fp8(_e4m3fn)?(_scaled)?)$", re.I
)


def cache_kind() -> str:
    """The cache namespace: changes whenever the detection tables change, so a new release's
    detection never serves an old one's cached answers."""
    from sdcpp_service._version import __version__
    from sdcpp_service.models import archs, components

    tables = (archs.MODEL_RULES, archs.CONTROL_RULES, archs.GROUP_PREFIXES, components.VAE_RULES,
              components.TE_RULES, components.OTHER_RULES, components.LORA_FAMILIES, __version__)  # fmt: skip
    key = repr(tables).encode()  # zlib, not hashlib: a one-shot command then never loads OpenSSL
    return f"model-info-{zlib.crc32(key):08x}{zlib.adler32(key):08x}"


@dataclass(frozen=True)
class Root:
    path: Path
    layout: str  # "plain" | "comfyui" | "a1111"

    def folders(self) -> list[Path]:
        if self.layout == "comfyui":
            base = self.path / "models" if (self.path / "models").is_dir() else self.path
            return [base / f for f in COMFYUI_FOLDERS]
        if self.layout == "a1111":
            return [self.path / "models" / f for f in A1111_FOLDERS] + [self.path / "embeddings"]
        return [self.path]


def classify_root(path: Path) -> Root:
    """A ComfyUI install (or its ``models`` folder), an A1111 install, or a plain folder."""
    if (path / "models" / "Stable-diffusion").is_dir():
        return Root(path, "a1111")
    for base in (path / "models", path):
        if (base / "checkpoints").is_dir() or (base / "diffusion_models").is_dir():
            return Root(path, "comfyui")
    return Root(path, "plain")


@dataclass(frozen=True)
class Entry:
    """One catalogued file: its unique ``name``, aliases, and what it is (or why not)."""

    name: str
    path: str
    info: ModelInfo | None
    error: str | None = None
    aliases: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return self.info.kind if self.info else "invalid"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "aliases": list(self.aliases),
            "error": self.error,
            "info": None if self.info is None else self.info.to_dict(),
        }


@dataclass(frozen=True)
class Catalog:
    entries: tuple[Entry, ...]
    roots: tuple[Root, ...] = ()
    stats: dict[str, int] = field(default_factory=dict)

    def usable(self, kind: str | None = None) -> list[Entry]:
        """Entries that were detected, are supported, and (optionally) are of ``kind``."""
        return [
            e
            for e in self.entries
            if e.info is not None and e.info.supported and kind in (None, e.info.kind)
        ]

    def find(
        self, name: str, kind: str | None = None, label: str | None = None, *, other: bool = False
    ) -> Entry:
        """Resolve a name, alias, filename or path among the entries of ``kind``; raise
        UnknownName with the close matches and choices of that kind only. With ``other``, a
        name that is exactly an entry of another kind returns that entry (so the caller can say
        "is a LoRA, not a VAE" instead of "unknown")."""
        pool = [e for e in self.entries if kind is None or e.kind == kind]
        hit = _match(pool, name)
        if hit is None and other and kind is not None:
            hit = _match(self.entries, name)
        if hit is not None:
            return hit
        raise UnknownName(label or kind or "model", name, sorted(e.name for e in pool))


def _match(pool: Iterable[Entry], name: str) -> Entry | None:
    pool = list(pool)
    lowered = name.lower()
    tiers = (
        [e for e in pool if e.name == name],
        [e for e in pool if name in e.aliases],
        [e for e in pool if name in (e.path, Path(e.path).name)],
        [e for e in pool if lowered in {e.name.lower(), *(a.lower() for a in e.aliases)}],
    )
    for hits in tiers:
        if len(hits) == 1:
            return hits[0]
    return None


def locate(
    value: str | Path,
    settings: Settings | None = None,
    kind: str | None = None,
    label: str | None = None,
) -> Path:
    """A path that exists, else a catalog name (of ``kind``, else any) → its file.

    An unknown name raises UnknownName with the close matches of that kind."""
    path = Path(value).expanduser()
    if path.exists():
        return path
    try:
        return Path(scan(settings).find(str(value), kind=kind, label=label, other=True).path)
    except UnknownName as exc:
        if "/" not in str(value) and not str(value).lower().endswith(MODEL_SUFFIXES):
            raise
        raise UnknownName(exc.field, str(value), exc.choices, "no such file either") from None


def _walk(folder: Path) -> Iterator[Path]:
    """Model files and diffusers folders under ``folder`` (hidden folders skipped; symlinked
    folders followed once, so a link cycle cannot loop)."""
    if not folder.is_dir():
        return
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames.clear()
            continue
        seen.add((st.st_dev, st.st_ino))
        if "model_index.json" in filenames and Path(dirpath) != folder:
            dirnames.clear()
            yield Path(dirpath)
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__")))
        for fname in sorted(filenames):
            if fname.lower().endswith(MODEL_SUFFIXES) and not fname.startswith("."):
                yield Path(dirpath) / fname


def _stat_key(path: Path) -> tuple[int, int]:
    target = path / "model_index.json" if path.is_dir() else path
    st = target.stat()
    return st.st_size, st.st_mtime_ns


def _names(paths: list[str]) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Unique short names (stem, else ``parent/stem``) and unique aliases per path (the stem,
    the stem without its precision tag, and the recipe name of a recipe's main file)."""
    stems: dict[str, list[str]] = {}
    for p in paths:
        stems.setdefault(short_name(p), []).append(p)
    names: dict[str, str] = {}
    for stem, group in stems.items():
        for p in group:
            names[p] = stem if len(group) == 1 else f"{Path(p).parent.name}/{stem}"
    taken = set(names.values())
    alias_of: dict[str, list[str]] = {}
    recipes = recipe_aliases()
    for p, name in names.items():
        stem = short_name(p)
        named = {stem, _TAG.sub("", stem)} | ({recipes[stem]} if stem in recipes else set())
        for alias in named - {name}:
            alias_of.setdefault(alias, []).append(p)
    aliases: dict[str, list[str]] = {p: [] for p in paths}
    for alias, owners in alias_of.items():
        if len(owners) == 1 and alias not in taken:
            aliases[owners[0]].append(alias)
    return {p: (names[p], tuple(sorted(aliases[p]))) for p in paths}


def scan(
    settings: Settings | None = None,
    roots: Iterable[str | Path] | None = None,
    *,
    use_cache: bool = True,
) -> Catalog:
    """Detect every model file under the roots; cached results are reused when unchanged."""
    settings = settings or Settings.from_env()
    root_list = tuple(classify_root(Path(r).expanduser()) for r in (roots or settings.model_dirs))
    paths = list(dict.fromkeys(p for r in root_list for f in r.folders() for p in _walk(f)))
    results: dict[str, tuple[ModelInfo | None, str | None]] = {}
    stats = {"files": len(paths), "cached": 0, "read": 0}
    kind = cache_kind()
    with FileCache(settings.data_dir) as cache:
        cache.drop_other("model-info-", keep=kind)
        known = cache.get_many(kind) if use_cache else {}
        for path in paths:
            try:
                key = str(path.resolve())
                size, mtime = _stat_key(path)
            except OSError as exc:  # a dangling link, a file removed mid-scan…
                results[str(path)] = (None, exc.strerror or str(exc))
                continue
            hit = known.get(key)
            if hit is not None and hit[:2] == (size, mtime):
                stats["cached"] += 1
                results[str(path)] = _decode(hit[2], str(path))
                continue
            stats["read"] += 1
            try:
                info, error = inspect(path), None
            except ModelError as exc:
                info, error = None, exc.reason
            results[str(path)] = (info, error)
            value = {"error": error} if info is None else {"info": info.to_dict()}
            cache.put(kind, key, size, mtime, json.dumps(value))
    naming = _names(list(results))
    entries = tuple(
        Entry(naming[p][0], p, info, error, naming[p][1]) for p, (info, error) in results.items()
    )
    return Catalog(entries, root_list, stats)


def _decode(value: str, path: str) -> tuple[ModelInfo | None, str | None]:
    doc = json.loads(value)
    if doc.get("info") is None:
        return None, str(doc.get("error"))
    return replace(ModelInfo.from_dict(doc["info"]), path=path), None
