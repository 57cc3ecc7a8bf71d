"""Video rules and assembly without the engine: every Wan family gets the right components, and
frame counts, sizes and inputs are checked (with the nearest valid value) before any load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sdcpp_service.config import Settings
from sdcpp_service.engine.oneshot import generate_video
from sdcpp_service.engine.videogen import check_high_noise, check_size, two_stage
from sdcpp_service.errors import InvalidRequest, MissingComponent, ModelError, UnsupportedModel
from sdcpp_service.models import inspect
from sdcpp_service.models.hub import PULL_COMMAND
from sdcpp_service.models.loadplan import plan_model
from sdcpp_service.rules import FAMILIES, check_frames, family_of
from sdcpp_service.types import Progress
from tests.models import layouts as L
from tests.models.corpus import write_safetensors

#: file → (layout, expected family, expected components besides the model)
MODELS: dict[str, tuple[dict[str, tuple[int, ...]], str, set[str]]] = {
    "wan2.1_t2v_1.3B": (L.wan(1536, 16), "Wan T2V", {"vae", "t5xxl"}),
    "wan2.1_t2v_14B": (L.wan(5120, 16), "Wan T2V", {"vae", "t5xxl"}),
    "wan2.1_i2v_480p_14B": (
        L.wan(5120, 36, img_emb=True),
        "Wan2.1 I2V",
        {"vae", "t5xxl", "clip_vision"},
    ),
    "wan2.1_flf2v_720p_14B": (
        {**L.wan(5120, 36, img_emb=True), "img_emb.emb_pos": (1, 514, 1280)},
        "Wan2.1 FLF2V",
        {"vae", "t5xxl", "clip_vision"},
    ),
    "wan2.1_vace_1.3B": (L.wan(1536, 16, vace=True), "Wan VACE", {"vae", "t5xxl"}),
    "wan2.2_ti2v_5B": (L.wan(3072, 48), "Wan2.2 TI2V 5B", {"vae", "t5xxl"}),
    "wan2.2_i2v_low_noise_14B": (
        L.wan(5120, 36),
        "Wan2.2 I2V A14B",
        {"vae", "t5xxl", "high_noise_diffusion_model"},  # its partner, by name
    ),
    "wan2.2_i2v_high_noise_14B": (L.wan(5120, 36), "Wan2.2 I2V A14B", {"vae", "t5xxl"}),
}


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ComfyUI-style folder with every Wan family and both Wan VAEs (header-only files)."""
    monkeypatch.setenv("SDCPP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SDCPP_MODELS", raising=False)
    r = tmp_path / "models"
    for name, (layout, _, _) in MODELS.items():
        write_safetensors(r / "diffusion_models" / f"{name}.safetensors", layout)
    write_safetensors(r / "vae" / "wan_2.1_vae.safetensors", L.wan_vae(16))
    write_safetensors(r / "vae" / "wan2.2_vae.safetensors", L.wan_vae(48))
    write_safetensors(r / "text_encoders" / "umt5.safetensors", L.t5(256384, umt5=True))
    write_safetensors(r / "clip_vision" / "clip_vision_h.safetensors", L.clip_vision())
    write_safetensors(r / "checkpoints" / "flux-dit.safetensors", L.flux(guidance=False))
    return r


def settings_for(root: Path) -> Settings:
    return Settings.from_env().with_model_dirs((root,))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_family_is_assembled(root: Path, name: str) -> None:
    _, label, components = MODELS[name]
    options, info = plan_model(name, settings_for(root))
    family = family_of(info)
    assert family.label == label
    got = set(options.components()) - {"diffusion_model"}
    assert got == components
    vae = Path(options.vae).name
    assert vae == ("wan2.2_vae.safetensors" if "ti2v" in name else "wan_2.1_vae.safetensors")
    assert family.multiple == (32 if "ti2v" in name else 16)


def test_high_noise_pair_and_mismatch(root: Path) -> None:
    settings = settings_for(root)
    high = root / "diffusion_models" / "wan2.2_i2v_high_noise_14B.safetensors"
    options, info = plan_model(
        "wan2.2_i2v_low_noise_14B", settings, high_noise_diffusion_model=high
    )
    assert options.high_noise_diffusion_model == str(high)
    check_high_noise(options, info)
    wrong = root / "diffusion_models" / "wan2.1_t2v_1.3B.safetensors"
    options, info = plan_model("wan2.2_i2v_low_noise_14B", settings, high_noise_diffusion_model=wrong)  # fmt: skip
    with pytest.raises(UnsupportedModel, match="must be the same kind of model"):
        check_high_noise(options, info)
    options, info = plan_model(
        "wan2.2_i2v_low_noise_14B", settings, high_noise_diffusion_model=root / "nope.gguf"
    )
    with pytest.raises(ModelError, match="not found"):
        check_high_noise(options, info)


def test_text_encoder_can_be_left_out(root: Path) -> None:
    (root / "text_encoders" / "umt5.safetensors").unlink()
    with pytest.raises(MissingComponent) as err:
        plan_model("wan2.1_t2v_1.3B", settings_for(root))
    assert err.value.kind == "umt5xxl" and err.value.hint and PULL_COMMAND in err.value.hint
    options, _ = plan_model("wan2.1_t2v_1.3B", settings_for(root), t5xxl=False)
    assert not options.t5xxl and options.vae


def test_missing_vae_is_a_clear_error_before_any_load(root: Path) -> None:
    (root / "vae" / "wan2.2_vae.safetensors").unlink()
    with pytest.raises(MissingComponent) as err:
        generate_video("x", "wan2.2_ti2v_5B", settings=settings_for(root))
    assert err.value.kind == "vae" and "wan2.2" in str(err.value)
    assert "wan2.2_vae.safetensors" in (err.value.hint or "")


def test_image_models_are_refused(root: Path) -> None:
    info = inspect(root / "checkpoints" / "flux-dit.safetensors")
    with pytest.raises(UnsupportedModel, match="not a video model"):
        family_of(info)


@pytest.mark.parametrize(
    ("frames", "nearest"),
    [(2, "is 1"), (3, "is 1 or 5"), (6, "is 5"), (8, "is 9"), (32, "is 33"), (80, "is 81")],
)
def test_frame_counts_name_the_nearest_valid(frames: int, nearest: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        check_frames(frames)
    assert err.value.field == "frames"
    assert f"nearest valid count {nearest}" in str(err.value) and "4k+1" in str(err.value)


@pytest.mark.parametrize("frames", [1, 5, 9, 33, 81, 121])
def test_valid_frame_counts(frames: int) -> None:
    check_frames(frames)


@pytest.mark.parametrize("frames", [0, -3, 1.5, True, 4097])
def test_nonsense_frame_counts(frames: Any) -> None:
    with pytest.raises(InvalidRequest):
        check_frames(frames)


def test_sizes_follow_each_family() -> None:
    wan21 = next(f for f in FAMILIES if f.label == "Wan T2V")
    ti2v = next(f for f in FAMILIES if f.label == "Wan2.2 TI2V 5B")
    check_size("width", 16, wan21)
    check_size("width", 832, wan21)
    with pytest.raises(InvalidRequest, match="multiple of 16 .* nearest valid size is 16$"):
        check_size("width", 20, wan21)
    with pytest.raises(InvalidRequest, match="nearest valid size is 16$"):
        check_size("height", 8, wan21)
    with pytest.raises(InvalidRequest, match="multiple of 32 for Wan2.2 TI2V 5B.*is 704$"):
        check_size("height", 710, ti2v)
    with pytest.raises(InvalidRequest, match="is 704 or 736$"):
        check_size("height", 720, ti2v)
    with pytest.raises(InvalidRequest, match="is 32 or 64$"):
        check_size("width", 48, ti2v)
    with pytest.raises(InvalidRequest) as err:
        check_size("height", 0, ti2v)
    assert err.value.field == "height"


def test_bad_requests_fail_before_the_engine_loads(root: Path) -> None:
    settings = settings_for(root)
    # header-only files would make the engine fail; these must fail first, in our checks
    with pytest.raises(InvalidRequest, match="nearest valid count is 5"):
        generate_video("x", "wan2.1_t2v_1.3B", frames=6, settings=settings)
    with pytest.raises(InvalidRequest, match="multiple of 32"):
        generate_video("x", "wan2.2_ti2v_5B", width=48, settings=settings)
    with pytest.raises(InvalidRequest, match="cannot write a video"):
        generate_video("x", "wan2.1_t2v_1.3B", root / "out.avi", settings=settings)


def _stage_reports(*stages: int) -> list[Progress]:
    return [Progress(i, n, 0.0, 0.0) for n in stages for i in range(n + 1)]


@pytest.mark.parametrize(
    ("stages", "total"),
    [((1, 2), 3), ((2, 2), 4), ((3, 5), 8)],
)
def test_two_stage_progress_is_one_count(stages: tuple[int, int], total: int) -> None:
    seen: list[tuple[int, int, str]] = []
    report = two_stage(lambda p: seen.append((p.step, p.total, p.phase)), total)
    for p in _stage_reports(*stages):
        report(p)
    steps = [s for s, _, _ in seen]
    assert steps == sorted(steps) and steps[-1] == total
    assert {t for _, t, _ in seen} == {total}
    high = stages[0] + 1
    assert [ph for *_, ph in seen] == ["high noise"] * high + ["sampling"] * (len(seen) - high)


def test_the_high_noise_partner_is_found_by_name(root: Path, tmp_path: Path) -> None:
    settings = settings_for(root)
    high = root / "diffusion_models" / "wan2.2_i2v_high_noise_14B.safetensors"
    options, _ = plan_model("wan2.2_i2v_low_noise_14B", settings)
    assert options.high_noise_diffusion_model == str(high)
    options, _ = plan_model("wan2.2_i2v_high_noise_14B", settings)  # the high one has none
    assert not options.high_noise_diffusion_model
    options, _ = plan_model("wan2.2_i2v_low_noise_14B", settings, high_noise_diffusion_model=None)
    assert not options.high_noise_diffusion_model  # the caller's choice wins
    high.rename(high.with_name("wan2.2_i2v_HighNoise_14B.safetensors"))
    low = root / "diffusion_models" / "wan2.2_i2v_low_noise_14B.safetensors"
    low.rename(low.with_name("wan2.2_i2v_LowNoise_14B.safetensors"))
    options, _ = plan_model(
        root / "diffusion_models" / "wan2.2_i2v_LowNoise_14B.safetensors", settings
    )
    assert (
        Path(options.high_noise_diffusion_model or "").name
        == "wan2.2_i2v_HighNoise_14B.safetensors"
    )
    high.with_name("wan2.2_i2v_HighNoise_14B.safetensors").unlink()
    options, _ = plan_model(
        root / "diffusion_models" / "wan2.2_i2v_LowNoise_14B.safetensors", settings
    )
    assert not options.high_noise_diffusion_model
