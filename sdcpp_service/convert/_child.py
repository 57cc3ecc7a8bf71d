"""The engine side of one conversion: ``python -m sdcpp_service.convert._child``.

The engine's ``convert`` is one blocking C call that cannot be cancelled, so it runs here, in a
process the parent (:mod:`sdcpp_service.convert.run`) can kill at any moment; the parent owns
every path and renames the output only when this process reports success.

Protocol, one JSON object per line: this process writes ``ready`` (the engine's weight types
and version) on its stdout, reads one job line from stdin (EOF: exit without work), then writes
``progress``…, ``log``…, ``converted``, optionally ``verified``, and ``done``. The engine's own
prints go to stderr, never into the protocol.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import IO, Any

# Kept lean: until the job arrives this process imports only the bindings and ctypes, so it is
# ready as soon as a bare script calling the engine would be (see benchmarks/convert.py).

#: The engine's log levels (``enum sd_log_level_t``) we forward, by name.
_LEVELS = {2: "warning", 3: "error"}


class _Channel:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def send(self, event: str, **data: Any) -> None:
        line = json.dumps({"event": event, **data})
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()


class _Hooks:
    """The engine's log and progress callbacks for the conversion, straight onto the channel:
    warnings and errors → ``log`` events (errors also kept for the ``converted`` event),
    progress → ``progress`` events."""

    def __init__(self, lib: Any, channel: _Channel) -> None:
        self.channel = channel
        self.errors: list[str] = []
        self._log = lib.sd_log_callback(self._on_log)
        self._progress = lib.sd_progress_callback(self._on_progress)
        lib.sd_set_log_callback(self._log, None)
        lib.sd_set_progress_callback(self._progress, None)

    def _on_log(self, level: int, text: bytes | None, _data: Any) -> None:
        line = (text or b"").decode("utf-8", "replace").rstrip()
        name = _LEVELS.get(min(level, 3))
        if line and name:
            if name == "error":
                self.errors.append(line)
            self.channel.send("log", level=name, text=line)

    def _on_progress(self, step: int, steps: int, _seconds: float, _data: Any) -> None:
        if steps > 0:
            self.channel.send("progress", step=step, total=steps)


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the parent dies, so an orphan never keeps writing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - best effort
        pass


def own_maxrss() -> int:
    """Peak RSS of this process in bytes (0 where the platform has no ``resource``); here so the
    engine child can report its own without importing anything else of ours."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return 0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def _forward_engine_log(channel: _Channel) -> None:
    """Our engine layer logs through :mod:`logging`: its warnings and errors → ``log`` events."""
    import logging

    class Forward(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            level = "error" if record.levelno >= logging.ERROR else "warning"
            channel.send("log", level=level, text=record.getMessage())

    logger = logging.getLogger("sdcpp_service.engine")
    logger.addHandler(Forward(logging.WARNING))
    logger.propagate = False


def _verify(job: dict[str, Any], channel: _Channel) -> None:
    from sdcpp_service.config import Settings
    from sdcpp_service.engine.pipeline import Pipeline
    from sdcpp_service.types import LoadOptions

    spec = job["verify"]
    slots = {spec["slot"]: job["output"], **spec.get("with", {})}
    options = LoadOptions(**slots, vae_decode_only=True)
    t0 = time.perf_counter()
    with Pipeline(options, Settings.from_env(), hash_fn=None, one_shot=True) as pipe:
        load_s = time.perf_counter() - t0
        size: list[int] = []
        gen_s = 0.0
        if spec.get("generate", True):
            t1 = time.perf_counter()
            images = pipe.generate("a lighthouse", steps=1, width=64, height=64, seed=1)
            gen_s = time.perf_counter() - t1
            if not images:
                raise RuntimeError("the engine returned no image")
            size = list(images[0].size)
    channel.send("verified", load_s=load_s, gen_s=gen_s, image=size)


def main() -> int:
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # engine printf output goes to stderr, never into the protocol
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _die_with_parent()
    channel = _Channel(proto)

    from sdcpp_service.engine.sdcpp import bindings, bindings_version
    from sdcpp_service.errors import EngineNotInstalled

    try:
        lib = bindings()
    except EngineNotInstalled as exc:
        channel.send("not_installed", message=str(exc))
        return 1
    from sdcpp_service.convert._engine import type_rows

    hooks = _Hooks(lib, channel)
    channel.send(
        "ready",
        types=type_rows(lib._lib, int(lib.GGMLType.SD_TYPE_COUNT)),
        engine={
            "bindings": bindings_version(),
            "version": lib.sd_version().decode("utf-8", "replace"),
            "commit": lib.sd_commit().decode("utf-8", "replace"),
        },
    )
    line = sys.stdin.readline()
    if not line.strip():
        return 0
    job = json.loads(line)
    t0 = time.perf_counter()
    ok = bool(
        lib.convert(
            job["source"].encode("utf-8"),
            (job.get("vae") or "").encode("utf-8"),
            job["output"].encode("utf-8"),
            int(job["type_id"]),
            job["rules"].encode("utf-8"),
            False,
        )
    )
    seconds = time.perf_counter() - t0
    channel.send("converted", ok=ok, seconds=seconds, errors=hooks.errors[-5:])
    if ok and job.get("verify"):
        _forward_engine_log(channel)
        try:
            _verify(job, channel)
        except Exception as exc:  # reported, the parent fails the conversion
            channel.send("verify_failed", message=f"{type(exc).__name__}: {exc}")
    channel.send("done", maxrss=own_maxrss())
    proto.close()
    os._exit(0)  # nothing left to clean up: skip interpreter teardown (the parent waits on it)


if __name__ == "__main__":
    sys.exit(main())
