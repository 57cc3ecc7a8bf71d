"""Infotext hashes off the job's path (issue 19): a server worker writes only hashes already
cached; the service hashes each job's files in the background, at idle priority."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from sdcpp_service.config import Settings
from sdcpp_service.engine.base import engine_job
from sdcpp_service.server.engine import PipelineEngine
from sdcpp_service.server.hashing import _lowest_priority
from sdcpp_service.server.models import HashCache
from tests.server.conftest import MakeClient
from tests.synth.kit import Kit


def _known(cache: HashCache, path: Path, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = cache.known(path)
        if found is not None:
            return found
        time.sleep(0.02)
    raise AssertionError(f"{path} was never hashed")


def test_a_jobs_model_and_loras_are_hashed_in_the_background(
    make_client: MakeClient, model_dir: Path
) -> None:
    client = make_client()
    svc = client.app.state.service  # type: ignore[attr-defined]
    alpha = model_dir / "checkpoints" / "alpha.safetensors"
    lora = model_dir / "loras" / "style.safetensors"
    assert svc.hashes.known(alpha) is None and svc.hashes.known(lora) is None
    job = {"prompt": "p <lora:style:0.5>", "model": "alpha", "width": 64, "height": 64}
    assert client.post("/api/v1/jobs", json=job).status_code == 202
    for path in (alpha, lora):
        assert _known(svc.hashes, path) == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_the_hashing_thread_runs_at_the_lowest_priority() -> None:
    seen: list[int] = []

    def probe() -> None:
        _lowest_priority()
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    assert seen == [19] and os.getpriority(os.PRIO_PROCESS, 0) < 19  # this thread untouched


@pytest.mark.engine
def test_the_worker_writes_only_known_hashes(kit: Kit, tmp_path: Path) -> None:
    """The first image of a model nobody hashed yet has no ``Model hash`` (nothing waited for
    it); once the cache has it, the next image carries it."""
    settings = Settings(data_dir=tmp_path / "data", model_dirs=(tmp_path,), threads=2)
    engine = PipelineEngine(settings)
    model = str(kit.path("sdxs"))
    params = {"prompt": "a fox", "width": 64, "height": 64, "steps": 1, "seed": 1}
    job = engine_job("j1", "txt2img", model, {}, params)
    try:
        first = engine.run(job, lambda p: None).infotexts[0]
        assert "Model hash" not in first and "Model: sdxs" in first
        cache = HashCache(settings)
        digest = cache.sha256(model)  # what the background hasher stores
        second = engine.run(job, lambda p: None).infotexts[0]
        assert f"Model hash: {digest[:10]}" in second
    finally:
        engine.unload()
