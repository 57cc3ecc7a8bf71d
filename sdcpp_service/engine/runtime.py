"""The engine's per-process plumbing: ``ENGINE_LOCK``, the log routing (:class:`EngineLog`) and
the progress hub (:class:`ProgressHub`), created once by :func:`runtime`.

The engine's progress and log callbacks are process-wide; ``ENGINE_LOCK`` makes one job at a time
per process explicit (the server runs the engine in a child process for isolation).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sdcpp_service.engine import aborts
from sdcpp_service.engine.cdata import pil_from_c
from sdcpp_service.engine.sdcpp import Native, native
from sdcpp_service.types import ProgressCallback

log = logging.getLogger("sdcpp_service.engine")

#: One engine job per process at a time: the native progress/log callbacks are process-wide.
ENGINE_LOCK = threading.RLock()

_LOG_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR}


#: Engine warnings about fallbacks that then succeed: logged at debug level only. ggml's GGUF
#: reader refuses Wan's 5-D patch embedding (and says it failed to read the tensor info); the
#: engine then reads the file with its own loader.
HARMLESS = ("has invalid number of dimensions: 5 > 4",)


class EngineLog:
    """Routes the engine's log lines to :mod:`logging` and remembers recent ones (for errors)."""

    def __init__(self, nat: Native) -> None:
        self.lines: deque[tuple[int, int, str]] = deque(maxlen=500)
        self.seq = 0
        #: called with every line (the progress hub names its stage from them)
        self.listeners: list[Callable[[str], None]] = []
        self._after_harmless = False
        self._lib = nat.lib
        self._cb = nat.lib.sd_log_callback(self._on_log)
        self.install()

    def install(self) -> None:
        """(Re)install our callback: the engine's log hook is process-wide and other code
        (the bindings' own wrapper, test fixtures) may have replaced it."""
        self._lib.sd_set_log_callback(self._cb, None)

    def _on_log(self, level: int, text: bytes | None, _data: Any) -> None:
        line = (text or b"").decode("utf-8", "replace").rstrip()
        if line:
            self.seq += 1
            self.lines.append((self.seq, level, line))
            shown = _LOG_LEVELS.get(level, logging.INFO)
            if any(h in line for h in HARMLESS) or (
                self._after_harmless and "failed to read tensor info" in line
            ):
                shown = logging.DEBUG  # a fallback that works: kept for errors, not shown
            self._after_harmless = any(h in line for h in HARMLESS)
            log.log(shown, "%s", line)
            for listener in self.listeners:
                listener(line)

    def mark(self) -> int:
        return self.seq

    def since(self, mark: int, min_level: int = 0) -> list[str]:
        """Lines logged after ``mark`` at ``min_level`` or above (0 debug … 3 error)."""
        return [line for seq, level, line in self.lines if seq > mark and level >= min_level]

    def last_error(self, mark: int = 0) -> str:
        errors = self.since(mark, 3)
        return errors[-1].split("] ", 1)[-1].strip() if errors else ""


#: Engine log lines that start a stage, → the stage's name in progress reports. The engine
#: reports LoRA and tensor loading through the same callback as sampling steps.
STAGES: tuple[tuple[str, str], ...] = (
    ("loading LoRA from", "loading LoRA"),
    ("apply lora", "loading LoRA"),
    ("sampling", "sampling"),  # "sampling using …" and "sampling(high noise) using …"
    ("decoding ", "decoding"),
)


class ProgressHub:
    """The single native progress callback of this process, dispatching to the current job."""

    def __init__(self, nat: Native) -> None:
        self.target: ProgressCallback | None = None
        self.started = 0.0
        self.phase = "sampling"
        self.total = 0
        self.eta = 0.0
        self.preview_interval = 1
        self._lib = nat.lib
        self._cb = nat.lib.sd_progress_callback(self._on_progress)
        self._preview_cb = nat.lib.sd_preview_callback(self._on_preview)
        nat.lib.sd_set_progress_callback(self._cb, None)

    def _on_progress(self, step: int, steps: int, seconds_per_step: float, _data: Any) -> None:
        target = self.target
        if target is None or steps <= 0:
            return
        from sdcpp_service.types import Progress

        elapsed = time.perf_counter() - self.started
        # At step 0 the engine's loading reports divide by ~0 (elapsed / 1e-6 s per step).
        eta = max(0.0, (steps - step) * float(seconds_per_step)) if step > 0 else 0.0
        self.total, self.eta = steps, eta
        try:
            target(Progress(step, steps, elapsed, eta, self.phase))
        except Exception:  # never let a Python error unwind through C frames
            log.exception("progress callback failed")

    def _on_preview(self, step: int, count: int, frames: Any, _noisy: bool, _data: Any) -> None:
        """Engine-owned preview frames (freed by the engine after we return): copy the first."""
        target = self.target
        if target is None or count < 1 or not frames or not frames[0].data:
            return
        if abs(step) % self.preview_interval:  # the pinned engine ignores its own interval
            return
        from sdcpp_service.types import Progress

        try:
            preview = pil_from_c(frames[0])
            elapsed = time.perf_counter() - self.started
            target(Progress(step, self.total, elapsed, self.eta, "preview", preview))
        except Exception:  # never let a Python error unwind through C frames
            log.exception("preview callback failed")

    def note_log(self, line: str) -> None:
        """Name the stage from the engine's log (only while a job is attached)."""
        if self.target is None:
            return
        text = line.split(" - ", 1)[-1].lstrip()  # "stable-diffusion.cpp:2814 - sampling …"
        for prefix, stage in STAGES:
            if text.startswith(prefix):
                self.phase = stage
                return

    @contextmanager
    def attached(
        self,
        target: ProgressCallback | None,
        phase: str = "sampling",
        preview_mode: int = 0,
        preview_interval: int = 1,
    ) -> Iterator[None]:
        """Route progress (and, with ``preview_mode`` > 0, preview images) to ``target``."""
        self.target, self.started, self.phase = target, time.perf_counter(), phase
        self.total, self.eta = 0, 0.0
        self.preview_interval = max(1, preview_interval)
        self._lib.sd_set_progress_callback(self._cb, None)
        if preview_mode and target is not None:
            self._lib.sd_set_preview_callback(
                self._preview_cb, preview_mode, max(1, preview_interval), True, False, None
            )
        try:
            yield
        finally:
            self.target = None
            if preview_mode:
                self._lib.sd_set_preview_callback(None, 0, 1, True, False, None)


class Runtime:
    """Per-process engine plumbing: native API, log routing, progress hub (created once)."""

    def __init__(self) -> None:
        self.native = native()
        self.log = EngineLog(self.native)
        self.progress = ProgressHub(self.native)
        self.log.listeners.append(self.progress.note_log)
        aborts.install(self.native.lib._lib)  # a GGML_ASSERT: one line naming the cause


_RUNTIME: list[Runtime] = []


def runtime() -> Runtime:
    with ENGINE_LOCK:
        if not _RUNTIME:
            _RUNTIME.append(Runtime())
        return _RUNTIME[0]
