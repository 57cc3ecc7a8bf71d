"""Shared fixtures: the synthetic model kit and engine log capture (see tests/README.md)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.synth.enginelog import EngineLog
from tests.synth.kit import Kit


@pytest.fixture(scope="session")
def kit() -> Kit:
    """Synthetic models, generated lazily on first use into ``$SDCPP_KIT_DIR`` (or
    ``~/.cache/sdcpp-service/kit``) and reused across sessions: ``kit.path("sdxs")``,
    ``kit.files("flux")["vae"]``, ``kit.engine_kwargs("flux2_klein")``."""
    return Kit()


@pytest.fixture
def engine_log() -> Iterator[EngineLog]:
    """Every stable-diffusion.cpp log line emitted during the test."""
    log = EngineLog().install()
    try:
        yield log
    finally:
        log.uninstall()
