"""``convert_all(folder, qtype)``: every convertible file in a folder, skipping converted ones."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdcpp_service.config import Settings
from sdcpp_service.convert.meta import read_sidecar
from sdcpp_service.convert.run import ConvertProgressCallback, ConvertResult, convert
from sdcpp_service.convert.source import MODEL_SUFFIXES, default_name
from sdcpp_service.errors import ConvertError, InvalidRequest, ModelError


@dataclass(frozen=True)
class Skipped:
    """A file ``convert_all`` did not convert: ``status`` is ``skipped`` or ``failed``."""

    source: str
    reason: str
    status: str = "skipped"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "status": self.status, "reason": self.reason}


def candidates(folder: Path) -> list[Path]:
    """Model files and diffusers folders directly inside ``folder``, sorted by name."""
    out: list[Path] = []
    for p in sorted(folder.iterdir()):
        if p.is_dir() and (p / "model_index.json").is_file():
            out.append(p)
        elif p.is_file() and p.name.lower().endswith(MODEL_SUFFIXES):
            out.append(p)
    return out


def convert_all(
    folder: str | Path,
    qtype: str = "q8_0",
    rules: Sequence[str] = (),
    *,
    dst_dir: str | Path | None = None,
    force: bool = False,
    verify: bool = False,
    catalog: bool = False,
    progress: ConvertProgressCallback | None = None,
    on_file: Callable[[Path], None] | None = None,
    on_result: Callable[[ConvertResult | Skipped], None] | None = None,
    settings: Settings | None = None,
) -> list[ConvertResult | Skipped]:
    """Convert each candidate in turn (a fresh engine process each); GGUF files, our own
    outputs and sources whose output already exists are skipped, and a file that fails is
    reported without stopping the others."""
    from sdcpp_service.convert._engine import engine_types

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InvalidRequest("all", f"'{folder}' is not a folder")
    table = engine_types()
    target = table.require(qtype).name
    settings = settings or Settings.from_env()
    out_root = Path(dst_dir).expanduser() if dst_dir is not None else None
    results: list[ConvertResult | Skipped] = []

    def add(item: ConvertResult | Skipped) -> None:
        results.append(item)
        if on_result is not None:
            on_result(item)

    for src in candidates(root):
        reason = _skip_reason(src, target, table.writable(), out_root, force)
        if reason:
            add(Skipped(str(src), reason))
            continue
        if on_file is not None:
            on_file(src)
        try:
            add(
                convert(
                    src,
                    out_root,
                    target,
                    rules,
                    force=force,
                    verify=verify,
                    catalog=catalog,
                    progress=progress,
                    settings=settings,
                )
            )
        except (ModelError, ConvertError) as exc:
            status = "failed" if isinstance(exc, ConvertError) else "skipped"
            add(Skipped(str(src), exc.reason, status))
    return results


def _skip_reason(
    src: Path, qtype: str, types: list[str], out_root: Path | None, force: bool
) -> str | None:
    if src.name.lower().endswith(".gguf"):
        return "already GGUF" if read_sidecar(src) is None else "a conversion output"
    out = (out_root or src.parent) / default_name(src, qtype, types)
    if out.exists() and not force:
        return f"already converted: {out.name}"
    return None
