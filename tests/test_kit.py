"""The synthetic model kit: writers, determinism, budget, and the real engine loading every model."""

from __future__ import annotations

import dataclasses
import filecmp
import json
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.synth.enginelog import EngineLog
from tests.synth.kit import Kit, build, build_all, write_file
from tests.synth.manifests import load_layout
from tests.synth.models import MODELS, default_models, model
from tests.synth.plan import plan_file
from tests.synth.pool import Pool
from tests.synth.writers import TensorData, write_gguf, write_safetensors, write_sparse

THREADS = max(os.cpu_count() or 1, 1)
KIT_DISK_BUDGET = 3_000_000_000  # bytes actually allocated by the whole default kit


def _disk_bytes(path: Path) -> int:
    return path.stat().st_blocks * 512


def _read_safetensors_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header: dict[str, Any] = json.loads(fh.read(n))
    return header


def _read_safetensors_tensor(path: Path, name: str) -> np.ndarray:
    header = _read_safetensors_header(path)
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        info = header[name]
        begin, end = info["data_offsets"]
        fh.seek(8 + n + begin)
        raw = fh.read(end - begin)
    dtype = {"F16": "<f2", "F32": "<f4"}[info["dtype"]]
    return np.frombuffer(raw, dtype=dtype).reshape(info["shape"])


# --- writers (no engine) -----------------------------------------------------------------------


def test_safetensors_writer_roundtrip_and_holes(tmp_path: Path) -> None:
    ones = np.ones((4, 8), dtype=np.float16)
    vals = np.arange(6, dtype=np.float32)
    path = write_safetensors(
        tmp_path / "t.safetensors",
        [
            TensorData("a.weight", (4, 8), "F16", ones),
            TensorData("big.zero", (4096, 4096), "F16"),  # 32 MiB hole
            TensorData("c.bias", (6,), "F32", vals),
            TensorData("tail.zero", (1024, 1024), "F32"),  # trailing hole
        ],
        {"k": "v"},
    )
    header = _read_safetensors_header(path)
    assert header["__metadata__"] == {"k": "v"}
    assert header["big.zero"] == {
        "dtype": "F16",
        "shape": [4096, 4096],
        "data_offsets": [64, 64 + 2 * 4096 * 4096],
    }
    np.testing.assert_array_equal(_read_safetensors_tensor(path, "a.weight"), ones)
    np.testing.assert_array_equal(_read_safetensors_tensor(path, "c.bias"), vals)
    assert not _read_safetensors_tensor(path, "big.zero").any()
    assert path.stat().st_size > 36_000_000
    assert _disk_bytes(path) < 1_000_000
    assert not list(tmp_path.glob("*.incomplete"))


def test_gguf_writer_roundtrip(tmp_path: Path) -> None:
    from gguf import GGUFReader

    w = Pool(0).normal("w", 64 * 256, 0.02, "float32").reshape(64, 256)
    from gguf.constants import GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    q = quantize(w, GGMLQuantizationType.Q8_0)
    path = write_gguf(
        tmp_path / "t.gguf",
        [
            TensorData("w.q8", (64, 256), "Q8_0", q),
            TensorData("z.q4", (512, 1024), "Q4_0"),
            TensorData("n.weight", (256,), "F32", np.ones(256, dtype=np.float32)),
        ],
        {"general.architecture": "test", "x.count": 3},
    )
    reader = GGUFReader(str(path))
    tensors = {t.name: t for t in reader.tensors}
    assert sorted(tensors) == ["n.weight", "w.q8", "z.q4"]
    assert tensors["z.q4"].tensor_type == GGMLQuantizationType.Q4_0
    assert list(tensors["z.q4"].shape) == [1024, 512]  # ggml order
    got = dequantize(tensors["w.q8"].data, GGMLQuantizationType.Q8_0)
    np.testing.assert_array_equal(got, dequantize(q, GGMLQuantizationType.Q8_0))
    assert not dequantize(tensors["z.q4"].data, GGMLQuantizationType.Q4_0).any()
    assert bytes(reader.fields["general.architecture"].parts[-1]) == b"test"


@pytest.mark.parametrize("suffix", [".safetensors", ".gguf"])
def test_write_sparse_is_header_only(tmp_path: Path, suffix: str) -> None:
    dtype = "Q4_0" if suffix == ".gguf" else "BF16"
    tensors = [
        ("model.diffusion_model.input_blocks.0.0.weight", (320, 4, 3, 3), "F16"),
        (
            "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
            (49408, 768),
            dtype,
        ),
    ]
    path = write_sparse(tmp_path / f"m{suffix}", tensors)
    assert path.stat().st_size > 20_000_000
    assert _disk_bytes(path) < 200_000
    if suffix == ".safetensors":
        header = _read_safetensors_header(path)
        assert header[tensors[1][0]]["dtype"] == "BF16"
        assert header[tensors[0][0]]["shape"] == [320, 4, 3, 3]


def test_pool_is_deterministic_and_keyed() -> None:
    a, b = Pool(3, size=1 << 16), Pool(3, size=1 << 16)
    np.testing.assert_array_equal(
        a.normal("x", 100, 0.02, "float16"), b.normal("x", 100, 0.02, "float16")
    )
    assert not np.array_equal(
        a.normal("x", 100, 0.02, "float16"), a.normal("y", 100, 0.02, "float16")
    )
    assert not np.array_equal(
        a.normal("x", 100, 1.0, "float32"), Pool(4, size=1 << 16).normal("x", 100, 1.0, "float32")
    )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_plans_match_layouts(name: str) -> None:
    spec = model(name)
    for f in spec.files:
        plans = plan_file(f)
        assert len({p.name for p in plans}) == len(plans)
        if not f.layout.startswith("derived:"):
            layout = load_layout(f.layout)
            assert [(p.name, p.shape) for p in plans] == [
                (t.name, t.shape) for t in layout.tensors(f.layout_file)
            ]
            assert spec.version == layout.version


def test_build_is_deterministic(tmp_path: Path) -> None:
    # taesd exercises the fan-in path, flux2_klein the shared float16 pool, esrgan/lora arrays.
    names = ["taesd", "esrgan_x4", "lora_sd1", "flux2_klein"]
    pool_a, pool_b = Pool(0), Pool(0)
    first = {n: build(n, tmp_path / "a", pool=pool_a) for n in names}
    second = {n: build(n, tmp_path / "b", pool=pool_b) for n in names}
    for n in names:
        for slot, path in first[n].items():
            other = second[n][slot]
            assert path.name == other.name and path.parent.name == other.parent.name
            assert filecmp.cmp(path, other, shallow=False), f"{n}/{slot} differs between builds"
    # a different seed gives different bytes and a different cache directory
    other_seed = build("taesd", tmp_path / "c", seed=1)["taesd"]
    assert other_seed.parent.name != first["taesd"]["taesd"].parent.name
    assert not filecmp.cmp(other_seed, first["taesd"]["taesd"], shallow=False)
    # the files hold exactly the layout's tensors
    for f in model("flux2_klein").files:
        header = _read_safetensors_header(first["flux2_klein"][f.slot])
        header.pop("__metadata__")
        layout = load_layout(f.layout).tensors(f.layout_file)
        assert {k: tuple(v["shape"]) for k, v in header.items()} == {
            t.name: t.shape for t in layout
        }


# --- the whole default kit ---------------------------------------------------------------------


@pytest.mark.engine
def test_default_kit_fits_disk_budget(kit: Kit) -> None:
    built = build_all(default_models(), kit.root, kit.seed)
    used = sum(_disk_bytes(p) for files in built.values() for p in files.values())
    apparent = sum(p.stat().st_size for files in built.values() for p in files.values())
    assert used < KIT_DISK_BUDGET, f"kit uses {used / 1e9:.2f} GB on disk"
    assert apparent > used  # the full-size SD1 files are sparse


# --- the real engine ---------------------------------------------------------------------------


@contextmanager
def _engine(**kwargs: Any) -> Iterator[Any]:
    import stable_diffusion_cpp

    sd = stable_diffusion_cpp.StableDiffusion(verbose=True, n_threads=THREADS, **kwargs)
    try:
        yield sd
    finally:
        sd.close()


def _generate(sd: Any, size: int, **kwargs: Any) -> Image.Image:
    params: dict[str, Any] = {"prompt": "a cat", "width": size, "height": size}
    params.update(sample_steps=1, cfg_scale=1.0, seed=42)
    params.update(kwargs)
    images = sd.generate_image(**params)
    assert len(images) == 1
    image: Image.Image = images[0]
    return image


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def _assert_clean(log: EngineLog, version: str | None) -> None:
    assert log.bad_tensor_lines() == []
    assert log.errors() == []
    if version is not None:
        assert log.versions() == [version]


# model under test -> (models loaded with it, image size)
SMOKE: dict[str, tuple[list[str], int]] = {
    "sdxs": ([], 64),
    "sd1": ([], 64),
    "sd1_inpaint": ([], 64),
    "taesd": (["sdxs"], 64),
    "flux": ([], 16),
    "flux2_klein": ([], 16),
}


@pytest.mark.engine
@pytest.mark.parametrize("name", list(SMOKE))
def test_engine_loads_and_generates(kit: Kit, engine_log: EngineLog, name: str) -> None:
    with_models, size = SMOKE[name]
    kwargs = kit.engine_kwargs(name)
    for other in with_models:
        kwargs.update(kit.engine_kwargs(other))
    with _engine(**kwargs) as sd:
        image = _generate(sd, size)
    assert image.size == (size, size)
    base = with_models[0] if with_models else name
    _assert_clean(engine_log, model(base).version)
    if name == "taesd":
        assert engine_log.matching(f"loading tae from '{kit.path('taesd')}'")


@pytest.mark.engine
def test_controlnet_changes_output(kit: Kit, engine_log: EngineLog) -> None:
    # ControlNet needs the full SD1 UNet (SDXS's tiny UNet has other skip connections); the
    # TAESD decoder keeps the test fast.
    kwargs = (
        kit.engine_kwargs("sd1") | kit.engine_kwargs("controlnet_sd1") | kit.engine_kwargs("taesd")
    )
    black, white = (Image.new("RGB", (64, 64), (v, v, v)) for v in (0, 255))
    with _engine(**kwargs) as sd:
        a = _pixels(_generate(sd, 64, control_image=black, control_strength=1.0))
        b = _pixels(_generate(sd, 64, control_image=white, control_strength=1.0))
    assert a.shape == b.shape == (64, 64, 3)
    # measured: ~2.8 (and ~19 between no control and a black hint)
    assert np.abs(a - b).mean() > 1.0
    _assert_clean(engine_log, model("sd1").version)
    assert engine_log.matching("loading control net from")


@pytest.mark.engine
def test_lora_changes_sdxs_output(kit: Kit, engine_log: EngineLog) -> None:
    lora = kit.path("lora_sd1")
    kwargs = kit.engine_kwargs("sdxs") | {"lora_model_dir": str(lora.parent)}
    with _engine(lora_apply_mode="at_runtime", **kwargs) as sd:
        plain = _pixels(_generate(sd, 64))
        with_lora = _pixels(_generate(sd, 64, prompt=f"a cat<lora:{lora.stem}:1>"))
        again = _pixels(_generate(sd, 64))
    assert np.abs(plain - with_lora).mean() > 5.0
    np.testing.assert_array_equal(plain, again)  # at_runtime: removing the LoRA is exact
    applied = engine_log.matching("LoRA tensors have been applied")
    assert len(applied) == 2  # text encoder and UNet
    assert not engine_log.matching("Only (", "unused lora tensor")
    _assert_clean(engine_log, model("sdxs").version)


@pytest.mark.engine
@pytest.mark.parametrize(("size", "tile"), [(16, 128), (40, 16)])
def test_esrgan_is_exact_nearest_x4(kit: Kit, engine_log: EngineLog, size: int, tile: int) -> None:
    rng = np.random.default_rng(size)
    image = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    with _engine(upscaler_path=str(kit.path("esrgan_x4")), upscale_tile_size=tile) as sd:
        out = sd.upscale(image, upscale_factor=4)[0]
    expected = image.resize((size * 4, size * 4), Image.NEAREST)
    assert out.size == expected.size
    np.testing.assert_array_equal(_pixels(out), _pixels(expected))
    _assert_clean(engine_log, None)
    assert engine_log.matching("esrgan model loaded with scale=4, num_block=1")


@pytest.mark.engine
@pytest.mark.parametrize("quant", ["Q8_0", "Q4_0"])
def test_gguf_writer_output_loads(
    kit: Kit, engine_log: EngineLog, tmp_path: Path, quant: str
) -> None:
    dit = model("flux").files[0]
    spec = dataclasses.replace(
        dit, source=dit.layout_file, filename=f"dit_{quant}.gguf", quant=quant
    )
    path = write_file(spec, tmp_path / spec.filename, kit.pool)
    kwargs = kit.engine_kwargs("flux") | {"diffusion_model_path": str(path)}
    with _engine(**kwargs) as sd:
        image = _generate(sd, 16)
    assert image.size == (16, 16)
    _assert_clean(engine_log, model("flux").version)
    assert engine_log.matching(f"{quant.lower()}: ")
