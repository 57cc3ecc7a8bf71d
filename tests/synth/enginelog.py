"""Capture stable-diffusion.cpp log lines (tests only).

Importing ``stable_diffusion_cpp`` installs the bindings' own log callback; ``EngineLog.install``
replaces it with one that records every line, and ``uninstall`` puts the bindings' back. The
ctypes callback object is kept on the instance so it is not garbage-collected while C holds it.
"""

from __future__ import annotations

import ctypes
import re
import threading

BAD_TENSOR_LINES = ("unknown tensor", "not in model file")
LEVELS = {0: "DEBUG", 1: "INFO", 2: "WARN", 3: "ERROR"}


class EngineLog:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._partial = ""
        self._callback: object | None = None

    def install(self) -> EngineLog:
        import stable_diffusion_cpp  # noqa: F401  (installs the bindings' callback first)
        from stable_diffusion_cpp import stable_diffusion_cpp as sd_cpp

        @sd_cpp.sd_log_callback
        def _on_log(level: int, text: bytes, data: ctypes.c_void_p) -> None:
            msg = text.decode("utf-8", errors="replace")
            with self._lock:
                self.lines.append((LEVELS.get(level, str(level)), msg.rstrip("\n")))

        self._callback = _on_log
        sd_cpp.sd_set_log_callback(_on_log, ctypes.c_void_p(0))
        return self

    def uninstall(self) -> None:
        from stable_diffusion_cpp import _logger
        from stable_diffusion_cpp import stable_diffusion_cpp as sd_cpp

        sd_cpp.sd_set_log_callback(_logger.sd_log_callback, ctypes.c_void_p(0))

    def clear(self) -> None:
        with self._lock:
            self.lines.clear()

    def text(self) -> str:
        with self._lock:
            return "\n".join(msg for _, msg in self.lines)

    def matching(self, *needles: str) -> list[str]:
        with self._lock:
            return [m for _, m in self.lines if any(n in m for n in needles)]

    def bad_tensor_lines(self) -> list[str]:
        return self.matching(*BAD_TENSOR_LINES)

    def errors(self) -> list[str]:
        with self._lock:
            return [m for lvl, m in self.lines if lvl == "ERROR"]

    def versions(self) -> list[str]:
        found = re.findall(r"Version: (.+?)\s*$", self.text(), flags=re.MULTILINE)
        return [v.strip() for v in found]
