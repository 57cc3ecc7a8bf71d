"""Minimal safetensors and GGUF writers that store all-zero tensors as file holes.

No torch/safetensors dependency: a safetensors file is an 8-byte little-endian header length, a
JSON header and the tensor bytes back to back; a GGUF v3 file is a binary header, tensor infos and
aligned tensor data. Zero tensors are skipped with ``seek`` so they cost no disk blocks (sparse
files); readers see zeros. Files are written to ``<path>.<pid>.incomplete`` and moved into place
with ``os.replace``.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

# safetensors dtype name -> (bytes per element, numpy dtype or None)
ST_DTYPES: dict[str, tuple[int, str | None]] = {
    "F64": (8, "<f8"),
    "F32": (4, "<f4"),
    "F16": (2, "<f2"),
    "BF16": (2, None),
    "F8_E4M3": (1, None),
    "F8_E5M2": (1, None),
    "I64": (8, "<i8"),
    "I32": (4, "<i4"),
    "I16": (2, "<i2"),
    "I8": (1, "i1"),
    "U8": (1, "u1"),
    "BOOL": (1, "?"),
}


@dataclass(frozen=True)
class TensorData:
    """One tensor to write. ``data`` None means all zeros (written as a hole).

    ``shape`` is PyTorch order. ``dtype`` is a safetensors dtype name (``F16``) or, for GGUF, a
    ggml type name (``F16``, ``Q8_0``, ``Q4_0``...). ``data`` holds the raw bytes in that dtype
    (a numpy array is taken as its buffer).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    data: np.ndarray | bytes | None = None


def st_nbytes(shape: tuple[int, ...], dtype: str) -> int:
    return math.prod(shape) * ST_DTYPES[dtype][0]


def gguf_nbytes(shape: tuple[int, ...], dtype: str) -> int:
    qtype = GGMLQuantizationType[dtype]
    block, type_size = GGML_QUANT_SIZES[qtype]
    n = math.prod(shape)
    if shape and shape[-1] % block:
        raise ValueError(f"{dtype} needs the last dim to be a multiple of {block}, got {shape}")
    return n // block * type_size


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """Write to ``<path>.<pid>.incomplete``; move into place only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.incomplete")
    try:
        with open(tmp, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_or_skip(fh: BinaryIO, t: TensorData, nbytes: int) -> None:
    if t.data is None:
        fh.seek(nbytes, os.SEEK_CUR)
        return
    buf = memoryview(t.data).cast("B") if isinstance(t.data, np.ndarray) else memoryview(t.data)
    if buf.nbytes != nbytes:
        raise ValueError(f"{t.name}: {buf.nbytes} bytes given, {nbytes} expected")
    fh.write(buf)


def write_safetensors(
    path: Path, tensors: Iterable[TensorData], metadata: Mapping[str, str] | None = None
) -> Path:
    """Write a safetensors file; zero tensors become holes."""
    items = list(tensors)
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    sizes = []
    for t in items:
        n = st_nbytes(t.shape, t.dtype)
        header[t.name] = {
            "dtype": t.dtype,
            "shape": list(t.shape),
            "data_offsets": [offset, offset + n],
        }
        sizes.append(n)
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with atomic_file(path) as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for t, n in zip(items, sizes, strict=True):
            _write_or_skip(fh, t, n)
        fh.truncate(8 + len(raw) + offset)
    return path


# --- GGUF --------------------------------------------------------------------------------------

_GGUF_MAGIC = 0x46554747  # "GGUF"
_GGUF_VERSION = 3
_KV_UINT32, _KV_INT32, _KV_FLOAT32, _KV_BOOL, _KV_STRING, _KV_UINT64 = 4, 5, 6, 7, 8, 10


def _gguf_str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def _gguf_kv(key: str, value: object) -> bytes:
    out = _gguf_str(key)
    if isinstance(value, bool):
        return out + struct.pack("<I?", _KV_BOOL, value)
    if isinstance(value, int):
        if 0 <= value < 2**32:
            return out + struct.pack("<II", _KV_UINT32, value)
        if -(2**31) <= value < 0:
            return out + struct.pack("<Ii", _KV_INT32, value)
        return out + struct.pack("<IQ", _KV_UINT64, value)
    if isinstance(value, float):
        return out + struct.pack("<If", _KV_FLOAT32, value)
    if isinstance(value, str):
        return out + struct.pack("<I", _KV_STRING) + _gguf_str(value)
    raise TypeError(f"GGUF metadata {key}: unsupported type {type(value).__name__}")


def write_gguf(
    path: Path,
    tensors: Iterable[TensorData],
    metadata: Mapping[str, object] | None = None,
    alignment: int = 32,
) -> Path:
    """Write a GGUF v3 file; zero tensors become holes (all-zero bytes are 0 in Q4_0/Q8_0 too)."""
    items = list(tensors)
    kv = dict(metadata or {})
    if alignment != 32:
        kv["general.alignment"] = alignment
    head = struct.pack("<IIQQ", _GGUF_MAGIC, _GGUF_VERSION, len(items), len(kv))
    head += b"".join(_gguf_kv(k, v) for k, v in kv.items())
    offset = 0
    layout = []
    for t in items:
        n = gguf_nbytes(t.shape, t.dtype)
        ne = tuple(reversed(t.shape)) or (1,)
        head += _gguf_str(t.name) + struct.pack("<I", len(ne))
        head += struct.pack(f"<{len(ne)}Q", *ne)
        head += struct.pack("<IQ", int(GGMLQuantizationType[t.dtype]), offset)
        layout.append((offset, n))
        offset += n + (-n % alignment)
    head += b"\0" * (-len(head) % alignment)
    with atomic_file(path) as fh:
        fh.write(head)
        for t, (off, n) in zip(items, layout, strict=True):
            fh.seek(len(head) + off)
            _write_or_skip(fh, t, n)
        fh.truncate(len(head) + offset)
    return path


# --- header-only (sparse) files for detection tests -------------------------------------------


def write_sparse(
    path: Path,
    tensors: Iterable[tuple[str, tuple[int, ...] | list[int], str]],
    metadata: Mapping[str, object] | None = None,
) -> Path:
    """Write a file with the given ``(name, shape, dtype)`` tensors and no data (all holes).

    The format follows the suffix: ``.gguf`` (dtype a ggml type: F16, Q8_0, Q4_0, ...) or
    safetensors (dtype a safetensors name: F16, BF16, F32, ...). The file has its real size but
    occupies only a few disk blocks; every tensor reads as zeros.
    """
    items = [TensorData(name, tuple(shape), dtype) for name, shape, dtype in tensors]
    if Path(path).suffix == ".gguf":
        return write_gguf(Path(path), items, metadata)
    st_meta = {k: str(v) for k, v in (metadata or {}).items()}
    return write_safetensors(Path(path), items, st_meta)
