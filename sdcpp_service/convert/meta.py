"""Our metadata for a converted file: a sidecar ``<output>.json`` (the engine writes no GGUF keys).

Rewriting the GGUF to add key/value pairs would copy the whole file again; a sidecar costs
nothing and any tool can read it. :func:`read_sidecar` is what ``sdcpp models inspect`` uses::

    {"format": "sdcpp-convert/1", "tool": "sdcpp-service 0.1.0",
     "engine": {"bindings": "0.4.7", "version": "...", "commit": "..."},
     "architecture": "sdxs_512_ds", "kind": "model", "slot": "model",
     "type": "q8_0", "rules": ["..."],
     "source": {"name": "sdxs.safetensors", "sha256": "...", "bytes": 882592118, "format": "safetensors"},
     "vae": null, "output": {"name": "sdxs-q8_0.gguf", "bytes": 682846848, "tensors": 610,
     "types": {"q8_0": 290, "f16": 300, "f32": 20}}, "created": "2025-01-01T00:00:00Z"}
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdcpp_service._version import __version__
from sdcpp_service.config import Settings
from sdcpp_service.convert.plan import Plan

if TYPE_CHECKING:
    from sdcpp_service.convert.source import Source
    from sdcpp_service.models.hashing import FileDigest

FORMAT = "sdcpp-convert/1"
log = logging.getLogger("sdcpp_service.convert")


def sidecar_path(output: str | Path) -> Path:
    p = Path(output)
    return p.with_name(p.name + ".json")


def read_sidecar(output: str | Path) -> dict[str, Any] | None:
    """The metadata ``sdcpp convert`` recorded for ``output``, or None (absent or foreign)."""
    try:
        data = json.loads(sidecar_path(output).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    return data


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def log_engine(event: dict[str, Any]) -> None:
    """Engine warnings and errors, at debug level: a failed conversion carries its errors in
    the ConvertError, and a good one logs only expected noise (a diffusers folder's missing
    optional ``text_encoder_2``)."""
    log.debug("engine %s: %s", event.get("level", "warning"), event.get("text", ""))


def _idle_priority() -> None:
    """Linux: this thread runs only on CPU time nobody else wants (``SCHED_IDLE``; nice 19
    where that policy is refused). Elsewhere a no-op: thread ids are not process ids there."""
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):
        try:
            os.setpriority(os.PRIO_PROCESS, tid, 19)
        except OSError:
            pass


class Hasher:
    """SHA-256 of the source (and baked VAE) in a thread, overlapping the engine's start-up and
    the conversion. On Linux the thread runs at idle priority, so it takes only the CPU the
    engine leaves free: on 2 cores a first conversion of a 2 GB file went from +1.3 s to +0.5 s
    over a cached hash (benchmarks/convert.py). ``result()`` takes over whatever is left at the
    caller's priority (after the window in progress), so a busy machine cannot starve it.

    Shares :func:`sdcpp_service.models.hash_file`'s cache: a file hashed before (same size and
    mtime) costs nothing. Diffusers folders get no single hash.
    """

    #: Bytes hashed between two looks at whether ``result()`` took over.
    WINDOW = 16 * 1024 * 1024

    def __init__(self, source: Source, settings: Settings) -> None:
        self.settings = settings
        self.hashes: dict[str, str] = {}
        self.error: BaseException | None = None
        self._todo = [p for p in (source.path, source.vae) if p is not None and p.is_file()]
        self._current: tuple[Path, os.stat_result, FileDigest] | None = None
        self._lock = threading.Lock()
        self._taken = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _advance(self, background: bool) -> None:
        """Hash window by window until done, or (``background``) until ``result()`` takes over.
        Each window is hashed holding the lock, so exactly one thread carries the work on."""
        from sdcpp_service.models.hashing import FileDigest, cached_sha256, remember_sha256

        while True:
            with self._lock:
                if (background and self._taken) or self.error is not None or not self._todo:
                    return
                try:
                    if self._current is None:
                        path = self._todo[0].resolve()
                        st = os.stat(path)
                        hit = cached_sha256(path, self.settings, st)
                        if hit is not None:
                            self.hashes[str(self._todo.pop(0))] = hit
                            continue
                        self._current = (path, st, FileDigest(path))
                    path, st, digest = self._current
                    if digest.step(self.WINDOW):
                        value = digest.hexdigest()
                        remember_sha256(path, self.settings, st, value)
                        self.hashes[str(self._todo.pop(0))] = value
                        self._current = None
                except BaseException as exc:  # reported by result()
                    self.error = exc
                    if self._current is not None:
                        self._current[2].close()
                    return

    def _run(self) -> None:
        _idle_priority()
        self._advance(background=True)

    def start(self) -> None:
        self._thread.start()

    def result(self) -> dict[str, str]:
        with self._lock:
            self._taken = True
        self._advance(background=False)
        if self.error is not None:
            log.warning("could not hash the source: %s", self.error)
        return self.hashes


def record(
    source: Source,
    plan: Plan,
    output: Path,
    written: int,
    engine: dict[str, Any],
    hashes: dict[str, str],
) -> dict[str, Any]:
    """The sidecar's content."""

    def file_entry(p: Path, fmt: str) -> dict[str, Any]:
        size = p.stat().st_size if p.is_file() else source.info.size
        return {"name": p.name, "sha256": hashes.get(str(p)), "bytes": size, "format": fmt}

    return {
        "format": FORMAT,
        "tool": f"sdcpp-service {__version__}",
        "engine": dict(engine),
        "architecture": source.info.arch,
        "variant": source.info.variant,
        "kind": source.info.kind,
        "slot": source.slot,
        "type": plan.qtype,
        "rules": [r.spec() for r in plan.rules],
        "source": file_entry(source.path, source.info.format),
        "vae": file_entry(source.vae, source.vae_format) if source.vae else None,
        "output": {
            "name": output.name,
            "bytes": written,
            "tensors": len(plan.tensors),
            "types": dict(Counter(t.target for t in plan.tensors).most_common()),
        },
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
