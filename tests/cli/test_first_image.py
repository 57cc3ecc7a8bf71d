"""Item 1 of the first hour: a recipe's name is a model name, ``generate -m sd-turbo --pull``
fetches it, and a failed pull leaves no empty ./models. The Hub is mocked at huggingface_hub's
download functions; the image is made by the real engine on the kit's SDXS file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from sdcpp_service.cli import app
from sdcpp_service.config import Settings
from sdcpp_service.errors import ModelError
from sdcpp_service.models import pull, scan
from sdcpp_service.models.recipes import RECIPES
from tests.models import layouts as L
from tests.models.corpus import write_safetensors
from tests.synth.kit import Kit

runner = CliRunner()


class FakeHubDownloads:
    """Stands in for huggingface_hub's HEAD and download: serves files from a dict of paths."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, files: dict[str, Path]) -> None:
        import huggingface_hub

        self.files = files
        self.calls: list[str] = []
        monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", self.metadata)
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", self.download)

    def metadata(self, url: str, **_: Any) -> None:
        from huggingface_hub.errors import EntryNotFoundError

        if not any(url.endswith(name) for name in self.files):
            raise EntryNotFoundError(f"404: {url}")

    def download(self, repo: str, file: str, *, local_dir: Path, **_: Any) -> str:
        self.calls.append(f"{repo}/{file}")
        dest = Path(local_dir) / file
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(self.files[file], dest)  # a kit file stands in for the real weights
        return str(dest)


def test_recipe_name_is_a_model_name(tmp_path: Path) -> None:
    """After a pull the main file answers to the recipe's name (and a hand-downloaded one too)."""
    write_safetensors(tmp_path / "models" / "sd_turbo.safetensors", L.flux(guidance=False))
    catalog = scan(Settings.from_env())
    assert catalog.find("sd-turbo").name == "sd_turbo"
    assert catalog.find("SD-Turbo").name == "sd_turbo"  # names are not case-sensitive
    for name, files in RECIPES.items():
        assert files and files[0].local_name, name


def test_unknown_name_suggests_close_matches(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "models" / "flux1-dev.safetensors", L.flux(guidance=True))
    result = runner.invoke(app, ["models", "plan", "flux1-deb"])
    assert result.exit_code == 2
    assert "did you mean flux1-dev?" in result.stderr
    assert result.stderr.count("\n") == 1


def test_failed_pull_leaves_no_empty_models_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeHubDownloads(monkeypatch, {})  # every file is missing
    with pytest.raises(ModelError, match="no such file"):
        pull("sd-turbo", settings=Settings.from_env())
    assert not (tmp_path / "models").exists()
    result = runner.invoke(app, ["pull", "sd-turbo"])
    assert result.exit_code == 4 and result.stderr.startswith("error: ")
    assert not (tmp_path / "models").exists()


def test_generate_without_the_model_says_how_to_get_it(tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", "a lighthouse", "-m", "sd-turbo"])
    assert result.exit_code == 2
    assert "`sdcpp pull sd-turbo`" in result.stderr and "--pull" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "models").exists()


@pytest.mark.engine
def test_first_image_is_one_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kit: Kit
) -> None:
    hub = FakeHubDownloads(monkeypatch, {"sd_turbo.safetensors": kit.path("sdxs")})
    args = ["generate", "a lighthouse at dawn", "-m", "sd-turbo", "-o", "lighthouse.png",
            "-W", "64", "-H", "64", "--steps", "1", "--seed", "3", "--json"]  # fmt: skip
    result = runner.invoke(app, [*args, "--pull"])
    assert result.exit_code == 0, result.output
    assert hub.calls == ["stabilityai/sd-turbo/sd_turbo.safetensors"]
    assert (tmp_path / "models" / "sd_turbo.safetensors").is_symlink()
    record = json.loads(result.stdout.strip().splitlines()[-1])
    with Image.open(record["path"]) as image:
        assert image.size == (64, 64)
        assert "Model: sd_turbo" in image.info["parameters"]
    # The second time the model is there: no download, the name still works.
    again = runner.invoke(app, [*args[:5], "again.png", *args[6:]])
    assert again.exit_code == 0, again.output
    assert len(hub.calls) == 1
