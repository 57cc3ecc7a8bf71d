"""The engine in a supervised child process (``spawn``), one job at a time.

Why a process: the engine's progress callback is process-wide, the C API has no cancel call, and
a native crash must cost one job, never the server. So: cancel = kill the child; a crash or
``kill -9`` fails the running call with :class:`WorkerDied`; either way a fresh worker is started
at once (warm for the next job, its model loaded on first use).

Messages, parent → child: ``("run", EngineJob)``, ``("load", model, overrides)``, ``("unload",)``,
``("stop",)``. Child → parent: ``("ready", system_info)``, ``("fatal", error)``,
``("progress", (step, total, elapsed, eta, phase))``, ``("preview", (step, …), png_bytes)``,
``("ok", reply, engine_state)``, ``("error", error, engine_state)``, ``("aborted", error)``
(a native assertion: the process ends next, and its exit fails the call with this error). Errors cross as themselves
(every :class:`~sdcpp_service.errors.SdcppError` pickles with its data).
A reader thread turns the child's messages into callbacks on the server's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sdcpp_service.engine.base import Engine
from sdcpp_service.engine.images import TRANSPORT_PNG_LEVEL
from sdcpp_service.errors import Cancelled, EngineError, WorkerDied
from sdcpp_service.server.joberrors import JobError, as_sent, error_data
from sdcpp_service.server.outputs import preview_png, rss, save_outputs
from sdcpp_service.types import Progress

__all__ = ["JobError", "Worker", "WorkerDied", "error_data", "rss", "worker_main"]

log = logging.getLogger("sdcpp_service.server")


#: How much lower than the server's the engine workers' CPU priority is (``nice``): on a busy
#: machine the API process then answers at once (``/health``, progress, job lists), while the
#: engine still gets every cycle the server does not need.
WORKER_NICE = 10


def worker_main(
    conn: Connection, engine: Engine, outputs: str, png_level: int = TRANSPORT_PNG_LEVEL
) -> None:
    """The child process: start the engine, then serve calls until ``stop`` or EOF; a job's
    images are written here (PNG at zlib ``png_level``), only their names cross the pipe."""
    out_dir = Path(outputs)
    try:
        os.nice(WORKER_NICE)
    except (AttributeError, OSError):  # not on this platform, or not allowed: run as is
        pass
    from sdcpp_service.engine import aborts

    # a native assertion fails the running call with its likely cause, then the process ends
    aborts.set_reporter(lambda error: conn.send(("aborted", error)))
    try:
        info = engine.start()
    except BaseException as exc:
        conn.send(("fatal", as_sent(exc)))
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
                reply = save_outputs(engine.run(msg[1], report), msg[1], out_dir, png_level)
            elif op == "load":
                reply = engine.load(msg[1], msg[2])
            elif op == "unload":
                engine.unload()
                reply = {}
            else:
                raise EngineError(f"unknown worker call '{op}'")
            conn.send(("ok", reply, engine.state()))
        except Exception as exc:
            conn.send(("error", as_sent(exc), engine.state()))


class Worker:
    """Supervises one worker process: start, call, kill (cancel), restart, close."""

    def __init__(
        self,
        engine: Engine,
        outputs: Path,
        start_timeout: float = 120.0,
        png_level: int = TRANSPORT_PNG_LEVEL,
    ) -> None:
        self.engine = engine
        self.outputs = outputs
        self.png_level = png_level
        self.start_timeout = start_timeout
        self.info: dict[str, Any] = {}
        self.starts = 0
        #: resident memory of the last started worker once ready (before any model)
        self.baseline = 0
        #: what the engine said it holds, with its last reply (see ``Engine.state``)
        self.engine_state: dict[str, Any] | None = None
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
        #: the native abort the worker reported before it ended (fails its call on exit)
        self._aborted: EngineError | None = None
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
                args=(child, self.engine, str(self.outputs), self.png_level),
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
                self._ready.set_exception(msg[1])
        elif kind == "aborted":  # the process is ending; its exit fails the call with this
            self._aborted = msg[1]
        elif kind in ("ok", "error") and self._pending is not None and not self._pending.done():
            self.engine_state = msg[2]
            if kind == "ok":
                self._pending.set_result(msg[1])
            else:
                self._pending.set_exception(msg[1])

    def _on_exit(self, gen: int, exitcode: int | None) -> None:
        if gen != self._gen:
            return
        aborted, self._aborted = self._aborted, None
        err: EngineError = (
            Cancelled("cancelled") if self._cancelling else aborted or WorkerDied(exitcode)
        )
        self.engine_state = None
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
