"""Recipes: a model name and every file it needs, as ``sdcpp pull NAME`` fetches them.

A recipe's name is a model name: the catalog gives the recipe's main file (the first one) the
recipe name as an alias, so ``sdcpp pull sd-turbo`` then ``-m sd-turbo`` works, and so does a
file of the same name downloaded by hand.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import NamedTuple

from sdcpp_service.models.inspect import short_name


class Fetch(NamedTuple):
    """One file of a recipe: the repository, the file in it, and the local name (default: the
    file's own name)."""

    repo: str
    file: str
    saved_as: str = ""

    @property
    def local_name(self) -> str:
        return self.saved_as or PurePosixPath(self.file).name


#: name → its files, the main model first. Names are the ones the README uses.
RECIPES: dict[str, tuple[Fetch, ...]] = {
    "sd-turbo": (Fetch("stabilityai/sd-turbo", "sd_turbo.safetensors"),),
    "sd15": (
        Fetch("stable-diffusion-v1-5/stable-diffusion-v1-5", "v1-5-pruned-emaonly.safetensors"),
    ),
    "sd15-inpainting": (
        Fetch("stable-diffusion-v1-5/stable-diffusion-inpainting", "sd-v1-5-inpainting.ckpt"),
    ),
    "sdxl": (Fetch("stabilityai/stable-diffusion-xl-base-1.0", "sd_xl_base_1.0.safetensors"),),
    "sdxl-turbo": (Fetch("stabilityai/sdxl-turbo", "sd_xl_turbo_1.0_fp16.safetensors"),),
    "flux1-schnell": (
        Fetch("city96/FLUX.1-schnell-gguf", "flux1-schnell-Q4_0.gguf"),
        Fetch("black-forest-labs/FLUX.1-schnell", "ae.safetensors"),
        Fetch("comfyanonymous/flux_text_encoders", "clip_l.safetensors"),
        Fetch("city96/t5-v1_1-xxl-encoder-gguf", "t5-v1_1-xxl-encoder-Q8_0.gguf"),
    ),
    "wan2.1-t2v-1.3b": (
        Fetch("Comfy-Org/Wan_2.1_ComfyUI_repackaged",
              "split_files/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors"),
        Fetch("Comfy-Org/Wan_2.1_ComfyUI_repackaged", "split_files/vae/wan_2.1_vae.safetensors"),
        Fetch("city96/umt5-xxl-encoder-gguf", "umt5-xxl-encoder-Q8_0.gguf"),
    ),
    "taesd": (Fetch("madebyollin/taesd", "diffusion_pytorch_model.safetensors", "taesd.safetensors"),),
    "z-image-turbo": (
        Fetch("Comfy-Org/z_image_turbo",
              "split_files/diffusion_models/z_image_turbo_bf16.safetensors"),
        Fetch("Comfy-Org/z_image_turbo", "split_files/text_encoders/qwen_3_4b.safetensors"),
        Fetch("Comfy-Org/z_image_turbo", "split_files/vae/ae.safetensors"),
    ),
    "esrgan-x4": (Fetch("lllyasviel/Annotators", "RealESRGAN_x4plus.pth"),),
}  # fmt: skip


def recipe_aliases() -> dict[str, str]:
    """The short name of each recipe's main file → the recipe's name."""
    return {short_name(files[0].local_name): name for name, files in RECIPES.items()}


def recipe_of(name: str) -> str | None:
    """``name`` if it is a recipe (case-insensitive), else None."""
    lowered = name.lower()
    return next((r for r in RECIPES if r.lower() == lowered), None)
