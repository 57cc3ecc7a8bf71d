from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test runs in its own folder: ./models, the data dir and outputs are the test's."""
    monkeypatch.setenv("SDCPP_DATA_DIR", str(tmp_path / "data-dir"))
    monkeypatch.delenv("SDCPP_MODELS", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path
