"""Item 10 of the first hour: progress that means something, through the real engine (SDXS with
a LoRA): LoRA loading is reported as such (not as sampling steps, no absurd ETA), a preview comes
every ``preview_interval`` steps, and without a terminal the CLI prints one line per stage."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sdcpp_service import Pipeline, Progress
from sdcpp_service.cli import app
from sdcpp_service.config import Settings
from tests.synth.kit import Kit

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def pipe(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), model_dirs=(), threads=2)
    with Pipeline.load(kit.path("sdxs"), settings=settings) as p:
        yield p


def test_stages_and_preview_interval(pipe: Pipeline, kit: Kit) -> None:
    lora = f"{kit.path('lora_sd1')}:0.5"
    for interval in (2, 3):
        seen: list[Progress] = []
        pipe.generate("a fox", width=64, height=64, steps=6, loras=[lora], preview="proj",
                      preview_interval=interval, progress=seen.append)  # fmt: skip
        stages = list(dict.fromkeys(p.phase for p in seen))
        assert stages == ["loading LoRA", "sampling", "preview"]
        loading = [p for p in seen if p.phase == "loading LoRA"]
        assert {p.total for p in loading} == {84}  # the LoRA's tensors, not sampling steps
        assert all(p.eta == 0.0 for p in loading if p.step == 0)  # no elapsed / 1e-6 s
        assert {p.total for p in seen if p.phase == "sampling"} == {6}
        assert [p.step for p in seen if p.phase == "preview"] == list(range(interval, 7, interval))
        first_sampling = next(i for i, p in enumerate(seen) if p.phase == "sampling")
        assert all(p.phase != "loading LoRA" for p in seen[first_sampling:])


def test_cli_prints_a_line_per_stage_without_a_terminal(
    kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SDCPP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    args = f"generate 'a fox' -m {kit.path('sdxs')} --lora {kit.path('lora_sd1')} -W 64 -H 64"
    result = CliRunner().invoke(app, [*shlex.split(args), "--steps", "3", "-o", "fox.png"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == ["loading LoRA…", "sampling: 3 steps"]
    assert result.stdout.startswith("fox.png  seed ") and result.stdout.count("\n") == 1
    quiet = CliRunner().invoke(app, [*shlex.split(args), "--steps", "1", "--json"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == "" and quiet.stdout.startswith("{")  # --json: JSON lines only
