"""Assembly: main model + overrides → every loader slot filled with a compatible file."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdcpp_service.config import Settings
from sdcpp_service.errors import InvalidRequest, MissingComponent, UnknownName, UnsupportedModel
from sdcpp_service.models import plan
from sdcpp_service.models.hub import PULL_COMMAND
from tests.models import layouts as L
from tests.models.corpus import write_gguf, write_safetensors

P = L.prefixed


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A ComfyUI-style folder with components of several families (distractors included)."""
    r = tmp_path / "models"
    write_gguf(
        r / "diffusion_models" / "flux1-schnell-Q4_0.gguf",
        {k: (v, "F32") for k, v in L.flux(guidance=False).items()},
    )
    write_safetensors(
        r / "diffusion_models" / "klein-4b.safetensors", L.flux2(hidden=3072, ctx=7680, singles=20)
    )
    write_safetensors(r / "diffusion_models" / "wan2.1_t2v_1.3B.safetensors", L.wan(1536, 16))
    write_safetensors(r / "vae" / "ae.safetensors", L.kl_vae(16))
    write_safetensors(r / "vae" / "flux2-vae.safetensors", L.kl_vae(32))
    write_safetensors(r / "vae" / "wan_2.1_vae.safetensors", L.wan_vae(16))
    write_safetensors(r / "text_encoders" / "clip_l.safetensors", L.clip_text(768))
    write_safetensors(r / "text_encoders" / "t5xxl_fp16.safetensors", L.t5(32128))
    write_safetensors(r / "text_encoders" / "umt5.safetensors", L.t5(256384, umt5=True))
    write_safetensors(
        r / "text_encoders" / "qwen_3_4b.safetensors", L.llm(2560, 151936, qk_norm=True)
    )
    write_safetensors(
        r / "text_encoders" / "qwen_3_8b.safetensors", L.llm(4096, 151936, qk_norm=True)
    )
    sdxl = {
        **P("model.diffusion_model.", L.unet(2048, xl=True)),
        **P("first_stage_model.", L.kl_vae(4)),
        **P("conditioner.embedders.0.transformer.", L.clip_text(768)),
        **P("conditioner.embedders.1.", L.open_clip_text(1280)),
    }
    write_safetensors(r / "checkpoints" / "sdxl.safetensors", sdxl)
    write_safetensors(r / "vae" / "sdxl_vae.safetensors", L.kl_vae(4))
    write_safetensors(r / "unet" / "unet_only.safetensors", L.unet(768))
    return r  # fmt: skip


def _plan(root: Path, model: str, **overrides: str | None) -> dict[str, str]:
    settings = Settings.from_env().with_model_dirs((root,))
    result = plan(model, overrides, settings)
    return {slot: Path(p).name for slot, p in result.slots.items()}


def test_flux(root: Path) -> None:
    assert _plan(root, "flux1-schnell") == {
        "diffusion_model_path": "flux1-schnell-Q4_0.gguf",
        "vae_path": "ae.safetensors",
        "clip_l_path": "clip_l.safetensors",
        "t5xxl_path": "t5xxl_fp16.safetensors",
    }


def test_flux2_klein_gets_its_vae_and_qwen3_of_the_right_size(root: Path) -> None:
    assert _plan(root, "klein-4b") == {
        "diffusion_model_path": "klein-4b.safetensors",
        "vae_path": "flux2-vae.safetensors",
        "llm_path": "qwen_3_4b.safetensors",
    }


def test_wan_gets_wan_vae_and_umt5(root: Path) -> None:
    assert _plan(root, "wan2.1_t2v_1.3B") == {
        "diffusion_model_path": "wan2.1_t2v_1.3B.safetensors",
        "vae_path": "wan_2.1_vae.safetensors",
        "t5xxl_path": "umt5.safetensors",
    }


def test_sdxl_uses_its_embedded_vae_unless_one_is_given(root: Path) -> None:
    assert _plan(root, "sdxl") == {"model_path": "sdxl.safetensors"}
    vae = str(root / "vae" / "sdxl_vae.safetensors")
    assert _plan(root, "sdxl", vae=vae) == {"model_path": "sdxl.safetensors", "vae_path": "sdxl_vae.safetensors"}  # fmt: skip


def test_overrides_by_path_or_name_and_none(root: Path) -> None:
    write_safetensors(
        root / "text_encoders" / "mine" / "my-qwen.safetensors", L.llm(2560, 151936, qk_norm=True)
    )
    got = _plan(root, str(root / "diffusion_models" / "klein-4b.safetensors"), llm="my-qwen")
    assert got["llm_path"] == "my-qwen.safetensors"
    with pytest.raises(UnsupportedModel, match="needs a llm qwen3 4b"):
        _plan(root, "klein-4b", llm="qwen_3_8b")  # the wrong size would fail inside the engine
    got = _plan(root, "flux1-schnell", t5xxl=None)
    assert "t5xxl_path" not in got


def test_incompatible_override_is_refused(root: Path) -> None:
    with pytest.raises(UnsupportedModel, match="needs a vae flux2"):
        _plan(root, "klein-4b", vae=str(root / "vae" / "ae.safetensors"))
    with pytest.raises(UnsupportedModel, match="not a vae"):
        _plan(root, "sdxl", vae="clip_l")


def test_missing_component_names_kind_and_pull_command(root: Path) -> None:
    (root / "text_encoders" / "t5xxl_fp16.safetensors").unlink()
    with pytest.raises(MissingComponent) as err:
        _plan(root, "flux1-schnell")
    exc = err.value
    assert exc.kind == "t5xxl"
    assert exc.looked_for and "t5xxl" in exc.looked_for[0]
    assert exc.hint and exc.hint.startswith(PULL_COMMAND + " ")
    assert "needs a t5xxl (t5xxl_path)" in str(exc) and str(root) in str(exc)


def test_model_errors(root: Path) -> None:
    with pytest.raises(UnsupportedModel, match="UNet without its text encoder"):
        _plan(root, "unet_only")
    with pytest.raises(UnsupportedModel, match="not a main model"):
        _plan(root, str(root / "vae" / "ae.safetensors"))
    with pytest.raises(UnknownName):
        _plan(root, "no-such-model")
    with pytest.raises(InvalidRequest):
        _plan(root, "sdxl", upscaler_typo="x")
