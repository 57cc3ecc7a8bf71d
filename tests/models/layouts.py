"""Compact tensor layouts per architecture: only the names and shapes detection looks at.

Derived from stable-diffusion.cpp 0.4.7's model classes (``src/*.hpp``) and the reference
manifests the kit uses; real widths are kept (they are what detection reads) while block
counts are cut to what tells one variant from another.
"""

from __future__ import annotations

Layout = dict[str, tuple[int, ...]]


def prefixed(prefix: str, layout: Layout) -> Layout:
    return {prefix + k: v for k, v in layout.items()}


# --- UNet families ---------------------------------------------------------------------------


def unet(
    ctx: int,
    *,
    in_ch: int = 4,
    xl: bool = False,
    mid: bool = True,
    out311: bool = True,
    out71: bool = True,
    attn1_k: int = 640,
    svd: bool = False,
    ch: int = 320,
) -> Layout:
    """An LDM UNet (``input_blocks``…); ``xl`` puts the first attention at level 2 like SDXL."""
    at = "input_blocks.4.1" if xl else "input_blocks.1.1"
    width = ch * 2 if xl else ch
    lay: Layout = {
        "input_blocks.0.0.weight": (ch, in_ch, 3, 3),
        "input_blocks.0.0.bias": (ch,),
        f"{at}.transformer_blocks.0.attn2.to_k.weight": (width, ctx),
        f"{at}.transformer_blocks.0.attn2.to_v.weight": (width, ctx),
        "time_embed.0.weight": (ch * 4, ch),
        "out.2.weight": (4, ch, 3, 3),
    }
    if xl:
        lay["label_emb.0.0.weight"] = (ch * 4, 2816 if ctx == 2048 else 2560)
    if mid:
        lay["middle_block.1.proj_in.weight"] = (ch * 4, ch * 4)
    if out311:
        lay["output_blocks.3.1.transformer_blocks.1.attn1.to_k.weight"] = (ch * 4, ch * 4)
    if out71:
        lay["output_blocks.7.1.transformer_blocks.0.attn1.to_k.weight"] = (attn1_k, attn1_k)
    if svd:
        lay["input_blocks.8.0.time_mixer.mix_factor"] = (1,)
    return lay


def unet_diffusers(ctx: int) -> Layout:
    return {
        "conv_in.weight": (320, 4, 3, 3),
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight": (320, ctx),
        "mid_block.resnets.1.conv1.weight": (1280, 1280, 3, 3),
        "up_blocks.1.attentions.0.transformer_blocks.1.attn1.to_k.weight": (1280, 1280),
        "up_blocks.2.attentions.1.proj_in.weight": (640, 640),
        "conv_out.weight": (4, 320, 3, 3),
    }


def clip_text(width: int, *, layers: int = 2, vocab: int = 49408) -> Layout:
    """HF CLIPTextModel names (``text_model.…``); 768 = CLIP-L, 1280 = CLIP-G."""
    lay: Layout = {
        "text_model.embeddings.token_embedding.weight": (vocab, width),
        "text_model.embeddings.position_embedding.weight": (77, width),
        "text_model.final_layer_norm.weight": (width,),
    }
    for i in range(layers):
        p = f"text_model.encoder.layers.{i}."
        lay[p + "self_attn.q_proj.weight"] = (width, width)
        lay[p + "self_attn.q_proj.bias"] = (width,)
        lay[p + "mlp.fc1.weight"] = (width * 4, width)
    return lay


def open_clip_text(width: int) -> Layout:
    """OpenCLIP names as in SD2 / SDXL checkpoints (``model.token_embedding``…)."""
    return {
        "model.token_embedding.weight": (49408, width),
        "model.positional_embedding": (77, width),
        "model.transformer.resblocks.0.attn.in_proj_weight": (width * 3, width),
        "model.ln_final.weight": (width,),
    }


def kl_vae(z: int, ch: int = 128) -> Layout:
    return {
        "encoder.conv_in.weight": (ch, 3, 3, 3),
        "encoder.conv_out.weight": (2 * z, ch * 4, 3, 3),
        "decoder.conv_in.weight": (ch * 4, z, 3, 3),
        "decoder.up.0.block.0.conv1.weight": (ch, ch, 3, 3),
        "decoder.conv_out.weight": (3, ch, 3, 3),
    }


def kl_vae_diffusers(z: int) -> Layout:
    return {
        "encoder.conv_in.weight": (128, 3, 3, 3),
        "encoder.down_blocks.0.resnets.0.conv1.weight": (128, 128, 3, 3),
        "decoder.conv_in.weight": (512, z, 3, 3),
        "decoder.up_blocks.0.resnets.0.conv1.weight": (512, 512, 3, 3),
    }


def wan_vae(z: int) -> Layout:
    enc_in = 12 if z == 48 else 3
    return {
        "encoder.conv1.weight": (96, enc_in, 3, 3, 3),
        "decoder.conv1.weight": (384, z, 3, 3, 3),
        "decoder.middle.0.residual.0.gamma": (384,),
        "conv2.weight": (z, z, 1, 1, 1),
    }


def taesd(z: int) -> Layout:
    return {
        "decoder.layers.0.weight": (64, z, 3, 3),
        "decoder.layers.2.conv.0.weight": (64, 64, 3, 3),
        "encoder.layers.0.weight": (64, 3, 3, 3),
        "encoder.layers.14.weight": (z, 64, 3, 3),
    }


def taehv(z: int) -> Layout:
    return {
        "decoder.1.weight": (256, z, 3, 3),
        "decoder.3.conv.0.weight": (256, 512, 3, 3),
        "decoder.21.weight": (3 if z == 16 else 12, 64, 3, 3),
    }


# --- DiT families -------------------------------------------------------------------------


def flux(
    in_ch: int = 64, *, hidden: int = 3072, guidance: bool = True, chroma: bool = False
) -> Layout:
    lay: Layout = {
        "img_in.weight": (hidden, in_ch),
        "txt_in.weight": (hidden, 4096),
        "time_in.in_layer.weight": (hidden, 256),
        "double_blocks.0.img_attn.qkv.weight": (hidden * 3, hidden),
        "double_blocks.18.img_attn.qkv.weight": (hidden * 3, hidden),
        "double_blocks.0.txt_attn.norm.key_norm.scale": (128,),
        "single_blocks.0.linear1.weight": (hidden * 7, hidden),
        "single_blocks.37.linear1.weight": (hidden * 7, hidden),
        "final_layer.linear.weight": (in_ch if in_ch == 64 else 64, hidden),
    }
    if chroma:
        lay["distilled_guidance_layer.in_proj.weight"] = (5120, 64)
        del lay["time_in.in_layer.weight"]
    else:
        lay["vector_in.in_layer.weight"] = (hidden, 768)
    if guidance and not chroma:
        lay["guidance_in.in_layer.weight"] = (hidden, 256)
    return lay


def flux_diffusers() -> Layout:
    return {
        "x_embedder.weight": (3072, 64),
        "context_embedder.weight": (3072, 4096),
        "transformer_blocks.0.attn.to_q.weight": (3072, 3072),
        "single_transformer_blocks.0.attn.to_q.weight": (3072, 3072),
        "proj_out.weight": (64, 3072),
    }


def chroma_radiance() -> Layout:
    lay = flux(3, chroma=True)
    lay["nerf_final_layer_conv.conv.weight"] = (3, 64, 3, 3)
    lay["img_in_patch.weight"] = (3072, 3, 16, 16)
    return lay


def flux2(*, hidden: int, ctx: int, singles: int) -> Layout:
    return {
        "img_in.weight": (hidden, 128),
        "txt_in.weight": (hidden, ctx),
        "double_stream_modulation_img.lin.weight": (hidden * 6, hidden),
        "double_stream_modulation_txt.lin.weight": (hidden * 6, hidden),
        "single_stream_modulation.lin.weight": (hidden * 3, hidden),
        "double_blocks.0.img_attn.qkv.weight": (hidden * 3, hidden),
        f"single_blocks.{singles - 1}.linear1.weight": (hidden * 9, hidden),
    }


def ovis() -> Layout:
    return {
        "img_in.weight": (3072, 64),
        "txt_in.weight": (3072, 2048),
        "double_blocks.0.img_mlp.gate_proj.weight": (8192, 3072),
        "single_blocks.0.linear1.weight": (3072 * 7, 3072),
    }


def sd3(depth: int, *, mmditx: bool = False) -> Layout:
    hidden = 64 * depth
    lay: Layout = {
        "x_embedder.proj.weight": (hidden, 16, 2, 2),
        "context_embedder.weight": (hidden, 4096),
        "pos_embed": (1, 36864, hidden),
        f"joint_blocks.{depth - 1}.x_block.attn.qkv.weight": (hidden * 3, hidden),
        "joint_blocks.0.context_block.attn.qkv.weight": (hidden * 3, hidden),
    }
    if mmditx:
        lay["joint_blocks.0.x_block.attn2.qkv.weight"] = (hidden * 3, hidden)
    return lay


def sd3_diffusers() -> Layout:
    return {
        "pos_embed.proj.weight": (1536, 16, 2, 2),
        "transformer_blocks.0.attn.add_k_proj.weight": (1536, 1536),
        "transformer_blocks.0.attn.to_k.weight": (1536, 1536),
    }


def qwen_image() -> Layout:
    return {
        "img_in.weight": (3072, 64),
        "txt_in.weight": (3072, 3584),
        "txt_norm.weight": (3584,),
        "transformer_blocks.0.img_mod.1.weight": (18432, 3072),
        "transformer_blocks.0.attn.to_q.weight": (3072, 3072),
        "transformer_blocks.59.img_mod.1.weight": (18432, 3072),
    }


def anima() -> Layout:
    return {
        "net.x_embedder.proj.1.weight": (2048, 68),
        "net.blocks.0.self_attn.q_proj.weight": (2048, 2048),
        "net.llm_adapter.blocks.0.cross_attn.q_proj.weight": (1024, 1024),
        "net.llm_adapter.embed.weight": (32128, 1024),
    }


def z_image() -> Layout:
    return {
        "x_embedder.weight": (3840, 64),
        "cap_embedder.0.weight": (2560,),
        "cap_embedder.1.weight": (3840, 2560),
        "layers.0.attention.qkv.weight": (11520, 3840),
        "noise_refiner.0.attention.qkv.weight": (11520, 3840),
    }


def ernie_image() -> Layout:
    return {
        "x_embedder.proj.weight": (3072, 128, 1, 1),
        "text_proj.weight": (3072, 3072),
        "layers.0.adaLN_sa_ln.weight": (3072,),
        "layers.0.self_attention.to_q.weight": (3072, 3072),
    }


def wan(
    dim: int, in_ch: int, *, img_emb: bool = False, vace: bool = False, diffusers: bool = False
) -> Layout:
    if diffusers:
        return {
            "patch_embedding.weight": (dim, in_ch, 1, 2, 2),
            "blocks.0.attn2.to_k.weight": (dim, dim),
            "condition_embedder.text_embedder.linear_1.weight": (dim, 4096),
        }
    lay: Layout = {
        "patch_embedding.weight": (dim, in_ch, 1, 2, 2),
        "text_embedding.0.weight": (dim, 4096),
        "blocks.0.cross_attn.norm_k.weight": (dim,),
        "blocks.0.self_attn.q.weight": (dim, dim),
        "blocks.29.self_attn.q.weight": (dim, dim),
        "head.head.weight": (64 if in_ch != 48 else 192, dim),
    }
    if img_emb:
        lay["img_emb.proj.1.weight"] = (dim, 1280)
        lay["blocks.0.cross_attn.k_img.weight"] = (dim, dim)
    if vace:
        lay["vace_blocks.0.before_proj.weight"] = (dim, dim)
        lay["vace_patch_embedding.weight"] = (dim, 96, 1, 2, 2)
    return lay


# --- text encoders ------------------------------------------------------------------------


def t5(vocab: int, *, umt5: bool = False, width: int = 4096, gguf: bool = False) -> Layout:
    if gguf:
        lay: Layout = {
            "token_embd.weight": (vocab, width),
            "enc.blk.0.attn_q.weight": (width, width),
            "enc.blk.0.attn_rel_b.weight": (32, 64),
            "enc.output_norm.weight": (width,),
        }
        if umt5:
            lay["enc.blk.1.attn_rel_b.weight"] = (32, 64)
        return lay
    lay = {
        "shared.weight": (vocab, width),
        "encoder.block.0.layer.0.SelfAttention.q.weight": (width, width),
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": (32, 64),
        "encoder.final_layer_norm.weight": (width,),
    }
    if umt5:
        lay["encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"] = (32, 64)
    return lay


def llm(
    hidden: int, vocab: int, *, qk_norm: bool = False, q_bias: bool = False, gguf: bool = False
) -> Layout:
    if gguf:
        lay: Layout = {
            "token_embd.weight": (vocab, hidden),
            "blk.0.attn_q.weight": (hidden, hidden),
            "blk.0.ffn_up.weight": (hidden * 3, hidden),
            "output_norm.weight": (hidden,),
        }
        if qk_norm:
            lay["blk.0.attn_q_norm.weight"] = (128,)
        if q_bias:
            lay["blk.0.attn_q.bias"] = (hidden,)
        return lay
    lay = {
        "model.embed_tokens.weight": (vocab, hidden),
        "model.layers.0.self_attn.q_proj.weight": (hidden, hidden),
        "model.layers.0.mlp.gate_proj.weight": (hidden * 3, hidden),
        "model.norm.weight": (hidden,),
    }
    if qk_norm:
        lay["model.layers.0.self_attn.q_norm.weight"] = (128,)
    if q_bias:
        lay["model.layers.0.self_attn.q_proj.bias"] = (hidden,)
    return lay


def clip_vision(width: int = 1280) -> Layout:
    return {
        "vision_model.embeddings.patch_embedding.weight": (width, 3, 14, 14),
        "vision_model.embeddings.class_embedding": (width,),
        "vision_model.encoder.layers.0.self_attn.q_proj.weight": (width, width),
        "vision_model.post_layernorm.weight": (width,),
    }


# --- other components -----------------------------------------------------------------------


def controlnet(ctx: int, *, xl: bool = False) -> Layout:
    lay = unet(ctx, xl=xl)
    lay["input_hint_block.0.weight"] = (16, 3, 3, 3)
    lay["zero_convs.0.0.weight"] = (320, 320, 1, 1)
    lay["middle_block_out.0.weight"] = (1280, 1280, 1, 1)
    return lay


def esrgan_old(last: int) -> Layout:
    lay: Layout = {
        "model.0.weight": (64, 3, 3, 3),
        "model.1.sub.0.RDB1.conv1.0.weight": (32, 64, 3, 3),
        "model.1.sub.22.RDB3.conv5.0.weight": (64, 96, 3, 3),
        "model.1.sub.23.weight": (64, 64, 3, 3),
    }
    lay[f"model.{last}.weight"] = (3, 64, 3, 3)
    return lay


def esrgan(*, up: int = 2, in_ch: int = 3) -> Layout:
    lay: Layout = {
        "conv_first.weight": (64, in_ch, 3, 3),
        "body.0.rdb1.conv1.weight": (32, 64, 3, 3),
        "body.22.rdb3.conv5.weight": (64, 96, 3, 3),
        "conv_body.weight": (64, 64, 3, 3),
        "conv_hr.weight": (64, 64, 3, 3),
        "conv_last.weight": (3, 64, 3, 3),
    }
    for i in range(1, up + 1):
        lay[f"conv_up{i}.weight"] = (64, 64, 3, 3)
    return lay


def srvgg() -> Layout:
    return {f"body.{i}.weight": (64, 64 if i else 3, 3, 3) for i in range(4)}


def photomaker(v2: bool = False) -> dict[str, object]:
    """A nested state dict as in ``photomaker-v1.bin``: id encoder + LoRA weights."""
    enc: dict[str, object] = {
        "vision_model.embeddings.patch_embedding.weight": (8, 3, 2, 2),
        "visual_projection.weight": (8, 8),
        "fuse_module.mlp1.fc1.weight": (8, 8),
    }
    if v2:
        enc["qformer_perceiver.token_proj.0.weight"] = (8, 8)
    lora = {
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_k_lora.down.weight": (
            4,
            8,
        ),
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_k_lora.up.weight": (
            8,
            4,
        ),
    }
    return {"id_encoder": enc, "lora_weights": lora}


def kohya_lora(ctx: int, *, te_width: int = 768, te2: bool = False, rank: int = 8) -> Layout:
    unet_key = "input_blocks_4_1" if ctx == 2048 else "down_blocks_0_attentions_0"
    p = f"lora_unet_{unet_key}_transformer_blocks_0_attn2_to_k"
    lay: Layout = {
        f"{p}.lora_down.weight": (rank, ctx),
        f"{p}.lora_up.weight": (640 if ctx == 2048 else 320, rank),
        f"{p}.alpha": (),
    }
    te = "lora_te1_" if te2 else "lora_te_"
    lay[f"{te}text_model_encoder_layers_0_mlp_fc1.lora_down.weight"] = (rank, te_width)
    lay[f"{te}text_model_encoder_layers_0_mlp_fc1.lora_up.weight"] = (te_width * 4, rank)
    if te2:
        lay["lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"] = (rank, 1280)
    return lay


def lora_pair(module: str, down: tuple[int, int], up: tuple[int, int], style: str) -> Layout:
    a, b = {
        "comfy": (".lora_down.weight", ".lora_up.weight"),
        "peft": (".lora_A.weight", ".lora_B.weight"),
        "diffusers_old": ("_lora.down.weight", "_lora.up.weight"),
        "loha": (".hada_w1_b", ".hada_w1_a"),
    }[style]
    return {module + a: down, module + b: up}
