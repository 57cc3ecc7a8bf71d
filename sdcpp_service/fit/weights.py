"""Weight bytes per component, from the headers of a load plan's files (no weights read).

Every tensor is counted at the bytes the engine holds it in: GGUF block types at their block
size, safetensors types at their item size, FP8 widened to F16 (ggml has no FP8), F64/I64
narrowed to 32 bits. A ``wtype`` override (``q8_0``…) is applied to tensors whose innermost
dimension is a multiple of the type's block, as the engine does when it converts at load.
Inside a single-file checkpoint the name prefixes say the component (``model.diffusion_model.``,
``first_stage_model.``, ``cond_stage_model.``…); a separate file's slot says it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sdcpp_service.models._gguf import GGML_TYPES
from sdcpp_service.models.archs import GROUP_PREFIXES
from sdcpp_service.models.headers import SAFETENSORS_ITEMSIZE, TensorInfo, read_header

#: Components of an estimate, in display order.
COMPONENTS = (
    "text_encoders",
    "diffusion_model",
    "vae",
    "control_net",
    "loras",
    "upscaler",
    "other",
)

#: Header group (``GROUP_PREFIXES``) → component.
_GROUPS = {
    "diffusion": "diffusion_model",
    "vae": "vae",
    "te": "text_encoders",
    "control": "control_net",
}
#: Load slot (bindings' argument without ``_path``) → component, for files holding one.
SLOT_COMPONENTS: dict[str, str] = {
    "diffusion_model": "diffusion_model",
    "high_noise_diffusion_model": "diffusion_model",
    "vae": "vae",
    "taesd": "vae",
    "clip_l": "text_encoders",
    "clip_g": "text_encoders",
    "t5xxl": "text_encoders",
    "llm": "text_encoders",
    "llm_vision": "text_encoders",
    "clip_vision": "text_encoders",
    "control_net": "control_net",
    "photo_maker": "other",
    "upscaler": "upscaler",
}
_BLOCKS = {name: (block, size) for name, block, size in GGML_TYPES.values()}
_WIDENED = {"F8_E4M3": 2, "F8_E5M2": 2, "F64": 4, "I64": 4}


def tensor_bytes(info: TensorInfo, wtype: str | None = None) -> int:
    """Bytes the engine holds ``info`` in (after an optional ``wtype`` conversion)."""
    n = info.numel
    if wtype and wtype.upper() in _BLOCKS and len(info.shape) >= 2:
        block, size = _BLOCKS[wtype.upper()]
        if info.shape[-1] % block == 0:
            return n // block * size
    dtype = info.dtype.upper()
    if dtype in _WIDENED:
        return n * _WIDENED[dtype]
    if dtype in _BLOCKS:
        block, size = _BLOCKS[dtype]
        return n // block * size
    return n * SAFETENSORS_ITEMSIZE.get(dtype, 2)


def _group(name: str) -> str | None:
    for prefix, group in GROUP_PREFIXES:
        if name.startswith(prefix):
            return group
    return None


#: Name prefixes of the VAE encoder once a component prefix is stripped: what the engine skips
#: loading with ``vae_decode_only`` (``first_stage_model.encoder``, ``.quant``, ``tae.encoder``).
_ENCODER = ("encoder.", "quant_conv.", "quant.")
_VAE_PREFIXES = ("first_stage_model.", "vae.", "tae.")


def is_vae_encoder(name: str) -> bool:
    """Whether a VAE tensor belongs to the encoder (the part a decode-only context skips)."""
    for prefix in _VAE_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    return name.startswith(_ENCODER)


@dataclass(frozen=True)
class FileWeights:
    """One file's weight bytes per component, and its size on disk (what mmap maps);
    ``vae_encoder`` is the part of ``components["vae"]`` a decode-only context skips."""

    path: str
    components: Mapping[str, int]
    file_bytes: int
    vae_encoder: int = 0


def file_weights(path: str | Path, slot: str, wtype: str | None = None) -> FileWeights:
    """Weight bytes of one file loaded in ``slot`` (``model`` splits a checkpoint by prefix)."""
    header = read_header(path)
    out: dict[str, int] = {}
    encoder = 0
    fixed = SLOT_COMPONENTS.get(slot)
    for name, info in header.tensors.items():
        if fixed is not None:
            comp = fixed
        else:
            group = _group(name)
            if group is None and name.startswith(("alphas_cumprod", "model_ema.", "lora")):
                continue  # schedules, EMA copies: in the file, not loaded by the engine
            comp = _GROUPS.get(group or "", "diffusion_model" if group is None else "other")
        size = tensor_bytes(info, wtype)
        out[comp] = out.get(comp, 0) + size
        if comp == "vae" and is_vae_encoder(name):
            encoder += size
    return FileWeights(str(path), out, header.size, encoder)


def sum_components(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for comp, size in part.items():
            total[comp] = total.get(comp, 0) + size
    return {c: total[c] for c in COMPONENTS if total.get(c)}
