"""The README, pasted: every ``sdcpp`` line of its bash snippets parses against the real CLI
(every option exists, every value has the right type), the first-hour lines run for real on the
kit (in a folder whose models carry the README's names), and every python snippet runs as
written.

The one deviation from "as pasted" is size: the README's 512×512 / 20-step examples take minutes
per image on two cores, so while they run here each request is shrunk to at most 64×64 and
2 steps after it was built (names, files, options and outputs are all the README's).
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from sdcpp_service.cli import app
from sdcpp_service.engine.pipeline import Pipeline
from tests.models import layouts as L
from tests.models.corpus import write_safetensors
from tests.synth.kit import Kit

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"```(bash|python)\n(.*?)```", re.S)

#: README lines that run for real on the kit (the rest are parsed only: they need models the kit
#: has no stand-in for under that name — Flux with T5, Wan, SDXL — a server, or the network).
RUN = (
    'sdcpp pull sd-turbo',
    'sdcpp generate "a lighthouse at dawn" -m sd-turbo -o lighthouse.png',
    'sdcpp --version',
    'sdcpp info',
    'sdcpp info --json',
    'sdcpp backend list',
    'sdcpp backend args cuda',
    'sdcpp generate "a fox in snow" -m sd15 -W 512 -H 512 --steps 20 --cfg 7 --seed 42 -o fox.png',
    'sdcpp generate "a fox" -m sd15 -n "blurry" --sampler "DPM++ 2M" --scheduler karras --batch 4',
    'sdcpp generate "a fox <lora:detail:0.6>" -m sd15',
    'sdcpp generate "a fox" -m sd15 --lora detail:0.6 --lora style',
    'sdcpp img2img "oil painting" -m sd15 --init-image photo.png --strength 0.6',
    'sdcpp generate "a castle" -m sd15 --hires --hires-scale 2 --hires-upscaler RealESRGAN_x4plus',
    'sdcpp generate "a fox" -m sd15 --json',
    'sdcpp upscale photo.png -m RealESRGAN_x4plus --scale 2',
    "sdcpp upscale shots/ 'more/*.jpg' -o big/ --tile 192",
    'sdcpp models list [--kind upscaler] [--json]',
    'sdcpp models hash sd15.safetensors',
    'sdcpp models inspect sd15',
    'sdcpp models hash sd15 RealESRGAN_x4plus',
    'sdcpp upscale photo.png -m lanczos -o photo-lanczos.png',
)  # fmt: skip


def snippets(kind: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README.read_text()) if lang == kind]


def commands() -> list[str]:
    """Every ``sdcpp …`` command of the bash snippets (continuations joined, ``&&`` split)."""
    out: list[str] = []
    for body in snippets("bash"):
        for line in body.replace("\\\n", " ").splitlines():
            for part in line.split(" && "):
                if part.strip().startswith("sdcpp "):
                    out.append(_strip(part))
    return out


def _strip(part: str) -> str:
    """The command without its trailing ``# comment``."""
    return re.split(r"\s+#", part.strip(), maxsplit=1)[0].strip()


def parse(args: list[str]) -> None:
    """Parse ``args`` as the real CLI would, down to the leaf command, without running it."""
    cmd: click.Command = typer.main.get_command(app)
    try:
        ctx = cmd.make_context("sdcpp", list(args))
    except typer.Exit as done:  # an eager option (--version) answered and exited
        assert done.exit_code == 0
        return
    while isinstance(cmd, click.Group):
        rest = [*ctx.protected_args, *ctx.args]
        name, sub, rest = cmd.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        cmd, ctx = sub, sub.make_context(name, rest, parent=ctx)


def optional_brackets(line: str) -> list[list[str]]:
    """``[--kind upscaler] [--json]`` (a usage line) → the line without and with each option."""
    optional = re.findall(r"\[([^\]]+)\]", line)
    base = re.sub(r"\s*\[[^\]]+\]", "", line)
    return [shlex.split(base)] + [shlex.split(base) + shlex.split(o) for o in optional]


@pytest.mark.parametrize("line", commands())
def test_every_sdcpp_line_parses(line: str) -> None:
    for args in optional_brackets(line):
        parse(args[1:])


def test_the_run_list_is_in_the_readme() -> None:
    assert set(RUN) <= set(commands()), set(RUN) - set(commands())


@pytest.fixture
def home(kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's folder: ./models with the kit under the README's names, a few images."""
    models = tmp_path / "models"
    for rel, (name, slot) in {
        "sd15.safetensors": ("sdxs", None),
        "sd_turbo.safetensors": ("sdxs", None),
        "loras/detail.safetensors": ("lora_sd1", None),
        "loras/style.safetensors": ("lora_sd1", None),
        "upscale_models/RealESRGAN_x4plus.safetensors": ("esrgan_x4", None),
    }.items():
        (models / rel).parent.mkdir(parents=True, exist_ok=True)
        (models / rel).symlink_to(kit.path(name, slot))
    # two different LoRA files: the same file under two names is a repeated LoRA (an error)
    (models / "loras/style.safetensors").unlink()
    shutil.copyfile(kit.path("lora_sd1"), models / "loras/style.safetensors")
    write_safetensors(models / "flux1-dev.safetensors", L.flux(guidance=True))
    (tmp_path / "sd15.safetensors").symlink_to(models / "sd15.safetensors")
    for rel in ("photo.png", "shots/a.png", "more/b.jpg"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        Image.new("RGB", (32, 24), (180, 90, 30)).save(tmp_path / rel)
    monkeypatch.setenv("SDCPP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SDCPP_MODELS", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Shrink every request after it is built (see the module docstring)."""
    build = Pipeline.request

    def request(self: Pipeline, prompt: str, **params: Any) -> Any:
        req = build(self, prompt, **params)
        req.width, req.height = min(req.width, 64), min(req.height, 64)
        req.steps = min(req.steps, 2)
        return req

    monkeypatch.setattr(Pipeline, "request", request)
    yield


@pytest.mark.engine
def test_first_hour_lines_run(home: Path, small: None) -> None:
    runner = CliRunner()
    for line in RUN:
        for args in optional_brackets(line):
            result = runner.invoke(app, args[1:])
            assert result.exit_code == 0, f"{line}\n{result.output}"
    with Image.open(home / "lighthouse.png") as image:
        assert "Model: sd_turbo" in image.info["parameters"]
    with Image.open(home / "fox.png") as image:
        assert "Seed: 42" in image.info["parameters"]
    assert (home / "photo-x2.png").is_file() and (home / "big" / "a-x4.png").is_file()
    assert (home / "big" / "b-x4.jpg").is_file()
    with Image.open(home / "photo-lanczos.png") as image:
        assert image.size == (64, 48)


@pytest.mark.engine
def test_python_snippets_run(home: Path, small: None) -> None:
    for body in snippets("python"):
        exec(compile(body, str(README), "exec"), {"__name__": "__readme__"})
    with Image.open(home / "out.png") as image:  # save() kept the infotext
        assert (
            "<lora:detail:0.5>" in image.info["parameters"]
            or "Lora hashes" in image.info["parameters"]
        )
