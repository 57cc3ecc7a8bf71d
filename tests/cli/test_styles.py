"""A1111 prompt styles (``styles.csv``) in the library and ``sdcpp generate --style``; the server
side is in tests/server/test_a1111_routes.py and test_engine_a1111.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

import sdcpp_service
from sdcpp_service.cli import app
from sdcpp_service.config import Settings
from sdcpp_service.errors import InvalidRequest, UnknownName
from sdcpp_service.styles import files, load
from tests.synth.kit import Kit

CSV = (
    'name,prompt,negative_prompt\nnight,"{prompt} at night, stars",sunny\nsharp,"sharp focus",""\n'
)


def test_apply_styles_as_a1111(tmp_path: Path) -> None:
    (tmp_path / "data-dir").mkdir()
    (tmp_path / "data-dir" / "styles.csv").write_text(CSV, encoding="utf-8")
    settings = Settings.from_env()
    prompt, negative = sdcpp_service.apply_styles(
        "a fox", "blurry", ["night", "sharp"], settings=settings
    )
    assert prompt == "a fox at night, stars, sharp focus" and negative == "blurry, sunny"
    with pytest.raises(UnknownName, match="night, sharp"):
        sdcpp_service.apply_styles("a fox", "", ["nope"], settings=settings)


def test_styles_from_an_a1111_install(tmp_path: Path) -> None:
    webui = tmp_path / "stable-diffusion-webui"
    (webui / "models" / "Stable-diffusion").mkdir(parents=True)
    (webui / "styles.csv").write_text(CSV, encoding="utf-8")
    settings = Settings(data_dir=tmp_path / "empty", model_dirs=(webui / "models",))
    assert files(settings) == [(webui / "styles.csv").resolve()]
    assert sorted(load(settings)) == ["night", "sharp"]
    bare = Settings(data_dir=tmp_path / "empty")
    with pytest.raises(InvalidRequest, match="no styles.csv"):
        sdcpp_service.apply_styles("a", "", ["night"], settings=bare)


def test_generate_unknown_style_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["generate", "a fox", "-m", "x", "--style", "nope"])
    assert result.exit_code != 0 and "nope" in result.output
    assert "Traceback" not in result.output


@pytest.mark.engine
def test_generate_with_style(tmp_path: Path, kit: Kit) -> None:
    (tmp_path / "data-dir").mkdir()
    (tmp_path / "data-dir" / "styles.csv").write_text(CSV, encoding="utf-8")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "sdxs.safetensors").symlink_to(kit.path("sdxs"))
    args = ["generate", "a fox", "-m", "sdxs", "--style", "night", "-o", "fox.png"]
    args += ["-W", "64", "-H", "64", "--steps", "1", "--seed", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "fox.png") as image:
        text = image.info["parameters"]
    assert text.startswith("a fox at night, stars\nNegative prompt: sunny\n")
