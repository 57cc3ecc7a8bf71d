"""``sdcpp upscale --fit`` on the kit's ESRGAN: the tile is chosen from the measured cost
(≈ 26.6 KB per tile pixel) so the upscale fits the budget; peak RSS measured from outside."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from sdcpp_service.cli import app
from sdcpp_service.errors import DoesNotFit
from sdcpp_service.fit import Budget, UpscaleJob, estimate
from sdcpp_service.fit.choose import choose_tile
from tests.fit.test_fit_engine import _peak_rss
from tests.synth.kit import Kit

pytestmark = pytest.mark.engine
MiB = 2**20


def test_the_tile_is_chosen_to_fit_and_the_peak_stays_under(kit: Kit, tmp_path: Path) -> None:
    esrgan = str(kit.path("esrgan_x4"))
    Image.new("RGB", (160, 160), (90, 120, 200)).save(tmp_path / "in.png")
    default = estimate({"upscaler": esrgan}, UpscaleJob(160, 160, 128))
    budget = Budget(300 * MiB)
    assert default.peak_ram_bytes > budget.ram_bytes  # tile 128 needs ~450 MiB
    tile, est = choose_tile(esrgan, 160, 160, budget)
    assert tile == 96 and est.peak_ram_bytes <= budget.ram_bytes
    job = ["upscale", "in.png", "-m", esrgan, "--max-memory", "300M"]
    code, err, fitted = _peak_rss([*job, "-o", "fit.png"], tmp_path)
    assert code == 0, err
    assert re.search(r"fit: tile 96: peak RAM \d\.\d\d GiB \(upscale\) for 160x160", err), err
    assert fitted <= budget.ram_bytes, fitted / MiB
    code, err, plain = _peak_rss([*job, "--no-fit", "-o", "plain.png"], tmp_path)
    assert code == 0 and "fit:" not in err
    assert plain > budget.ram_bytes, plain / MiB
    with Image.open(tmp_path / "fit.png") as a, Image.open(tmp_path / "plain.png") as b:
        assert a.size == (640, 640) and a.tobytes() == b.tobytes()  # tiles do not change pixels


def test_a_fixed_tile_is_checked_and_nothing_fitting_is_refused(kit: Kit, tmp_path: Path) -> None:
    esrgan = str(kit.path("esrgan_x4"))
    Image.new("RGB", (64, 64)).save(tmp_path / "in.png")
    with pytest.raises(DoesNotFit, match="tile 128"):  # set by the user: checked, not lowered
        choose_tile(esrgan, 160, 160, Budget(300 * MiB), tile=128)
    result = CliRunner().invoke(app, ["upscale", str(tmp_path / "in.png"), "-m", esrgan,
                                      "--max-memory", "20M", "-o", str(tmp_path / "x.png")])  # fmt: skip
    assert result.exit_code == 9, result.output
    assert result.stderr.startswith("error: needs at least ") and "tile 32" in result.stderr
    assert not (tmp_path / "x.png").exists()
