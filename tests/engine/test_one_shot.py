"""One-shot contexts (sd-cli's ``free_params_immediately`` and ``vae_decode_only``) on the kit:
the same pixels as a warm pipeline, exactly one generation, a clear error past it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sdcpp_service import InvalidRequest, Pipeline
from sdcpp_service.config import Settings
from sdcpp_service.engine.generate import encodes
from sdcpp_service.errors import EngineError
from tests.synth.kit import Kit

pytestmark = pytest.mark.engine

SMALL: dict[str, Any] = {"width": 64, "height": 64, "steps": 2, "seed": 11}


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and bool(np.array_equal(np.asarray(a), np.asarray(b)))


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("oneshot")
    return Settings(data_dir=root / "data", model_dirs=(root,), threads=2)


@pytest.fixture(scope="module")
def warm(kit: Kit, settings: Settings) -> Any:
    with Pipeline.load(kit.path("sdxs"), settings=settings) as pipe:
        yield pipe


def test_one_shot_gives_the_warm_pixels_once(kit: Kit, settings: Settings, warm: Any) -> None:
    expected = warm.generate("a fox", **SMALL)[0]
    assert same(warm.generate("a fox", **SMALL)[0], expected)  # the warm one keeps its weights
    with Pipeline.load(
        kit.path("sdxs"), settings=settings, one_shot=True, vae_decode_only=True
    ) as pipe:
        assert pipe.context.single_use
        assert same(pipe.generate("a fox", **SMALL)[0], expected)
        with pytest.raises(EngineError, match="one generation"):
            pipe.generate("a fox", **SMALL)


def test_one_shot_img2img_keeps_the_encoder(kit: Kit, settings: Settings, warm: Any) -> None:
    red = Image.new("RGB", (64, 64), (220, 30, 30))
    expected = warm.generate("x", init_image=red, strength=0.5, **SMALL)[0]
    with Pipeline.load(kit.path("sdxs"), settings=settings, one_shot=True) as pipe:
        assert same(pipe.generate("x", init_image=red, strength=0.5, **SMALL)[0], expected)


def test_decode_only_refuses_what_needs_the_encoder(kit: Kit, settings: Settings) -> None:
    red = Image.new("RGB", (64, 64), (220, 30, 30))
    with Pipeline.load(kit.path("sdxs"), settings=settings, vae_decode_only=True) as pipe:
        with pytest.raises(InvalidRequest, match="vae_decode_only") as err:
            pipe.generate("x", init_image=red, strength=0.5, **SMALL)
        assert err.value.field == "init_image"
        # refused before the engine ran: the context is still usable
        assert pipe.generate("x", **SMALL)[0].size == (64, 64)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, False),
        ({"init_image": object()}, True),
        ({"ref_images": [object()]}, True),
        ({"ref_images": []}, False),
        ({"hires": True}, False),  # latent upscale: stays in latent space
        ({"hires": True, "hires_upscaler": "latent (bicubic)"}, False),
        ({"hires": True, "hires_upscaler": "lanczos"}, True),
        ({"hires": True, "hires_model": "esrgan.pth"}, True),
        ({"hires": False, "hires_upscaler": "lanczos"}, False),
    ],
)
def test_encodes_follows_sd_cli(fields: dict[str, Any], expected: bool) -> None:
    assert encodes(fields) is expected


def test_cli_generate_and_img2img_run_one_shot(
    kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warm: Any
) -> None:
    from sdcpp_service.cli import app
    from sdcpp_service.engine import context

    made: list[tuple[bool, bool]] = []
    real = context.Context.__init__

    def spy(self: Any, options: Any, threads: int, single_use: bool = False) -> None:
        made.append((single_use, options.vae_decode_only))
        real(self, options, threads, single_use)

    monkeypatch.setattr(context.Context, "__init__", spy)
    monkeypatch.setenv("SDCPP_DATA_DIR", str(tmp_path / "data"))
    base = ["-m", str(kit.path("sdxs")), "-W", "64", "-H", "64", "--steps", "2", "--seed", "11"]
    out = tmp_path / "t.png"
    result = CliRunner().invoke(app, ["generate", "a fox", *base, "-o", str(out)])
    assert result.exit_code == 0, result.output
    Image.new("RGB", (64, 64), (220, 30, 30)).save(tmp_path / "red.png")
    out2 = tmp_path / "i.png"
    args = ["generate", "x", *base, "-i", str(tmp_path / "red.png"), "-o", str(out2)]
    result = CliRunner().invoke(app, [*args, "--strength", "0.5"])
    assert result.exit_code == 0, result.output
    assert made == [(True, True), (True, False)]
    with Image.open(out) as im:
        assert same(im.convert("RGB"), warm.generate("a fox", **SMALL)[0])


def test_a_one_shot_generate_loads_nothing_it_does_not_use(kit: Kit, tmp_path: Path) -> None:
    """Every module resident in a one-shot process counts against its peak beside sd-cli's:
    ``sdcpp generate`` on the real engine imports neither OpenSSL (``hashlib``, 3 MiB resident;
    only the first use of a model file hashes it, for the infotext) nor the server, queue or
    download stacks."""
    import os
    import subprocess
    import sys

    out = tmp_path / "o.png"
    probe = (
        "import sys\n"
        "from sdcpp_service.cli import main\n"
        f"sys.argv = ['sdcpp', 'generate', 'a fox', '-m', {str(kit.path('sdxs'))!r}, '-W', '64',"
        f" '-H', '64', '--steps', '1', '-o', {str(out)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = {'_hashlib', 'ssl', 'numpy', 'starlette', 'uvicorn', 'httpx', 'procrastinate',"
        " 'psycopg', 'huggingface_hub', 'gguf', 'av', 'rich'}\n"
        "print('LOADED', sorted(heavy & set(sys.modules)))\n"
    )
    env = {**os.environ, "SDCPP_DATA_DIR": str(tmp_path / "data")}
    loaded = []
    for _ in range(2):  # the first run hashes the model file and caches its hash
        out.unlink(missing_ok=True)
        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert out.is_file()
        loaded.append(done.stdout.rsplit("LOADED ", 1)[-1].strip())
    assert loaded == ["['_hashlib']", "[]"]
