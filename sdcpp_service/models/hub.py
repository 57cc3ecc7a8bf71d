"""Pull model files from the Hugging Face Hub into the model folder, then say what they are.

``pull("city96/FLUX.1-schnell-gguf", ["flux1-schnell-Q4_0.gguf"])`` or ``pull("flux-schnell")``
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

#: How the CLI spells the pull command (used in MissingComponent hints).
PULL_COMMAND = "sdcpp pull"

#: Named bundles: a main model and the components it needs, as (repo, file in repo).
RECIPES: dict[str, tuple[tuple[str, str], ...]] = {
    "sd-turbo": (("stabilityai/sd-turbo", "sd_turbo.safetensors"),),
    "sd1.5": (
        ("stable-diffusion-v1-5/stable-diffusion-v1-5", "v1-5-pruned-emaonly.safetensors"),
    ),
    "sdxl": (("stabilityai/stable-diffusion-xl-base-1.0", "sd_xl_base_1.0.safetensors"),),
    "sdxl-turbo": (("stabilityai/sdxl-turbo", "sd_xl_turbo_1.0_fp16.safetensors"),),
    "flux-schnell": (
        ("city96/FLUX.1-schnell-gguf", "flux1-schnell-Q4_0.gguf"),
        ("black-forest-labs/FLUX.1-schnell", "ae.safetensors"),
        ("comfyanonymous/flux_text_encoders", "clip_l.safetensors"),
        ("city96/t5-v1_1-xxl-encoder-gguf", "t5-v1_1-xxl-encoder-Q8_0.gguf"),
    ),
    "wan2.1-t2v-1.3b": (
        ("Comfy-Org/Wan_2.1_ComfyUI_repackaged",
         "split_files/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors"),
        ("Comfy-Org/Wan_2.1_ComfyUI_repackaged", "split_files/vae/wan_2.1_vae.safetensors"),
        ("city96/umt5-xxl-encoder-gguf", "umt5-xxl-encoder-Q8_0.gguf"),
    ),
    "taesd": (("madebyollin/taesd", "diffusion_pytorch_model.safetensors"),),
    "z-image-turbo": (
        ("Comfy-Org/z_image_turbo", "split_files/diffusion_models/z_image_turbo_bf16.safetensors"),
        ("Comfy-Org/z_image_turbo", "split_files/text_encoders/qwen_3_4b.safetensors"),
        ("Comfy-Org/z_image_turbo", "split_files/vae/ae.safetensors"),
    ),
    "esrgan-x4": (("ai-forever/Real-ESRGAN", "RealESRGAN_x4.pth"),),
}  # fmt: skip


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


def _targets(repo_or_recipe: str, files: Sequence[str]) -> tuple[tuple[str, str], ...]:
    if files:
        return tuple((repo_or_recipe, f) for f in files)
    if repo_or_recipe in RECIPES:
        return RECIPES[repo_or_recipe]
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
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / ".sdcpp-pull"
    results: list[Pulled] = []
    try:
        for repo, file in targets:
            target = folder / Path(file).name
            downloaded = force or not target.exists()
            if downloaded:
                os.replace(_download(repo, file, staging, endpoint), target)
            try:
                info, error = inspect(target), None
            except ModelError as exc:
                info, error = None, exc.reason
            results.append(Pulled(repo, file, str(target), downloaded, info, error))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return results
