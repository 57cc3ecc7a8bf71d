"""Issue 12 item 9: PhotoMaker's ID images (``--photo-maker FILE --pm-id-images DIR
--pm-style-strength N``) on the CLI, the library and the native API, into the engine's
``pm_params``. The kit has no SDXL, so the model checks run on header-only files (a real header,
no weights) and the engine's own structure is filled and read back; nothing generates."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image
from starlette.testclient import TestClient
from typer.testing import CliRunner

from sdcpp_service.cli import app
from sdcpp_service.config import Settings
from sdcpp_service.engine import photomaker
from sdcpp_service.errors import InvalidRequest, UnsupportedModel
from sdcpp_service.models.addons import check_photo_maker
from sdcpp_service.models.loadplan import plan_model
from sdcpp_service.server.app import create_app
from sdcpp_service.types import GenerateRequest, LoadOptions
from tests.fakes import FakeEngine
from tests.models import layouts as L
from tests.models.corpus import write_safetensors, write_torch_zip

P = L.prefixed
SD1 = {
    **P("model.diffusion_model.", L.unet(768)),
    **P("first_stage_model.", L.kl_vae(4)),
    **P("cond_stage_model.transformer.", L.clip_text(768)),
}
SDXL = {
    **P("model.diffusion_model.", L.unet(2048, xl=True)),
    **P("first_stage_model.", L.kl_vae(4)),
    **P("conditioner.embedders.0.transformer.", L.clip_text(768)),
    **P("conditioner.embedders.1.", L.open_clip_text(1280)),
}


@pytest.fixture
def models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_safetensors(root / "checkpoints" / "sdxl.safetensors", SDXL)
    write_safetensors(root / "checkpoints" / "sd1.safetensors", SD1)
    write_torch_zip(root / "photomaker" / "photomaker-v1.bin", L.photomaker())
    write_torch_zip(root / "photomaker" / "photomaker-v2.bin", L.photomaker(v2=True))
    write_torch_zip(root / "photomaker" / "pm_new.bin", L.photomaker(v2=True))  # v2, no "v2"
    ids = tmp_path / "ids"
    ids.mkdir()
    for i, color in enumerate(((200, 150, 120), (190, 140, 110))):
        Image.new("RGB", (48, 64), color).save(ids / f"face{i}.png")
    (ids / "notes.txt").write_text("not an image")
    return root


def test_check_photo_maker_reads_both_headers(models: Path) -> None:
    pm = models / "photomaker"
    check_photo_maker(models / "checkpoints" / "sdxl.safetensors", pm / "photomaker-v1.bin")
    check_photo_maker(models / "checkpoints" / "sdxl.safetensors", pm / "photomaker-v2.bin")
    with pytest.raises(UnsupportedModel, match=r"PhotoMaker for SDXL; sd1.safetensors is sd1"):
        check_photo_maker(models / "checkpoints" / "sd1.safetensors", pm / "photomaker-v1.bin")
    with pytest.raises(UnsupportedModel, match=r"name contains 'v2'"):
        check_photo_maker(models / "checkpoints" / "sdxl.safetensors", pm / "pm_new.bin")
    with pytest.raises(UnsupportedModel, match=r"not a PhotoMaker"):
        check_photo_maker(
            models / "checkpoints" / "sdxl.safetensors", models / "checkpoints" / "sd1.safetensors"
        )


def test_library_plans_photo_maker_into_its_slot(models: Path) -> None:
    settings = Settings(model_dirs=(models,), data_dir=models.parent / "data")
    options, _ = plan_model("sdxl", settings, photo_maker="photomaker-v1")
    assert Path(options.photo_maker).name == "photomaker-v1.bin"
    with pytest.raises(UnsupportedModel, match="use an SDXL model"):
        plan_model("sd1", settings, photo_maker="photomaker-v1")


def test_requests_are_checked_before_the_engine(models: Path) -> None:
    opts = LoadOptions(model="sdxl.safetensors", photo_maker="photomaker-v1.bin")
    face = [Image.new("RGB", (8, 8))]
    photomaker.validate(opts, GenerateRequest("a photo of a man img", pm_id_images=face))
    for req, field in (
        (GenerateRequest("a photo of a man img"), "pm_id_images"),
        (GenerateRequest("a photo of a man", pm_id_images=face), "prompt"),
        (
            GenerateRequest("a man img", pm_id_images=face, pm_style_strength=101),
            "pm_style_strength",
        ),
    ):
        with pytest.raises(InvalidRequest) as err:
            photomaker.validate(opts, req)
        assert err.value.field == field
    v2 = LoadOptions(model="sdxl.safetensors", photo_maker="photomaker-v2.bin")
    with pytest.raises(InvalidRequest, match="face_detect.py") as err:
        photomaker.validate(v2, GenerateRequest("a man img", pm_id_images=face))
    with pytest.raises(InvalidRequest, match="need a PhotoMaker model"):
        photomaker.validate(LoadOptions(model="x"), GenerateRequest("a", pm_id_images=face))
    assert [p.name for p in photomaker.id_images([models.parent / "ids"])] == [
        "face0.png",
        "face1.png",
    ]


@pytest.mark.engine
def test_pm_params_are_filled_in_the_engines_struct(tmp_path: Path) -> None:
    """The bindings' own ``sd_img_gen_params_t``: what the engine will read."""
    from sdcpp_service.engine.runtime import runtime

    lib = runtime().native.lib
    params = lib.sd_img_gen_params_t()
    embed = tmp_path / "id_embeds.safetensors"
    embed.write_bytes(b"x")
    faces = [Image.new("RGB", (48, 64), (200, 150, 120)), Image.new("L", (32, 32), 90)]
    req = GenerateRequest("a man img", pm_id_images=faces, pm_id_embed=str(embed),
                          pm_style_strength=35.0)  # fmt: skip
    keep: list[object] = []
    photomaker.to_c(req, params, lib, keep)
    pm = params.pm_params
    assert pm.id_images_count == 2 and pm.style_strength == pytest.approx(35.0)
    assert pm.id_embed_path == str(embed).encode()
    shots = [
        (pm.id_images[i].width, pm.id_images[i].height, pm.id_images[i].channel) for i in range(2)
    ]
    assert shots == [(48, 64, 3), (32, 32, 3)]
    assert bytes(pm.id_images[0].data[:3]) == bytes((200, 150, 120))


def test_cli_flags_reach_the_checks(
    models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # ./models
    monkeypatch.setenv("SDCPP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SDCPP_MODELS", raising=False)
    runner = CliRunner()
    base = ["generate", "a photo of a man img", "-W", "64", "-H", "64", "--steps", "1"]
    wrong = runner.invoke(app, [*base, "-m", "sd1", "--photo-maker", str(models / "photomaker" / "photomaker-v1.bin"),
                                "--pm-id-images", str(tmp_path / "ids"), "--pm-style-strength", "30"])  # fmt: skip
    assert wrong.exit_code == 4, wrong.output
    assert (
        wrong.stderr.count("\n") == 1
        and "is a PhotoMaker for SDXL; sd1.safetensors" in wrong.stderr
    )
    strength = runner.invoke(app, [*base, "-m", "sdxl", "--pm-style-strength", "500"])
    assert strength.exit_code == 2 and "--pm-style-strength" in strength.output  # typer's box


def test_native_api_takes_photo_maker_and_id_images(models: Path, tmp_path: Path) -> None:
    png = io.BytesIO()
    Image.new("RGB", (48, 64), (200, 150, 120)).save(png, "PNG")
    face = base64.b64encode(png.getvalue()).decode()
    settings = Settings(data_dir=tmp_path / "data", model_dirs=(models,))
    engine = FakeEngine()
    with TestClient(create_app(settings, engine)) as client:
        body = {"prompt": "a photo of a man img", "model": "sdxl", "width": 64, "height": 64,
                "steps": 1, "photo_maker": "photomaker-v1", "pm_id_images": [face, face],
                "pm_style_strength": 30}  # fmt: skip
        ok = client.post("/api/v1/jobs", json=body)
        assert ok.status_code in (200, 201, 202), ok.text
        bad = client.post("/api/v1/jobs", json={**body, "model": "sd1"}).json()["error"]
        assert "photo_maker" in bad["fields"] and "SDXL" in bad["fields"]["photo_maker"]
        bad = client.post("/api/v1/jobs", json={**body, "prompt": "a man"}).json()["error"]
        assert "trigger word 'img'" in bad["fields"]["prompt"]
        bad = client.post("/api/v1/jobs", json={**body, "pm_id_images": []}).json()["error"]
        assert "pm_id_images" in bad["fields"]
        bad = client.post("/api/v1/jobs", json={**body, "pm_style_strength": 500}).json()["error"]
        assert "pm_style_strength" in bad["fields"]
