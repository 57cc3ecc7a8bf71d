"""A job's file paths (made on the API node) as this worker's own files: the same path when it
exists here, else the file of the same name in this worker's model folders."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from sdcpp_service.config import Settings
from sdcpp_service.errors import InvalidRequest


class Localizer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def path(self, path: str, field: str = "model") -> str:
        if not path or Path(path).is_file():
            return path
        found = _find(self.settings.model_dirs, Path(path).name)
        if found is None:
            raise InvalidRequest(field, f"this worker has no file named {Path(path).name} in "
                                 f"its model folders")  # fmt: skip
        return found

    def load(self, load: dict[str, Any]) -> dict[str, Any]:
        return {k: self.path(v, k) if isinstance(v, str) else v for k, v in load.items()}

    def params(self, params: dict[str, Any]) -> dict[str, Any]:
        out = dict(params)
        if out.get("loras"):
            out["loras"] = [[self.path(str(n), "loras"), w] for n, w in out["loras"]]
        for key in ("hires_model", "upscaler_model"):
            if isinstance(out.get(key), str) and "/" in out[key]:
                out[key] = self.path(out[key], key)
        return out


@lru_cache(maxsize=256)
def _find(dirs: tuple[Path, ...], name: str) -> str | None:
    for root in dirs:
        for hit in sorted(root.rglob(name)) if root.is_dir() else []:
            if hit.is_file():
                return str(hit)
    return None
