"""The catalog: roots, layouts used in place, unique names, the (path, size, mtime) cache."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sdcpp_service.config import Settings
from sdcpp_service.errors import UnknownName
from sdcpp_service.models import scan
from sdcpp_service.models.catalog import classify_root
from tests.models import layouts as L
from tests.models.corpus import write_gguf, write_safetensors


def _gguf(path: Path, layout: L.Layout) -> Path:
    return write_gguf(path, {k: (v, "Q8_0" if len(v) == 2 and v[-1] % 32 == 0 else "F32") for k, v in layout.items()})  # type: ignore[misc]  # fmt: skip


def _settings(*roots: Path) -> Settings:
    return Settings.from_env().with_model_dirs(tuple(roots))


def test_plain_folder(tmp_path: Path) -> None:
    root = tmp_path / "models"
    _gguf(root / "flux1-schnell-Q4_0.gguf", L.flux(guidance=False))
    write_safetensors(root / "vae" / "ae.safetensors", L.kl_vae(16))
    write_safetensors(root / "te" / "clip_l.safetensors", L.clip_text(768))
    write_safetensors(root / "a" / "model.safetensors", L.kl_vae(4))
    write_safetensors(root / "b" / "model.safetensors", L.taesd(4))
    (root / "broken.safetensors").write_bytes(b"not a model")
    (root / "notes.txt").write_text("ignored")
    (root / ".hidden").mkdir()
    write_safetensors(root / ".hidden" / "x.safetensors", L.kl_vae(4))
    cat = scan(_settings(), roots=[root])
    by_name = {e.name: e for e in cat.entries}
    assert set(by_name) == {"flux1-schnell-Q4_0", "ae", "clip_l", "a/model", "b/model", "broken"}
    assert by_name["flux1-schnell-Q4_0"].kind == "model"
    assert by_name["broken"].info is None and by_name["broken"].error
    assert {e.name for e in cat.usable("vae")} == {"ae", "a/model"}
    assert cat.roots[0].layout == "plain"
    # names, aliases, filenames and case-insensitive names resolve; ambiguity is an error
    assert cat.find("flux1-schnell").name == "flux1-schnell-Q4_0"  # quant tag stripped
    assert cat.find("FLUX1-SCHNELL-Q4_0").name == "flux1-schnell-Q4_0"
    assert cat.find("ae.safetensors").name == "ae"
    assert cat.find("a/model").kind == "vae"
    with pytest.raises(UnknownName) as err:
        cat.find("model")
    assert "a/model" in err.value.choices


def test_comfyui_install_used_in_place(tmp_path: Path) -> None:
    comfy = tmp_path / "ComfyUI"
    m = comfy / "models"
    write_safetensors(m / "checkpoints" / "sd15.safetensors", {**L.prefixed("model.diffusion_model.", L.unet(768)), **L.prefixed("cond_stage_model.transformer.", L.clip_text(768))})  # fmt: skip
    write_safetensors(m / "diffusion_models" / "sub" / "flux.safetensors", L.flux())
    write_safetensors(m / "vae_approx" / "taesd.safetensors", L.taesd(4))
    write_safetensors(m / "loras" / "style.safetensors", L.kohya_lora(768))
    write_safetensors(m / "upscale_models" / "x4.safetensors", L.esrgan())
    write_safetensors(comfy / "custom_nodes" / "node" / "weights.safetensors", L.kl_vae(4))
    cat = scan(_settings(), roots=[comfy])
    assert cat.roots[0].layout == "comfyui"
    assert {e.name: e.kind for e in cat.entries} == {
        "sd15": "model", "flux": "model", "taesd": "taesd", "style": "lora", "x4": "upscaler",
    }  # fmt: skip
    assert classify_root(m).layout == "comfyui"  # its models folder works too


def test_a1111_install_used_in_place(tmp_path: Path) -> None:
    a1111 = tmp_path / "webui"
    write_safetensors(a1111 / "models" / "Stable-diffusion" / "sdxl.safetensors", {**L.prefixed("model.diffusion_model.", L.unet(2048, xl=True)), **L.prefixed("conditioner.embedders.0.transformer.", L.clip_text(768)), **L.prefixed("conditioner.embedders.1.", L.open_clip_text(1280))})  # fmt: skip
    write_safetensors(a1111 / "models" / "Lora" / "x.safetensors", L.kohya_lora(2048, te2=True))
    write_safetensors(a1111 / "models" / "ESRGAN" / "up.safetensors", L.esrgan_old(10))
    write_safetensors(a1111 / "embeddings" / "neg.safetensors", {"emb_params": (8, 768)})
    write_safetensors(a1111 / "outputs" / "junk.safetensors", L.kl_vae(4))
    cat = scan(_settings(), roots=[a1111])
    assert cat.roots[0].layout == "a1111"
    kinds = {e.name: (e.kind, e.info.arch if e.info else None) for e in cat.entries}
    assert kinds == {
        "sdxl": ("model", "sdxl"), "x": ("lora", "sdxl"), "up": ("upscaler", "esrgan"),
        "neg": ("embedding", "sd1"),
    }  # fmt: skip


def test_default_roots_come_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = tmp_path / "extra"
    write_safetensors(extra / "ae.safetensors", L.kl_vae(16))
    monkeypatch.setenv("SDCPP_MODELS", str(extra))
    monkeypatch.chdir(tmp_path)
    write_safetensors(tmp_path / "models" / "clip_l.safetensors", L.clip_text(768))
    cat = scan()
    assert {e.name for e in cat.entries} == {"ae", "clip_l"}


def test_cache_makes_rescans_cheap_and_notices_changes(tmp_path: Path) -> None:
    root = tmp_path / "m"
    for i in range(100):
        layout = L.flux() if i % 2 else L.kl_vae(16)
        write_safetensors(root / f"f{i:03d}.safetensors", layout)
    settings = _settings()
    first = scan(settings, roots=[root])
    assert first.stats == {"files": 100, "cached": 0, "read": 100}
    start = time.perf_counter()
    second = scan(settings, roots=[root])
    assert time.perf_counter() - start < 1.0
    assert second.stats == {"files": 100, "cached": 100, "read": 0}
    assert [e.info for e in second.entries] == [e.info for e in first.entries]
    changed = root / "f000.safetensors"
    write_safetensors(changed, L.clip_text(768))
    os.utime(changed, ns=(1, 1))
    third = scan(settings, roots=[root])
    assert third.stats["read"] == 1
    assert third.find("f000").kind == "text_encoder"
    assert scan(settings, roots=[root], use_cache=False).stats["read"] == 100


def test_links_and_dangling_files(tmp_path: Path) -> None:
    root = tmp_path / "m"
    write_safetensors(root / "sub" / "ae.safetensors", L.kl_vae(16))
    (root / "sub" / "loop").symlink_to(root)  # a cycle
    (root / "gone.safetensors").symlink_to(tmp_path / "missing.safetensors")
    cat = scan(_settings(), roots=[root])
    assert {e.name: e.kind for e in cat.entries} == {"ae": "vae", "gone": "invalid"}


def test_changing_the_tables_invalidates_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sdcpp_service.models import archs

    root = tmp_path / "m"
    write_safetensors(root / "ae.safetensors", L.kl_vae(16))
    assert scan(_settings(), roots=[root]).stats["read"] == 1
    assert scan(_settings(), roots=[root]).stats["read"] == 0
    monkeypatch.setattr(archs, "MODEL_RULES", archs.MODEL_RULES[:-1])
    assert scan(_settings(), roots=[root]).stats["read"] == 1
