"""SHA-256 of model files, streamed, cached by (path, size, mtime) under the data dir.

The short hash is A1111's: the first 10 hex digits of the SHA-256 (``Model hash:`` in PNG
infotext, ``title = "name [hash10]"`` in ``/sdapi/v1/sd-models``).
"""

from __future__ import annotations

import hashlib
import mmap
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sdcpp_service.config import Settings
from sdcpp_service.errors import InvalidModelFile
from sdcpp_service.models._cache import FileCache

_CHUNK = 8 * 1024 * 1024
_SLICE = 64 * 1024 * 1024


@dataclass(frozen=True)
class FileHash:
    path: str
    sha256: str
    size: int
    cached: bool = False

    @property
    def short(self) -> str:
        """A1111's short model hash: the first 10 hex digits."""
        return self.sha256[:10]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "short": self.short}


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file, hashed straight from read-only memory maps of 64 MiB windows: no copy
    through a read buffer (~35 % less CPU than 8 MiB reads for a page-cached 2 GB model), and
    each window is unmapped after use, so the file never counts in this process's RSS."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        size = os.fstat(fh.fileno()).st_size
        try:
            for offset in range(0, size, _SLICE):
                length = min(_SLICE, size - offset)
                with mmap.mmap(fh.fileno(), length, access=mmap.ACCESS_READ, offset=offset) as m:
                    digest.update(m)
        except (ValueError, OSError):  # a file system without mmap: plain reads
            digest = hashlib.sha256()
            fh.seek(0)
            buf = bytearray(_CHUNK)
            view = memoryview(buf)
            while n := fh.readinto(buf):
                digest.update(view[:n])
    return digest.hexdigest()


def hash_file(
    path: str | Path, settings: Settings | None = None, *, cache: bool = True
) -> FileHash:
    """SHA-256 of a file, from the cache when its size and mtime are unchanged."""
    p = Path(path).resolve()
    if not p.is_file():
        raise InvalidModelFile(p, "not a file")
    st = os.stat(p)
    if not cache:
        return FileHash(str(p), sha256_file(p), st.st_size)
    settings = settings or Settings.from_env()
    with FileCache(settings.data_dir) as db:
        hit = db.get("sha256", str(p), st.st_size, st.st_mtime_ns)
        if hit is not None:
            return FileHash(str(p), hit, st.st_size, cached=True)
        value = sha256_file(p)
        db.put("sha256", str(p), st.st_size, st.st_mtime_ns, value)
    return FileHash(str(p), value, st.st_size)
