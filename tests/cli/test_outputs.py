"""Item 8 of the first hour: on success the engine's known-harmless fallback lines (ggml
refusing Wan's 5-D patch embedding before the engine's own loader reads it) are not shown, and
``--json`` prints JSON lines only; image outputs are covered in tests/engine/test_generate.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.synth.kit import Kit

pytestmark = pytest.mark.engine


def test_wan_video_shows_no_fallback_noise(tmp_path: Path, kit: Kit) -> None:
    wan = kit.files("wan21")
    cmd = [sys.executable, "-m", "sdcpp_service", "video", "a fox", "-m",
           str(wan["diffusion_model"]), "--vae", str(wan["vae"]), "--no-text-encoder", "-W", "16",
           "-H", "16", "--frames", "5", "--steps", "1", "--cfg", "1", "-o", "fox.webm", "--json"]  # fmt: skip
    env = {**os.environ, "SDCPP_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "invalid number of dimensions" not in done.stderr
    assert "failed to read tensor info" not in done.stderr
    assert [json.loads(line)["frames"] for line in done.stdout.splitlines()] == [5]
    assert (tmp_path / "fox.webm").is_file()
