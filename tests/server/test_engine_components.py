"""A model that needs components (Flux: a VAE, CLIP-L, T5-XXL) through the real engine: refused
at submission while the model folder lacks them (422 naming each with its ``sdcpp pull``
command), run once they are there (the kit's Flux has no T5-XXL: ``"t5xxl": false``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from sdcpp_service.config import Settings
from sdcpp_service.server.app import create_app
from tests.server.test_native import wait_done
from tests.synth.kit import Kit

pytestmark = pytest.mark.engine


def _place(path: Path, folder: Path) -> None:
    """A component slot takes only files inside the model folders: a hard link (or a copy)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.link(path, folder / path.name)
    except OSError:  # another filesystem
        shutil.copyfile(path, folder / path.name)


def test_flux_refused_until_its_components_are_there(kit: Kit, tmp_path: Path) -> None:
    flux = kit.files("flux")
    models = tmp_path / "models"
    (models / "diffusion_models").mkdir(parents=True)
    (models / "diffusion_models" / flux["diffusion_model"].name).symlink_to(flux["diffusion_model"])
    body = {"model": flux["diffusion_model"].stem, "prompt": "a fox", "width": 16,
            "height": 16, "steps": 1, "cfg_scale": 1.0, "seed": 5}  # fmt: skip
    settings = Settings(data_dir=tmp_path / "data", model_dirs=(models,), threads=2)
    with TestClient(create_app(settings)) as client:
        r = client.post("/api/v1/jobs", json=body)
        assert r.status_code == 422, r.text
        fields = r.json()["error"]["fields"]
        assert set(fields) == {"vae", "clip_l", "t5xxl"}
        assert "sdcpp pull black-forest-labs/FLUX.1-schnell ae.safetensors" in fields["vae"]
        assert client.get("/api/v1/jobs").json()["jobs"] == []
        _place(flux["vae"], models / "vae")
        _place(flux["clip_l"], models / "text_encoders")
        r = client.post("/api/v1/jobs", json=body)
        assert r.status_code == 422 and set(r.json()["error"]["fields"]) == {"t5xxl"}
        r = client.post("/api/v1/jobs", json={**body, "t5xxl": False})
        assert r.status_code == 202, r.text
        job = wait_done(client, r.json()["id"], timeout=300)
        assert job["status"] == "completed", job
        assert "Model: " + flux["diffusion_model"].stem in job["outputs"][0]["infotext"]
