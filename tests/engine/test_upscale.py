"""ESRGAN upscaling through the real engine, checked against an exact nearest-neighbour net."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sdcpp_service import InvalidImage, Upscaler, upscale
from sdcpp_service.cli import app
from sdcpp_service.config import Settings
from sdcpp_service.errors import InvalidRequest, UnsupportedModel
from tests.synth.kit import Kit

pytestmark = pytest.mark.engine


def noise(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Image.Image:
    channels = len(mode)
    data = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), np.uint8)
    return Image.fromarray(data if channels > 1 else data[..., 0], mode)


def opened(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        return im


def nearest(image: Image.Image, factor: int) -> np.ndarray:
    size = (image.width * factor, image.height * factor)
    return np.asarray(image.resize(size, Image.Resampling.NEAREST))


@pytest.fixture(scope="module")
def esrgan(kit: Kit) -> str:
    return str(kit.path("esrgan_x4"))


@pytest.fixture(scope="module")
def up(esrgan: str) -> Upscaler:
    upscaler = Upscaler(esrgan, threads=2, tile=128)
    yield upscaler  # type: ignore[misc]
    upscaler.close()


def test_native_factor_is_read_from_the_file(up: Upscaler) -> None:
    assert up.factor == 4


def test_equals_pil_nearest_pixel_for_pixel(up: Upscaler) -> None:
    image = noise((24, 16))
    out = up.upscale(image)
    assert out.size == (96, 64)
    assert np.array_equal(np.asarray(out), nearest(image, 4))


def test_tiled_equals_nearest(esrgan: str) -> None:
    image = noise((40, 36), seed=1)
    with Upscaler(esrgan, threads=2, tile=16) as small_tiles:
        out = small_tiles.upscale(image)
    assert np.array_equal(np.asarray(out), nearest(image, 4))


def test_alpha_is_kept(up: Upscaler) -> None:
    image = noise((16, 16), "RGBA", seed=2)
    out = up.upscale(image)
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out), nearest(image, 4))


def test_other_scales_and_tiny_inputs(up: Upscaler) -> None:
    assert up.upscale(noise((20, 10)), 2).size == (40, 20)
    assert up.upscale(noise((20, 10)), 1.5).size == (30, 15)
    one = noise((1, 1), seed=3)
    assert np.array_equal(np.asarray(up.upscale(one)), nearest(one, 4))
    with pytest.raises(InvalidRequest):
        up.upscale(noise((4, 4)), 0)


def test_library_function_and_bad_models(esrgan: str, kit: Kit, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", model_dirs=(tmp_path,))
    image = noise((8, 8))
    assert upscale(image, esrgan, settings=settings).size == (32, 32)
    with pytest.raises(UnsupportedModel, match="not an ESRGAN upscaler"):
        upscale(image, kit.path("lora_sd1"), settings=settings)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InvalidImage, match="empty"):
        upscale(empty, esrgan, settings=settings)
    huge = tmp_path / "huge.png"
    Image.new("L", (9000, 8000)).save(huge)
    with pytest.raises(InvalidImage, match="pixel limit"):
        upscale(huge, esrgan, settings=settings)


def test_cli_files_folders_metadata_and_errors(
    esrgan: str, kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SDCPP_DATA_DIR", str(tmp_path / "data"))
    src = tmp_path / "in"
    src.mkdir()
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a fox\nSteps: 1, Seed: 3, Size: 8x8")
    noise((8, 8)).save(src / "a.png", pnginfo=info)
    noise((6, 10), "RGBA", seed=5).save(src / "b.png")
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(app, ["upscale", str(src), "-o", str(out), "-m", esrgan, "--json"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["width"], r["height"]) for r in records] == [(32, 32), (24, 40)]
    a = opened(out / "a-x4.png")
    assert "Postprocess upscale by: 4" in a.text["parameters"] and a.text["parameters"].startswith(
        "a fox"
    )
    assert opened(out / "b-x4.png").mode == "RGBA"
    # existing outputs are not overwritten without --force
    again = runner.invoke(
        app, ["upscale", str(src / "a.png"), "-o", str(out / "a-x4.png"), "-m", esrgan]
    )
    assert again.exit_code != 0 and "already exists" in again.output
    # x2 request on an x4 model, glob input
    half = runner.invoke(
        app, ["upscale", str(src / "*.png"), "-o", str(tmp_path / "x2"), "-m", esrgan, "-s", "2"]
    )
    assert half.exit_code == 0, half.output
    assert opened(tmp_path / "x2" / "a-x2.png").size == (16, 16)
    # a LoRA as upscaler, a non-image, a missing input: one line each, non-zero exit
    for args, needle in (
        (
            ["upscale", str(src / "a.png"), "-m", str(kit.path("lora_sd1"))],
            "not an ESRGAN upscaler",
        ),
        (["upscale", str(tmp_path / "missing.png"), "-m", esrgan], "no such file"),
    ):
        bad = runner.invoke(app, args)
        assert bad.exit_code != 0 and needle in bad.output and "Traceback" not in bad.output
    (tmp_path / "note.png").write_text("hello")
    bad = runner.invoke(
        app, ["upscale", str(tmp_path / "note.png"), "-m", esrgan, "-o", str(tmp_path / "n.png")]
    )
    assert bad.exit_code != 0 and "not a readable image" in bad.output
