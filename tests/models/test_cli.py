"""``sdcpp models inspect`` and ``sdcpp models hash``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from typer.testing import CliRunner

from sdcpp_service.cli import app
from tests.models import layouts as L
from tests.models.corpus import write_safetensors

runner = CliRunner()


def test_inspect_json(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "vae" / "sd15.safetensors", L.flux(guidance=False))
    result = runner.invoke(app, ["models", "inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["kind"], data["arch"], data["variant"]) == ("model", "flux", "schnell")
    assert data["slot"] == "diffusion_model_path"


def test_inspect_table(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "ae.safetensors", L.kl_vae(16))
    result = runner.invoke(app, ["models", "inspect", str(path)])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert lines["kind"] == "vae"
    assert lines["arch"] == "flux"
    assert lines["slot"] == "vae_path"
    assert lines["supported"] == "yes"


def test_inspect_unsupported_says_why(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "unet.safetensors", L.unet(768))
    result = runner.invoke(app, ["models", "inspect", str(path)])
    assert result.exit_code == 0
    assert "supported  no: a UNet without its text encoder" in result.stdout


def test_inspect_broken_file_is_one_error_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{bad")
    result = runner.invoke(app, ["models", "inspect", str(path)])
    assert result.exit_code == 4
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert result.stdout == ""


def test_hash(tmp_path: Path) -> None:
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"aaa")
    b.write_bytes(b"bbb")
    result = runner.invoke(app, ["models", "hash", str(a), str(b), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [d["sha256"] for d in data] == [hashlib.sha256(x).hexdigest() for x in (b"aaa", b"bbb")]
    assert data[0]["short"] == data[0]["sha256"][:10]
    again = runner.invoke(app, ["models", "hash", str(a)])
    assert again.stdout.split()[:2] == [hashlib.sha256(b"aaa").hexdigest(), f"[{data[0]['short']}]"]


def _folder(root: Path) -> None:
    write_safetensors(root / "flux1-dev.safetensors", L.flux())
    write_safetensors(root / "ae.safetensors", L.kl_vae(16))
    write_safetensors(root / "clip_l.safetensors", L.clip_text(768))
    (root / "junk.safetensors").write_bytes(b"junk")


def test_list(tmp_path: Path) -> None:
    _folder(tmp_path / "models")
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert {d["name"]: d["info"]["kind"] for d in json.loads(result.stdout)} == {
        "flux1-dev": "model", "ae": "vae", "clip_l": "text_encoder",
    }  # fmt: skip
    result = runner.invoke(app, ["models", "list", "--kind", "vae"])
    assert result.stdout.split() == ["vae", "ae", "flux"]
    result = runner.invoke(app, ["models", "list", "--all"])
    assert "junk" in result.stdout and "error:" in result.stdout


def test_plan(tmp_path: Path) -> None:
    _folder(tmp_path / "models")
    write_safetensors(tmp_path / "models" / "t5xxl.safetensors", L.t5(32128))
    result = runner.invoke(app, ["models", "plan", "flux1-dev", "--json"])
    assert result.exit_code == 0, result.output
    slots = json.loads(result.stdout)["slots"]
    assert {k: Path(v).name for k, v in slots.items()} == {
        "diffusion_model_path": "flux1-dev.safetensors", "vae_path": "ae.safetensors",
        "clip_l_path": "clip_l.safetensors", "t5xxl_path": "t5xxl.safetensors",
    }  # fmt: skip
    human = runner.invoke(app, ["models", "plan", "flux1-dev", "--t5xxl", "none"])
    assert human.exit_code == 0 and "t5xxl_path" not in human.stdout


def test_plan_missing_component_is_one_line_with_the_fix(tmp_path: Path) -> None:
    _folder(tmp_path / "models")
    result = runner.invoke(app, ["models", "plan", "flux1-dev"])
    assert result.exit_code == 4
    assert result.stderr.count("\n") == 1
    assert "needs a t5xxl" in result.stderr and "try: sdcpp pull" in result.stderr
