"""Item 3 of the first hour: with no -W/-H, img2img and inpaint run at the init image's size
(rounded to the model's multiple) in the library, the CLI and every server dialect."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from starlette.testclient import TestClient
from typer.testing import CliRunner

from sdcpp_service import Pipeline
from sdcpp_service.cli import app
from sdcpp_service.config import Settings
from sdcpp_service.engine.images import size_for_image
from sdcpp_service.server.app import create_app
from sdcpp_service.server.options import ServerOptions
from tests.server.test_native import wait_done
from tests.synth.kit import Kit

runner = CliRunner()


def png(size: tuple[int, int], colour: tuple[int, int, int] = (200, 60, 20)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def test_size_rule() -> None:
    assert size_for_image((64, 64), 64) == (64, 64)
    assert size_for_image((100, 40), 64) == (128, 64)  # nearest multiple, at least one
    assert size_for_image((100, 40), 16) == (96, 48)
    assert size_for_image((640, 480), 64, width=256) == (256, 192)  # aspect kept
    assert size_for_image((640, 480), 64, height=64) == (64, 64)
    assert size_for_image((640, 480), 64, 320, 320) == (320, 320)  # given sizes stay


@pytest.fixture(scope="module")
def home(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("init-size")
    (root / "models").mkdir()
    (root / "models" / "sdxs.safetensors").symlink_to(kit.path("sdxs"))
    (root / "wide.png").write_bytes(png((128, 64)))
    (root / "mask.png").write_bytes(png((128, 64), (255, 255, 255)))
    return root


@pytest.mark.engine
def test_library_and_cli_follow_the_init_image(home: Path) -> None:
    settings = Settings(data_dir=home / "data", model_dirs=(home / "models",), threads=2)
    with Pipeline.load("sdxs", settings=settings) as pipe:
        out = pipe.generate("oil", init_image=home / "wide.png", strength=0.5, steps=1)[0]
        assert out.size == (128, 64)
        assert "Size: 128x64" in out.info["parameters"]
        tall = pipe.generate("oil", init_image=png((40, 100)), steps=1, height=128)[0]
        assert tall.size == (64, 128)
    for cmd, extra in (("img2img", []), ("inpaint", ["--mask", str(home / "mask.png")])):
        dest = home / f"{cmd}.png"
        result = runner.invoke(
            app,
            [
                cmd,
                "oil",
                "-m",
                str(home / "models" / "sdxs.safetensors"),
                "--init-image",
                str(home / "wide.png"),
                *extra,
                "--steps",
                "1",
                "-o",
                str(dest),
            ],  # fmt: skip
        )
        assert result.exit_code == 0, result.output
        with Image.open(dest) as image:
            assert image.size == (128, 64), cmd


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=home / "srv", model_dirs=(home / "models",), threads=2)
    app_ = create_app(settings, options=ServerOptions(preload="sdxs"))
    with TestClient(app_, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.engine
def test_every_server_door_follows_the_init_image(client: TestClient) -> None:
    init = base64.b64encode(png((128, 64))).decode()
    r = client.post(
        "/api/v1/jobs",
        json={"kind": "img2img", "prompt": "oil", "init_image": init, "steps": 1, "seed": 1},
    )
    assert r.status_code == 202, r.text
    job = wait_done(client, r.json()["id"], timeout=300)
    assert job["status"] == "completed", job
    native = Image.open(io.BytesIO(client.get(job["outputs"][0]["url"]).content))
    assert native.size == (128, 64)

    r = client.post(
        "/sdapi/v1/img2img",
        json={"init_images": [init], "prompt": "oil", "steps": 1, "denoising_strength": 0.5},
    )
    assert r.status_code == 200, r.text
    a1111 = Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))
    assert a1111.size == (128, 64)
    assert json.loads(r.json()["info"])["width"] == 128

    r = client.post(
        "/v1/images/edits",
        data={"prompt": "oil", "steps": "1"},
        files={"image": ("in.png", png((128, 64)), "image/png")},
    )
    assert r.status_code == 200, r.text
    edit = Image.open(io.BytesIO(base64.b64decode(r.json()["data"][0]["b64_json"])))
    assert edit.size == (128, 64)


@pytest.mark.engine
def test_openai_webp_and_jpeg_carry_the_infotext(client: TestClient) -> None:
    for fmt in ("webp", "jpeg"):
        r = client.post(
            "/v1/images/generations",
            json={"prompt": "a lighthouse", "size": "64x64", "steps": 1, "output_format": fmt},
        )
        assert r.status_code == 200, r.text
        image = Image.open(io.BytesIO(base64.b64decode(r.json()["data"][0]["b64_json"])))
        assert image.format == fmt.upper()
        text = image.getexif().get(0x9286)
        assert isinstance(text, str) and text.startswith("a lighthouse\nSteps: 1,"), fmt
