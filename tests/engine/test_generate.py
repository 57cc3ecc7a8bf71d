"""Every image mode through the real engine on the synthesized kit (64×64, 1–2 steps)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sdcpp_service import InvalidImage, InvalidRequest, Pipeline, UnknownName
from sdcpp_service.config import Settings
from sdcpp_service.engine.images import parse_infotext
from sdcpp_service.errors import EngineError, ModelError
from tests.synth.kit import Kit

pytestmark = pytest.mark.engine

A1111_RE = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
SMALL: dict[str, Any] = {"width": 64, "height": 64, "steps": 1}


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and bool(np.array_equal(pixels(a), pixels(b)))


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, kit: Kit) -> Settings:
    root = tmp_path_factory.mktemp("models")
    (root / "loras").mkdir()
    (root / "loras" / "detail.safetensors").symlink_to(kit.path("lora_sd1"))
    return Settings(data_dir=root / "data", model_dirs=(root,), threads=2)


@pytest.fixture(scope="module")
def sdxs(kit: Kit, settings: Settings) -> Iterator[Pipeline]:
    with Pipeline.load(kit.path("sdxs"), settings=settings) as pipe:
        yield pipe


def test_txt2img_size_seed_and_batch(sdxs: Pipeline) -> None:
    first = sdxs.run(sdxs.request("a fox", seed=7, batch=2, steps=2, width=64, height=128))
    assert [im.size for im in first.images] == [(64, 128), (64, 128)]
    assert first.seeds == [7, 8]
    again = sdxs.generate("a fox", seed=7, steps=2, width=64, height=128)[0]
    assert same(again, first.images[0])
    second_seed = sdxs.generate("a fox", seed=8, steps=2, width=64, height=128)[0]
    assert same(second_seed, first.images[1])
    assert not same(first.images[0], first.images[1])
    assert float(pixels(first.images[0]).std()) > 1.0  # not a flat image


def test_prompt_changes_output(sdxs: Pipeline) -> None:
    a = sdxs.generate("a fox", seed=1, **SMALL)[0]
    b = sdxs.generate("a lighthouse at night", seed=1, **SMALL)[0]
    assert not same(a, b)


def test_infotext_round_trips_with_a1111_regex(sdxs: Pipeline) -> None:
    image = sdxs.generate(
        "a fox, snow",
        negative="blurry",
        seed=11,
        sampler="Euler",
        scheduler="karras",
        cfg=5.0,
        **SMALL,
    )[0]
    text = image.info["parameters"]
    fields = dict(A1111_RE.findall(text.splitlines()[-1]))
    assert fields["Steps"] == "1"
    assert fields["Sampler"] == "Euler"
    assert fields["Schedule type"] == "Karras"
    assert fields["CFG scale"] == "5.0"
    assert fields["Seed"] == "11"
    assert fields["Size"] == "64x64"
    assert fields["Model"] == "sdxs"
    assert re.fullmatch(r"[0-9a-f]{10}", fields["Model hash"])
    parsed = parse_infotext(text)
    assert parsed["Prompt"] == "a fox, snow" and parsed["Negative prompt"] == "blurry"
    assert (
        image.info["sdcpp"]["sampler"] == "euler" and image.info["sdcpp"]["scheduler"] == "karras"
    )


def test_every_sampler_and_scheduler_runs(sdxs: Pipeline) -> None:
    from sdcpp_service.engine.sdcpp import native

    samplers = native().enum_names("sample_method")
    assert {"karras", "discrete", "ays"} <= set(native().enum_names("scheduler"))
    assert {"euler", "euler_a", "dpm++2m", "lcm"} <= set(samplers)
    for name in ("euler", "dpm++2m", "lcm", "ddim_trailing"):
        sdxs.generate("x", sampler=name, seed=1, **SMALL)
    for name in ("karras", "exponential", "ays", "sgm_uniform", "simple"):
        sdxs.generate("x", scheduler=name, seed=1, **SMALL)


def test_img2img_depends_on_init_image(sdxs: Pipeline) -> None:
    red = Image.new("RGB", (64, 64), (220, 30, 30))
    blue = Image.new("RGB", (64, 64), (30, 30, 220))
    a = sdxs.generate("x", init_image=red, strength=0.5, seed=3, width=64, height=64, steps=2)[0]
    b = sdxs.generate("x", init_image=blue, strength=0.5, seed=3, width=64, height=64, steps=2)[0]
    assert a.size == (64, 64)
    assert not same(a, b)
    assert "Denoising strength: 0.5" in a.info["parameters"]


def test_inpaint_with_plain_checkpoint_only_changes_masked_area(sdxs: Pipeline) -> None:
    init = Image.new("RGB", (64, 64), (200, 120, 40))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))  # repaint the left half
    a, b = (
        pixels(sdxs.generate("x", init_image=init, mask=mask, strength=1.0, seed=s, **SMALL)[0])
        for s in (5, 6)
    )
    assert a.shape == (64, 64, 3)
    # seeds change the repainted half; the kept half comes from the same init latent
    # (the decoder's receptive field blurs the border, so compare the far edges)
    changed_masked = np.abs(a[:, :8] - b[:, :8]).mean()
    changed_kept = np.abs(a[:, 56:] - b[:, 56:]).mean()
    assert changed_masked > 3 * max(changed_kept, 0.2)


def test_inpainting_checkpoint(kit: Kit, settings: Settings) -> None:
    init = Image.new("RGB", (64, 64), (10, 200, 90))
    mask = Image.new("L", (64, 64), 255)
    with Pipeline.load(kit.path("sd1_inpaint"), settings=settings) as pipe:
        out = pipe.generate("x", init_image=init, mask=mask, seed=2, **SMALL)[0]
    assert out.size == (64, 64)


def test_lora_changes_output_and_removal_is_exact(sdxs: Pipeline) -> None:
    base = sdxs.generate("a fox", seed=4, **SMALL)[0]
    with_tag = sdxs.generate("a fox <lora:detail:1.0>", seed=4, **SMALL)[0]
    with_list = sdxs.generate("a fox", loras=["detail:1.0"], seed=4, **SMALL)[0]
    again = sdxs.generate("a fox", seed=4, **SMALL)[0]
    assert not same(base, with_tag)
    assert same(with_tag, with_list)
    assert same(base, again)
    assert "Lora hashes: " in with_tag.info["parameters"]


def test_unknown_lora_is_a_clear_error(sdxs: Pipeline) -> None:
    with pytest.raises(UnknownName) as err:
        sdxs.generate("a fox <lora:nope:1>", **SMALL)
    assert "unknown lora 'nope'" in str(err.value) and "detail" in str(err.value)


def test_controlnet_changes_output(kit: Kit, settings: Settings) -> None:
    a_img = Image.new("RGB", (64, 64), 0)
    a_img.paste((255, 255, 255), (16, 16, 48, 48))
    b_img = Image.new("RGB", (64, 64), (255, 255, 255))
    with Pipeline.load(
        kit.path("sd1"), settings=settings, control_net=kit.path("controlnet_sd1")
    ) as pipe:
        plain = pipe.generate("x", seed=9, **SMALL)[0]
        a = pipe.generate("x", control_image=a_img, control_strength=1.0, seed=9, **SMALL)[0]
        b = pipe.generate("x", control_image=b_img, control_strength=1.0, seed=9, **SMALL)[0]
        canny = pipe.generate("x", control_image=a_img, canny=True, seed=9, **SMALL)[0]
    assert a.size == b.size == canny.size == (64, 64)
    assert not same(a, b)
    assert not same(plain, a)


def test_ref_images_change_output(kit: Kit, settings: Settings) -> None:
    files = kit.files("flux2_klein")
    with Pipeline.load(
        files["diffusion_model"],
        settings=settings,
        slot="diffusion_model",
        vae=files["vae"],
        llm=files["llm"],
    ) as pipe:
        kwargs: dict[str, Any] = {"width": 64, "height": 64, "steps": 1, "cfg": 1.0, "seed": 3}
        plain = pipe.generate("edit", **kwargs)[0]
        ref = Image.new("RGB", (64, 64), (250, 10, 10))
        edited = pipe.generate("edit", ref_images=[ref], **kwargs)[0]
    assert plain.size == edited.size == (64, 64)
    assert not same(plain, edited)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"width": 0}, "width"),
        ({"width": 65}, "width"),
        ({"height": -64}, "height"),
        ({"steps": 0}, "steps"),
        ({"strength": 1.5, "init_image": Image.new("RGB", (64, 64))}, "strength"),
        ({"batch": 0}, "batch"),
        ({"sampler": "warp_drive"}, "sampler"),
        ({"scheduler": "sometimes"}, "scheduler"),
        ({"mask": Image.new("L", (64, 64))}, "mask"),
        ({"init_image": Image.new("RGB", (64, 64)), "mask": Image.new("L", (32, 64))}, "mask"),
        ({"control_image": Image.new("RGB", (64, 64))}, "control_image"),
        ({"cache_mode": "magic"}, "cache_mode"),
        ({"guidance": float("nan")}, "guidance"),
        ({"seed": 2**40}, "seed"),
    ],
)
def test_bad_requests_raise_typed_field_errors(
    sdxs: Pipeline, params: dict[str, Any], field: str
) -> None:
    base: dict[str, Any] = {**SMALL, **params}
    with pytest.raises(InvalidRequest) as err:
        sdxs.generate("x", **base)
    assert err.value.field == field


def test_bad_images_are_refused(sdxs: Pipeline, tmp_path: Any) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    for path, needle in (
        (empty, "empty"),
        (text, "not a readable image"),
        (tmp_path / "nope.png", "no such file"),
    ):
        with pytest.raises(InvalidImage) as err:
            sdxs.generate("x", init_image=path, **SMALL)
        assert needle in str(err.value) and err.value.field == "init_image"
    big = tmp_path / "big.png"
    Image.new("L", (9000, 8000)).save(big)
    with pytest.raises(InvalidImage, match="pixel limit"):
        sdxs.generate("x", init_image=big, **SMALL)


def test_missing_and_broken_model_files(tmp_path: Any, settings: Settings) -> None:
    with pytest.raises(InvalidRequest, match="no such model file"):
        Pipeline.load(tmp_path / "nope.safetensors", settings=settings)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises((EngineError, ModelError)) as err:
        Pipeline.load(broken, settings=settings)
    assert "broken.safetensors" in str(err.value)


def test_progress_reports_each_step(sdxs: Pipeline) -> None:
    seen: list[tuple[int, int]] = []
    sdxs.generate(
        "x", seed=1, width=64, height=64, steps=3, progress=lambda p: seen.append((p.step, p.total))
    )
    steps = [s for s, t in seen if t == 3]
    assert steps[-1] == 3 and steps == sorted(steps)


def test_hires_fix_reaches_target_size(sdxs: Pipeline, kit: Kit) -> None:
    latent = sdxs.generate("x", seed=1, hires=True, hires_scale=2.0, hires_steps=1, **SMALL)[0]
    assert latent.size == (128, 128)
    assert "Hires upscaler: Latent" in latent.info["parameters"]
    model = sdxs.generate(
        "x",
        seed=1,
        hires=True,
        hires_model=str(kit.path("esrgan_x4")),
        hires_width=128,
        hires_height=192,
        hires_steps=1,
        **SMALL,
    )[0]
    assert model.size == (128, 192)


def test_cli_generate_json_and_errors(
    kit: Kit, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import subprocess
    import sys

    from typer.testing import CliRunner

    from sdcpp_service.cli import app

    monkeypatch.setenv("SDCPP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    model = str(kit.path("sdxs"))
    runner = CliRunner()
    args = ["generate", "a fox", "-m", model, "-W", "64", "-H", "64", "--steps", "1", "--seed", "5"]
    first = runner.invoke(app, [*args, "--json", "-b", "2", "-o", "out.png"])
    assert first.exit_code == 0, first.output
    records = [json.loads(line) for line in first.output.splitlines()]
    assert [r["seed"] for r in records] == [5, 6]
    assert [Path(r["path"]).name for r in records] == ["out.png", "out-1.png"]
    # a name the user gave is never overwritten without --force (as for videos), before any
    # work; a name we choose (output.png, DIR/sdcpp-SEED.png) is numbered when taken
    second = runner.invoke(app, [*args, "--json", "-o", "out.png"])
    assert second.exit_code == 3 and "out.png: already exists" in second.output
    for _ in range(2):
        default = runner.invoke(app, [*args, "--json"])
        assert default.exit_code == 0, default.output
    assert (tmp_path / "output.png").is_file() and (tmp_path / "output-1.png").is_file()
    nested = runner.invoke(app, [*args, "--json", "-o", "new/sub/"])
    assert nested.exit_code == 0, nested.output
    assert json.loads(nested.stdout)["path"] == str(Path("new/sub/sdcpp-5.png"))
    assert (tmp_path / "new" / "sub" / "sdcpp-5.png").is_file()
    odd = runner.invoke(app, [*args, "-o", "out.tga"])
    assert odd.exit_code == 2 and ".png, .jpg, .jpeg, .webp" in odd.output
    with Image.open(tmp_path / "out.png") as im:
        assert "Seed: 5" in im.text["parameters"] and json.loads(im.text["sdcpp"])["seed"] == 5
    # bad input through a real subprocess: one line on stderr, non-zero exit, no traceback
    proc = subprocess.run(
        [sys.executable, "-m", "sdcpp_service", *args[:-2], "-W", "65"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: width: 65 is not a multiple of 64 for sdxs_512_ds; the nearest valid size is 64"
    ]
    missing = runner.invoke(app, ["generate", "x", "-m", str(tmp_path / "nope.safetensors")])
    assert missing.exit_code != 0 and "Traceback" not in missing.output


def test_preview_images_reach_the_progress_callback(sdxs: Pipeline) -> None:
    previews: list[Image.Image] = []

    def on_progress(p: Any) -> None:
        if p.preview is not None:
            previews.append(p.preview)

    sdxs.generate("x", seed=1, width=64, height=64, steps=2, preview="proj", progress=on_progress)
    assert len(previews) >= 1
    assert previews[-1].width > 0 and previews[-1].mode == "RGB"
    with pytest.raises(InvalidRequest):
        sdxs.generate("x", preview="hologram", **SMALL)


def test_model_by_catalog_name(kit: Kit, tmp_path: Any) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "tiny-sdxs.safetensors").symlink_to(kit.path("sdxs"))
    settings = Settings(data_dir=tmp_path / "data", model_dirs=(tmp_path,), threads=2)
    with Pipeline.load("tiny-sdxs", settings=settings) as pipe:
        assert pipe.options.model.endswith("sdxs.safetensors")
        assert pipe.generate("x", seed=1, **SMALL)[0].size == (64, 64)


def test_taesd_decoding_changes_the_decoder(kit: Kit, settings: Settings) -> None:
    with Pipeline.load(kit.path("sd1"), settings=settings) as full:
        vae_image = full.generate("x", seed=2, **SMALL)[0]
    with Pipeline.load(kit.path("sd1"), settings=settings, taesd=kit.path("taesd")) as fast:
        assert fast.options.taesd.endswith("taesd.safetensors")
        tae_image = fast.generate("x", seed=2, **SMALL)[0]
    assert tae_image.size == vae_image.size == (64, 64)
    assert not same(tae_image, vae_image)
