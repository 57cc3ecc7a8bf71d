"""Issue 12 item 9: ``--version``, the engine's identity in ``info``, a closed pipe."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sdcpp_service._version import VENDORED_ENGINE, __version__, engine_identity
from sdcpp_service.cli import app
from tests.synth.kit import Kit

runner = CliRunner()


def test_version_prints_package_bindings_and_engine() -> None:
    bindings = metadata.version("stable-diffusion-cpp-python")
    proc = subprocess.run(
        [sys.executable, "-m", "sdcpp_service", "--version"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith(
        f"sdcpp-service {__version__} (stable-diffusion-cpp-python {bindings}"
    )
    if bindings in VENDORED_ENGINE:
        assert f"stable-diffusion.cpp {VENDORED_ENGINE[bindings][0]})" in proc.stdout
    assert runner.invoke(app, ["--version"]).stdout == proc.stdout


def test_engine_identity_prefers_the_library_then_the_bindings_package() -> None:
    own = engine_identity("master-700-abcdef0", "abcdef0", "0.4.7")
    assert own == {"engine_version": "master-700-abcdef0", "engine_commit": "abcdef0",
                   "engine_source": "library"}  # fmt: skip
    vendored = engine_identity("unknown", "unknown", "0.4.7")
    assert (vendored["engine_version"], vendored["engine_commit"]) == VENDORED_ENGINE["0.4.7"]
    assert vendored["engine_source"] == "stable-diffusion-cpp-python 0.4.7 package"
    assert engine_identity("unknown", "unknown", "9.9.9")["engine_commit"] == "unknown"


@pytest.mark.engine
def test_info_names_the_engine_commit() -> None:
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["engine_commit"] != "unknown" and data["engine_version"] != "unknown"
    text = runner.invoke(app, ["info"]).stdout
    assert f"(commit {data['engine_commit']}" in text


def test_plan_into_a_closed_pipe_ends_quietly(kit: Kit, tmp_path: Path) -> None:
    """`sdcpp convert … --plan | head -1`: no BrokenPipeError, no 'Exception ignored'."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sdcpp_service", "convert", str(kit.path("sdxs")), "--plan"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does after one line
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert b"sdxs" in first
    assert err == ""


@pytest.mark.engine
def test_no_t5_runs_flux_without_its_t5(kit: Kit, tmp_path: Path) -> None:
    """`--no-t5`: Flux (and SD3) run with T5's context zeroed, as `t5xxl=False` does in the
    library; without it, a missing T5 is one line that names the switch."""
    import os

    models = tmp_path / "models"
    models.mkdir()
    for path in kit.files("flux").values():
        os.symlink(path, models / path.name)
    args = ["generate", "a fox", "-m", "flux_tiny_dit", "-W", "16", "-H", "16", "--steps", "1"]
    missing = runner.invoke(app, [*args, "-o", "a.png"])
    assert missing.exit_code == 4
    assert missing.stderr.count("\n") == 1 and "needs a t5xxl" in missing.stderr
    assert missing.stderr.rstrip().endswith("or add --no-t5 to run without it")
    ok = runner.invoke(app, [*args, "--no-t5", "-o", "a.png", "--json"])
    assert ok.exit_code == 0, ok.output
    from PIL import Image

    with Image.open(tmp_path / "a.png") as image:
        assert image.size == (16, 16) and "Model: flux_tiny_dit" in image.info["parameters"]
    both = runner.invoke(app, [*args, "--no-t5", "--t5xxl", "t5.safetensors"])
    assert both.exit_code == 2 and "contradict" in both.stderr
