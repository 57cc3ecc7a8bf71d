"""Item 5 of the first hour: Ctrl-C (a real SIGINT to a real ``sdcpp`` process) stops the
engine mid-run, writes nothing and exits 130 — no ctypes "Exception ignored" noise, no run to
completion."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.synth.kit import Kit

pytestmark = pytest.mark.engine


def sdcpp(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "SDCPP_DATA_DIR": str(cwd / "data")}
    return subprocess.Popen(
        [sys.executable, "-m", "sdcpp_service", *args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def interrupt_after(proc: subprocess.Popen[str], marker: str) -> tuple[int, str, str]:
    """Wait for ``marker`` on stderr (the engine is busy then), send SIGINT, collect."""
    assert proc.stderr is not None
    seen: list[str] = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith(marker):
            break
    else:
        proc.wait(timeout=60)
        raise AssertionError(f"never saw {marker!r}: {''.join(seen)}")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, "".join(seen) + err


def test_ctrl_c_stops_generate(tmp_path: Path, kit: Kit) -> None:
    model = str(kit.path("sdxs"))
    proc = sdcpp("generate", "a fox", "-m", model, "-W", "128", "-H", "128", "--steps", "400",
                 "-o", "fox.png", cwd=tmp_path)  # fmt: skip
    code, out, err = interrupt_after(proc, "sampling")
    assert code == 130, err
    assert err.rstrip().endswith("error: interrupted")
    assert "Exception ignored" not in err and "Traceback" not in err
    assert out == ""
    assert [p.name for p in tmp_path.iterdir() if p.name != "data"] == []  # no .incomplete


def test_ctrl_c_stops_upscale(tmp_path: Path, kit: Kit) -> None:
    Image.new("RGB", (1024, 1024), (10, 200, 30)).save(tmp_path / "big.png")
    proc = sdcpp("upscale", "big.png", "-m", str(kit.path("esrgan_x4")), "--tile", "64",
                 cwd=tmp_path)  # fmt: skip
    code, out, err = interrupt_after(proc, "upscaling")
    assert code == 130, err
    assert "Exception ignored" not in err and "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir() if p.name != "data"] == ["big.png"]


def test_ctrl_c_stops_video(tmp_path: Path, kit: Kit) -> None:
    wan = kit.files("wan21")
    proc = sdcpp("video", "a fox", "-m", str(wan["diffusion_model"]), "--vae", str(wan["vae"]),
                 "--no-text-encoder", "-W", "16", "-H", "16", "--frames", "5", "--steps", "400",
                 "--cfg", "1", "-o", "fox.mp4", cwd=tmp_path)  # fmt: skip
    code, out, err = interrupt_after(proc, "sampling")
    assert code == 130, err
    assert "Exception ignored" not in err and "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir() if p.name != "data"] == []
