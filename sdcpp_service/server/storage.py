"""A full disk under the data dir: telling the error apart, reporting it, noticing it is over.

Any write (the job store, an output file, a converted copy, the options file) that fails for
want of space becomes :class:`~sdcpp_service.errors.StorageFull`: the job it belongs to fails
with it (``storage_full``), a request that writes gets 507, and :class:`Storage` remembers the
condition for ``/health``. While it lasts, a submission first writes a small probe file; the
condition ends with the first probe (or job) that succeeds, so jobs run again once space is
back, with no restart.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from sdcpp_service.errors import StorageFull

log = logging.getLogger("sdcpp_service.server")

#: errno values meaning "no room" (a full disk, a full quota)
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: SQLite's own code for a full disk (``SQLITE_FULL``)
SQLITE_FULL = 13
#: what a probe writes (and removes) to learn whether there is room again
PROBE_BYTES = 1024 * 1024


def is_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) is a write that failed for want of space."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, StorageFull):
            return True
        if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
            return True
        if isinstance(exc, sqlite3.Error) and (
            getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL
            or "database or disk is full" in str(exc)
        ):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


class Storage:
    """The data dir's disk: full or not (since when, the last error), free bytes, a probe."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        #: when the condition began (UNIX time); None while writes succeed
        self.full_since: float | None = None
        self.error = ""

    @property
    def full(self) -> bool:
        return self.full_since is not None

    def failed(self, exc: BaseException) -> None:
        """A write failed for want of space."""
        if self.full_since is None:
            self.full_since = time.time()
            log.error("storage full: %s", exc)
        self.error = str(exc)

    def ok(self) -> None:
        """A write succeeded: the condition (if any) is over."""
        if self.full_since is not None:
            log.warning("storage: there is room again; jobs run")
        self.full_since, self.error = None, ""

    def free_bytes(self) -> int | None:
        if self.path is None:
            return None
        try:
            return shutil.disk_usage(self.path).free
        except OSError:
            return None

    def probe(self) -> bool:
        """Write and remove a small file: is there room again? (Ends the condition if so.)"""
        if self.path is None:
            return True
        probe = self.path / f".space-probe-{os.getpid()}"
        try:
            with open(probe, "wb") as f:
                f.write(b"\0" * PROBE_BYTES)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            if is_full(exc):
                self.failed(StorageFull(self.path))
                return False
            raise
        finally:
            try:
                probe.unlink()
            except OSError:
                pass
        self.ok()
        return True

    def view(self, detail: bool = True) -> dict[str, Any]:
        """For ``/health``: ``status`` (``ok``/``full``), and with ``detail`` the free bytes,
        since when and the last error."""
        out: dict[str, Any] = {"status": "full" if self.full else "ok"}
        if detail:
            out.update(
                free_bytes=self.free_bytes(), since=self.full_since, error=self.error or None
            )
        return out
