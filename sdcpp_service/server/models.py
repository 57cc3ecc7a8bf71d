"""Model files the server offers: the project's catalog, safe name resolution, hash cache.

The list comes from :func:`sdcpp_service.models.scan` (detected by content, cached by size and
mtime, A1111/ComfyUI folders used in place). Every name or path a client sends goes through
:func:`resolve`, which only ever returns a catalogued file, or a file inside one of the configured
model folders (resolved, symlinks followed, ``is_relative_to``).
Importable by the worker process: no web framework here.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdcpp_service.config import Settings
from sdcpp_service.errors import InvalidRequest, UnknownName

#: Kinds a client may name as "the model" of a job: a full checkpoint, or a diffusion model
#: (DiT/UNet only; the engine's planner adds the components it needs).
MAIN_KINDS = ("checkpoint", "diffusion_model")
#: Every kind the catalog knows, as the server names them.
ALL_KINDS = (
    *MAIN_KINDS,
    *("vae", "taesd", "text_encoder", "lora", "controlnet", "upscaler", "embedding"),
    *("photomaker", "clip_vision"),
)

#: A1111 titles carry the short hash: ``name [0123456789]``.
_TITLE_HASH = re.compile(r"\s*\[[0-9a-fA-F]{8,64}\]\s*$")


@dataclass(frozen=True)
class ModelEntry:
    """One usable model file (or diffusers folder) with its unique catalog ``name``."""

    name: str
    kind: str
    path: Path
    size: int
    mtime: float
    arch: str | None = None
    #: the detected variant (an ESRGAN's ``x4``/``x2``/``x1``, a Wan model's ``t2v-1.3b``…)
    variant: str | None = None

    @property
    def scale(self) -> int | None:
        """An upscaler's native factor, from its header."""
        v = self.variant or ""
        return int(v[1:]) if self.kind == "upscaler" and v[1:].isdigit() else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "arch": self.arch,
            "variant": self.variant,
            "path": str(self.path),
            "filename": self.path.name,
            "size": self.size,
        }


def scan(settings: Settings) -> list[ModelEntry]:
    """Every usable model in the configured folders (the catalog; cached between calls)."""
    from sdcpp_service.models import scan as catalog_scan

    out: list[ModelEntry] = []
    for entry in catalog_scan(settings).usable():
        info = entry.info
        if info is None:
            continue
        kind = info.kind
        if kind == "model":
            kind = "diffusion_model" if info.slot == "diffusion_model_path" else "checkpoint"
        path = Path(entry.path)
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue
        out.append(ModelEntry(entry.name, kind, path, info.size, mtime, info.arch, info.variant))
    return out


def inside(path: Path, dirs: Iterable[Path]) -> bool:
    """Whether ``path`` (resolved) lies inside one of ``dirs`` (resolved)."""
    real = path.resolve()
    return any(real.is_relative_to(root.resolve()) for root in dirs if root.is_dir())


def resolve(
    value: str,
    settings: Settings,
    kinds: Sequence[str] = MAIN_KINDS,
    field: str = "model",
    strict: bool = False,
    catalog: Sequence[ModelEntry] | None = None,
) -> ModelEntry:
    """A name (``sdxs``, a file name, an A1111 title ``name [hash]``, an alias) or a path inside
    the model folders → its entry. Anything outside the folders is refused as unknown; with
    ``strict`` (add-ons and component slots) also a catalogued symlink whose target is outside.
    ``catalog``: the entries to search (default: a fresh :func:`scan`)."""
    if not isinstance(value, str):
        raise InvalidRequest(field, f"must be a model name (a string), got {type(value).__name__}")
    if len(value) > 1000:
        raise InvalidRequest(field, f"is {len(value)} characters long; no model name is")
    text = _TITLE_HASH.sub("", value.strip())
    dirs = settings.model_dirs
    entries = [
        e
        for e in (scan(settings) if catalog is None else catalog)
        if e.kind in kinds and (not strict or inside(e.path, dirs))
    ]
    lowered = text.lower()
    tiers = (
        [e for e in entries if e.name == text],
        [e for e in entries if text in (e.path.name, e.path.stem)],
        [e for e in entries if e.name.lower() == lowered],
    )
    for hits in tiers:
        if len(hits) == 1:
            return hits[0]
    if text and "\x00" not in text:
        for root in dirs:
            path = Path(text).expanduser()
            path = path if path.is_absolute() else root / path
            if path.exists() and inside(path, dirs):
                for entry in entries:
                    if entry.path.resolve() == path.resolve():
                        return entry
    raise UnknownName(field, value, [e.name for e in entries])


def generation(settings: Settings) -> tuple[tuple[str, int], ...]:
    """What changes when a model is added, removed or renamed under the model folders: the
    modification time of every folder the catalog walks (a file rewritten in place is caught
    by :class:`ModelIndex`'s check of the file it resolved to)."""
    from sdcpp_service.models.catalog import classify_root

    out: list[tuple[str, int]] = []
    seen: set[tuple[int, int]] = set()
    for root in settings.model_dirs:
        root = Path(root).expanduser()
        try:
            out.append((str(root), root.stat().st_mtime_ns))
        except OSError:
            out.append((str(root), -1))
            continue
        for folder in classify_root(root).folders():
            for dirpath, dirnames, _ in os.walk(folder, followlinks=True):
                try:
                    st = os.stat(dirpath)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) in seen:
                    dirnames.clear()
                    continue
                seen.add((st.st_dev, st.st_ino))
                dirnames[:] = [d for d in dirnames if not d.startswith((".", "__"))]
                out.append((dirpath, st.st_mtime_ns))
    return tuple(out)


class ModelIndex:
    """The server's catalog, scanned once per generation (:func:`generation`) instead of per
    request, and the names it resolved; thread-safe (routes call it from worker threads)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: bumped each time the folders changed and were scanned again
        self.number = 0
        self._key: tuple[tuple[str, int], ...] | None = None
        self._entries: list[ModelEntry] = []
        self._resolved: dict[tuple[str, tuple[str, ...], str, bool], ModelEntry] = {}
        self._lock = threading.Lock()

    def entries(self, refresh: bool = False) -> list[ModelEntry]:
        """Every usable model (the catalog), rescanned only when the folders changed."""
        key = generation(self.settings)
        with self._lock:
            if refresh or key != self._key:
                self._entries = scan(self.settings)
                self._key, self.number = key, self.number + 1
                self._resolved.clear()
            return self._entries

    def resolve(
        self,
        value: str,
        kinds: Sequence[str] = MAIN_KINDS,
        field: str = "model",
        strict: bool = False,
    ) -> ModelEntry:
        """:func:`resolve` on the cached catalog; a name resolved before is answered from the
        cache while its file is unchanged."""
        catalog = self.entries()
        if not isinstance(value, str):
            return resolve(value, self.settings, kinds, field, strict, catalog)
        key = (value, tuple(kinds), field, strict)
        entry = self._resolved.get(key) or resolve(value, self.settings, kinds, field, strict,
                                                   catalog)  # fmt: skip
        if not _unchanged(entry):  # rewritten in place since the scan: detect it again
            catalog = self.entries(refresh=True)
            entry = resolve(value, self.settings, kinds, field, strict, catalog)
        self._resolved[key] = entry
        return entry

    def name_of(self, path: str) -> str | None:
        """The catalog name of the model at ``path``, if it is one."""
        return next((e.name for e in self.entries() if str(e.path) == path), None)


def _unchanged(entry: ModelEntry) -> bool:
    try:
        return entry.path.stat().st_mtime == entry.mtime
    except OSError:
        return False


def resolve_loras(names: Iterable[str], dirs: Sequence[Path]) -> list[Path]:
    """LoRA names from a request → their files: each must resolve (as the engine layer resolves
    it) to a file inside the model folders, symlinks followed, that is detected as a LoRA."""
    from sdcpp_service.engine import loras
    from sdcpp_service.errors import SdcppError
    from sdcpp_service.models import inspect

    search = [d / sub for d in dirs for sub in ("loras", "Lora", "")]
    found: list[Path] = []
    for name in names:
        bare = name.removeprefix("|high_noise|")
        try:
            path = loras.resolve(bare, search)
        except UnknownName as e:
            raise UnknownName("lora", name, e.choices) from None
        if not path.is_file():
            raise UnknownName("lora", name, loras.names(search))
        if not inside(path, dirs):
            if bare not in loras.available(search):  # a path typed in: say nothing of it
                raise UnknownName("lora", name, loras.names(search))
            raise InvalidRequest(
                "loras", f"'{name}' ({path.name}) is outside the model folders once its links are"
                " followed; put the LoRA file itself in a model folder's loras/",
            )  # fmt: skip
        try:
            kind = inspect(path).kind
        except SdcppError:
            kind = "unreadable file"
        if kind != "lora":
            raise InvalidRequest("loras", f"'{name}' ({path.name}) is a {kind}, not a LoRA")
        found.append(path)
    return found


class HashCache:
    """sha256 of model files through the project's shared cache (``sdcpp_service.models``,
    keyed by path, size and mtime under the data dir), so the CLI, the server and its worker
    hash each file version once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def known(self, path: str | Path) -> str | None:
        """The cached hash when the file has not changed since, else ``None`` (no hashing)."""
        from sdcpp_service.models._cache import FileCache

        real = Path(path).resolve()
        try:
            st = real.stat()
        except OSError:
            return None
        with FileCache(self.settings.data_dir) as db:
            return db.get("sha256", str(real), st.st_size, st.st_mtime_ns)

    def sha256(self, path: str | Path) -> str:
        """The file's sha256 (hex), computed once per file version."""
        from sdcpp_service.models import hash_file

        return hash_file(path, self.settings).sha256
