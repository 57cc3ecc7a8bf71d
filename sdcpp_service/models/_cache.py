"""A small SQLite key/value cache under the data dir, keyed by (kind, path, size, mtime).

A value is valid only while the file keeps the size and modification time it had when the
value was stored; any change makes the entry a miss. SQLite makes concurrent CLI runs and
server workers safe without locks of our own.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import TracebackType

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (kind, path)
)
"""


class FileCache:
    """``with FileCache(settings.data_dir) as cache: cache.get("sha256", path, size, mtime)``."""

    FILENAME = "models-cache.sqlite3"

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / self.FILENAME
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> FileCache:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30)
        self._db.execute(_SCHEMA)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._db is not None:
            if exc_type is None:
                self._db.commit()
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("FileCache used outside its 'with' block")
        return self._db

    def get(self, kind: str, path: str, size: int, mtime_ns: int) -> str | None:
        row = self.db.execute(
            "SELECT value FROM entries WHERE kind=? AND path=? AND size=? AND mtime_ns=?",
            (kind, path, size, mtime_ns),
        ).fetchone()
        return None if row is None else str(row[0])

    def get_many(self, kind: str) -> dict[str, tuple[int, int, str]]:
        """Every entry of a kind: path → (size, mtime_ns, value)."""
        rows = self.db.execute(
            "SELECT path, size, mtime_ns, value FROM entries WHERE kind=?", (kind,)
        )
        return {str(p): (int(s), int(m), str(v)) for p, s, m, v in rows}

    def put(self, kind: str, path: str, size: int, mtime_ns: int, value: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO entries (kind, path, size, mtime_ns, value) VALUES (?,?,?,?,?)",
            (kind, path, size, mtime_ns, value),
        )

    def drop_other(self, prefix: str, keep: str) -> None:
        """Delete entries whose kind starts with ``prefix`` but is not ``keep`` (stale versions)."""
        self.db.execute(
            "DELETE FROM entries WHERE kind LIKE ? AND kind != ?",
            (prefix.replace("%", "") + "%", keep),
        )
