"""Header readers: what they return, and how fast they refuse broken or hostile files."""

from __future__ import annotations

import json
import struct
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from sdcpp_service.errors import InvalidModelFile, UnsupportedModel
from sdcpp_service.models.headers import TensorInfo, read_header
from tests.models import layouts as L
from tests.models.corpus import (
    malicious_pickle,
    write_diffusers,
    write_gguf,
    write_safetensors,
    write_torch_legacy,
    write_torch_zip,
)

GB = 1 << 30


def test_safetensors_names_shapes_dtypes_metadata(tmp_path: Path) -> None:
    path = write_safetensors(
        tmp_path / "m.bin",  # the extension does not matter
        {"a.weight": ((3072, 64), "BF16"), "b": ((7,), "F32"), "c": ((), "F8_E4M3")},
        metadata={"modelspec.architecture": "flux-1-dev"},
    )
    h = read_header(path)
    assert h.format == "safetensors"
    assert h.tensors == {
        "a.weight": TensorInfo((3072, 64), "BF16"),
        "b": TensorInfo((7,), "F32"),
        "c": TensorInfo((), "F8_E4M3"),
    }
    assert h.metadata == {"modelspec.architecture": "flux-1-dev"}
    assert h.size == path.stat().st_size


def test_gguf_written_by_the_gguf_package(tmp_path: Path) -> None:
    tokens = [f"tok{i}" for i in range(5000)]
    path = write_gguf(
        tmp_path / "m.safetensors",  # lies about its format
        {"img_in.weight": ((3072, 64), "Q4_0"), "blk.0.attn_q.weight": ((4096, 4096), "Q6_K"),
         "norm.scale": ((128,), "F32"), "x": ((4, 2, 3), "F16")},
        kv={"general.name": "test", "tokenizer.ggml.tokens": tokens},
    )  # fmt: skip
    h = read_header(path)
    assert h.format == "gguf"
    assert h.tensors["img_in.weight"] == TensorInfo((3072, 64), "Q4_0")
    assert h.tensors["blk.0.attn_q.weight"] == TensorInfo((4096, 4096), "Q6_K")
    assert h.tensors["x"] == TensorInfo((4, 2, 3), "F16")
    assert h.metadata["general.architecture"] == "flux"
    assert h.metadata["general.name"] == "test"
    assert "tokenizer.ggml.tokens" not in h.metadata  # large arrays are skipped, not kept


def test_torch_zip_flattens_nested_state_dicts(tmp_path: Path) -> None:
    tree = {"state_dict": {"w": (4, 3), "b": ((4,), "F32")}, "global_step": 5}
    h = read_header(write_torch_zip(tmp_path / "m.ckpt", tree))  # type: ignore[arg-type]
    assert h.format == "pytorch"
    assert h.tensors == {"w": TensorInfo((4, 3), "F16"), "b": TensorInfo((4,), "F32")}


def test_torch_legacy(tmp_path: Path) -> None:
    h = read_header(write_torch_legacy(tmp_path / "old.pt", {"emb": (2, 768)}))
    assert h.format == "pytorch-legacy"
    assert h.tensors == {"emb": TensorInfo((2, 768), "F16")}


def test_diffusers_folder(tmp_path: Path) -> None:
    folder = write_diffusers(
        tmp_path / "pipe", "StableDiffusionXLPipeline",
        {"unet": L.unet_diffusers(2048), "vae": L.kl_vae_diffusers(4),
         "text_encoder": L.clip_text(768), "text_encoder_2": L.clip_text(1280)},
    )  # fmt: skip
    h = read_header(folder)
    assert h.format == "diffusers"
    assert "unet.conv_in.weight" in h.tensors
    assert "te.1.text_model.embeddings.token_embedding.weight" in h.tensors
    assert h.metadata["diffusers.class_name"] == "StableDiffusionXLPipeline"


def test_folder_without_model_index_is_unsupported(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModel):
        read_header(tmp_path)


def test_reading_a_20gb_sparse_file_reads_only_the_header(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "big.safetensors", {"w": ((80_000, 131_072), "F16")})
    assert path.stat().st_size > 20 * 10**9
    start = time.perf_counter()
    h = read_header(path)
    assert time.perf_counter() - start < 0.05
    assert h.tensors["w"].numel == 80_000 * 131_072


# --- broken files: each must fail fast with InvalidModelFile ---------------------------------


def _st_raw(path: Path, header: bytes, data: int = 0, length: int | None = None) -> Path:
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(header) if length is None else length) + header)
        fh.truncate(8 + len(header) + data)
    return path


def _truncated_st(p: Path) -> Path:
    path = write_safetensors(p / "t.safetensors", {"w": (1024, 1024)})
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size - 1)
    return path


def _truncated_gguf(p: Path) -> Path:
    path = write_gguf(p / "t.gguf", {"w": ((1024, 1024), "Q8_0")})
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size - 100)
    return path


def _gguf_counts(n_tensors: int, n_kv: int) -> Callable[[Path], Path]:
    def write(p: Path) -> Path:
        path = p / "c.gguf"
        path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + bytes(64))
        return path

    return write


def _gguf_long_string(p: Path) -> Path:
    path = p / "s.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 40) + b"k")
    return path


def _cut_header(p: Path) -> Path:
    path = write_safetensors(p / "h.safetensors", {"w": (8, 8)})
    with open(path, "r+b") as fh:
        fh.truncate(20)
    return path


BROKEN: dict[str, Callable[[Path], Path]] = {
    "empty": lambda p: _st_raw(p / "e.safetensors", b"", length=0),
    "zero-bytes": lambda p: _raw(p / "z.bin", b""),
    "random-bytes": lambda p: _raw(p / "r.bin", bytes(range(256)) * 4),
    "header-beyond-file": lambda p: _st_raw(p / "b.safetensors", b'{"w":{}}', length=10_000),
    "2gb-header": lambda p: _st_raw(p / "g.safetensors", b"{", length=2 * GB),
    "negative-length": lambda p: _st_raw(p / "n.safetensors", b"{}", length=(1 << 64) - 5),
    "not-json": lambda p: _st_raw(p / "j.safetensors", b"{not json at all"),
    "json-array": lambda p: _st_raw(p / "a.safetensors", b"{" + b"]" * 7, data=0),
    "header-cut": _cut_header,
    "bad-shape": lambda p: _st_raw(p / "s.safetensors", json.dumps({"w": {"dtype": "F16", "shape": [-1, 4], "data_offsets": [0, 8]}}).encode(), 8),
    "bad-offsets": lambda p: _st_raw(p / "o.safetensors", json.dumps({"w": {"dtype": "F16", "shape": [4], "data_offsets": [8, 0]}}).encode(), 8),
    "size-mismatch": lambda p: _st_raw(p / "m.safetensors", json.dumps({"w": {"dtype": "F16", "shape": [4], "data_offsets": [0, 6]}}).encode(), 8),
    "data-truncated": _truncated_st,
    "gguf-truncated": _truncated_gguf,
    "gguf-absurd-tensor-count": _gguf_counts(1 << 62, 0),
    "gguf-absurd-kv-count": _gguf_counts(0, 1 << 60),
    "gguf-huge-string": _gguf_long_string,
    "gguf-bad-version": lambda p: _raw(p / "v.gguf", b"GGUF" + struct.pack("<IQQ", 99, 0, 0)),
    "zip-no-pickle": lambda p: _zip(p / "n.pt", {"archive/version": b"3"}),
    "zip-truncated": lambda p: _cut(write_torch_zip(p / "t.ckpt", {"w": (64, 64)}), 200),
    "zip-missing-storage": lambda p: _zip(p / "m.pt", {"archive/data.pkl": _one_tensor_pickle()}),
    "zip-bad-pickle": lambda p: _zip(p / "b.pt", {"archive/data.pkl": b"\x80\x02garbage"}),
    "legacy-truncated": lambda p: _cut(write_torch_legacy(p / "l.pt", {"w": (64, 64)}), 100),
}  # fmt: skip


def _raw(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _cut(path: Path, n: int) -> Path:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size - n)
    return path


def _one_tensor_pickle() -> bytes:
    from tests.models.corpus import state_dict_pickle

    return state_dict_pickle({"w": (4, 4)})[0]


@pytest.mark.parametrize("make", BROKEN.values(), ids=list(BROKEN))
def test_broken_files_fail_fast(tmp_path: Path, make: Callable[[Path], Path]) -> None:
    path = make(tmp_path)
    start = time.perf_counter()
    with pytest.raises(InvalidModelFile) as err:
        read_header(path)
    assert time.perf_counter() - start < 0.1
    assert err.value.path == str(path)
    assert "\n" not in str(err.value)


# --- hostile pickles: refused, never executed -------------------------------------------------

HOSTILE = [("os", "system"), ("posix", "system"), ("subprocess", "Popen"), ("builtins", "eval"),
           ("builtins", "exec"), ("__builtin__", "eval"), ("torch", "load")]  # fmt: skip


@pytest.mark.parametrize(("module", "name"), HOSTILE, ids=[".".join(h) for h in HOSTILE])
@pytest.mark.parametrize("container", ["zip", "legacy"])
def test_malicious_pickle_is_refused_not_run(
    tmp_path: Path, module: str, name: str, container: str
) -> None:
    marker = tmp_path / "pwned"
    command = f"open({str(marker)!r}, 'w')" if name in ("eval", "exec") else f"touch {marker}"
    payload = malicious_pickle(command, module, name)
    if container == "zip":
        path = _zip(tmp_path / "evil.ckpt", {"archive/data.pkl": payload})
    else:
        path = tmp_path / "evil.pt"
        path.write_bytes(payload)
    with pytest.raises(InvalidModelFile, match="refusing to load"):
        read_header(path)
    assert not marker.exists()


def test_malicious_global_inside_a_real_state_dict(tmp_path: Path) -> None:
    from tests.models.corpus import state_dict_pickle

    marker = tmp_path / "pwned"
    good = state_dict_pickle({"w": (4, 4)})[0]
    evil = good[:-2] + b"X\x04\x00\x00\x00evil" + malicious_pickle(f"touch {marker}")[2:-1] + b"u."
    path = _zip(tmp_path / "m.ckpt", {"archive/data.pkl": evil, "archive/data/0": bytes(32)})
    with pytest.raises(InvalidModelFile, match="os.system"):
        read_header(path)
    assert not marker.exists()
