"""Whether a LoRA or a ControlNet fits a model, read from both headers before anything loads.

The engine applies a LoRA by name: a LoRA tensor whose name the model lacks is skipped, but one
whose name matches a weight of another shape aborts the process (``GGML_ASSERT``); a ControlNet
built for another UNet feeds skip connections of the wrong count or width into it and aborts the
same way. Both are refused here in one line naming both files.

A LoRA module is mapped onto the model's own (LDM) tensor names: kohya (``lora_unet_…``,
``lora_te_…``), diffusers/peft (``unet.down_blocks.…``) and LDM-named modules alike, and its
``up × down`` product (out × in) must equal the model weight's first two dimensions. The mapping
covers the UNet families (SD1, SD2, SDXL, SDXS); for other architectures only the families are
compared (by the detected names).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from sdcpp_service.errors import UnsupportedModel
from sdcpp_service.models.components import LORA_DOWN
from sdcpp_service.models.headers import read_header

Shape = tuple[int, ...]

_UNET = "model.diffusion_model."
_TEXT = ("cond_stage_model.transformer.", "conditioner.embedders.0.transformer.")
_CONTROL = "control_model."
#: A LoRA's "up" suffix for each "down" suffix.
_UP = {
    ".lora_down.weight": ".lora_up.weight",
    ".lora_A.weight": ".lora_B.weight",
    ".lora.down.weight": ".lora.up.weight",
    "_lora.down.weight": "_lora.up.weight",
    ".lora_A.default.weight": ".lora_B.default.weight",
    ".lora_linear_layer.down.weight": ".lora_linear_layer.up.weight",
}
_UNET_PREFIXES = ("lora_unet_", "model.diffusion_model.", "diffusion_model.", "unet.")
_TEXT_PREFIXES = ("lora_te1_", "lora_te_", "text_encoder.", "te1.", "te.")
#: diffusers resnet names → LDM
_RESNET = (
    ("conv1", "in_layers_2"), ("conv2", "out_layers_3"), ("time_emb_proj", "emb_layers_1"),
    ("conv_shortcut", "skip_connection"), ("norm1", "in_layers_0"), ("norm2", "out_layers_0"),
)  # fmt: skip
_BLOCK = re.compile(r"^(down|up)_blocks_(\d+)_(attentions|resnets)_(\d+)_(.*)$")
_MID = re.compile(r"^mid_block_(attentions|resnets)_(\d+)_(.*)$")


@functools.lru_cache(maxsize=64)
def _shapes(path: str, _stamp: tuple[int, int]) -> Mapping[str, Shape]:
    return {name: t.shape for name, t in read_header(path).tensors.items()}


def shapes(path: str | Path) -> Mapping[str, Shape]:
    """Tensor name → shape from the header (cached per path, size and mtime)."""
    st = os.stat(path)
    return _shapes(str(path), (st.st_size, st.st_mtime_ns))


def _resnet(rest: str) -> str:
    for old, new in _RESNET:
        if rest == old or rest.startswith(old + "_"):
            return new + rest[len(old) :]
    return rest


def _ldm(module: str) -> str:
    """A flattened diffusers UNet module name → the flattened LDM name (unchanged if LDM)."""
    if m := _BLOCK.match(module):
        side, i, what, j, rest = m.groups()
        index = 3 * int(i) + int(j) + (1 if side == "down" else 0)
        group = "input_blocks" if side == "down" else "output_blocks"
        if what == "resnets":
            return f"{group}_{index}_0_{_resnet(rest)}"
        return f"{group}_{index}_1_{rest}"
    if m := _MID.match(module):
        what, j, rest = m.groups()
        if what == "resnets":
            return f"middle_block_{2 * int(j)}_{_resnet(rest)}"
        return f"middle_block_1_{rest}"
    return module


def _flat(name: str) -> str:
    return name.removesuffix(".weight").replace(".", "_")


def model_modules(model: Mapping[str, Shape]) -> dict[str, Shape]:
    """``unet:<flat LDM name>`` and ``te:<flat name>`` → shape, for 2-D+ weights."""
    out: dict[str, Shape] = {}
    for name, shape in model.items():
        if len(shape) < 2 or not name.endswith(".weight"):
            continue
        if name.startswith(_UNET):
            out["unet:" + _flat(name[len(_UNET) :])] = shape
        for prefix in _TEXT:
            if name.startswith(prefix):
                out["te:" + _flat(name[len(prefix) :])] = shape
    return out


def lora_modules(lora: Mapping[str, Shape]) -> dict[str, Shape]:
    """``unet:<flat LDM name>`` / ``te:<flat name>`` → (out, in) of each up × down pair."""
    out: dict[str, Shape] = {}
    for name, down in lora.items():
        suffix = next((s for s in LORA_DOWN if name.endswith(s) and s in _UP), None)
        if suffix is None or len(down) < 2:
            continue
        base = name[: -len(suffix)]
        up = lora.get(base + _UP[suffix])
        if up is None or len(up) < 2:
            continue
        base = base.removeprefix("base_model.model.")
        for prefix in _UNET_PREFIXES:
            if base.startswith(prefix):
                out["unet:" + _ldm(_flat(base[len(prefix) :]))] = (up[0], down[1])
                break
        else:
            for prefix in _TEXT_PREFIXES:
                if base.startswith(prefix):
                    out["te:" + _flat(base[len(prefix) :])] = (up[0], down[1])
                    break
    return out


def _is_unet(model: Mapping[str, Shape]) -> bool:
    return any(n.startswith(_UNET + "input_blocks.") for n in model)


def check_lora(model: str | Path, lora: str | Path) -> None:
    """Refuse (UnsupportedModel, naming both files) a file that is not a LoRA, or a LoRA whose
    weights would not fit the model."""
    from sdcpp_service.models.inspect import inspect

    info = inspect(lora)
    if info.kind != "lora":
        raise UnsupportedModel(lora, f"is a {info.title} {info.kind}, not a LoRA")
    base = shapes(model)
    if not _is_unet(base):
        return
    have, wanted = model_modules(base), lora_modules(shapes(lora))
    matched = 0
    for module, (out, inp) in wanted.items():
        shape = have.get(module)
        if shape is None:
            continue
        matched += 1
        if (shape[0], shape[1]) != (out, inp):
            where = module.split(":", 1)[1]
            raise UnsupportedModel(
                lora,
                f"does not fit {Path(model).name}: its {where} is {out}×{inp}, the model's is "
                f"{shape[0]}×{shape[1]} (a LoRA made for another model)",
            )
    if wanted and not matched:
        raise UnsupportedModel(
            lora,
            f"does not fit {Path(model).name}: none of its {len(wanted)} layers is in the model "
            "(a LoRA made for another model)",
        )


def check_loras(model: str | Path, loras: Iterable[str | Path]) -> None:
    for lora in loras:
        check_lora(model, lora)


def check_control_net(model: str | Path, control_net: str | Path) -> None:
    """Refuse a ControlNet whose encoder is not a copy of the model's UNet encoder."""
    base, control = shapes(model), shapes(control_net)
    if not _is_unet(base) or not any(n.startswith(_CONTROL + "input_blocks.") for n in control):
        return
    name = Path(model).name
    for key, shape in sorted(control.items()):
        if not key.startswith((_CONTROL + "input_blocks.", _CONTROL + "middle_block.")):
            continue
        rel = key[len(_CONTROL) :]
        if rel.startswith("input_blocks.0.0."):
            continue  # the latent input (4 or 9 channels) is the ControlNet's own
        theirs = base.get(_UNET + rel)
        if theirs is None:
            block = ".".join(rel.split(".")[:3])
            raise UnsupportedModel(
                control_net,
                f"does not fit {name}: the ControlNet has {block}, which the model's UNet "
                "lacks (a ControlNet made for another model)",
            )
        if theirs != shape:
            raise UnsupportedModel(
                control_net,
                f"does not fit {name}: its {rel} is {'×'.join(map(str, shape))}, the model's is "
                f"{'×'.join(map(str, theirs))} (a ControlNet made for another model)",
            )


def check_photo_maker(model: str | Path, photo_maker: str | Path) -> None:
    """Refuse a PhotoMaker the engine cannot use with ``model``: PhotoMaker is made for SDXL
    (its ID encoder feeds SDXL's 2048-wide cross-attention), and the engine picks v2 by the
    file name, so a v2 file must be named ``…v2…`` and a v1 file must not be."""
    from sdcpp_service.models.inspect import inspect

    pm, main = inspect(photo_maker), inspect(model)
    if pm.kind != "photomaker":
        raise UnsupportedModel(photo_maker, f"is a {pm.title} {pm.kind}, not a PhotoMaker model")
    if not str(main.arch or "").startswith("sdxl"):
        raise UnsupportedModel(
            photo_maker,
            f"is a PhotoMaker for SDXL; {Path(model).name} is {main.title} (use an SDXL model)",
        )
    named_v2 = "v2" in Path(photo_maker).name
    if (pm.variant == "v2") != named_v2:
        want = "contains 'v2'" if pm.variant == "v2" else "has no 'v2'"
        raise UnsupportedModel(
            photo_maker,
            f"is PhotoMaker {pm.variant}, and the engine tells the versions apart by the file "
            f"name: rename it so the name {want} (e.g. photomaker-{pm.variant}.safetensors)",
        )
