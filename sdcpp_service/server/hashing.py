"""Model hashes for the infotext, computed in the background at idle priority (issue 19).

A job never waits for a hash: the worker writes ``Model hash:`` only when the shared cache
already knows it (:meth:`~sdcpp_service.server.models.HashCache.known`), as A1111 leaves out
what it has not computed. The service asks :class:`IdleHasher` for the files a job or a
preload uses; one thread at the lowest CPU priority hashes them one window at a time (so it
stops at once on shutdown) and stores each hash in the cache, where later jobs and the A1111
``info`` of earlier ones find it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sdcpp_service.config import Settings

log = logging.getLogger("sdcpp_service.server")


def _lowest_priority() -> None:
    """Run this thread at nice 19 (Linux threads have their own nice value)."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except OSError:
            pass


def job_files(
    model: str, load: dict[str, Any], params: dict[str, Any], settings: Settings
) -> list[str]:
    """The files whose hashes a job's infotext shows: its model, its component files and its
    LoRAs (named in ``params["loras"]`` or as ``<lora:…>`` tags in the prompt)."""
    from sdcpp_service.engine import loras as lora_mod
    from sdcpp_service.errors import SdcppError

    files = [model, *(v for v in load.values() if isinstance(v, str))]
    dirs = [d for root in settings.model_dirs for d in (root / "loras", root / "Lora", root)]
    pairs = [(str(n), float(w)) for n, w in params.get("loras") or []]
    try:
        files += [lo.path for lo in lora_mod.collect(str(params.get("prompt", "")), pairs, dirs)[1]]
    except SdcppError:
        pass  # the job reports its own LoRA problem
    return files


class IdleHasher:
    """A queue of model files to hash, worked by one idle-priority thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pending: dict[str, None] = {}
        self._jobs: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self._stop = threading.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(1, "sdcpp-hash", initializer=_lowest_priority)
        #: files hashed by this service (for /system and tests)
        self.hashed: list[str] = []

    def want(self, paths: Iterable[str | Path]) -> None:
        """Hash these files (the ones not cached yet) when the thread gets to them."""
        for path in paths:
            key = str(path)
            if key and key not in self._pending:
                self._pending[key] = None
        if self._pending:
            self._start()

    def want_job(self, model: str, load: dict[str, Any], params: dict[str, Any]) -> None:
        """Hash the files of a job (see :func:`job_files`; found in the thread, off the loop)."""
        self._jobs.append((model, dict(load), dict(params)))
        self._start()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._jobs:
                model, load, params = self._jobs[0]
                try:
                    found = await loop.run_in_executor(
                        self._pool, job_files, model, load, params, self.settings
                    )
                    self._pending.update(dict.fromkeys(p for p in found if p))
                except Exception as exc:
                    log.info("finding the files of a job on %s: %s", model, exc)
                self._jobs.pop(0)
            while self._pending:
                path = next(iter(self._pending))
                try:
                    await loop.run_in_executor(self._pool, self._hash, path)
                except Exception as exc:  # an unreadable file: its infotext has no hash
                    log.info("hashing %s: %s", path, exc)
                self._pending.pop(path, None)

    def _hash(self, path: str) -> None:
        from sdcpp_service.models.hashing import FileDigest, cached_sha256, remember_sha256

        real = Path(path).resolve()
        if not real.is_file():
            return
        st = os.stat(real)
        if cached_sha256(real, self.settings, st) is not None:
            return
        digest = FileDigest(real)
        try:
            while not digest.step(16 * 2**20):
                if self._stop.is_set():
                    return
        finally:
            digest.close()
        if os.stat(real).st_mtime_ns == st.st_mtime_ns:  # not rewritten meanwhile
            remember_sha256(real, self.settings, st, digest.hexdigest())
            self.hashed.append(str(real))

    async def idle(self) -> None:
        """Wait until every file asked for is hashed (tests)."""
        while self._pending or self._jobs:
            await asyncio.sleep(0.01)

    def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
