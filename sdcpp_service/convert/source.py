"""What is being converted: detection, the tensors the engine will read, and output naming.

Detection is :func:`sdcpp_service.models.inspect` (headers only, never weights), so a truncated,
unknown or unsupported file is refused here, before the engine starts. The tensor list mirrors
how the engine's ``ModelLoader::init_from_file`` names them: a file's own names, a diffusers
folder's fixed files under ``unet.``/``vae.``/``te.``/``te.1.``, an extra ``--vae`` under ``vae.``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sdcpp_service.convert.plan import SourceTensor
from sdcpp_service.errors import InvalidRequest, UnsupportedModel
from sdcpp_service.models import ModelInfo, inspect, read_header
from sdcpp_service.models.headers import TensorInfo, read_safetensors

#: Kinds the engine can convert → catalog folder (ComfyUI names). Main models go by slot.
CATALOG_FOLDERS: dict[str, str] = {
    "model_path": "checkpoints",
    "diffusion_model_path": "diffusion_models",
    "vae": "vae",
    "taesd": "vae_approx",
    "text_encoder": "text_encoders",
    "controlnet": "controlnet",
    "upscaler": "upscale_models",
    "clip_vision": "clip_vision",
    "photomaker": "photomaker",
}
#: Kinds refused outright, with the reason.
NOT_CONVERTIBLE: dict[str, str] = {
    "lora": "LoRAs are applied at run time from safetensors; convert the model instead",
    "embedding": "textual-inversion embeddings are tiny; use them as they are",
}
#: The files the engine's diffusers loader reads (``init_from_diffusers_file``), in its order.
DIFFUSERS_FILES: tuple[tuple[str, str, bool], ...] = (
    ("unet/diffusion_pytorch_model.safetensors", "unet.", True),
    ("vae/diffusion_pytorch_model.safetensors", "vae.", False),
    ("text_encoder/model.safetensors", "te.", False),
    ("text_encoder_2/model.safetensors", "te.1.", False),
)
#: File suffixes of model files (``--all`` and output naming).
MODEL_SUFFIXES = (".safetensors", ".sft", ".gguf", ".ckpt", ".pt", ".pth", ".bin")


@dataclass(frozen=True)
class Source:
    path: Path
    info: ModelInfo
    tensors: tuple[SourceTensor, ...]
    vae: Path | None = None
    vae_format: str = ""

    @property
    def slot(self) -> str:
        """Rule-table slot: ``model``, ``diffusion_model``, ``vae``, ``taesd``, ``clip_l``…"""
        if self.info.slot in ("model_path", "diffusion_model_path"):
            return self.info.slot.removesuffix("_path")
        return self.info.component or self.info.kind

    @property
    def main(self) -> bool:
        return self.info.kind == "model"

    @property
    def arch(self) -> str:
        return self.info.arch or self.info.kind

    @property
    def folder(self) -> str:
        key = self.info.slot if self.main else self.info.kind
        return CATALOG_FOLDERS.get(key or "", "checkpoints")

    @property
    def size(self) -> int:
        return self.info.size + (self.vae.stat().st_size if self.vae else 0)


def detect(path: Path) -> ModelInfo:
    """The one detection call (``models.inspect``); refuses what cannot be converted."""
    info = inspect(path)
    if info.kind in NOT_CONVERTIBLE:
        raise UnsupportedModel(path, f"a {info.kind}: {NOT_CONVERTIBLE[info.kind]}")
    if not info.supported:
        raise UnsupportedModel(path, info.reason or f"{info.title} is not supported")
    if info.kind == "model" and info.slot not in ("model_path", "diffusion_model_path"):
        raise UnsupportedModel(path, f"{info.title}: no loader slot takes it")
    if info.kind != "model" and info.kind not in CATALOG_FOLDERS:
        raise UnsupportedModel(path, f"a {info.kind} file cannot be converted")
    return info


def _tensors(path: Path) -> list[SourceTensor]:
    if path.is_dir():
        out: list[SourceTensor] = []
        for rel, prefix, required in DIFFUSERS_FILES:
            f = path / rel
            if not f.is_file():
                if required:
                    raise UnsupportedModel(
                        path, f"the engine converts diffusers UNet pipelines only (no {rel})"
                    )
                continue
            out += _prefixed(read_safetensors(f).tensors.items(), prefix)
        return out
    return _prefixed(read_header(path).tensors.items(), "")


def _prefixed(items: Iterable[tuple[str, TensorInfo]], prefix: str) -> list[SourceTensor]:
    rows: list[SourceTensor] = []
    for name, info in items:
        full = name if name.startswith(prefix) else prefix + name
        rows.append(SourceTensor(full, tuple(info.shape), info.dtype))
    return rows


def open_source(path: str | Path, vae: str | Path | None = None) -> Source:
    """Detect ``path`` (and an optional VAE to bake in) and list the tensors the engine reads."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InvalidRequest("source", f"no such file or folder '{path}'")
    info = detect(p)
    tensors = _tensors(p)
    vae_path: Path | None = None
    vae_format = ""
    if vae is not None:
        vae_path = Path(vae).expanduser()
        if not vae_path.is_file():
            raise InvalidRequest("vae", f"no such file '{vae}'")
        vinfo = detect(vae_path)
        if vinfo.kind != "vae":
            raise InvalidRequest("vae", f"{vae_path} is a {vinfo.title}, not a VAE")
        if info.slot != "model_path":
            raise InvalidRequest("vae", "a VAE can only be baked into a checkpoint")
        if "vae" in info.contains or "taesd" in info.contains:
            raise InvalidRequest("vae", f"{p.name} already contains a VAE")
        tensors += _prefixed(read_header(vae_path).tensors.items(), "vae.")
        vae_format = vinfo.format
    return Source(p, info, tuple(tensors), vae_path, vae_format)


def strip_type_suffix(stem: str, types: list[str]) -> str:
    """``flux-q8_0`` → ``flux`` so re-quantizing does not pile up suffixes."""
    rx = re.compile(r"[-_.](?:" + "|".join(re.escape(t) for t in types) + r")$", re.IGNORECASE)
    return rx.sub("", stem)


def default_name(source: Path, qtype: str, types: list[str]) -> str:
    """``<stem>-<type>.gguf``."""
    name = source.name
    for suffix in MODEL_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return f"{strip_type_suffix(name, types)}-{qtype}.gguf"
