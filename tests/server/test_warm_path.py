"""The warm server's path outside the engine (issue 19): the PNG level it writes at, and model
headers read once per file version rather than once per request."""

from __future__ import annotations

import base64
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from sdcpp_service.config import Settings
from sdcpp_service.models import headers, inspect
from sdcpp_service.models.inspect import _INSPECTED
from sdcpp_service.server.app import create_app
from sdcpp_service.server.options import ServerOptions
from tests.engine.test_png_level import zlib_flevel
from tests.models.corpus import write_safetensors
from tests.synth.kit import Kit


@pytest.mark.engine
@pytest.mark.parametrize("level, flevel", [(1, 0), (9, 3)])
def test_server_writes_pngs_at_its_png_level(
    kit: Kit, tmp_path: Path, level: int, flevel: int
) -> None:
    """The worker writes the job's PNG at ``Settings.png_level`` (SDCPP_PNG_LEVEL), the file
    and the A1111 answer alike (it used PIL's level 6 whatever the setting said)."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "sdxs.safetensors").symlink_to(kit.path("sdxs"))
    settings = Settings(data_dir=tmp_path / "data", model_dirs=(models,), threads=2)
    app = create_app(replace(settings, png_level=level), options=ServerOptions(preload="sdxs"))
    with TestClient(app) as client:
        body = {"prompt": "a fox", "width": 64, "height": 64, "steps": 1, "seed": 1}
        r = client.post("/sdapi/v1/txt2img", json=body)
        assert r.status_code == 200, r.text
        sent = tmp_path / "sent.png"
        sent.write_bytes(base64.b64decode(r.json()["images"][0]))
        assert zlib_flevel(sent) == flevel
        (stored,) = (settings.data_dir / "outputs").glob("*.png")
        assert zlib_flevel(stored) == flevel


def _old(path: Path) -> None:
    """Date the file back past the settling time (a file just written is never remembered)."""
    past = time.time() - 10 * headers.SETTLED_SECONDS
    os.utime(path, (past, past))


def test_header_read_once_per_file_version(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m.safetensors", {"a": ((4, 4), "F32")})
    _old(path)
    first = headers.read_header(path)
    assert headers.read_header(path) is first  # the same version: from memory
    # rewritten in place (same inode), a different tensor: read again
    write_safetensors(path, {"b": ((2, 8), "F32")})
    _old(path)
    again = headers.read_header(path)
    assert again is not first and set(again.tensors) == {"b"}


def test_fresh_files_and_errors_are_not_remembered(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m.safetensors", {"a": ((4, 4), "F32")})
    assert headers.read_header(path) is not headers.read_header(path)  # modified a moment ago
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    _old(bad)
    for _ in range(2):
        with pytest.raises(Exception, match="not valid JSON|truncated"):
            headers.read_header(bad)


def test_inspect_remembers_the_kit_model(kit: Kit) -> None:
    path = kit.path("sdxs")
    _INSPECTED.clear()
    first = inspect(path)
    assert inspect(path) is first and first.kind == "model"
