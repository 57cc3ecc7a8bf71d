"""Read tensor names, shapes and dtypes from model files without reading any weights.

Every reader costs the same on a 20 MB or a 20 GB file: it reads the header (safetensors'
JSON, GGUF's key/value and tensor tables, a PyTorch archive's ``data.pkl``) and checks that
the tensors it announces fit inside the file. Anything truncated, corrupt or absurd is an
:class:`~sdcpp_service.errors.InvalidModelFile` raised before any large read.

Formats are told apart by their first bytes, never by the file extension.
"""

from __future__ import annotations

import json
import math
import os
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from sdcpp_service.errors import InvalidModelFile, UnsupportedModel
from sdcpp_service.models.header_types import Header, TensorInfo

__all__ = [
    "FileMemo",
    "Header",
    "TensorInfo",
    "file_stamp",
    "read_diffusers",
    "read_header",
    "read_safetensors",
]

#: A safetensors header larger than this is refused (real ones are a few MB at most).
MAX_JSON_HEADER = 64 * 1024 * 1024

#: Bytes per element of the safetensors dtypes.
SAFETENSORS_ITEMSIZE: dict[str, int] = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}


#: A file modified less than this long ago is read again on every call (its timestamps are
#: coarse, ~4 ms: a file rewritten in place within one tick could look unchanged).
SETTLED_SECONDS = 2.0

T = TypeVar("T")


def file_stamp(path: str | Path) -> tuple[int, ...] | None:
    """What tells one version of a file from another (device, inode, size, mtime, ctime);
    None for a folder, a file that cannot be stat'ed, or one modified a moment ago."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not os.path.isfile(path) or time.time() - st.st_mtime < SETTLED_SECONDS:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class FileMemo(Generic[T]):
    """What a pure function of one file's contents returned, kept per path and version of the
    file (:func:`file_stamp`), the least recently used dropped past ``size``. A server checks
    every request against the same model files: without this each request parsed their
    headers again (megabytes of JSON for a large checkpoint). Errors are never kept."""

    def __init__(self, fn: Callable[[str | Path], T], size: int = 32) -> None:
        self.fn, self.size = fn, size
        self._items: OrderedDict[tuple[str, tuple[int, ...]], T] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, path: str | Path) -> T:
        stamp = file_stamp(path)
        if stamp is None:
            return self.fn(path)
        key = (str(path), stamp)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = self.fn(path)
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def read_header(path: str | Path) -> Header:
    """Read the header of a model file or diffusers folder; never reads weights. A file read
    before, unchanged since, is answered from memory (:class:`FileMemo`)."""
    return _HEADERS(path)


def _read_header(path: str | Path) -> Header:
    p = Path(path)
    if p.is_dir():
        return read_diffusers(p)
    try:
        with open(p, "rb") as fh:
            head = fh.read(16)
    except IsADirectoryError:  # pragma: no cover - raced with is_dir
        return read_diffusers(p)
    except OSError as exc:
        raise InvalidModelFile(p, f"cannot read: {exc.strerror or exc}") from None
    if head[:4] == b"GGUF":
        from sdcpp_service.models._gguf import read_gguf

        return read_gguf(p)
    if head[:4] == b"PK\x03\x04":
        from sdcpp_service.models._torch import read_torch_zip

        return read_torch_zip(p)
    if len(head) >= 9 and head[8:9] == b"{":
        return read_safetensors(p)
    if len(head) >= 3 and head[0] == 0x80 and 2 <= head[1] <= 5:
        from sdcpp_service.models._torch import read_torch_legacy

        return read_torch_legacy(p)
    if not head:
        raise InvalidModelFile(p, "empty file")
    raise InvalidModelFile(p, "not a safetensors, GGUF or PyTorch file")


_HEADERS = FileMemo(_read_header)


def read_safetensors(path: str | Path) -> Header:
    """Parse a safetensors header (u64 length + JSON) and check every tensor fits the file."""
    p = Path(path)
    with open(p, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        raw = fh.read(8)
        if len(raw) < 8:
            raise InvalidModelFile(p, "truncated safetensors header")
        (n,) = struct.unpack("<Q", raw)
        if n < 2 or n > MAX_JSON_HEADER:
            raise InvalidModelFile(p, f"absurd safetensors header length {n}")
        if 8 + n > size:
            raise InvalidModelFile(p, f"truncated: header of {n} bytes but file has {size}")
        text = fh.read(n)
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise InvalidModelFile(p, "safetensors header is not valid JSON") from None
    if not isinstance(doc, dict):
        raise InvalidModelFile(p, "safetensors header is not a JSON object")
    data_size = size - 8 - n
    meta_raw = doc.pop("__metadata__", None) or {}
    metadata = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in meta_raw.items()}
    tensors: dict[str, TensorInfo] = {}
    for name, info in doc.items():
        tensors[name] = _safetensors_entry(p, name, info, data_size)
    return Header(str(p), "safetensors", tensors, metadata, size)


_INT_ONLY = frozenset({int})


def _safetensors_entry(p: Path, name: str, info: object, data_size: int) -> TensorInfo:
    if type(info) is not dict:
        raise InvalidModelFile(p, f"tensor '{name}': entry is not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if type(dtype) is not str or type(shape) is not list or type(offsets) is not list:
        raise InvalidModelFile(p, f"tensor '{name}': missing dtype, shape or data_offsets")
    if len(shape) > 8 or (shape and (not set(map(type, shape)) <= _INT_ONLY or min(shape) < 0)):
        raise InvalidModelFile(p, f"tensor '{name}': bad shape {shape}")
    if len(offsets) != 2 or not set(map(type, offsets)) <= _INT_ONLY:
        raise InvalidModelFile(p, f"tensor '{name}': bad data_offsets")
    begin, end = offsets
    if begin < 0 or end < begin:
        raise InvalidModelFile(p, f"tensor '{name}': bad data_offsets {offsets}")
    if end > data_size:
        raise InvalidModelFile(p, f"truncated: tensor '{name}' ends past the end of the file")
    item = SAFETENSORS_ITEMSIZE.get(dtype)
    if item is not None and math.prod(shape) * item != end - begin:
        raise InvalidModelFile(p, f"tensor '{name}': {end - begin} bytes for shape {shape} {dtype}")
    return TensorInfo(tuple(shape), dtype)


#: diffusers pipeline component folder → name prefix, as the engine's own diffusers loader uses.
DIFFUSERS_COMPONENTS: tuple[tuple[str, str], ...] = (
    ("unet", "unet."),
    ("transformer", "transformer."),
    ("vae", "vae."),
    ("text_encoder", "te."),
    ("text_encoder_2", "te.1."),
    ("text_encoder_3", "te.2."),
)

_WEIGHT_FILES = (
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "model.fp16.safetensors",
)
_INDEX_FILES = ("diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json")


def read_diffusers(folder: str | Path) -> Header:
    """A diffusers pipeline folder: ``model_index.json`` plus one header per component."""
    d = Path(folder)
    index = d / "model_index.json"
    if not index.is_file():
        raise UnsupportedModel(d, "a folder, but not a diffusers pipeline (no model_index.json)")
    try:
        doc = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        raise InvalidModelFile(index, "model_index.json is not valid JSON") from None
    if not isinstance(doc, dict):
        raise InvalidModelFile(index, "model_index.json is not a JSON object")
    tensors: dict[str, TensorInfo] = {}
    found: list[str] = []
    size = 0
    for component, prefix in DIFFUSERS_COMPONENTS:
        for header in _component_headers(d / component):
            found.append(component)
            size += header.size
            for name, info in header.tensors.items():
                tensors[prefix + name] = info
    metadata = {
        "diffusers.class_name": str(doc.get("_class_name", "")),
        "diffusers.components": ",".join(dict.fromkeys(found)),
    }
    return Header(str(d), "diffusers", tensors, metadata, size)


def _component_headers(sub: Path) -> list[Header]:
    if not sub.is_dir():
        return []
    for name in _WEIGHT_FILES:
        if (sub / name).is_file():
            return [read_safetensors(sub / name)]
    for name in _INDEX_FILES:
        idx = sub / name
        if idx.is_file():
            try:
                weight_map = json.loads(idx.read_text(encoding="utf-8"))["weight_map"]
                shards = sorted(set(weight_map.values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                raise InvalidModelFile(idx, "not a valid safetensors index") from None
            return [read_safetensors(sub / str(s)) for s in shards]
    return []
