"""The server's model index (issue 19): the folders are scanned once per generation (a file
added, removed, renamed or rewritten), not on every request."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sdcpp_service.config import Settings
from sdcpp_service.errors import UnknownName
from sdcpp_service.server import models
from tests.server.conftest import MakeClient


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    counted: list[int] = []
    real = models.scan

    def counting(settings: Settings) -> list[models.ModelEntry]:
        counted.append(1)
        return real(settings)

    monkeypatch.setattr(models, "scan", counting)
    return counted


def test_resolution_is_cached_per_generation(
    tmp_path: Path, model_dir: Path, scans: list[int]
) -> None:
    index = models.ModelIndex(Settings(data_dir=tmp_path / "data", model_dirs=(model_dir,)))
    alpha = index.resolve("alpha")
    assert index.resolve("alpha") is alpha and index.resolve("alpha.safetensors").name == "alpha"
    assert index.name_of(str(alpha.path)) == "alpha" and len(scans) == 1 and index.number == 1
    with pytest.raises(UnknownName):
        index.resolve("gamma")
    ckpts = model_dir / "checkpoints"
    shutil.copy(ckpts / "alpha.safetensors", ckpts / "gamma.safetensors")  # a new file
    assert index.resolve("gamma").path == ckpts / "gamma.safetensors" and len(scans) == 2
    (ckpts / "gamma.safetensors").unlink()  # removed: no longer offered
    with pytest.raises(UnknownName):
        index.resolve("gamma")
    assert len(scans) == 3
    st = os.stat(ckpts / "alpha.safetensors")  # rewritten in place: its entry is read again
    os.utime(ckpts / "alpha.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = index.resolve("alpha")
    assert again is not alpha and again.mtime != alpha.mtime and len(scans) == 4


def test_jobs_do_not_rescan_the_folders(make_client: MakeClient, scans: list[int]) -> None:
    client = make_client()
    job = {"prompt": "p", "model": "alpha", "width": 64, "height": 64, "steps": 1}
    for _ in range(2):
        client.post("/api/v1/jobs", json=job).raise_for_status()  # warms the index
    before = len(scans)
    for _ in range(3):
        reply = client.post("/api/v1/jobs", json=job)
        assert reply.status_code == 202, reply.text
        client.get(f"/api/v1/jobs/{reply.json()['id']}").raise_for_status()
    assert len(scans) == before
