"""The sidecar's source hash: computed beside the engine at idle priority, and finished by
``result()`` itself whatever the background thread managed (a busy machine may starve it)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sdcpp_service.config import Settings
from sdcpp_service.convert.meta import Hasher
from sdcpp_service.models import hash_file


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", model_dirs=())


def source(tmp_path: Path, size: int, name: str = "m.safetensors") -> Any:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return SimpleNamespace(path=path, vae=None)


def test_result_takes_over_a_thread_that_never_ran(tmp_path: Path, settings: Settings) -> None:
    src = source(tmp_path, 3 * 1024 * 1024 + 5)
    hasher = Hasher(src, settings)
    hasher.WINDOW = 1024 * 1024  # type: ignore[misc]
    # never started: the extreme of a starved idle-priority thread
    want = hashlib.sha256(src.path.read_bytes()).hexdigest()
    assert hasher.result() == {str(src.path): want}
    assert hash_file(src.path, settings).cached  # and it is cached for the next conversion


def test_result_carries_on_from_the_threads_window(tmp_path: Path, settings: Settings) -> None:
    src = source(tmp_path, 8 * 1024 * 1024 + 1)
    vae = source(tmp_path, 1000, "vae.safetensors").path
    src.vae = vae
    hasher = Hasher(src, settings)
    hasher.WINDOW = 64 * 1024  # type: ignore[misc]
    hasher.start()
    deadline = time.monotonic() + 30
    while hasher._current is None and not hasher.hashes and time.monotonic() < deadline:
        time.sleep(0.001)
    got = hasher.result()  # takes over mid-file (or later): same digests either way
    assert got == {
        str(src.path): hashlib.sha256(src.path.read_bytes()).hexdigest(),
        str(vae): hashlib.sha256(vae.read_bytes()).hexdigest(),
    }


def test_unreadable_source_is_a_warning_not_a_failure(
    tmp_path: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    src = source(tmp_path, 10)
    hasher = Hasher(src, settings)
    src.path.unlink()  # gone before hashing: the sidecar goes without its hash
    hasher.start()
    assert hasher.result() == {}
    assert "could not hash the source" in caplog.text
