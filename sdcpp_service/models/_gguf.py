"""A small GGUF header parser: key/values and tensor table, never the tensor data.

Hand-written rather than ``gguf.GGUFReader``: that reader memory-maps the whole file and
builds numpy views for every field (a tokenizer array of 150k strings becomes 300k arrays),
which is slow for a header scan and imports numpy. This parser reads sequentially from a
buffered file, skips large arrays, and checks every count and length against the file size
so a corrupt header fails in microseconds instead of allocating gigabytes.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import BinaryIO

from sdcpp_service.errors import InvalidModelFile
from sdcpp_service.models.header_types import Header, TensorInfo

#: ggml type id → (name, block size in elements, bytes per block).
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
}

#: GGUF value type → struct format of a scalar (8 = string and 9 = array are special).
_SCALARS: dict[int, str] = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_MAX_STRING = 16 * 1024 * 1024
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_MAX_DIMS = 8
_CHUNK = 1 << 20
#: Arrays up to this length are kept in the metadata (as text); longer ones are skipped.
_KEEP_ARRAY = 16


class _Cursor:
    """Sequential little-endian reads with bounds checked against the file size."""

    def __init__(self, fh: BinaryIO, path: Path, size: int) -> None:
        self.fh, self.path, self.size = fh, path, size
        self.buf = b""
        self.start = 0  # file offset of buf[0]
        self.pos = 0  # file offset of the next read

    def _fail(self, what: str) -> InvalidModelFile:
        return InvalidModelFile(self.path, f"truncated or corrupt GGUF header ({what})")

    def need(self, n: int, what: str) -> int:
        """Make ``n`` bytes at ``pos`` available in ``buf``; return their offset in ``buf``."""
        if n < 0 or self.pos + n > self.size:
            raise self._fail(what)
        rel = self.pos - self.start
        if rel + n > len(self.buf):
            self.fh.seek(self.pos)
            self.buf = self.fh.read(max(n, _CHUNK))
            self.start, rel = self.pos, 0
            if len(self.buf) < n:
                raise self._fail(what)
        return rel

    def take(self, n: int, what: str) -> bytes:
        rel = self.need(n, what)
        self.pos += n
        return self.buf[rel : rel + n]

    def tensor_info(self) -> tuple[str, tuple[int, ...], int, int]:
        """One tensor-table entry: name, shape (outermost first), ggml type, data offset."""
        rel = self.need(8, "tensor name")
        n = _U64.unpack_from(self.buf, rel)[0]
        if n > _MAX_STRING:
            raise self._fail(f"tensor name of {n} bytes")
        rel = self.need(8 + n + 4, "tensor name")
        name = self.buf[rel + 8 : rel + 8 + n].decode("utf-8", errors="replace")
        n_dims = _U32.unpack_from(self.buf, rel + 8 + n)[0]
        if n_dims > _MAX_DIMS:
            raise InvalidModelFile(self.path, f"tensor '{name}': {n_dims} dimensions")
        self.pos += 12 + n
        rel = self.need(8 * n_dims + 12, name)
        ne = struct.unpack_from(f"<{n_dims}QIQ", self.buf, rel)
        self.pos += 8 * n_dims + 12
        return name, tuple(reversed(ne[:n_dims])), ne[n_dims], ne[n_dims + 1]

    def skip(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self._fail(what)
        self.pos += n

    def u32(self, what: str) -> int:
        return int(struct.unpack("<I", self.take(4, what))[0])

    def u64(self, what: str) -> int:
        return int(struct.unpack("<Q", self.take(8, what))[0])

    def string(self, what: str) -> str:
        n = self.u64(what)
        if n > _MAX_STRING:
            raise self._fail(f"{what}: string of {n} bytes")
        return self.take(n, what).decode("utf-8", errors="replace")

    def skip_strings(self, count: int, what: str) -> None:
        """Skip ``count`` length-prefixed strings (a tokenizer's 150k tokens) in one loop."""
        unpack, buf, rel = _U64.unpack_from, self.buf, self.pos - self.start
        for _ in range(count):
            if rel + 8 > len(buf):
                self.pos = self.start + rel
                self.take(8, what)  # refills the buffer at pos
                self.pos -= 8
                buf, rel = self.buf, self.pos - self.start
            n = unpack(buf, rel)[0]
            if n > _MAX_STRING:
                raise self._fail(f"{what}: string of {n} bytes")
            rel += 8 + n
        self.pos = self.start + rel
        if self.pos > self.size:
            raise self._fail(what)


def _value(cur: _Cursor, vtype: int, key: str) -> str | None:
    """Read one value; return it as text when small enough to keep, else None."""
    if vtype in _SCALARS:
        fmt = _SCALARS[vtype]
        v = struct.unpack(fmt, cur.take(struct.calcsize(fmt), key))[0]
        return str(v).lower() if vtype == 7 else str(v)
    if vtype == 8:
        return cur.string(key)
    if vtype == 9:
        itype = cur.u32(key)
        count = cur.u64(key)
        if count > cur.size:
            raise cur._fail(f"{key}: array of {count} items")
        if itype in _SCALARS and count > _KEEP_ARRAY:
            cur.skip(count * struct.calcsize(_SCALARS[itype]), key)
            return None
        if itype == 8 and count > _KEEP_ARRAY:
            cur.skip_strings(count, key)
            return None
        if itype not in _SCALARS and itype not in (8, 9):
            raise cur._fail(f"{key}: unknown array type {itype}")
        items = [_value(cur, itype, key) for _ in range(count)]
        return "[" + ", ".join(str(i) for i in items) + "]"
    raise cur._fail(f"{key}: unknown value type {vtype}")


def read_gguf(path: str | Path) -> Header:
    p = Path(path)
    with open(p, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        cur = _Cursor(fh, p, size)
        if cur.take(4, "magic") != b"GGUF":
            raise InvalidModelFile(p, "not a GGUF file")
        version = cur.u32("version")
        if version not in (2, 3):
            raise InvalidModelFile(p, f"unsupported GGUF version {version}")
        n_tensors = cur.u64("tensor count")
        n_kv = cur.u64("key/value count")
        # Each tensor entry takes at least 28 bytes, each key/value at least 13.
        if n_tensors * 28 + n_kv * 13 > size:
            raise InvalidModelFile(p, f"absurd GGUF counts ({n_tensors} tensors, {n_kv} keys)")
        metadata: dict[str, str] = {}
        for _ in range(n_kv):
            key = cur.string("key")
            value = _value(cur, cur.u32(key), key)
            if value is not None:
                metadata[key] = value
        entries = [cur.tensor_info() for _ in range(n_tensors)]
        header_end = cur.pos
    try:
        alignment = int(metadata.get("general.alignment", "32"))
    except ValueError:
        alignment = 32
    if alignment <= 0 or alignment & (alignment - 1):
        raise InvalidModelFile(p, f"bad GGUF alignment {alignment}")
    data_start = (header_end + alignment - 1) // alignment * alignment
    tensors: dict[str, TensorInfo] = {}
    for name, shape, ttype, offset in entries:
        if ttype not in GGML_TYPES:
            raise InvalidModelFile(p, f"tensor '{name}': unknown ggml type {ttype}")
        tname, block, nbytes = GGML_TYPES[ttype]
        numel = math.prod(shape)
        if numel % block:
            raise InvalidModelFile(p, f"tensor '{name}': {numel} elements for {tname}")
        if data_start + offset + numel // block * nbytes > size:
            raise InvalidModelFile(p, f"truncated: tensor '{name}' ends past the end of the file")
        tensors[name] = TensorInfo(shape, tname)
    return Header(str(p), "gguf", tensors, metadata, size)
