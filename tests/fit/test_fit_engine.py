"""``sdcpp_service.fit`` against the real engine on the kit: weights as the engine counts them,
a job that only fits with the chosen switches (peak RSS measured from outside), refusals."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sdcpp_service.cli import app
from sdcpp_service.fit import Budget, Switches, choose, estimate
from sdcpp_service.fit.weights import file_weights
from sdcpp_service.types import GenerateRequest
from tests.synth.kit import Kit

pytestmark = pytest.mark.engine
MiB = 2**20
#: The engine's runner names → our components.
RUNNERS = {"clip": "text_encoders", "unet": "diffusion_model", "taesd": "vae", "vae": "vae"}
PARAMS = re.compile(r"(\w+) params backend buffer size =\s*([\d.]+) MB")


@pytest.mark.parametrize("name", ["sdxs", "sd1"])
def test_header_weights_are_what_the_engine_allocates(
    kit: Kit, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    import sdcpp_service

    caplog.set_level(logging.DEBUG, logger="sdcpp_service.engine")
    with sdcpp_service.Pipeline.load(kit.path(name)):
        pass
    engine = {RUNNERS[m[1]]: float(m[2]) * MiB for m in PARAMS.finditer(caplog.text)}
    ours = file_weights(kit.path(name), "model").components
    assert set(engine) == set(ours)
    for comp, size in engine.items():
        assert abs(ours[comp] - size) / size < 0.005, (comp, ours[comp], size)


# The peak is measured by a small middle process: a child started straight from pytest (vfork
# + exec) inherits pytest's own high-water RSS in ru_maxrss, which after a few engine tests in the
# same session is gigabytes, so it would hide the child's real peak.
_MEASURE = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024)
"""


def _peak_rss(args: list[str], cwd: Path) -> tuple[int, str, int]:
    """Run ``sdcpp ARGS`` in a fresh process: exit code, stderr, peak RSS bytes (wait4)."""
    cmd = [sys.executable, "-c", _MEASURE, sys.executable, "-m", "sdcpp_service", *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "SDCPP_THREADS": "2"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    code, peak = (int(word) for word in proc.stdout.split())
    return code, proc.stderr, peak


def test_chosen_switches_make_a_job_fit_where_the_defaults_do_not(kit: Kit, tmp_path: Path) -> None:
    """`sdcpp generate` runs one shot (each stage's weights freed when done): at 768² SDXS peaks
    in the untiled decode, above 1050 MiB; with the VAE tiled the peak is the sampling phase."""
    model = kit.path("sdxs")
    budget = Budget(1050 * MiB)
    request = GenerateRequest("a fox", width=768, height=768)
    plan = {"model": str(model)}
    assert estimate(plan, request, Switches(), one_shot=True).peak_ram_bytes > budget.ram_bytes
    assert choose(plan, request, budget, one_shot=True).changed == ("vae_tiling",)
    job = ["generate", "a fox", "-m", str(model), "-W", "768", "-H", "768", "--steps", "1"]
    code, err, fitted = _peak_rss([*job, "--max-memory", "1050M", "-o", "fit.png"], tmp_path)
    assert code == 0, err
    assert "fit: turned on vae_tiling: peak RAM" in err
    assert fitted <= budget.ram_bytes, (fitted / MiB, err)
    code, err, plain = _peak_rss([*job, "--max-memory", "1050M", "--no-fit", "-o", "x.png"],
                                 tmp_path)  # fmt: skip
    assert code == 0, err
    assert "fit:" not in err
    assert plain > budget.ram_bytes, plain / MiB
    assert (tmp_path / "fit.png").is_file() and (tmp_path / "x.png").is_file()


def test_a_job_that_cannot_fit_is_refused_before_any_load(
    kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sdcpp_service.engine import context

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("the engine was asked to load")

    monkeypatch.setattr(context.Context, "__init__", no_load)
    out = tmp_path / "never.png"
    result = CliRunner().invoke(app, ["generate", "a fox", "-m", str(kit.path("sdxs")),
                                      "--max-memory", "600M", "-o", str(out)])  # fmt: skip
    assert result.exit_code == 9, result.output
    assert re.fullmatch(
        r"error: needs at least \d+\.\d\d GiB of RAM (with [a-z_, ]+ )?\(estimated\); the budget is "
        r"0\.59 GiB \(--max-memory\); try a smaller size, or a quantized model "
        r"\(sdcpp convert \S+ --type q4_0\)\n",
        result.stderr,
    ), result.stderr
    assert not out.exists()


def test_models_plan_prints_the_estimate(kit: Kit) -> None:
    import json

    model = str(kit.path("sdxs"))
    result = CliRunner().invoke(app, ["models", "plan", model, "--size", "256x256", "--batch", "2",
                                      "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    est = data["estimate"]
    assert est["peak_ram_bytes"] == sum(est["phases"][est["peak_phase"]]["ram"].values())
    assert est["peak_device_bytes"] == 0 and est["measured"] is True
    # as `sdcpp generate` runs it: by the decode, the text encoder and UNet weights are freed
    decode = set(est["phases"]["decode"]["ram"])
    assert est["one_shot"] is True and {"runtime", "vae", "images"} <= decode
    assert not decode & {"diffusion_model", "text_encoders"}
    assert data["fit"]["fits"] is True and data["slots"]["model_path"] == model
    served = CliRunner().invoke(app, ["models", "plan", model, "--size", "256x256", "--json",
                                      "--server"])  # fmt: skip
    warm = json.loads(served.stdout)["estimate"]
    assert warm["one_shot"] is False and warm["peak_ram_bytes"] > est["peak_ram_bytes"]
    assert set(warm["phases"]["decode"]["ram"]) >= {"diffusion_model", "vae", "text_encoders"}
    text = CliRunner().invoke(app, ["models", "plan", model, "--size", "512x512", "--server",
                                    "--max-memory", "1200M"])  # fmt: skip
    assert text.exit_code == 0, text.output
    assert "estimate: peak RAM" in text.stdout and "fit: vae_tiling (budget 1.17 GiB RAM)" in (
        text.stdout
    )
    bad = CliRunner().invoke(app, ["models", "plan", model, "--size", "big"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: size: 'big' is not WIDTHxHEIGHT")


def test_an_unmeasured_family_is_a_labelled_guess(kit: Kit) -> None:
    """Wan has no measured buffers: the estimate says so, and --fit refuses only on weights."""
    from sdcpp_service.errors import DoesNotFit
    from sdcpp_service.types import VideoRequest

    files = kit.files("wan21")
    plan = {"diffusion_model": str(files["diffusion_model"]), "vae": str(files["vae"])}
    request = VideoRequest("a fox", width=64, height=64, frames=5)
    est = estimate(plan, request)
    assert not est.measured and est.notes[0].startswith("no measured compute costs for wan2")
    size = files["diffusion_model"].stat().st_size  # a Q4_0 GGUF: its weights are the file
    assert abs(est.weights["diffusion_model"] - size) / size < 0.001
    certain = sum(est.ram["load"].values())  # runtime + weights, read off the headers
    guessed = choose(plan, request, Budget(certain + 1))
    assert "a guess above" in guessed.line()
    with pytest.raises(DoesNotFit):
        choose(plan, request, Budget(certain - 1))
