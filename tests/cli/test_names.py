"""Issue 12 item 7: catalog names wherever a model is taken, close matches of the right kind,
skipped files counted by ``models list``, ``--kind`` checked."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from sdcpp_service.cli import app
from tests.models import layouts as L
from tests.models.corpus import write_safetensors
from tests.synth.kit import Kit

runner = CliRunner()


def _folder(root: Path) -> None:
    write_safetensors(root / "flux1-dev.safetensors", L.flux())
    write_safetensors(root / "ae.safetensors", L.kl_vae(16))
    write_safetensors(root / "clip_l.safetensors", L.clip_text(768))
    write_safetensors(root / "unet.safetensors", L.unet(768))  # unsupported: no text encoder
    (root / "junk.safetensors").write_bytes(b"junk")


def one_error_line(result: object) -> str:
    err: str = result.stderr  # type: ignore[attr-defined]
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in result.output  # type: ignore[attr-defined]
    return err


def test_inspect_and_hash_take_catalog_names(tmp_path: Path) -> None:
    _folder(tmp_path / "models")
    result = runner.invoke(app, ["models", "inspect", "flux1-dev", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert Path(data["path"]) == tmp_path / "models" / "flux1-dev.safetensors"
    assert data["kind"] == "model"
    result = runner.invoke(app, ["models", "hash", "ae", "--json"])
    assert result.exit_code == 0, result.output
    ae = (tmp_path / "models" / "ae.safetensors").read_bytes()
    assert json.loads(result.stdout)[0]["sha256"] == hashlib.sha256(ae).hexdigest()
    bad = runner.invoke(app, ["models", "inspect", "flux1-devv"])
    assert bad.exit_code == 2
    assert "did you mean flux1-dev?" in one_error_line(bad)
    missing = runner.invoke(app, ["models", "hash", "ae", "nowhere/x.safetensors"])
    assert missing.exit_code == 2 and missing.stdout == ""  # checked before any is hashed
    assert "no such file either" in one_error_line(missing)


def test_list_says_what_it_skipped_and_checks_the_kind(tmp_path: Path) -> None:
    _folder(tmp_path / "models")
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    assert "junk" not in result.stdout and "unet" not in result.stdout
    note = result.stderr.strip()
    assert note.startswith("skipped 2 files: 1 unreadable (") and note.endswith("--all lists them")
    assert "1 unsupported (a UNet without its text encoder" in note
    every = runner.invoke(app, ["models", "list", "--all"])
    assert "junk" in every.stdout and "unet" in every.stdout and "skipped" not in every.stderr
    vaes = runner.invoke(app, ["models", "list", "--kind", "vae"])
    assert vaes.stdout.split() == ["vae", "ae", "flux"] and vaes.stderr == ""
    bad = runner.invoke(app, ["models", "list", "--kind", "loras"])
    assert bad.exit_code == 2
    err = one_error_line(bad)
    assert "unknown kind 'loras'; did you mean lora?" in err
    assert "model, vae, taesd, text_encoder, lora" in err


def test_component_names_close_matches_of_their_kind(tmp_path: Path) -> None:
    _folder(tmp_path / "models")
    write_safetensors(tmp_path / "models" / "t5xxl.safetensors", L.t5(32128))
    typo = runner.invoke(app, ["models", "plan", "flux1-dev", "--vae", "aee"])
    assert typo.exit_code == 2
    err = one_error_line(typo)
    assert "unknown vae 'aee'; did you mean ae? (known: ae)" in err  # only the VAEs
    other = runner.invoke(app, ["models", "plan", "flux1-dev", "--vae", "clip_l"])
    assert (
        other.exit_code == 4
        and "is a clip_l text_encoder; flux (dev) needs a vae" in one_error_line(other)
    )


def _noise(path: Path, size: tuple[int, int]) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def test_upscale_builtin_and_named_models(kit: Kit, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    os.symlink(kit.path("esrgan_x4"), models / "esrgan_x4_nearest.safetensors")
    _noise(tmp_path / "a.png", (8, 6))
    result = runner.invoke(app, ["upscale", "a.png", "-m", "lanczos", "-o", "l.png"])
    assert result.exit_code == 0, result.output
    with Image.open("l.png") as im:
        assert im.size == (16, 12)
        assert "Postprocess upscale by: 2, Postprocess upscaler: Lanczos" in im.text["parameters"]
    with Image.open("a.png") as src:
        expected = src.resize((24, 18), Image.Resampling.NEAREST)
    result = runner.invoke(app, ["upscale", "a.png", "-m", "Nearest", "-s", "3", "-o", "n.png"])
    assert result.exit_code == 0, result.output
    with Image.open("n.png") as im:
        assert im.convert("RGB").tobytes() == expected.tobytes()
    typo = runner.invoke(app, ["upscale", "a.png", "-m", "esrgan_x4_nearst"])
    err = one_error_line(typo)
    assert "did you mean esrgan_x4_nearest?" in err and "lanczos, nearest" in err


@pytest.mark.engine
def test_upscale_by_catalog_name_runs_the_engine(kit: Kit, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    os.symlink(kit.path("esrgan_x4"), models / "esrgan_x4_nearest.safetensors")
    _noise(tmp_path / "a.png", (8, 6))
    result = runner.invoke(app, ["upscale", "a.png", "-m", "esrgan_x4_nearest", "-o", "e.png"])
    assert result.exit_code == 0, result.output
    with Image.open("a.png") as src, Image.open("e.png") as out:
        assert out.tobytes() == src.resize((32, 24), Image.Resampling.NEAREST).tobytes()


@pytest.mark.engine
def test_convert_and_verify_with_take_catalog_names(kit: Kit, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    os.symlink(kit.path("taesd"), models / "taesd.safetensors")
    os.symlink(kit.path("sdxs"), models / "sdxs.safetensors")
    result = runner.invoke(
        app,
        ["convert", "taesd", "-o", str(tmp_path / "out"), "--type", "f16", "--verify",
         "--verify-with", "sdxs", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)
    assert Path(done["output"]).is_file() and done["verified"]
    assert Path(done["source"]).name == "taesd.safetensors"
    typo = runner.invoke(app, ["convert", "taesd", "--verify", "--verify-with", "vae=sdxss"])
    err = one_error_line(typo)
    assert "unknown --verify-with vae 'sdxss'" in err  # a vae slot: only VAEs are offered
    assert "did you mean" not in err
    unknown = runner.invoke(app, ["convert", "tasd", "--plan"])
    assert "did you mean taesd?" in one_error_line(unknown)
