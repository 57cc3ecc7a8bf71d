"""Model files under the configured folders: a simple scan, safe name resolution, hash cache.

Every name or path a client sends goes through :func:`resolve`, which only ever returns a file
inside one of the configured model folders (resolved, symlinks followed, ``is_relative_to``).
Importable by the worker process: no web framework here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdcpp_service.config import Settings
from sdcpp_service.errors import InvalidRequest, UnknownName

MODEL_SUFFIXES = (".safetensors", ".gguf", ".ckpt", ".sft", ".pt", ".pth", ".bin")

#: First folder below a model root (lower case) → kind. ComfyUI and A1111 spellings.
FOLDER_KINDS: dict[str, str] = {
    "checkpoints": "checkpoint",
    "stable-diffusion": "checkpoint",
    "diffusion_models": "diffusion_model",
    "unet": "diffusion_model",
    "vae": "vae",
    "vae_approx": "taesd",
    "loras": "lora",
    "lora": "lora",
    "text_encoders": "text_encoder",
    "clip": "text_encoder",
    "controlnet": "controlnet",
    "upscale_models": "upscaler",
    "esrgan": "upscaler",
    "embeddings": "embedding",
}

#: Kinds a client may name as "the model" of a job.
MAIN_KINDS = ("checkpoint", "diffusion_model")

#: A1111 titles carry the short hash: ``name [0123456789]``.
_TITLE_HASH = re.compile(r"\s*\[[0-9a-fA-F]{8,64}\]\s*$")


@dataclass(frozen=True)
class ModelEntry:
    """One model file: ``name`` is its path below its kind folder, without the suffix."""

    name: str
    kind: str
    path: Path
    size: int
    mtime: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "path": str(self.path),
            "filename": self.path.name,
            "size": self.size,
        }


def _entry(root: Path, path: Path) -> ModelEntry | None:
    rel = path.relative_to(root)
    kind = FOLDER_KINDS.get(rel.parts[0].lower(), "") if len(rel.parts) > 1 else ""
    if kind:
        rel = rel.relative_to(rel.parts[0])
    try:
        st = path.stat()
    except OSError:
        return None
    name = rel.with_suffix("").as_posix()
    return ModelEntry(name, kind or "checkpoint", path, st.st_size, st.st_mtime)


def scan(dirs: Iterable[Path]) -> list[ModelEntry]:
    """Every model file below ``dirs`` (recursive, sorted; the first folder wins a name)."""
    out: list[ModelEntry] = []
    seen: set[tuple[str, str]] = set()
    for root in dirs:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() not in MODEL_SUFFIXES or not path.is_file():
                continue
            entry = _entry(root, path)
            if entry is not None and (entry.kind, entry.name) not in seen:
                seen.add((entry.kind, entry.name))
                out.append(entry)
    return out


def inside(path: Path, dirs: Iterable[Path]) -> bool:
    """Whether ``path`` (resolved) lies inside one of ``dirs`` (resolved)."""
    real = path.resolve()
    return any(real.is_relative_to(root.resolve()) for root in dirs if root.is_dir())


def resolve(
    value: str, dirs: Sequence[Path], kinds: Sequence[str] = MAIN_KINDS, field: str = "model"
) -> ModelEntry:
    """A name (``sdxs``, ``sub/name``, a file name, an A1111 title) or a path inside the model
    folders → its entry. Anything outside the folders is refused as unknown."""
    text = _TITLE_HASH.sub("", value.strip())
    entries = [e for e in scan(dirs) if e.kind in kinds]
    for key in ("name", "filename", "stem"):
        for entry in entries:
            candidate = {
                "name": entry.name,
                "filename": entry.path.name,
                "stem": entry.path.stem,
            }[key]
            if candidate == text:
                return entry
    if text and "\x00" not in text:
        for root in dirs:
            path = Path(text).expanduser()
            path = path if path.is_absolute() else root / path
            if path.is_file() and inside(path, dirs):
                for entry in entries:
                    if entry.path.resolve() == path.resolve():
                        return entry
    raise UnknownName(field, value, [e.name for e in entries])


def check_lora_names(names: Iterable[str], dirs: Sequence[Path]) -> None:
    """LoRA names from a request: each must be a LoRA inside the model folders."""
    from sdcpp_service.engine import loras

    known = loras.available([d / sub for d in dirs for sub in ("loras", "Lora", "")])
    for name in names:
        bare = name.removeprefix("|high_noise|")
        direct = Path(bare).expanduser()  # the engine would take an existing path as is
        if direct.exists():
            ok = direct.is_file() and inside(direct, dirs)
        else:
            ok = bare in known
        if not ok:
            raise UnknownName("lora", name, sorted({p.stem for p in known.values()}))


def check_inside(value: str, dirs: Sequence[Path], field: str) -> None:
    """Refuse a path parameter that points outside the model folders."""
    path = Path(value).expanduser()
    if path.exists() and not inside(path, dirs):
        raise InvalidRequest(field, "must name a file inside the configured model folders")


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
