"""Layouts derived in code rather than read off the engine: a kohya LoRA, an ESRGAN, and a
Wan VACE DiT (the T2V layout plus VACE tensors).

ESRGAN names follow the engine's "original format" (``src/esrgan.hpp``): ``conv_first``,
``body.<i>.rdb<j>.conv<k>``, ``conv_body``, ``conv_up1``, ``conv_up2``, ``conv_hr``,
``conv_last``; 64 features, growth 32; the engine infers the block count and the x4 scale (from
``conv_up2``). Pixels enter as ``u8 / 255`` and leave as ``u8(clamp(v) * 255 + 0.5)``, every
LeakyReLU sees values in [0, 1], so with the RRDB trunk and ``conv_body`` zero and the other convs
identities on the RGB channels, the net is exactly ``nearest-neighbour upsample x2, x2``. Weights
are F32 so no f16 rounding can move a pixel.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .plan import ZEROS, Planned, array

ESRGAN_FEATURES = 64
ESRGAN_GROWTH = 32
ESRGAN_BLOCKS = 1


def _identity_conv(out_ch: int, in_ch: int, channels: int = 3) -> np.ndarray:
    w = np.zeros((out_ch, in_ch, 3, 3), dtype=np.float32)
    for c in range(channels):
        w[c, c, 1, 1] = 1.0
    return w


def esrgan_x4() -> list[Planned]:
    f, g = ESRGAN_FEATURES, ESRGAN_GROWTH
    out: list[Planned] = []

    def conv(name: str, o: int, i: int, weight: np.ndarray | None = None) -> None:
        out.append(
            Planned(f"{name}.weight", (o, i, 3, 3), ZEROS if weight is None else array(weight))
        )
        out.append(Planned(f"{name}.bias", (o,), ZEROS))

    conv("conv_first", f, 3, _identity_conv(f, 3))
    for b in range(ESRGAN_BLOCKS):
        for j in (1, 2, 3):
            for k in (1, 2, 3, 4, 5):
                conv(f"body.{b}.rdb{j}.conv{k}", f if k == 5 else g, f + (k - 1) * g)
    conv("conv_body", f, f)
    for name in ("conv_up1", "conv_up2", "conv_hr"):
        conv(name, f, f, _identity_conv(f, f))
    conv("conv_last", 3, f, _identity_conv(3, f))
    return out


# Kohya LoRA for SD1. UNet targets are the attention projections of down_blocks.1/2.attentions.0
# (LDM input_blocks.4.1 / 7.1): same names and shapes in the full SD1 UNet and SDXS's tiny UNet.
LORA_RANK = 4
LORA_UP_STD = 0.25  # large on purpose: the LoRA must visibly change the image
_LORA_UNET = {"down_blocks_1_attentions_0": 640, "down_blocks_2_attentions_0": 1280}
_LORA_TE_LAYERS = (0, 11)
_CONTEXT = 768


def lora_sd1() -> list[Planned]:
    rng = np.random.default_rng(0x10AA)
    modules: list[tuple[str, int, int]] = []  # (kohya module name, in, out)
    for block, dim in _LORA_UNET.items():
        prefix = f"lora_unet_{block}_transformer_blocks_0"
        for attn in ("attn1", "attn2"):
            kv_in = dim if attn == "attn1" else _CONTEXT
            modules += [
                (f"{prefix}_{attn}_to_q", dim, dim),
                (f"{prefix}_{attn}_to_k", kv_in, dim),
                (f"{prefix}_{attn}_to_v", kv_in, dim),
                (f"{prefix}_{attn}_to_out_0", dim, dim),
            ]
    for layer in _LORA_TE_LAYERS:
        prefix = f"lora_te_text_model_encoder_layers_{layer}"
        modules += [(f"{prefix}_self_attn_{p}_proj", 768, 768) for p in ("q", "k", "v", "out")]
        modules += [(f"{prefix}_mlp_fc1", 768, 3072), (f"{prefix}_mlp_fc2", 3072, 768)]
    out: list[Planned] = []
    for name, n_in, n_out in sorted(modules):
        down = rng.standard_normal((LORA_RANK, n_in), dtype=np.float32) / np.sqrt(n_in)
        up = rng.standard_normal((n_out, LORA_RANK), dtype=np.float32) * LORA_UP_STD
        out.append(Planned(f"{name}.alpha", (), array(np.float32(LORA_RANK).reshape(())), "F32"))
        out.append(Planned(f"{name}.lora_down.weight", down.shape, array(down)))
        out.append(Planned(f"{name}.lora_up.weight", up.shape, array(up)))
    return out


def wan21_vace() -> list[Planned]:
    """Wan2.1 VACE 1.3B: the T2V DiT plus ONE VACE block and the 96-channel control patch
    embedding (``src/wan.hpp``). The engine counts ``vace_blocks.*`` and hooks block ``n`` after
    every ``num_layers / count``-th layer, so one block (a full attention block, plus
    ``before_proj`` and ``after_proj``) serves layer 0; random projections make the control
    video reach the output."""
    from .models import FileSpec
    from .plan import normal, plan_file
    from .pool import DEFAULT_STD

    base = plan_file(
        FileSpec("diffusion_model", "", "wan21_t2v_1_3b", source="wan21_t2v_1.3b.safetensors")
    )
    dim = 1536
    extra = [
        Planned("vace_" + p.name, p.shape, p.fill) for p in base if p.name.startswith("blocks.0.")
    ]
    for proj in ("before_proj", "after_proj"):
        extra.append(Planned(f"vace_blocks.0.{proj}.weight", (dim, dim), normal(DEFAULT_STD)))
        extra.append(Planned(f"vace_blocks.0.{proj}.bias", (dim,), ZEROS))
    extra.append(Planned("vace_patch_embedding.weight", (dim, 96, 1, 2, 2), normal(DEFAULT_STD)))
    extra.append(Planned("vace_patch_embedding.bias", (dim,), ZEROS))
    return base + extra


DERIVED: dict[str, Callable[[], list[Planned]]] = {
    "esrgan_x4": esrgan_x4,
    "lora_sd1": lora_sd1,
    "wan21_vace": wan21_vace,
}
