"""The engine in a supervised child process (``spawn``), one job at a time.

Why a process: the engine's progress callback is process-wide, the C API has no cancel call, and
a native crash must cost one job, never the server. So: cancel = kill the child; a crash or
``kill -9`` fails the running call with :class:`WorkerDied`; either way a fresh worker is started
at once (warm for the next job, its model loaded on first use).

Messages, parent → child: ``("run", JobSpec)``, ``("load", model, overrides)``, ``("unload",)``,
``("stop",)``. Child → parent: ``("ready", system_info)``, ``("fatal", error)``,
``("progress", (step, total, elapsed, eta, phase))``, ``("preview", (step, …), png_bytes)``,
``("ok", reply)``, ``("error", error)``.
A reader thread turns the child's messages into callbacks on the server's event loop.
"""

from __future__ import annotations

import asyncio
import io
import logging
import multiprocessing
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from PIL import Image

from sdcpp_service.errors import Cancelled, EngineError, SdcppError
from sdcpp_service.server.engine import Engine, JobSpec
from sdcpp_service.types import GenerateResult, Progress

log = logging.getLogger("sdcpp_service.server")


class WorkerDied(EngineError):
    """The worker process ended in the middle of a call (native crash, ``kill -9``, OOM)."""

    def __init__(self, exitcode: int | None) -> None:
        how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"{exitcode}"
        super().__init__(f"the engine process died (exit {how}); the job was not finished")
        self.exitcode = exitcode


class JobError(SdcppError):
    """An error raised inside the worker, carried back as data (``type``, ``field``)."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(str(data.get("message") or "the engine failed"))
        self.data = data
        self.type = str(data.get("type") or "EngineError")
        self.field = data.get("field")


def error_data(exc: BaseException) -> dict[str, Any]:
    """An exception as picklable data: class name (and its bases in the tree), message, field."""
    names = [c.__name__ for c in type(exc).__mro__ if issubclass(c, SdcppError)]
    if not isinstance(exc, SdcppError):
        return {"type": "InternalError", "classes": [], "message": f"{type(exc).__name__}: {exc}"}
    return {
        "type": type(exc).__name__,
        "classes": names,
        "message": str(exc),
        "field": getattr(exc, "field", None),
    }


def rss(pid: int | None) -> int:
    """The resident memory of a process in bytes (Linux ``/proc``; 0 elsewhere)."""
    if pid is None:
        return 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def save_outputs(result: GenerateResult, spec: JobSpec, outputs: Path) -> dict[str, Any]:
    """Write each image as ``<job id>-<n>.png`` (atomically, with infotext); describe them."""
    from sdcpp_service.engine.images import save_image

    names: list[str] = []
    infotexts: list[str] = []
    if spec.kind == "video":
        return save_video(result, spec, outputs)
    for i, image in enumerate(result.images):
        name = f"{spec.id}-{i}.png"
        text = str(image.info.get("parameters", ""))
        save_image(image, outputs / name, text, image.info.get("sdcpp"), force=True)
        names.append(name)
        infotexts.append(text)
    first = result.images[0].size if result.images else (0, 0)
    return {
        "outputs": names,
        "seeds": list(result.seeds),
        "infotexts": infotexts,
        "params": result.params,
        "timings": result.timings,
        "width": first[0],
        "height": first[1],
    }


def save_video(result: GenerateResult, spec: JobSpec, outputs: Path) -> dict[str, Any]:
    """Write the frames as one ``<job id>-0.<format>`` video (atomically, parameters inside)."""
    from sdcpp_service.engine.videofile import save_video as write

    fmt = str(result.params.get("format") or spec.params.get("format") or "mp4")
    name = f"{spec.id}-0.{fmt}"
    first = result.images[0]
    text = str(first.info.get("parameters", ""))
    fps = float(result.params.get("fps") or 16.0)
    write(result.images, outputs / name, fps, text, first.info.get("sdcpp"), force=True)
    return {
        "outputs": [name],
        "seeds": list(result.seeds),
        "infotexts": [text],
        "params": result.params,
        "timings": result.timings,
        "width": first.width,
        "height": first.height,
        "frames": len(result.images),
        "fps": fps,
    }


def preview_png(image: Image.Image) -> bytes:
    """A preview frame as a quickly compressed PNG (it crosses the pipe and goes to clients)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def worker_main(conn: Connection, engine: Engine, outputs: str) -> None:
    """The child process: start the engine, then serve calls until ``stop`` or EOF."""
    out_dir = Path(outputs)
    try:
        info = engine.start()
    except BaseException as exc:
        conn.send(("fatal", error_data(exc)))
        return
    conn.send(("ready", info))

    def report(p: Progress) -> None:
        numbers = (p.step, p.total, p.elapsed, p.eta, p.phase)
        if p.preview is not None:
            conn.send(("preview", numbers, preview_png(p.preview)))
        else:
            conn.send(("progress", numbers))

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        op = msg[0]
        try:
            if op == "stop":
                engine.unload()
                return
            if op == "run":
                spec: JobSpec = msg[1]
                reply = save_outputs(engine.run(spec, report), spec, out_dir)
            elif op == "load":
                reply = engine.load(msg[1], msg[2])
            elif op == "unload":
                engine.unload()
                reply = {}
            else:
                raise EngineError(f"unknown worker call '{op}'")
            conn.send(("ok", {**reply, "engine": engine.state()}))
        except Exception as exc:
            conn.send(("error", {**error_data(exc), "engine": engine.state()}))


class Worker:
    """Supervises one worker process: start, call, kill (cancel), restart, close."""

    def __init__(self, engine: Engine, outputs: Path, start_timeout: float = 120.0) -> None:
        self.engine = engine
        self.outputs = outputs
        self.start_timeout = start_timeout
        self.info: dict[str, Any] = {}
        self.starts = 0
        #: resident memory of the last started worker once ready (before any model)
        self.baseline = 0
        #: why the last start failed ("" once a worker is ready)
        self.error = ""
        self._proc: Any = None
        self._conn: Connection | None = None
        self._reader: threading.Thread | None = None
        self._gen = 0
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._pending: asyncio.Future[dict[str, Any]] | None = None
        self._progress: Callable[[Progress], None] | None = None
        self._preview: Callable[[Progress, bytes], None] | None = None
        self._cancelling = False
        self._closing = False
        self._start_lock = asyncio.Lock()
        self._restart: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._conn is not None

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def pid(self) -> int | None:
        return int(self._proc.pid) if self._proc is not None else None

    async def ensure(self) -> None:
        """Start the worker unless one is running (waits for its ``ready``)."""
        async with self._start_lock:
            if self.alive or self._closing:
                return
            loop = asyncio.get_running_loop()
            ctx = multiprocessing.get_context("spawn")
            parent, child = ctx.Pipe()
            self._gen += 1
            self._ready = loop.create_future()
            self._cancelling = False
            proc = ctx.Process(
                target=worker_main,
                args=(child, self.engine, str(self.outputs)),
                name="sdcpp-worker",
                daemon=True,
            )
            proc.start()
            child.close()
            self._proc, self._conn = proc, parent
            self.starts += 1
            self._reader = threading.Thread(
                target=self._read, args=(loop, self._gen, proc, parent), daemon=True
            )
            self._reader.start()
            try:
                self.info = await asyncio.wait_for(self._ready, self.start_timeout)
                self.error = ""
                self.baseline = rss(self.pid)
            except BaseException as exc:
                if not isinstance(exc, (Cancelled, asyncio.CancelledError)):
                    self.error = str(exc) or type(exc).__name__
                self.kill()
                raise

    def _read(self, loop: asyncio.AbstractEventLoop, gen: int, proc: Any, conn: Connection) -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            try:
                loop.call_soon_threadsafe(self._on_message, gen, msg)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                break
        proc.join(10)
        try:
            loop.call_soon_threadsafe(self._on_exit, gen, proc.exitcode)
        except RuntimeError:
            pass

    def _on_message(self, gen: int, msg: tuple[Any, ...]) -> None:
        if gen != self._gen:
            return
        kind = msg[0]
        if kind == "progress" and self._progress is not None:
            self._progress(Progress(*msg[1]))
        elif kind == "preview" and self._preview is not None:
            self._preview(Progress(*msg[1]), msg[2])
        elif kind in ("ready", "fatal") and self._ready is not None and not self._ready.done():
            if kind == "ready":
                self._ready.set_result(msg[1])
            else:
                self._ready.set_exception(JobError(msg[1]))
        elif kind in ("ok", "error") and self._pending is not None and not self._pending.done():
            if kind == "ok":
                self._pending.set_result(msg[1])
            else:
                self._pending.set_exception(JobError(msg[1]))

    def _on_exit(self, gen: int, exitcode: int | None) -> None:
        if gen != self._gen:
            return
        err: EngineError = Cancelled("cancelled") if self._cancelling else WorkerDied(exitcode)
        for fut in (self._ready, self._pending):
            if fut is not None and not fut.done():
                fut.set_exception(err)
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None and self._proc.exitcode is not None:
            self._proc.close()
        self._proc, self._conn = None, None
        ready = self._ready
        was_ready = ready is not None and ready.done() and not ready.cancelled()
        was_ready = was_ready and ready is not None and ready.exception() is None
        if not self._closing and was_ready:
            if not self._cancelling:
                log.warning("engine worker died (exit %s); starting a fresh one", exitcode)
            self._restart = asyncio.get_running_loop().create_task(self._restart_quietly())

    async def _restart_quietly(self) -> None:
        try:
            await self.ensure()
        except Exception as exc:  # reported again on the next call, which retries
            log.error("engine worker failed to start: %s", exc)

    async def call(
        self,
        op: str,
        *args: Any,
        progress: Callable[[Progress], None] | None = None,
        preview: Callable[[Progress, bytes], None] | None = None,
    ) -> dict[str, Any]:
        """Send one call and wait for its reply; raises JobError, WorkerDied or Cancelled.
        ``preview`` receives preview frames (PNG bytes) when the job asked for them."""
        await self.ensure()
        if self._conn is None:
            raise WorkerDied(None)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending, self._progress, self._preview = fut, progress, preview
        try:
            self._conn.send((op, *args))
        except (OSError, ValueError):
            if not fut.done():
                fut.set_exception(WorkerDied(None))
        try:
            return await fut
        finally:
            self._pending, self._progress, self._preview = None, None, None

    def kill(self, cancelling: bool = True) -> None:
        """Stop the worker now (SIGKILL); the running call ends with ``Cancelled``."""
        if self._proc is not None:
            self._cancelling = cancelling
            try:
                self._proc.kill()
            except (OSError, ValueError):
                pass

    def stop_restarting(self) -> None:
        """From now on a worker that ends is not replaced (server shutdown)."""
        self._closing = True

    async def close(self, timeout: float = 5.0) -> None:
        """Stop for good: ask the worker to exit, kill it if it does not, reap the reader."""
        self._closing = True
        restart = self._restart
        if restart is not None and not restart.done():
            restart.cancel()
        conn, reader = self._conn, self._reader
        if conn is not None:
            try:
                conn.send(("stop",))
            except (OSError, ValueError):
                pass
        if reader is not None:
            await asyncio.to_thread(reader.join, timeout)
            if reader.is_alive():  # stuck in native code: stop it the hard way
                self.kill(cancelling=False)
                await asyncio.to_thread(reader.join, 15)
        await asyncio.sleep(0)  # let the reader's exit callback run (it closes conn and proc)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
