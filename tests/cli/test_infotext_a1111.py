"""Item 6 of the first hour: the infotext as A1111 writes it, through the real engine (SDXS):
LoRA tags stay in the prompt, ``Lora hashes`` names what the user typed (not a symlink's
target), a repeated LoRA is an error, hires fix records the base size and its own fields."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sdcpp_service import InvalidRequest, Pipeline
from sdcpp_service.cli import app
from sdcpp_service.config import Settings
from sdcpp_service.engine.images import parse_infotext
from sdcpp_service.models import hash_file
from tests.synth.kit import Kit

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def home(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("infotext")
    (root / "models" / "loras").mkdir(parents=True)
    (root / "models" / "sdxs.safetensors").symlink_to(kit.path("sdxs"))
    (root / "models" / "loras" / "detail.safetensors").symlink_to(kit.path("lora_sd1"))
    return root


@pytest.fixture(scope="module")
def pipe(home: Path) -> Iterator[Pipeline]:
    settings = Settings(data_dir=home / "data", model_dirs=(home / "models",), threads=2)
    with Pipeline.load("sdxs", settings=settings) as p:
        yield p


def test_lora_tags_and_names(pipe: Pipeline, kit: Kit) -> None:
    short = hash_file(kit.path("lora_sd1"), pipe.settings).short
    image = pipe.generate("a fox <lora:detail:0.6>", width=64, height=64, steps=1, seed=1)[0]
    fields = parse_infotext(image.info["parameters"])
    assert fields["Prompt"] == "a fox <lora:detail:0.6>"
    assert fields["Lora hashes"] == f"detail: {short}"  # not lora_sd1, the link's target
    listed = pipe.generate("a fox", loras=["detail:0.6"], width=64, height=64, steps=1, seed=1)[0]
    assert parse_infotext(listed.info["parameters"])["Prompt"] == "a fox <lora:detail:0.6>"
    with pytest.raises(InvalidRequest, match="'detail' is given twice"):
        pipe.request("a fox <lora:detail:0.5>", loras=["detail:0.6"])


def test_repeated_lora_on_the_cli_is_one_line(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDCPP_MODELS", str(home / "models"))
    monkeypatch.setenv("SDCPP_DATA_DIR", str(home / "data"))
    monkeypatch.chdir(home)
    result = CliRunner().invoke(
        app, ["generate", "x", "-m", "sdxs", "--lora", "detail", "--lora", "detail", "-o", "x.png"]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: lora: 'detail' is given twice")
    assert result.stderr.count("\n") == 1 and not (home / "x.png").exists()


def test_hires_records_base_size_and_hires_fields(pipe: Pipeline) -> None:
    image = pipe.generate(
        "x", width=64, height=64, steps=1, seed=1, hires=True, hires_scale=2.0, hires_denoise=0.6
    )[0]
    assert image.size == (128, 128)
    fields = parse_infotext(image.info["parameters"])
    assert fields["Size"] == "64x64"
    assert (fields["Hires upscale"], fields["Hires steps"]) == ("2", "1")
    assert (fields["Hires upscaler"], fields["Denoising strength"]) == ("Latent", "0.6")
