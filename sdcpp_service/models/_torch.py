"""PyTorch ``.ckpt``/``.pt``/``.pth`` headers without torch and without running pickle code.

A restricted :class:`pickle.Unpickler` admits only the globals a state dict needs
(``torch._utils._rebuild_tensor_v2``, ``collections.OrderedDict``, ``torch.*Storage``…) and
maps them to inert stand-ins that record shape and dtype; a few harmless metadata classes
found in training checkpoints become inert objects; any other global (``os.system``,
``builtins.eval``, a user class) refuses the file. Names are flattened the way the engine
flattens them: nested dicts contribute their tensors without a prefix.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from sdcpp_service.errors import InvalidModelFile
from sdcpp_service.models.header_types import Header, TensorInfo

#: torch storage class → (safetensors-style dtype, bytes per element).
STORAGE_TYPES: dict[str, tuple[str, int]] = {
    "DoubleStorage": ("F64", 8),
    "FloatStorage": ("F32", 4),
    "HalfStorage": ("F16", 2),
    "BFloat16Storage": ("BF16", 2),
    "LongStorage": ("I64", 8),
    "IntStorage": ("I32", 4),
    "ShortStorage": ("I16", 2),
    "CharStorage": ("I8", 1),
    "ByteStorage": ("U8", 1),
    "BoolStorage": ("BOOL", 1),
}
_MAX_PICKLE = 256 * 1024 * 1024
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _StorageType:
    __slots__ = ("dtype", "itemsize")

    def __init__(self, dtype: str, itemsize: int) -> None:
        self.dtype, self.itemsize = dtype, itemsize


class _Storage:
    __slots__ = ("type", "key", "numel")

    def __init__(self, stype: _StorageType, key: str, numel: int) -> None:
        self.type, self.key, self.numel = stype, key, numel


class _Tensor:
    __slots__ = ("info", "storage")

    def __init__(self, info: TensorInfo, storage: _Storage) -> None:
        self.info, self.storage = info, storage


class _Inert:
    """Stand-in for harmless checkpoint metadata objects (callbacks, numpy scalars…)."""

    __slots__ = ()

    def __new__(cls, *args: object, **kwargs: object) -> _Inert:
        return object.__new__(cls)

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        pass


def _ints(value: object) -> tuple[int, ...] | None:
    if isinstance(value, (tuple, list)) and all(type(v) is int and v >= 0 for v in value):
        return tuple(value)
    return None


def _rebuild_tensor(storage: object, offset: object, size: object, *rest: object) -> _Tensor:
    shape = _ints(size)
    if not isinstance(storage, _Storage) or type(offset) is not int or shape is None:
        raise pickle.UnpicklingError("malformed tensor record")
    info = TensorInfo(shape, storage.type.dtype)
    if offset < 0 or offset + info.numel > storage.numel:
        raise pickle.UnpicklingError("tensor exceeds its storage")
    return _Tensor(info, storage)


def _rebuild_parameter(data: object, *rest: object) -> object:
    return data


def _rebuild_from_type_v2(func: object, new_type: object, args: object, state: object) -> object:
    if func is _rebuild_tensor and isinstance(args, tuple):
        return _rebuild_tensor(*args)
    return _Inert()


def _codecs_encode(text: object, encoding: object = "latin1") -> bytes:
    return str(text).encode("latin1", errors="replace")


#: The only globals a checkpoint may reference: (module, name) → stand-in.
ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch.nn.parameter", "Parameter"): _Inert,
    ("collections", "OrderedDict"): OrderedDict,
    ("_codecs", "encode"): _codecs_encode,
    ("numpy.core.multiarray", "scalar"): _Inert,
    ("numpy._core.multiarray", "scalar"): _Inert,
    ("numpy.core.multiarray", "_reconstruct"): _Inert,
    ("numpy._core.multiarray", "_reconstruct"): _Inert,
    ("numpy", "dtype"): _Inert,
    ("numpy", "ndarray"): _Inert,
    ("torch", "Size"): tuple,
    ("torch.torch_version", "TorchVersion"): _Inert,
    ("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint"): _Inert,
    **{("torch", k): _StorageType(*v) for k, v in STORAGE_TYPES.items()},
}


class _Refused(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise _Refused(f"{module}.{name}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise pickle.UnpicklingError("unexpected persistent id")
        stype, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(stype, _StorageType) or type(numel) is not int or numel < 0:
            raise pickle.UnpicklingError("malformed storage record")
        return _Storage(stype, str(key), numel)


def _load(path: Path, fh: BinaryIO) -> object:
    try:
        return _SafeUnpickler(fh).load()
    except _Refused as exc:
        raise InvalidModelFile(
            path, f"refusing to load: the pickle references {exc.what}, which could run code"
        ) from None
    except Exception as exc:  # any malformed pickle: EOFError, UnpicklingError, TypeError…
        raise InvalidModelFile(path, f"corrupt PyTorch pickle ({type(exc).__name__})") from None


def _flatten(obj: object, out: dict[str, _Tensor]) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(key, str) and isinstance(value, _Tensor):
                out[key] = value
            elif isinstance(value, dict):
                _flatten(value, out)


def _check_storages(
    path: Path, tensors: dict[str, _Tensor], entry_size: Callable[[str], int | None]
) -> None:
    for name, t in tensors.items():
        have = entry_size(t.storage.key)
        if have is None:
            raise InvalidModelFile(path, f"truncated: storage of tensor '{name}' is missing")
        if have < t.storage.numel * t.storage.type.itemsize:
            raise InvalidModelFile(path, f"truncated: storage of tensor '{name}' is too short")


def read_torch_zip(path: str | Path) -> Header:
    """A ``torch.save`` zip archive (PyTorch ≥ 1.6): parse ``*/data.pkl`` only."""
    p = Path(path)
    size = p.stat().st_size
    try:
        with zipfile.ZipFile(p) as zf:
            infos = {i.filename: i for i in zf.infolist()}
            pkl = sorted((n for n in infos if n.endswith("data.pkl")), key=len)
            if not pkl:
                raise InvalidModelFile(p, "zip archive without data.pkl: not a PyTorch file")
            root = pkl[0][: -len("data.pkl")]
            if infos[pkl[0]].file_size > _MAX_PICKLE:
                raise InvalidModelFile(p, "absurd data.pkl size")
            raw = zf.read(pkl[0])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError) as exc:
        raise InvalidModelFile(p, f"corrupt or truncated zip archive ({exc})") from None
    tensors: dict[str, _Tensor] = {}
    _flatten(_load(p, io.BytesIO(raw)), tensors)

    def entry_size(key: str) -> int | None:
        info = infos.get(f"{root}data/{key}")
        return None if info is None else info.file_size

    _check_storages(p, tensors, entry_size)
    return Header(str(p), "pytorch", {k: t.info for k, t in tensors.items()}, {}, size)


def read_torch_legacy(path: str | Path) -> Header:
    """Pre-1.6 ``torch.save`` files: magic, protocol and sys-info pickles, then the state dict."""
    p = Path(path)
    with open(p, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if _load(p, fh) != _LEGACY_MAGIC:
            raise InvalidModelFile(p, "a pickle, but not a PyTorch file")
        if _load(p, fh) != 1001:
            raise InvalidModelFile(p, "unsupported legacy PyTorch protocol")
        _load(p, fh)  # sys_info
        tensors: dict[str, _Tensor] = {}
        _flatten(_load(p, fh), tensors)
        keys = _load(p, fh)
        if not isinstance(keys, list):
            raise InvalidModelFile(p, "corrupt legacy PyTorch storage list")
        remaining = size - fh.tell()
    storages = {t.storage.key: t.storage for t in tensors.values()}
    need = sum(8 + s.numel * s.type.itemsize for s in storages.values())
    if need > remaining:
        raise InvalidModelFile(p, "truncated: tensor data ends past the end of the file")
    _check_storages(p, tensors, lambda key: 1 << 62 if key in storages else None)
    return Header(str(p), "pytorch-legacy", {k: t.info for k, t in tensors.items()}, {}, size)
