"""Component rows of the architecture table: VAEs, text encoders, upscalers, LoRAs, …

Same ordered-table conventions as :mod:`sdcpp_service.models.archs`. For a component the
``arch`` is its family (``flux`` for the 16-channel KL VAE, ``qwen3`` for an LLM, ``sd1`` for a
LoRA's base) and ``component`` is the slot kind it fills in a load plan.
"""

from __future__ import annotations

from sdcpp_service.models.archs import Dim, Has, Lacks, MaxIndex, Rule, SizeBy

#: Component kind → the bindings' argument that takes it.
COMPONENT_SLOTS: dict[str, str] = {
    "vae": "vae_path",
    "taesd": "taesd_path",
    "clip_l": "clip_l_path",
    "clip_h": "clip_l_path",
    "clip_g": "clip_g_path",
    "t5xxl": "t5xxl_path",
    "umt5xxl": "t5xxl_path",
    "llm": "llm_path",
    "clip_vision": "clip_vision_path",
    "controlnet": "control_net_path",
    "upscaler": "upscaler_path",
    "lora": "lora",
    "embedding": "embedding",
    "photomaker": "photo_maker_path",
}

_KL = "decoder.conv_in.weight"
_WANVAE = "decoder.conv1.weight"
_TAESD = "decoder.layers.0.weight"
_TAEHV = "decoder.1.weight"


def _vae(arch: str, *when: Has | Lacks | Dim) -> Rule:
    return Rule("vae", arch, tuple(when), component="vae")


def _tae(arch: str, *when: Has | Lacks | Dim) -> Rule:
    return Rule("taesd", arch, tuple(when), component="taesd")


#: VAEs and tiny autoencoders; ``arch`` is the latent family (by latent channels).
#: The 16-channel KL layout is shared by Flux, SD3, Z-Image and Ovis; Qwen-Image's VAE has
#: the Wan 2.1 layout; SD1/SD2/SDXL VAEs share one 4-channel layout.
VAE_RULES: tuple[Rule, ...] = (
    _vae("wan2.2", Has(_WANVAE), Dim(_WANVAE, 1, (48,))),
    _vae("wan2.1", Has(_WANVAE), Dim(_WANVAE, 1, (16,))),
    _vae("flux2", Has(_KL), Dim(_KL, 1, (32,))),
    _vae("flux", Has(_KL), Dim(_KL, 1, (16,))),
    _vae("sd", Has(_KL), Dim(_KL, 1, (4,))),
    _tae("flux2", Has(_TAESD), Dim(_TAESD, 1, (32,))),
    _tae("flux", Has(_TAESD), Dim(_TAESD, 1, (16,))),
    _tae("sd", Has(_TAESD), Dim(_TAESD, 1, (4,))),
    _tae("wan2.2", Has(_TAEHV), Has("decoder.3.conv.0.weight"), Dim(_TAEHV, 1, (48,))),
    _tae("wan2.1", Has(_TAEHV), Has("decoder.3.conv.0.weight"), Dim(_TAEHV, 1, (16,))),
)

_T5Q = "encoder.block.0.layer.0.SelfAttention.q.weight|enc.blk.0.attn_q.weight"
_T5EMB = "shared.weight|token_embd.weight|encoder.embed_tokens.weight"
_T5REL1 = "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight|enc.blk.1.attn_rel_b.weight"
_LLMQ = "layers.0.self_attn.q_proj.weight|blk.0.attn_q.weight"
_LLMEMB = "embed_tokens.weight|token_embd.weight"
_QNORM = "layers.0.self_attn.q_norm.weight|blk.0.attn_q_norm.weight"
_QBIAS = "layers.0.self_attn.q_proj.bias|blk.0.attn_q.bias"
_CLIPEMB = "token_embedding.weight"
_VISION = (
    "vision_model.embeddings.patch_embedding.weight|visual.conv1.weight|"
    "vision_model.encoder.layers.0.self_attn.q_proj.weight"
)


def _te(
    component: str,
    *when: Has | Lacks | Dim,
    arch: str | None = None,
    variant: str | None = None,
    size: SizeBy | None = None,
    supported: bool = True,
    reason: str | None = None,
) -> Rule:
    return Rule(
        "text_encoder", arch or component, tuple(when), size=size,
        variant="{size}" if size is not None and variant is None else variant,
        component=component, supported=supported, reason=reason,
    )  # fmt: skip


#: Text encoders (T5 before the LLM rows: GGUF T5 names also end in ``blk.0.attn_q.weight``).
TE_RULES: tuple[Rule, ...] = (
    _te("umt5xxl", Has(_T5Q), Dim(_T5Q, 0, (4096,)), Dim(_T5EMB, 0, (256384,))),
    _te("umt5xxl", Has(_T5Q), Dim(_T5Q, 0, (4096,)), Has(_T5REL1)),
    _te("t5xxl", Has(_T5Q), Dim(_T5Q, 0, (4096,))),
    _te("t5xxl", Has(_T5Q), supported=False,
        reason="a T5 encoder, but not T5-XXL (the engine's T5 has a fixed 4096 width)"),
    _te("llm", Has(_LLMQ), Has(_LLMEMB), Has(_QNORM), arch="qwen3", size=SizeBy(_LLMEMB, 1, {
        1024: "0.6b", 2048: "1.7b", 2560: "4b", 4096: "8b", 5120: "14b"})),
    _te("llm", Has(_LLMQ), Has(_LLMEMB), Dim(_LLMEMB, 0, (131072,)), Dim(_LLMEMB, 1, (5120,)),
        arch="mistral-small-3.2", variant="24b"),
    _te("llm", Has(_LLMQ), Has(_LLMEMB), Dim(_LLMEMB, 0, (131072,)), Dim(_LLMEMB, 1, (3072,)),
        arch="ministral-3", variant="3b"),
    _te("llm", Has(_LLMQ), Has(_LLMEMB), Has(_QBIAS), arch="qwen2.5-vl", size=SizeBy(_LLMEMB, 1, {
        2048: "3b", 3584: "7b"})),
    _te("llm", Has(_LLMQ), Has(_LLMEMB), arch="llm", supported=False,
        reason="a language model the engine does not use as a text encoder"),
    _te("clip_g", Dim(_CLIPEMB, 1, (1280,))),
    _te("clip_h", Dim(_CLIPEMB, 1, (1024,))),
    _te("clip_l", Dim(_CLIPEMB, 1, (768,))),
    Rule("clip_vision", "clip_vision_h", (Has(_VISION), Dim(_VISION, 0, (1280,))),
         component="clip_vision"),
    Rule("clip_vision", "clip_vision", (Has(_VISION),), component="clip_vision", supported=False,
         reason="the engine's CLIP vision encoder is ViT-H/14 (width 1280)"),
)  # fmt: skip

_RRDB_OLD = "model.1.sub.0.RDB1.conv1.0.weight"
_RRDB = "body.0.rdb1.conv1.weight"


def _esrgan(
    variant: str,
    *when: Has | Lacks | Dim | MaxIndex,
    supported: bool = True,
    reason: str | None = None,
) -> Rule:
    return Rule(
        "upscaler", "esrgan", tuple(when), variant=variant, component="upscaler",
        supported=supported, reason=reason, details={"scale": variant},
    )  # fmt: skip


#: PhotoMaker ID encoders (their files also carry LoRA weights, so they are tried first).
PHOTOMAKER_RULES: tuple[Rule, ...] = (
    Rule("photomaker", "photomaker", (Has("qformer_perceiver."),), variant="v2",
         component="photomaker", details={"note": "the engine loads PhotoMaker v2 only when "
                                          "'v2' appears in the file path"}),
    Rule("photomaker", "photomaker", (Has("fuse_module.mlp1.fc1.weight"),), variant="v1",
         component="photomaker"),
)  # fmt: skip

#: Files that are neither a main model nor a VAE/text encoder (bare files only).
OTHER_RULES: tuple[Rule, ...] = (
    *PHOTOMAKER_RULES,
    _esrgan("x4", Has(_RRDB_OLD), Has("model.0.weight"), MaxIndex("model", 8)),
    _esrgan("x2", Has(_RRDB_OLD), Has("model.0.weight"), MaxIndex("model", 5, 7)),
    _esrgan("x1", Has(_RRDB_OLD), Has("model.0.weight"), MaxIndex("model", 0, 4)),
    _esrgan("x4", Has(_RRDB), Dim("conv_first.weight", 1, (3,)), Has("conv_up2.weight")),
    _esrgan("x2", Has(_RRDB), Dim("conv_first.weight", 1, (3,)), Has("conv_up1.weight")),
    _esrgan("x1", Has(_RRDB), Dim("conv_first.weight", 1, (3,))),
    _esrgan("unshuffle", Has(_RRDB), Has("conv_first.weight"), supported=False,
            reason="RRDBNet with pixel-unshuffle input (Real-ESRGAN x2plus style); "
            "the engine runs 3-channel ESRGAN only"),
    Rule("upscaler", "srvgg", (Has("body.0.weight"), Has("body.1.weight"), Lacks(_RRDB)),
         component="upscaler", supported=False,
         reason="SRVGGNetCompact upscaler; the engine runs ESRGAN (RRDBNet) only"),
)  # fmt: skip

#: Textual-inversion embeddings: tensor names they use, and width → base family.
EMBEDDING_NAMES = frozenset({"emb_params", "*", "clip_l", "clip_g", "string_to_param.*"})
EMBEDDING_WIDTHS: dict[frozenset[int], str] = {
    frozenset({768}): "sd1",
    frozenset({1024}): "sd2",
    frozenset({768, 1280}): "sdxl",
    frozenset({1280}): "sdxl",
}

#: LoRA weight suffixes (kohya, diffusers, peft, LyCORIS).
LORA_SUFFIXES = (
    ".lora_down.weight", ".lora_up.weight", ".lora_A.weight", ".lora_B.weight",
    ".lora.down.weight", ".lora.up.weight", "_lora.down.weight", "_lora.up.weight",
    ".lora_A.default.weight", ".lora_B.default.weight", ".lora_linear_layer.down.weight",
    ".hada_w1_a", ".hada_w2_b", ".lokr_w1", ".lokr_w2", ".lokr_w1_a", ".lokr_w2_a",
)  # fmt: skip
#: Names that carry a LoRA's "down" (input-side) matrix: shape [rank, in_features].
LORA_DOWN = (".lora_down.weight", ".lora_A.weight", ".lora.down.weight", "_lora.down.weight",
             ".lora_A.default.weight", ".lora_linear_layer.down.weight", ".hada_w1_b")  # fmt: skip

#: LoRA naming styles, first match wins: (name prefix or marker, style).
LORA_STYLES: tuple[tuple[str, str], ...] = (
    ("hada_w1_a", "loha"),
    ("lokr_w1", "lokr"),
    ("lora_unet_", "kohya"),
    ("lora_te", "kohya"),
    ("base_model.model.", "peft"),
    ("diffusion_model.", "comfy"),
    ("unet.", "diffusers"),
    ("transformer.", "diffusers"),
    ("text_encoder", "diffusers"),
)

#: LoRA base family by module-path markers (regex on the name), first match wins.
#: ``unet`` and ``te`` are resolved by width (cross-attention / text-encoder width).
LORA_FAMILIES: tuple[tuple[str, str], ...] = (
    (r"double[._]stream[._]modulation", "flux2"),
    (r"(^|[._])(double|single)[._]blocks[._]\d", "flux"),
    (r"single[._]transformer[._]blocks", "flux"),
    (r"joint[._]blocks", "sd3"),
    (r"img[._]mod|img[._]mlp|txt[._]mlp", "qwen_image"),
    (r"(^|[._])blocks[._]\d+[._](self|cross)[._]attn", "wan2"),
    (r"(^|[._])layers[._]\d+[._]attention[._]", "z_image"),
    (r"transformer[._]blocks[._]\d+[._]attn[._]add[._][qkv][._]proj", "sd3"),
    (r"(input|output)[._]blocks|(down|up)[._]blocks|middle[._]block|mid[._]block", "unet"),
    (r"^lora[._]te|text[._]encoder|^te\d?[._]", "te"),
)
#: Width of a UNet LoRA's cross-attention input / text-encoder LoRA's input → family.
LORA_UNET_CTX: dict[int, str] = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
LORA_TE_WIDTH: dict[int, str] = {768: "sd1", 1024: "sd2", 1280: "sdxl"}
