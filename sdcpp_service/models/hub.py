"""Pull model files from the Hugging Face Hub into the model folder, then say what they are.

``pull("city96/FLUX.1-schnell-gguf", ["flux1-schnell-Q4_0.gguf"])`` or ``pull("flux1-schnell")``
(a recipe: a model and every component it needs). Files land flat in the first model folder
(``./models`` by default); huggingface-hub downloads to ``*.incomplete`` and renames, and the
file is then moved into place with ``os.replace``, so a model folder never holds half a file.
``HF_ENDPOINT`` (a mirror, or a test server) and ``HF_TOKEN`` are honoured by huggingface-hub.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdcpp_service.config import Settings
from sdcpp_service.errors import InvalidRequest, ModelError
from sdcpp_service.models.inspect import ModelInfo, inspect
from sdcpp_service.models.recipes import RECIPES, Fetch, recipe_of

#: How the CLI spells the pull command (used in MissingComponent hints).
PULL_COMMAND = "sdcpp pull"


@dataclass(frozen=True)
class Pulled:
    """One file fetched (or already present): where it is and what it turned out to be."""

    repo: str
    file: str
    path: str
    downloaded: bool
    info: ModelInfo | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "file": self.file,
            "path": self.path,
            "downloaded": self.downloaded,
            "error": self.error,
            "info": None if self.info is None else self.info.to_dict(),
        }


def _targets(repo_or_recipe: str, files: Sequence[str]) -> tuple[Fetch, ...]:
    if files:
        return tuple(Fetch(repo_or_recipe, f) for f in files)
    recipe = recipe_of(repo_or_recipe)
    if recipe is not None:
        return RECIPES[recipe]
    raise InvalidRequest(
        "model",
        f"'{repo_or_recipe}' is not a recipe ({', '.join(RECIPES)}); "
        "to pull from a repository name its files: REPO FILE…",
    )


_OFFLINE = (
    "cannot reach the Hugging Face Hub (offline, or HF_HUB_OFFLINE is set); "
    "download the file elsewhere and put it in the model folder"
)


def _download(repo: str, file: str, staging: Path, endpoint: str | None) -> Path:
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub import errors as hf

    where = f"{repo}/{file}"
    if constants.is_offline_mode():
        raise ModelError(where, _OFFLINE)
    try:
        # One HEAD without retries first: fails fast when offline or when the file is missing
        # (the download itself retries connection errors with back-off for ~20 s).
        get_hf_file_metadata(hf_hub_url(repo, file, endpoint=endpoint), endpoint=endpoint)
        return Path(hf_hub_download(repo, file, local_dir=staging, endpoint=endpoint))
    except (hf.OfflineModeIsEnabled, hf.LocalEntryNotFoundError):
        raise ModelError(where, _OFFLINE) from None
    except hf.GatedRepoError:
        raise ModelError(
            where, "gated repository: accept its license on the Hub and set HF_TOKEN"
        ) from None
    except hf.RepositoryNotFoundError:
        raise ModelError(
            where, "no such repository on the Hub (or it is private: set HF_TOKEN)"
        ) from None
    except (hf.EntryNotFoundError, hf.RevisionNotFoundError):
        raise ModelError(where, "no such file in that repository") from None
    except hf.HfHubHTTPError as exc:
        raise ModelError(where, f"download failed: {exc}".splitlines()[0]) from None
    except Exception as exc:  # the HTTP client's connection errors (httpx, requests…)
        raise ModelError(where, f"{_OFFLINE} ({type(exc).__name__})") from None


def pull(
    repo_or_recipe: str,
    files: Sequence[str] = (),
    settings: Settings | None = None,
    *,
    dest: str | Path | None = None,
    endpoint: str | None = None,
    force: bool = False,
) -> list[Pulled]:
    """Fetch files (or a recipe's files) into ``dest`` (default: the first model folder)."""
    settings = settings or Settings.from_env()
    targets = _targets(repo_or_recipe, files)
    folder = Path(dest) if dest is not None else settings.model_dirs[0]
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / ".sdcpp-pull"
    results: list[Pulled] = []
    try:
        for fetch in targets:
            target = folder / fetch.local_name
            downloaded = force or not target.exists()
            if downloaded:
                os.replace(_download(fetch.repo, fetch.file, staging, endpoint), target)
            try:
                info, error = inspect(target), None
            except ModelError as exc:
                info, error = None, exc.reason
            results.append(Pulled(fetch.repo, fetch.file, str(target), downloaded, info, error))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for made in created:  # a failed first pull leaves no empty ./models behind
            try:
                made.rmdir()
            except OSError:
                break
    return results
