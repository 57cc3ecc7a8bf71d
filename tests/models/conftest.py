from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Caches (hashes, catalog) go to a per-test data dir, never the user's."""
    data = tmp_path / "data-dir"
    monkeypatch.setenv("SDCPP_DATA_DIR", str(data))
    monkeypatch.delenv("SDCPP_MODELS", raising=False)
    monkeypatch.chdir(tmp_path)  # ./models (a default root) is the test's, not the repo's
    return data
