"""Ctrl-C while the engine runs in this process: stop at once, write nothing, exit 130.

The engine's native calls cannot be cancelled, and a ``KeyboardInterrupt`` raised inside one of
its Python callbacks is printed and ignored by ctypes while the call runs on to the end. So, while
a command runs, SIGINT is watched twice: a Python handler that ends the process when it fires
inside an engine call (``ENGINE_LOCK`` is held: the handler ran in a progress or log callback)
and raises ``KeyboardInterrupt`` otherwise (outputs are written atomically, so an interrupted save
leaves nothing behind); and a thread woken by the signal itself (``signal.set_wakeup_fd``), which
ends the process when the engine is busy in a long stretch without any callback.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import NoReturn

EXIT_INTERRUPTED = 130


def _stop() -> NoReturn:
    """Leave now: nothing was written yet (outputs are saved after the engine returns)."""
    show_cursor = b"\x1b[?25h" if sys.stderr.isatty() else b""  # a progress bar hid it
    os.write(2, show_cursor + b"\nerror: interrupted\n")
    os._exit(EXIT_INTERRUPTED)


@contextmanager
def interruptible() -> Iterator[None]:
    """Make Ctrl-C stop the in-process engine (see the module docstring)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from sdcpp_service.engine.runtime import ENGINE_LOCK

    def engine_busy_elsewhere() -> bool:
        if ENGINE_LOCK.acquire(blocking=False):
            ENGINE_LOCK.release()
            return False
        return True

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if ENGINE_LOCK._is_owned():  # type: ignore[attr-defined]  # in an engine callback
            _stop()
        raise KeyboardInterrupt

    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def watch() -> None:
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            if not data:
                return
            if signal.SIGINT in data and engine_busy_elsewhere():
                _stop()

    old_handler = signal.signal(signal.SIGINT, on_sigint)
    old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    watcher = threading.Thread(target=watch, name="sdcpp-sigint", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(old_fd)
        signal.signal(signal.SIGINT, old_handler)
        os.close(write_fd)
        watcher.join(timeout=1)
        os.close(read_fd)


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """While the engine runs, its own ``printf`` output (progress newlines between model files)
    goes to stderr: stdout carries only what the command prints (``--json`` lines)."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no real stdout (embedded, closed)
        yield
        return
    os.dup2(2, 1)
    try:
        yield
    finally:
        try:
            sys.stdout.flush()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
