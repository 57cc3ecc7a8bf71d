"""Settings: the only module that reads ``os.environ``.

Environment variables (all optional):

- ``SDCPP_MODELS``: extra model folders, separated by ``os.pathsep``.
- ``SDCPP_DATA_DIR``: where caches, job databases and server outputs live
  (default: ``$XDG_DATA_HOME/sdcpp-service`` or ``~/.local/share/sdcpp-service``).
- ``SDCPP_THREADS``: engine thread count (default: physical cores).
- ``SDCPP_DEBUG``: ``1`` shows tracebacks in the CLI.
- ``SDCPP_PNG_LEVEL``: zlib level 0–9 of the PNGs the server writes (default 1: they are made
  to be sent; 9 gives the smallest files, slowest).
- ``SD_VK_DEVICE``: the engine's own choice of Vulkan device (read by the engine; mirrored by
  ``sdcpp info`` to say which device runs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path


def _default_data_dir(env: Mapping[str, str]) -> Path:
    if env.get("SDCPP_DATA_DIR"):
        return Path(env["SDCPP_DATA_DIR"]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "sdcpp-service"


def physical_cores() -> int:
    """Physical cores without importing the engine (Linux reads sysfs; else a guess)."""
    try:
        seen: set[tuple[str, str]] = set()
        cpu_root = Path("/sys/devices/system/cpu")
        for topo in cpu_root.glob("cpu[0-9]*/topology"):
            pkg = (topo / "physical_package_id").read_text().strip()
            core = (topo / "core_id").read_text().strip()
            seen.add((pkg, core))
        if seen:
            return len(seen)
    except OSError:
        pass
    return max(1, (os.cpu_count() or 2) // 2)


def engine_vk_device(env: Mapping[str, str] | None = None) -> str:
    """``SD_VK_DEVICE`` as the engine reads it (``sd_get_default_backend`` in src/util.cpp)."""
    return (os.environ if env is None else env).get("SD_VK_DEVICE", "").strip()


@dataclass(frozen=True)
class Settings:
    """Read once (``Settings.from_env()``), then passed down explicitly."""

    data_dir: Path
    model_dirs: tuple[Path, ...] = ()
    threads: int = 0
    debug: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)
    #: the server's PNG compression level (``SDCPP_PNG_LEVEL``)
    png_level: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        dirs: list[Path] = [Path.cwd() / "models"]
        for part in env.get("SDCPP_MODELS", "").split(os.pathsep):
            if part.strip():
                dirs.append(Path(part.strip()).expanduser())
        threads = 0
        raw = env.get("SDCPP_THREADS", "").strip()
        if raw.isdigit():
            threads = int(raw)
        level = env.get("SDCPP_PNG_LEVEL", "").strip() or "1"
        if not (level.isdigit() and int(level) <= 9):
            from sdcpp_service.errors import InvalidRequest

            raise InvalidRequest("SDCPP_PNG_LEVEL", f"'{level}' is not a zlib level 0-9")
        return cls(
            png_level=int(level),
            data_dir=_default_data_dir(env),
            model_dirs=tuple(dict.fromkeys(dirs)),
            threads=threads,
            debug=env.get("SDCPP_DEBUG", "") not in ("", "0", "false"),
        )

    @property
    def default_threads(self) -> int:
        return self.threads if self.threads > 0 else physical_cores()

    def with_model_dirs(self, dirs: tuple[Path, ...]) -> Settings:
        return replace(self, model_dirs=tuple(dict.fromkeys((*dirs, *self.model_dirs))))
