"""Real conversions of kit models: the output matches the plan, loads and generates."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdcpp_service.config import Settings
from sdcpp_service.convert import ConvertProgress, convert, convert_all, read_sidecar
from sdcpp_service.convert.batch import Skipped
from sdcpp_service.errors import ConvertError, EngineNotInstalled, InvalidRequest, UnsupportedModel
from sdcpp_service.models.hashing import sha256_file
from tests.synth.kit import Kit

pytestmark = pytest.mark.engine


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", model_dirs=(tmp_path / "models",), threads=2)


def gguf_types(path: Path) -> dict[str, str]:
    import gguf

    reader = gguf.GGUFReader(path)
    return {t.name: t.tensor_type.name.lower() for t in reader.tensors}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".incomplete"))


@pytest.mark.parametrize("qtype", ["q8_0", "q4_0", "q4_k"])
def test_sd1_checkpoint(qtype: str, kit: Kit, tmp_path: Path, settings: Settings) -> None:
    src = kit.path("sdxs")
    before = src.stat()
    seen: list[ConvertProgress] = []
    result = convert(src, tmp_path, qtype, settings=settings, verify=True, progress=seen.append)

    out = Path(result.output)
    assert out == tmp_path / f"sdxs-{qtype}.gguf"
    assert out.stat().st_size == result.plan.output_bytes == result.output_bytes
    types = gguf_types(out)
    assert types == result.plan.types()
    assert qtype in types.values()
    # the plan's promises: VAE (TAE) f16, norm scales f32, 3×3 convs untouched
    assert {v for k, v in types.items() if k.startswith("first_stage_model.")} == {"f16"}
    assert types["model.diffusion_model.out.0.weight"] == "f32"
    assert types["model.diffusion_model.input_blocks.0.0.weight"] == "f16"

    assert result.verified is not None and result.verified["image"] == [64, 64]
    meta = read_sidecar(out)
    assert meta is not None and meta == result.metadata
    assert meta["type"] == qtype and meta["architecture"] == "sdxs_512_ds"
    assert meta["source"]["name"] == "sdxs.safetensors" and meta["slot"] == "model"
    assert meta["output"]["bytes"] == out.stat().st_size
    assert leftovers(tmp_path) == []

    phases = [p.phase for p in seen]
    assert "converting" in phases and seen[-1].tensors == seen[-1].tensors_total > 600
    after = src.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    if qtype == "q8_0":  # once: the recorded hash is the source's, and the source is intact
        assert meta["source"]["sha256"] == sha256_file(src)


def test_component_to_f16(kit: Kit, tmp_path: Path, settings: Settings) -> None:
    src = kit.path("taesd")
    result = convert(
        src,
        tmp_path / "tiny-vae.gguf",
        "f16",
        settings=settings,
        verify=True,
        verify_with={"model": str(kit.path("sdxs"))},
    )
    out = Path(result.output)
    assert out.name == "tiny-vae.gguf"
    types = gguf_types(out)
    assert types == result.plan.types() and set(types.values()) == {"f16"}
    assert result.verified is not None and result.verified["image"] == [64, 64]
    meta = read_sidecar(out)
    assert meta is not None and meta["kind"] == "taesd" and meta["type"] == "f16"


def test_dit_goes_through_the_diffusion_model_slot(
    kit: Kit, tmp_path: Path, settings: Settings
) -> None:
    files = kit.files("flux2_klein")
    result = convert(
        files["diffusion_model"],
        tmp_path,
        "q8_0",
        settings=settings,
        verify=True,
        verify_with={"vae": str(files["vae"]), "llm": str(files["llm"])},
    )
    assert result.metadata["slot"] == "diffusion_model"
    types = gguf_types(Path(result.output))
    assert types == result.plan.types() and "q8_0" in types.values()
    # names stay bare: the loader adds model.diffusion_model. when it takes the file
    assert not any(n.startswith("model.") for n in types)
    assert result.verified is not None


def test_refusals_before_any_work(kit: Kit, tmp_path: Path, settings: Settings) -> None:
    with pytest.raises(UnsupportedModel, match="LoRA"):
        convert(kit.path("lora_sd1"), tmp_path, settings=settings)
    with pytest.raises(InvalidRequest, match="already contains a VAE"):
        convert(kit.path("sdxs"), tmp_path, vae=kit.files("flux")["vae"], settings=settings)
    with pytest.raises(InvalidRequest, match="needs a main model"):
        convert(kit.path("taesd"), tmp_path, "f16", verify=True, settings=settings)
    assert list(tmp_path.glob("*.gguf*")) == []


def test_free_disk_is_checked_first(
    kit: Kit, tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sdcpp_service.convert import run

    class Usage:
        free = 1000

    monkeypatch.setattr(run.shutil, "disk_usage", lambda _: Usage())
    with pytest.raises(ConvertError, match="not enough free disk space"):
        convert(kit.path("taesd"), tmp_path, "f16", settings=settings)
    assert [p.name for p in tmp_path.iterdir() if p != settings.data_dir] == []


def test_convert_all_skips_what_is_done(kit: Kit, tmp_path: Path, settings: Settings) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("a.safetensors", "b.safetensors"):
        _copy(kit.path("taesd"), folder / name)
    _copy(kit.path("lora_sd1"), folder / "style.safetensors")
    (folder / "notes.txt").write_text("not a model")

    first = convert_all(folder, "f16", settings=settings)
    done = {Path(r.output).name for r in first if not isinstance(r, Skipped)}
    assert done == {"a-f16.gguf", "b-f16.gguf"}
    skipped = {Path(r.source).name: r.reason for r in first if isinstance(r, Skipped)}
    assert list(skipped) == ["style.safetensors"] and "LoRA" in skipped["style.safetensors"]

    second = convert_all(folder, "f16", settings=settings)
    assert all(isinstance(r, Skipped) for r in second)
    reasons = {Path(r.source).name: r.reason for r in second if isinstance(r, Skipped)}
    assert reasons["a.safetensors"] == "already converted: a-f16.gguf"
    assert reasons["a-f16.gguf"] == "a conversion output"


def _copy(src: Path, dst: Path) -> None:
    dst.write_bytes(src.read_bytes())


def test_gguf_requantization(kit: Kit, tmp_path: Path, settings: Settings) -> None:
    files = kit.files("flux2_klein")
    first = convert(files["diffusion_model"], tmp_path, "q8_0", settings=settings)
    again = convert(
        first.output,
        tmp_path,
        "q4_0",
        settings=settings,
        verify=True,
        verify_with={"vae": str(files["vae"]), "llm": str(files["llm"])},
    )
    assert Path(again.output).name == "klein_tiny_dit-q4_0.gguf"  # not ...-q8_0-q4_0
    assert gguf_types(Path(again.output)) == again.plan.types()
    assert {t.source for t in again.plan.tensors} >= {"q8_0"}
    assert any("already quantized" in n for n in again.plan.notes)
    assert again.metadata["source"]["format"] == "gguf" and again.verified is not None


def test_pytorch_checkpoint(kit: Kit, tmp_path: Path, settings: Settings) -> None:
    from sdcpp_service.models import read_header
    from tests.models.corpus import write_torch_zip

    header = read_header(kit.path("taesd"))
    tree = {name: (info.shape, info.dtype) for name, info in header.tensors.items()}
    src = write_torch_zip(tmp_path / "taesd.ckpt", tree)  # zeros: the layout is what counts
    result = convert(
        src,
        tmp_path,
        "f16",
        settings=settings,
        verify=True,
        verify_with={"model": str(kit.path("sdxs"))},
    )
    assert gguf_types(Path(result.output)) == result.plan.types()
    assert result.metadata["source"]["format"] == "pytorch" and result.verified is not None


def test_diffusers_folder(tmp_path: Path, settings: Settings) -> None:
    from tests.models import layouts as L
    from tests.models.corpus import write_diffusers

    parts = {
        "unet": L.unet_diffusers(768),
        "vae": L.kl_vae_diffusers(4),
        "text_encoder": L.clip_text(768),
    }
    src = write_diffusers(tmp_path / "sd15", "StableDiffusionPipeline", parts)
    result = convert(src, tmp_path, "q8_0", settings=settings)
    types = gguf_types(Path(result.output))
    assert types == result.plan.types()
    # the engine's diffusers loader: fixed files under unet. / vae. / te. (names kept)
    assert {n.split(".")[0] for n in types} == {"unet", "vae", "te"}
    assert "q8_0" in types.values() and result.metadata["source"]["sha256"] is None


def test_missing_engine_is_reported(
    kit: Kit, tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "fake"
    (fake / "stable_diffusion_cpp").mkdir(parents=True)
    (fake / "stable_diffusion_cpp" / "__init__.py").write_text("raise ImportError('no engine')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake))  # the engine process imports this one first
    with pytest.raises(EngineNotInstalled, match="no engine"):
        convert(kit.path("taesd"), tmp_path / "out.gguf", "f16", settings=settings)
    assert not (tmp_path / "out.gguf").exists() and not (tmp_path / "out.gguf.incomplete").exists()
