"""Header-only test files: real names and shapes, no weights (sparse holes on disk).

safetensors and GGUF files get a valid header and are ``ftruncate``d to their full size, so a
"20 GB" file costs nothing. GGUF headers are written with the ``gguf`` package's own writer,
an implementation independent of the reader under test. PyTorch archives are built from
hand-emitted pickle opcodes (no torch), so their tensors must be small: their data is real.
"""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

Spec = tuple[int, ...] | tuple[tuple[int, ...], str]
ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "I64": 8, "I32": 4, "U8": 1}


def _norm(spec: Spec, dtype: str) -> tuple[tuple[int, ...], str]:
    if spec and isinstance(spec[0], tuple):
        return spec[0], str(spec[1])  # type: ignore[return-value]
    return tuple(spec), dtype  # type: ignore[arg-type]


def numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def write_safetensors(
    path: Path,
    tensors: Mapping[str, Spec],
    metadata: Mapping[str, str] | None = None,
    dtype: str = "F16",
) -> Path:
    """A safetensors file with the given header and a hole where the data would be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, spec in tensors.items():
        shape, dt = _norm(spec, dtype)
        n = numel(shape) * ITEMSIZE[dt]
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        fh.truncate(8 + len(raw) + offset)
    return path


def write_gguf(
    path: Path,
    tensors: Mapping[str, Spec],
    kv: Mapping[str, object] | None = None,
    dtype: str = "F16",
    arch: str = "flux",
) -> Path:
    """A GGUF file written by ``gguf.GGUFWriter`` (header only), then extended to full size."""
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch)
    for key, value in (kv or {}).items():
        if isinstance(value, str):
            writer.add_string(key, value)
        elif isinstance(value, list):
            writer.add_array(key, value)
        else:
            writer.add_uint32(key, int(value))  # type: ignore[call-overload]
    total = 0
    for name, spec in tensors.items():
        shape, dt = _norm(spec, dtype)
        qtype = gguf.GGMLQuantizationType[dt]
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        nbytes = numel(shape) // block * size
        writer.add_tensor_info(name, shape, np.dtype(np.float32), nbytes, raw_dtype=qtype)
        total += nbytes + (-nbytes % 32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    header_end = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(header_end + (-header_end % 32) + total)
    return path


# --- pickle opcodes (protocol 2), enough to express a torch state dict ----------------------


def _str(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _int(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def _global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


STORAGE = {
    "F32": "FloatStorage",
    "F16": "HalfStorage",
    "BF16": "BFloat16Storage",
    "I64": "LongStorage",
}


def _tensor(shape: tuple[int, ...], dtype: str, key: str, legacy: bool) -> bytes:
    stride, acc = [], 1
    for d in reversed(shape):
        stride.insert(0, acc)
        acc *= d
    pid = [
        _str("storage"),
        _global("torch", STORAGE[dtype]),
        _str(key),
        _str("cpu"),
        _int(numel(shape)),
    ]
    if legacy:
        pid.append(b"N")
    args = [
        _tuple(pid) + b"Q",
        _int(0),
        _tuple([_int(d) for d in shape]),
        _tuple([_int(s) for s in stride]),
        b"\x89",
        _global("collections", "OrderedDict") + b")R",
    ]
    return _global("torch._utils", "_rebuild_tensor_v2") + _tuple(args) + b"R"


def state_dict_pickle(
    tree: Mapping[str, object], dtype: str = "F16", legacy: bool = False
) -> tuple[bytes, dict[str, tuple[tuple[int, ...], str]]]:
    """Pickle bytes for a (nested) dict of tensors; returns them and storage key → tensor."""
    storages: dict[str, tuple[tuple[int, ...], str]] = {}

    def emit(node: Mapping[str, object]) -> bytes:
        out = _global("collections", "OrderedDict") + b")R("
        for name, value in node.items():
            if isinstance(value, Mapping):
                out += _str(name) + emit(value)
            elif isinstance(value, int):
                out += _str(name) + _int(value)
            else:
                shape, dt = _norm(value, dtype)  # type: ignore[arg-type]
                key = str(len(storages))
                storages[key] = (shape, dt)
                out += _str(name) + _tensor(shape, dt, key, legacy)
        return out + b"u"

    return b"\x80\x02" + emit(tree) + b".", storages


def write_torch_zip(path: Path, tree: Mapping[str, object], dtype: str = "F16") -> Path:
    """A ``torch.save`` zip archive (``archive/data.pkl`` + ``archive/data/<key>``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pkl, storages = state_dict_pickle(tree, dtype)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", pkl)
        for key, (shape, dt) in storages.items():
            zf.writestr(f"archive/data/{key}", bytes(numel(shape) * ITEMSIZE[dt]))
        zf.writestr("archive/version", "3\n")
    return path


def write_torch_legacy(path: Path, tree: Mapping[str, object], dtype: str = "F16") -> Path:
    """A pre-1.6 ``torch.save`` file: magic, protocol, sys info, state dict, keys, storages."""
    pkl, storages = state_dict_pickle(tree, dtype, legacy=True)
    sys_info = {"protocol_version": 1001, "little_endian": True}
    with open(path, "wb") as fh:
        fh.write(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2))
        fh.write(pickle.dumps(1001, protocol=2))
        fh.write(pickle.dumps(sys_info, protocol=2))
        fh.write(pkl)
        fh.write(pickle.dumps(list(storages), protocol=2))
        for shape, dt in storages.values():
            fh.write(struct.pack("<q", numel(shape)) + bytes(numel(shape) * ITEMSIZE[dt]))
    return path


def malicious_pickle(command: str, module: str = "os", name: str = "system") -> bytes:
    """A pickle that would run ``module.name(command)`` if loaded with ``pickle.load``."""
    return b"\x80\x02" + _global(module, name) + _str(command) + b"\x85R."


def write_diffusers(folder: Path, class_name: str, parts: Mapping[str, Mapping[str, Spec]]) -> Path:
    """A diffusers pipeline folder: model_index.json and one safetensors per component."""
    folder.mkdir(parents=True, exist_ok=True)
    index: dict[str, object] = {"_class_name": class_name, "_diffusers_version": "0.30.0"}
    for part, tensors in parts.items():
        fname = (
            "model.safetensors"
            if part.startswith("text_encoder")
            else "diffusion_pytorch_model.safetensors"
        )
        write_safetensors(folder / part / fname, tensors)
        index[part] = ["diffusers", "Component"]
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder
