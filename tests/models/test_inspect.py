"""``inspect()``, ``ModelInfo`` and hashing."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from sdcpp_service.config import Settings
from sdcpp_service.errors import InvalidModelFile, UnsupportedModel
from sdcpp_service.models import ModelInfo, Need, hash_file, inspect
from sdcpp_service.models.hashing import sha256_file
from tests.models import layouts as L
from tests.models.corpus import write_gguf, write_safetensors


def test_model_info_fields(tmp_path: Path) -> None:
    path = write_safetensors(
        tmp_path / "flux1-dev.safetensors",
        {**L.flux(), "norm": ((3072,), "F32")},
        metadata={"modelspec.architecture": "Flux.1-dev"},
        dtype="BF16",
    )
    info = inspect(path)
    assert isinstance(info, ModelInfo)
    assert (info.path, info.name, info.format) == (str(path), "flux1-dev", "safetensors")
    assert (info.kind, info.arch, info.variant, info.slot) == (
        "model",
        "flux",
        "dev",
        "diffusion_model_path",
    )
    assert info.needs == (Need("vae", "flux"), Need("clip_l"), Need("t5xxl"))
    assert info.contains == ()
    assert info.dtype == "BF16"
    assert info.dtypes == {"BF16": len(L.flux()), "F32": 1}
    assert (
        info.params
        == sum(int.__mul__(*v) if len(v) == 2 else v[0] for v in L.flux().values()) + 3072
    )
    assert info.modelspec == "Flux.1-dev"
    assert info.engine_version == "Flux"
    assert info.defaults is not None and (info.defaults.width, info.defaults.cfg_scale) == (
        1024,
        1.0,
    )
    assert info.supported and info.reason is None
    assert info.title == "flux (dev)"


def test_to_dict_is_json(tmp_path: Path) -> None:
    info = inspect(write_gguf(tmp_path / "z.gguf", {k: (v, "F32") for k, v in L.z_image().items()}))
    data = json.loads(json.dumps(info.to_dict()))
    assert data["arch"] == "z_image"
    assert data["needs"] == [
        {"component": "vae", "family": "flux", "variant": None},
        {"component": "llm", "family": "qwen3", "variant": "4b"},
    ]
    assert data["details"]["gguf_architecture"] == "flux"
    assert data["defaults"]["steps"] == 8


def test_unknown_layout_is_unsupported(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "x.safetensors", {"foo.weight": (3, 3)})
    with pytest.raises(UnsupportedModel, match="no known model layout"):
        inspect(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFile):
        inspect(tmp_path / "nope.safetensors")


def test_hash_streams_and_caches(tmp_path: Path) -> None:
    path = tmp_path / "m.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    want = hashlib.sha256(path.read_bytes()).hexdigest()
    settings = Settings.from_env()
    first = hash_file(path, settings)
    assert (first.sha256, first.short, first.cached) == (want, want[:10], False)
    second = hash_file(path, settings)
    assert second.cached and second.sha256 == want
    assert (settings.data_dir / "models-cache.sqlite3").is_file()
    path.write_bytes(b"changed")
    os.utime(path, ns=(1, 1))
    third = hash_file(path, settings)
    assert not third.cached and third.sha256 == hashlib.sha256(b"changed").hexdigest()
    assert hash_file(path, settings, cache=False).cached is False


@pytest.mark.parametrize("size", [0, 1, 64 * 1024 * 1024, 64 * 1024 * 1024 + 4097])
def test_sha256_file_across_slices(size: int, tmp_path: Path) -> None:
    # Mapped files are hashed in 64 MiB slices; empty files cannot be mapped at all.
    path = tmp_path / "m.bin"
    with open(path, "wb") as fh:
        fh.truncate(size)
        if size:
            fh.seek(size - 1)
            fh.write(b"\x01")
    data = path.read_bytes()
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_hash_of_a_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFile):
        hash_file(tmp_path)
