"""The architecture table: ordered, declarative rows from tensor names and shapes to an arch.

Each :class:`Rule` is a list of conditions on the names *inside one component* (prefixes such
as ``model.diffusion_model.`` or ``first_stage_model.`` are stripped first, see
:data:`GROUP_PREFIXES`). Rows are tried in order; the first whose conditions all hold wins,
so specific rows (Flux Fill, SDXL Inpaint, Chroma) come before general ones (Flux, SDXL).

Key syntax: ``a|b`` means either; a key ending in ``.`` must start a name (a block prefix);
any other key must end a name at a dot boundary (``img_in.weight`` matches
``model.diffusion_model.img_in.weight``). Shapes are in PyTorch order (outermost first).

Main-model arches use the engine's own ``SDVersion`` names (``src/model.h``), lowercased; the
rows mirror ``ModelLoader::get_sd_version`` (``src/model.cpp``) and add the files the engine
cannot run, so they are recognised and reported instead of failing inside the engine.
Component rows (VAE, text encoders, …) live in :mod:`sdcpp_service.models.components`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Has:
    key: str


@dataclass(frozen=True)
class Lacks:
    key: str


@dataclass(frozen=True)
class Dim:
    """``shape[axis]`` of the first tensor matching ``key`` is one of ``values``."""

    key: str
    axis: int
    values: tuple[int, ...]


@dataclass(frozen=True)
class MaxIndex:
    """The largest ``N`` in names starting ``block.N.`` lies in ``[low, high]``."""

    block: str
    low: int
    high: int = 1 << 30


Cond = Has | Lacks | Dim | MaxIndex


@dataclass(frozen=True)
class SizeBy:
    """Fill ``{size}`` in a variant from ``shape[axis]`` of ``key`` via ``table``."""

    key: str
    axis: int
    table: Mapping[int, str]


@dataclass(frozen=True)
class Need:
    """A component the model needs: ``vae`` of family ``flux``, ``llm`` ``qwen3`` ``4b``…"""

    component: str
    family: str | None = None
    variant: str | None = None

    def __str__(self) -> str:
        parts = [self.component, self.family or "", self.variant or ""]
        return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class LlmBy:
    """The LLM a DiT needs, read from the width of its own text projection."""

    key: str
    axis: int
    family: str
    sizes: Mapping[int, str]


@dataclass(frozen=True)
class Defaults:
    """Generation settings that suit an arch (sampler names as the bindings spell them)."""

    width: int
    height: int
    steps: int
    cfg_scale: float
    sampler: str
    guidance: float | None = None
    video_frames: int | None = None


@dataclass(frozen=True)
class Rule:
    kind: str
    arch: str | None
    when: tuple[Cond, ...]
    variant: str | None = None
    size: SizeBy | None = None
    slot: str | None = None
    component: str | None = None
    needs: tuple[Need, ...] = ()
    llm: LlmBy | None = None
    defaults: Defaults | None = None
    supported: bool = True
    reason: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)


#: Name prefixes that wrap one component inside a file → the component group they open.
#: Longest first. A file with none of them is "bare" and every table is tried on it.
GROUP_PREFIXES: tuple[tuple[str, str], ...] = (
    ("model.diffusion_model.", "diffusion"),
    ("model.high_noise_diffusion_model.", "diffusion"),
    ("diffusion_model.", "diffusion"),
    ("unet.", "diffusion"),
    ("transformer.", "diffusion"),
    ("first_stage_model.", "vae"),
    ("vae.", "vae"),
    ("tae.", "vae"),
    ("conditioner.embedders.0.", "te"),
    ("conditioner.embedders.1.", "te"),
    ("conditioner.embedders.2.", "te"),
    ("conditioner.embedders.3.", "te"),
    ("cond_stage_model.1.", "te"),
    ("cond_stage_model.", "te"),
    ("text_encoders.clip_l.", "te"),
    ("text_encoders.clip_g.", "te"),
    ("text_encoders.t5xxl.", "te"),
    ("text_encoders.llm.", "te"),
    ("text_encoder_2.", "te"),
    ("text_encoder_3.", "te"),
    ("text_encoder.", "te"),
    ("te.1.", "te"),
    ("te.2.", "te"),
    ("te.", "te"),
    ("control_model.", "control"),
    ("pmid.", "other"),
)

# Frequently used keys (alternatives: LDM names | diffusers names).
UNET_IN = "input_blocks.0.0.weight|conv_in.weight"
UNET_CTX = "attn2.to_k.weight"
UNET_MID1 = "middle_block.1.|mid_block.resnets.1."
UNET_OUT311 = (
    "output_blocks.3.1.transformer_blocks.1.|up_blocks.1.attentions.0.transformer_blocks.1."
)
UNET_OUT71 = "output_blocks.7.1.|up_blocks.2.attentions.1."
UNET_OUT71_K = "output_blocks.7.1.transformer_blocks.0.attn1.to_k.weight"
SD3 = "joint_blocks."
FLUX2 = "double_stream_modulation_img.lin.weight"
WAN = "blocks.0.cross_attn.norm_k.weight"
WAN_PATCH = "patch_embedding.weight"

_SD = Defaults(512, 512, 20, 7.0, "euler_a")
_SD2 = Defaults(768, 768, 20, 7.0, "euler_a")
_XL = Defaults(1024, 1024, 20, 7.0, "euler_a")
_ONE_STEP = Defaults(512, 512, 1, 1.0, "euler_a")
_FLUX_DEV = Defaults(1024, 1024, 20, 1.0, "euler", guidance=3.5)
_WAN = Defaults(832, 480, 20, 6.0, "euler", video_frames=33)

_T5 = Need("t5xxl")
_UMT5 = Need("umt5xxl")
_FLUX_NEEDS = (Need("vae", "flux"), Need("clip_l"), _T5)
_WAN_NEEDS = (Need("vae", "wan2.1"), _UMT5)
_QWEN3 = {1024: "0.6b", 2048: "1.7b", 2560: "4b", 4096: "8b", 5120: "14b"}
_WAN_SIZE = SizeBy(WAN_PATCH, 0, {1536: "1.3b", 3072: "5b", 5120: "14b"})
_UNET_ONLY = "a UNet without its text encoder"


def _unet(arch: str, ctx: int, *more: Cond, d: Defaults = _SD) -> Rule:
    when: tuple[Cond, ...] = (Has(UNET_IN), Dim(UNET_CTX, 1, (ctx,)), *more)
    return Rule("model", arch, when, slot="model_path", defaults=d)


def _dit(
    arch: str,
    *when: Cond,
    d: Defaults,
    needs: tuple[Need, ...] = (),
    variant: str | None = None,
    size: SizeBy | None = None,
    llm: LlmBy | None = None,
    reason: str | None = None,
) -> Rule:
    return Rule(
        "model", arch, when, variant=variant, size=size, slot="diffusion_model_path",
        needs=needs, llm=llm, defaults=d, supported=reason is None, reason=reason,
    )  # fmt: skip


_SD3_NEEDS = (Need("vae", "flux"), Need("clip_l"), Need("clip_g"), _T5)
_SD3 = Defaults(1024, 1024, 28, 4.5, "euler")
_SVD = Defaults(1024, 576, 20, 2.5, "euler", video_frames=14)
_CHROMA = Defaults(1024, 1024, 26, 4.0, "euler")
_KLEIN = SizeBy("txt_in.weight", 0, {3072: "4b", 4096: "9b"})
_WAN22 = Defaults(832, 480, 20, 3.5, "euler", video_frames=33)
_TI2V = Defaults(1280, 704, 20, 6.0, "euler", video_frames=33)
_1K = 1024


def _defaults(steps: int, cfg: float, guidance: float | None = None) -> Defaults:
    return Defaults(_1K, _1K, steps, cfg, "euler", guidance=guidance)


def _diffusers(arch: str) -> str:
    return f"diffusers-layout {arch} transformer; the engine needs the original layout"


#: Main models, in the engine's order of precedence. Scope: the diffusion component.
MODEL_RULES: tuple[Rule, ...] = (
    Rule("model", "svd", (Has("input_blocks.8.0.time_mixer.mix_factor"),), slot="model_path",
         defaults=_SVD),
    Rule("model", "sdxl_refiner", (Has(UNET_IN), Dim(UNET_CTX, 1, (1280,))), slot="model_path",
         supported=False, reason="SDXL refiner checkpoints are not supported by the engine"),
    _unet("sdxl_inpaint", 2048, Dim(UNET_IN, 1, (9,)), d=_XL),
    _unet("sdxl_pix2pix", 2048, Dim(UNET_IN, 1, (8,)), d=_XL),
    _unet("sdxl_vega", 2048, Lacks(UNET_MID1), Lacks(UNET_OUT311), d=_XL),
    _unet("sdxl_ssd1b", 2048, Lacks(UNET_MID1), d=_XL),
    _unet("sdxl", 2048, d=_XL),
    _unet("sd1_inpaint", 768, Dim(UNET_IN, 1, (9,))),
    _unet("sd1_pix2pix", 768, Dim(UNET_IN, 1, (8,))),
    _unet("sdxs_512_ds", 768, Lacks(UNET_MID1), Lacks(UNET_OUT71), d=_ONE_STEP),
    _unet("sd1_tiny_unet", 768, Lacks(UNET_MID1)),
    _unet("sd1", 768),
    _unet("sd2_inpaint", 1024, Dim(UNET_IN, 1, (9,)), d=_SD2),
    _unet("sdxs_09", 1024, Lacks(UNET_MID1), Dim(UNET_OUT71_K, 1, (1024,)), d=_ONE_STEP),
    _unet("sd2_tiny_unet", 1024, Lacks(UNET_MID1), d=_SD2),
    _unet("sd2", 1024, d=_SD2),
    _dit("chroma_radiance", Has("nerf_final_layer_conv."), variant="chroma-radiance",
         needs=(_T5,), d=_CHROMA),
    _dit("sd3", Has(SD3), MaxIndex("joint_blocks", 37), variant="3.5-large", needs=_SD3_NEEDS,
         d=_SD3),
    _dit("sd3", Has(SD3), Has("joint_blocks.0.x_block.attn2.qkv.weight"), variant="3.5-medium",
         needs=_SD3_NEEDS, d=_SD3),
    _dit("sd3", Has(SD3), variant="medium", needs=_SD3_NEEDS, d=_SD3),
    _dit("qwen_image", Has("transformer_blocks.0.img_mod.1.weight"), needs=(Need("vae", "wan2.1"),),
         llm=LlmBy("txt_norm.weight", 0, "qwen2.5-vl", {3584: "7b"}), d=_defaults(20, 2.5)),
    _dit("anima", Has("llm_adapter.blocks.0.cross_attn.q_proj.weight"), d=_defaults(30, 6.0),
         needs=(Need("vae", "wan2.1"), Need("llm", "qwen3", "0.6b"))),
    _dit("flux2", Has(FLUX2), Has("single_blocks.47.linear1.weight"), variant="dev",
         needs=(Need("vae", "flux2"),), d=_defaults(20, 1.0, 4.0),
         llm=LlmBy("txt_in.weight", 1, "mistral-small-3.2", {15360: "24b"})),
    _dit("flux2_klein", Has(FLUX2), variant="{size}", size=_KLEIN, needs=(Need("vae", "flux2"),),
         llm=LlmBy("txt_in.weight", 1, "qwen3", {7680: "4b", 12288: "8b"}), d=_defaults(4, 1.0)),
    _dit("ovis_image", Has("double_blocks.0.img_mlp.gate_proj.weight"), needs=(Need("vae", "flux"),),
         llm=LlmBy("txt_in.weight", 1, "qwen3", _QWEN3), d=_defaults(20, 5.0)),
    _dit("z_image", Has("cap_embedder.0.weight"), needs=(Need("vae", "flux"),),
         llm=LlmBy("cap_embedder.0.weight", 0, "qwen3", _QWEN3), d=_defaults(8, 1.0)),
    _dit("ernie_image", Has("layers.0.adaLN_sa_ln.weight"), needs=(Need("vae", "flux2"),),
         llm=LlmBy("text_proj.weight", 1, "ministral-3", {3072: "3b"}), d=_defaults(8, 1.0)),
    _dit("wan2_2_i2v", Has(WAN), Dim(WAN_PATCH, 1, (36,)), Dim(WAN_PATCH, 0, (5120,)),
         Lacks("img_emb."), variant="i2v-a14b", needs=_WAN_NEEDS, d=_WAN22),
    _dit("wan2_2_ti2v", Has(WAN), Dim(WAN_PATCH, 1, (48,)), Dim(WAN_PATCH, 0, (3072,)),
         Lacks("img_emb."), variant="ti2v-5b", needs=(Need("vae", "wan2.2"), _UMT5), d=_TI2V),
    _dit("wan2", Has(WAN), Has("img_emb.emb_pos"), variant="flf2v-{size}", size=_WAN_SIZE,
         needs=(*_WAN_NEEDS, Need("clip_vision", "clip_vision_h")), d=_WAN),
    _dit("wan2", Has(WAN), Has("img_emb."), variant="i2v-{size}", size=_WAN_SIZE,
         needs=(*_WAN_NEEDS, Need("clip_vision", "clip_vision_h")), d=_WAN),
    _dit("wan2", Has(WAN), Has("vace_blocks."), variant="vace-{size}", size=_WAN_SIZE,
         needs=_WAN_NEEDS, d=_WAN),
    _dit("wan2", Has(WAN), variant="t2v-{size}", size=_WAN_SIZE, needs=_WAN_NEEDS, d=_WAN),
    _dit("flux_fill", Has("double_blocks."), Dim("img_in.weight", 1, (384,)), variant="fill",
         needs=_FLUX_NEEDS, d=_defaults(20, 1.0, 30.0)),
    _dit("flux_controls", Has("double_blocks."), Dim("img_in.weight", 1, (128,)),
         variant="controls", needs=_FLUX_NEEDS, d=_defaults(20, 1.0, 10.0)),
    _dit("flex_2", Has("double_blocks."), Dim("img_in.weight", 1, (196,)), needs=_FLUX_NEEDS,
         d=_FLUX_DEV),
    _dit("flux", Has("double_blocks."), Has("distilled_guidance_layer.in_proj.weight"),
         variant="chroma", needs=(Need("vae", "flux"), _T5), d=_CHROMA),
    _dit("flux", Has("double_blocks."), Has("guidance_in.in_layer.weight"), variant="dev",
         needs=_FLUX_NEEDS, d=_FLUX_DEV),
    _dit("flux", Has("double_blocks."), variant="schnell", needs=_FLUX_NEEDS, d=_defaults(4, 1.0)),
    # Layouts the engine cannot load, recognised so the user is told why.
    _dit("flux", Has("single_transformer_blocks."), Has("x_embedder.weight"), variant="diffusers",
         needs=_FLUX_NEEDS, d=_FLUX_DEV, reason=_diffusers("Flux")),
    _dit("sd3", Has("transformer_blocks.0.attn.add_k_proj.weight"), Has("pos_embed.proj.weight"),
         variant="diffusers", needs=_SD3_NEEDS, d=_SD3, reason=_diffusers("SD3")),
    _dit("wan2", Has("blocks.0.attn2.to_k.weight"), Has("condition_embedder."),
         variant="diffusers", needs=_WAN_NEEDS, d=_WAN, reason=_diffusers("Wan")),
)  # fmt: skip

#: ControlNets. Scope: the ``control_model.`` group, or a bare file.
CONTROL_RULES: tuple[Rule, ...] = (
    Rule(
        "controlnet",
        "flux",
        (Has("input_hint_block."), Has("double_blocks.")),
        supported=False,
        reason="Flux ControlNets are not supported by the engine",
    ),
    Rule("controlnet", "sdxl", (Has("input_hint_block."), Dim(UNET_CTX, 1, (2048,)))),
    Rule("controlnet", "sd1", (Has("input_hint_block."), Dim(UNET_CTX, 1, (768,)))),
    Rule("controlnet", "sd2", (Has("input_hint_block."), Dim(UNET_CTX, 1, (1024,)))),
    Rule(
        "controlnet",
        None,
        (Has("controlnet_cond_embedding."),),
        supported=False,
        reason="diffusers-layout ControlNet; the engine needs the original (.pth/.safetensors "
        "with control_model./input_hint_block names) layout",
    ),
)

#: The engine's own name for each arch ("Version: …" in its log), for cross-checking.
ENGINE_VERSION_NAMES: dict[str, str] = {
    "sd1": "SD 1.x", "sd1_inpaint": "SD 1.x Inpaint", "sd1_pix2pix": "Instruct-Pix2Pix",
    "sd1_tiny_unet": "SD 1.x Tiny UNet", "sd2": "SD 2.x", "sd2_inpaint": "SD 2.x Inpaint",
    "sd2_tiny_unet": "SD 2.x Tiny UNet", "sdxs_512_ds": "SDXS (512-DS)", "sdxs_09": "SDXS (09)",
    "sdxl": "SDXL", "sdxl_inpaint": "SDXL Inpaint", "sdxl_pix2pix": "SDXL Instruct-Pix2Pix",
    "sdxl_vega": "SDXL (Vega)", "sdxl_ssd1b": "SDXL (SSD1B)", "svd": "SVD", "sd3": "SD3.x",
    "flux": "Flux", "flux_fill": "Flux Fill", "flux_controls": "Flux Control", "flex_2": "Flex.2",
    "chroma_radiance": "Chroma Radiance", "wan2": "Wan 2.x", "wan2_2_i2v": "Wan 2.2 I2V",
    "wan2_2_ti2v": "Wan 2.2 TI2V", "qwen_image": "Qwen Image", "anima": "Anima",
    "flux2": "Flux.2", "flux2_klein": "Flux.2 klein", "z_image": "Z-Image",
    "ovis_image": "Ovis Image", "ernie_image": "Ernie Image",
}  # fmt: skip

#: UNet families (the engine runs them from a full checkpoint in ``model_path``).
UNET_ARCHES = frozenset(
    a for a in ENGINE_VERSION_NAMES if a.startswith(("sd1", "sd2", "sdxs", "sdxl")) or a == "svd"
) | {"sdxl_refiner"}
UNET_ONLY_REASON = (
    _UNET_ONLY + ": the engine reads the SD1/SD2/SDXL version from the text encoder inside "
    "a full checkpoint, so a UNet-only file cannot be loaded; use the full checkpoint"
)
