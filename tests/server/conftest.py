"""Fixtures: a service app on the fake engine (fast), in a temporary data dir and model folder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from sdcpp_service.config import Settings
from sdcpp_service.server.app import create_app
from sdcpp_service.server.options import ServerOptions
from tests.fakes import FakeEngine
from tests.models import layouts as L
from tests.models.corpus import write_safetensors

MakeClient = Callable[..., TestClient]


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model folder with two SD1 checkpoints, a VAE, a LoRA and an ESRGAN: real tensor names and shapes
    in header-only files (the catalog detects them; the fake engine reads none)."""
    root = tmp_path / "models"
    sd1 = {
        **L.prefixed("model.diffusion_model.", L.unet(768)),
        **L.prefixed("cond_stage_model.transformer.", L.clip_text(768)),
    }
    write_safetensors(root / "checkpoints" / "alpha.safetensors", sd1)
    write_safetensors(root / "checkpoints" / "sub" / "beta.safetensors", sd1)
    write_safetensors(root / "vae" / "myvae.safetensors", L.kl_vae(4))
    write_safetensors(root / "loras" / "style.safetensors", L.kohya_lora(768))
    write_safetensors(root / "upscale_models" / "4x_test.safetensors", L.esrgan(up=2))
    return root


def write_wan(model_dir: Path, name: str = "wan_t2v") -> Path:
    """A Wan 2.1 T2V DiT with the Wan VAE and umT5 it needs (header only; the fake reads none)."""
    path = model_dir / "diffusion_models" / f"{name}.safetensors"
    write_safetensors(path, L.wan(1536, 16))
    write_safetensors(model_dir / "vae" / "wan_2.1_vae.safetensors", L.wan_vae(16))
    write_safetensors(model_dir / "text_encoders" / "umt5.safetensors", L.t5(256384, umt5=True))
    return path


@pytest.fixture
def make_client(tmp_path: Path, model_dir: Path) -> Iterator[MakeClient]:
    """``make_client(step_seconds=0.0, **ServerOptions)`` → a started TestClient (closed after)."""
    clients: list[TestClient] = []

    def make(step_seconds: float = 0.0, data: str = "data", **options: object) -> TestClient:
        settings = Settings(data_dir=tmp_path / data, model_dirs=(model_dir,), threads=1)
        app = create_app(
            settings,
            FakeEngine(step_seconds=step_seconds),
            ServerOptions(worker_start_timeout=60, **options),  # type: ignore[arg-type]
        )
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in reversed(clients):
            client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    return make_client()
