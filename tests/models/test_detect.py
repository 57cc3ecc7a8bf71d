"""Every architecture and component kind in the table, from header-only files on disk.

Each case writes a file (named and placed so as to mislead wherever possible), inspects it and
checks kind, arch, variant and the loader slot chosen.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from sdcpp_service.models import inspect
from sdcpp_service.models.archs import ENGINE_VERSION_NAMES, MODEL_RULES
from sdcpp_service.models.detect import detect
from tests.models import layouts as L
from tests.models.corpus import write_diffusers, write_gguf, write_safetensors, write_torch_zip

P = L.prefixed


class Case(NamedTuple):
    id: str
    write: Callable[[Path], Path]
    kind: str
    arch: str | None
    variant: str | None
    slot: str | None
    supported: bool = True


def st(name: str, layout: L.Layout) -> Callable[[Path], Path]:
    return lambda d: write_safetensors(d / name, layout)


def gg(name: str, layout: L.Layout, dtype: str = "Q4_0") -> Callable[[Path], Path]:
    def write(d: Path) -> Path:
        lay = {
            k: (v, dtype if len(v) == 2 and v[-1] % 32 == 0 else "F32") for k, v in layout.items()
        }
        return write_gguf(d / name, lay)  # type: ignore[arg-type]

    return write


def ckpt(clip: L.Layout, unet: L.Layout, vae: L.Layout) -> L.Layout:
    return {
        **P("model.diffusion_model.", unet),
        **P("first_stage_model.", vae),
        **clip,
    }


SD1_CKPT = ckpt(P("cond_stage_model.transformer.", L.clip_text(768)), L.unet(768), L.kl_vae(4))
SD2_CKPT = ckpt(P("cond_stage_model.", L.open_clip_text(1024)), L.unet(1024), L.kl_vae(4))
XL_TE = {
    **P("conditioner.embedders.0.transformer.", L.clip_text(768)),
    **P("conditioner.embedders.1.", L.open_clip_text(1280)),
}
M = "model_path"
D = "diffusion_model_path"

CASES: list[Case] = [
    # UNet families: full checkpoints go to model_path.
    Case("sd1", st("vae/flux1-dev.safetensors", SD1_CKPT), "model", "sd1", None, M),
    Case("sd1_inpaint", st("a.safetensors", ckpt(P("cond_stage_model.transformer.", L.clip_text(768)), L.unet(768, in_ch=9), L.kl_vae(4))), "model", "sd1_inpaint", None, M),
    Case("sd1_pix2pix", st("a.safetensors", ckpt(P("cond_stage_model.transformer.", L.clip_text(768)), L.unet(768, in_ch=8), L.kl_vae(4))), "model", "sd1_pix2pix", None, M),
    Case("sd1_tiny_unet", st("a.safetensors", ckpt(P("cond_stage_model.transformer.", L.clip_text(768)), L.unet(768, mid=False), L.kl_vae(4))), "model", "sd1_tiny_unet", None, M),
    Case("sdxs_512_ds", st("a.safetensors", ckpt(P("cond_stage_model.transformer.", L.clip_text(768)), L.unet(768, mid=False, out71=False, xl=True), L.taesd(4))), "model", "sdxs_512_ds", None, M),
    Case("sd2", st("sd15.safetensors", SD2_CKPT), "model", "sd2", None, M),
    Case("sd2_inpaint", st("a.safetensors", ckpt(P("cond_stage_model.", L.open_clip_text(1024)), L.unet(1024, in_ch=9), L.kl_vae(4))), "model", "sd2_inpaint", None, M),
    Case("sd2_tiny_unet", st("a.safetensors", ckpt(P("cond_stage_model.", L.open_clip_text(1024)), L.unet(1024, mid=False), L.kl_vae(4))), "model", "sd2_tiny_unet", None, M),
    Case("sdxs_09", st("a.safetensors", ckpt(P("cond_stage_model.", L.open_clip_text(1024)), L.unet(1024, mid=False, attn1_k=1024), L.kl_vae(4))), "model", "sdxs_09", None, M),
    Case("sdxl", st("a.safetensors", ckpt(XL_TE, L.unet(2048, xl=True), L.kl_vae(4))), "model", "sdxl", None, M),
    Case("sdxl_inpaint", st("a.safetensors", ckpt(XL_TE, L.unet(2048, xl=True, in_ch=9), L.kl_vae(4))), "model", "sdxl_inpaint", None, M),
    Case("sdxl_pix2pix", st("a.safetensors", ckpt(XL_TE, L.unet(2048, xl=True, in_ch=8), L.kl_vae(4))), "model", "sdxl_pix2pix", None, M),
    Case("sdxl_vega", st("a.safetensors", ckpt(XL_TE, L.unet(2048, xl=True, mid=False, out311=False), L.kl_vae(4))), "model", "sdxl_vega", None, M),
    Case("sdxl_ssd1b", st("a.safetensors", ckpt(XL_TE, L.unet(2048, xl=True, mid=False), L.kl_vae(4))), "model", "sdxl_ssd1b", None, M),
    Case("svd", st("a.safetensors", ckpt(P("conditioner.embedders.0.open_clip.", L.clip_vision(1280)), L.unet(1024, svd=True), L.kl_vae(4))), "model", "svd", None, M),
    Case("sdxl_refiner", st("a.safetensors", ckpt(P("conditioner.embedders.0.", L.open_clip_text(1280)), L.unet(1280, xl=True, ch=384), L.kl_vae(4))), "model", "sdxl_refiner", None, M, False),
    Case("sd1_unet_only", st("unet/sd15_unet.safetensors", L.unet(768)), "model", "sd1", None, None, False),
    Case("sdxl_unet_only_diffusers", st("unet/diffusion_pytorch_model.safetensors", L.unet_diffusers(2048)), "model", "sdxl", None, None, False),
    Case("sd1_diffusers_folder", lambda d: write_diffusers(d / "sd15", "StableDiffusionPipeline", {"unet": L.unet_diffusers(768), "vae": L.kl_vae_diffusers(4), "text_encoder": L.clip_text(768)}), "model", "sd1", None, M),
    Case("sd1_ckpt", lambda d: write_torch_zip(d / "model.ckpt", {"state_dict": {**{k: v for k, v in SD1_CKPT.items() if "token_embedding" not in k and "pos" not in k}, "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (16, 768)}, "global_step": 1}), "model", "sd1", None, M),  # type: ignore[dict-item]
    # DiT families: bare, prefixed and GGUF files go to diffusion_model_path.
    Case("flux_dev", st("vae/sd15.safetensors", L.flux()), "model", "flux", "dev", D),
    Case("flux_schnell_gguf", gg("flux1-schnell-Q4_0.gguf", L.flux(guidance=False)), "model", "flux", "schnell", D),
    Case("flux_prefixed", st("x.safetensors", P("model.diffusion_model.", L.flux())), "model", "flux", "dev", D),
    Case("flux_all_in_one", st("x.safetensors", {**P("model.diffusion_model.", L.flux()), **P("vae.", L.kl_vae(16)), **P("text_encoders.clip_l.transformer.", L.clip_text(768)), **P("text_encoders.t5xxl.transformer.", L.t5(32128))}), "model", "flux", "dev", M),
    Case("chroma", st("chroma.safetensors", L.flux(chroma=True)), "model", "flux", "chroma", D),
    Case("flux_fill", st("x.safetensors", L.flux(384)), "model", "flux_fill", "fill", D),
    Case("flux_controls", st("x.safetensors", L.flux(128)), "model", "flux_controls", "controls", D),
    Case("flex_2", st("x.safetensors", L.flux(196)), "model", "flex_2", None, D),
    Case("chroma_radiance", st("x.safetensors", L.chroma_radiance()), "model", "chroma_radiance", "chroma-radiance", D),
    Case("flux_diffusers", st("transformer/diffusion_pytorch_model.safetensors", L.flux_diffusers()), "model", "flux", "diffusers", D, False),
    Case("sd3_medium", st("x.safetensors", L.sd3(24)), "model", "sd3", "medium", D),
    Case("sd3_5_medium", st("x.safetensors", L.sd3(24, mmditx=True)), "model", "sd3", "3.5-medium", D),
    Case("sd3_5_large", gg("x.gguf", P("model.diffusion_model.", L.sd3(38)), "Q8_0"), "model", "sd3", "3.5-large", D),
    Case("sd3_diffusers", st("x.safetensors", L.sd3_diffusers()), "model", "sd3", "diffusers", D, False),
    Case("qwen_image", gg("x.gguf", L.qwen_image()), "model", "qwen_image", None, D),
    Case("anima", st("x.safetensors", L.anima()), "model", "anima", None, D),
    Case("flux2", st("x.safetensors", L.flux2(hidden=6144, ctx=15360, singles=48)), "model", "flux2", "dev", D),
    Case("flux2_klein_4b", st("x.safetensors", L.flux2(hidden=3072, ctx=7680, singles=20)), "model", "flux2_klein", "4b", D),
    Case("flux2_klein_9b", st("x.safetensors", L.flux2(hidden=4096, ctx=12288, singles=24)), "model", "flux2_klein", "9b", D),
    Case("ovis_image", st("x.safetensors", L.ovis()), "model", "ovis_image", None, D),
    Case("z_image", gg("z.gguf", L.z_image(), "Q8_0"), "model", "z_image", None, D),
    Case("ernie_image", st("x.safetensors", L.ernie_image()), "model", "ernie_image", None, D),
    Case("wan2_t2v_1_3b", st("x.safetensors", L.wan(1536, 16)), "model", "wan2", "t2v-1.3b", D),
    Case("wan2_t2v_14b", st("x.safetensors", L.wan(5120, 16)), "model", "wan2", "t2v-14b", D),
    Case("wan2_i2v_14b", st("x.safetensors", L.wan(5120, 36, img_emb=True)), "model", "wan2", "i2v-14b", D),
    Case("wan2_flf2v", st("x.safetensors", {**L.wan(5120, 36, img_emb=True), "img_emb.emb_pos": (1, 514, 1280)}), "model", "wan2", "flf2v-14b", D),
    Case("wan2_vace", st("x.safetensors", L.wan(1536, 16, vace=True)), "model", "wan2", "vace-1.3b", D),
    Case("wan2_2_i2v", st("x.safetensors", L.wan(5120, 36)), "model", "wan2_2_i2v", "i2v-a14b", D),
    Case("wan2_2_ti2v", st("x.safetensors", L.wan(3072, 48)), "model", "wan2_2_ti2v", "ti2v-5b", D),
    Case("wan_diffusers", st("x.safetensors", L.wan(1536, 16, diffusers=True)), "model", "wan2", "diffusers", D, False),
    # VAEs and tiny autoencoders, by latent family.
    Case("vae_sd", st("flux/ae.safetensors", L.kl_vae(4)), "vae", "sd", None, "vae_path"),
    Case("vae_sd_diffusers", st("x.safetensors", L.kl_vae_diffusers(4)), "vae", "sd", None, "vae_path"),
    Case("vae_flux", st("sdxl_vae.safetensors", L.kl_vae(16)), "vae", "flux", None, "vae_path"),
    Case("vae_flux2", st("x.safetensors", L.kl_vae(32)), "vae", "flux2", None, "vae_path"),
    Case("vae_wan21", st("x.safetensors", L.wan_vae(16)), "vae", "wan2.1", None, "vae_path"),
    Case("vae_wan22", st("x.safetensors", L.wan_vae(48)), "vae", "wan2.2", None, "vae_path"),
    Case("vae_prefixed", st("x.safetensors", P("first_stage_model.", L.kl_vae(4))), "vae", "sd", None, "vae_path"),
    Case("taesd", st("x.safetensors", L.taesd(4)), "taesd", "sd", None, "taesd_path"),
    Case("taef1", st("x.safetensors", L.taesd(16)), "taesd", "flux", None, "taesd_path"),
    Case("taef2", st("x.safetensors", L.taesd(32)), "taesd", "flux2", None, "taesd_path"),
    Case("taehv_wan21", st("x.safetensors", L.taehv(16)), "taesd", "wan2.1", None, "taesd_path"),
    Case("taehv_wan22", st("x.safetensors", L.taehv(48)), "taesd", "wan2.2", None, "taesd_path"),
    # Text encoders.
    Case("clip_l", st("t5xxl.safetensors", L.clip_text(768)), "text_encoder", "clip_l", None, "clip_l_path"),
    Case("clip_g", st("x.safetensors", L.clip_text(1280)), "text_encoder", "clip_g", None, "clip_g_path"),
    Case("clip_h", st("x.safetensors", L.clip_text(1024)), "text_encoder", "clip_h", None, "clip_l_path"),
    Case("t5xxl", st("clip_l.safetensors", L.t5(32128)), "text_encoder", "t5xxl", None, "t5xxl_path"),
    Case("t5xxl_gguf", gg("x.gguf", L.t5(32128, gguf=True), "Q8_0"), "text_encoder", "t5xxl", None, "t5xxl_path"),
    Case("t5_base", st("x.safetensors", L.t5(32128, width=768)), "text_encoder", "t5xxl", None, "t5xxl_path", False),
    Case("umt5xxl", st("x.safetensors", L.t5(256384, umt5=True)), "text_encoder", "umt5xxl", None, "t5xxl_path"),
    Case("umt5xxl_gguf", gg("x.gguf", L.t5(256384, umt5=True, gguf=True), "Q8_0"), "text_encoder", "umt5xxl", None, "t5xxl_path"),
    Case("qwen3_4b", st("x.safetensors", L.llm(2560, 151936, qk_norm=True)), "text_encoder", "qwen3", "4b", "llm_path"),
    Case("qwen3_8b_gguf", gg("x.gguf", L.llm(4096, 151936, qk_norm=True, gguf=True), "Q4_K"), "text_encoder", "qwen3", "8b", "llm_path"),
    Case("qwen3_06b", st("x.safetensors", L.llm(1024, 151936, qk_norm=True)), "text_encoder", "qwen3", "0.6b", "llm_path"),
    Case("qwen25vl_7b", gg("x.gguf", L.llm(3584, 152064, q_bias=True, gguf=True), "Q8_0"), "text_encoder", "qwen2.5-vl", "7b", "llm_path"),
    Case("mistral_small", st("x.safetensors", L.llm(5120, 131072)), "text_encoder", "mistral-small-3.2", "24b", "llm_path"),
    Case("ministral_3b", st("x.safetensors", L.llm(3072, 131072)), "text_encoder", "ministral-3", "3b", "llm_path"),
    Case("other_llm", st("x.safetensors", L.llm(4096, 32000)), "text_encoder", "llm", None, "llm_path", False),
    Case("clip_vision_h", st("x.safetensors", L.clip_vision(1280)), "clip_vision", "clip_vision_h", None, "clip_vision_path"),
    Case("clip_vision_l", st("x.safetensors", L.clip_vision(1024)), "clip_vision", "clip_vision", None, "clip_vision_path", False),
    # ControlNets (family = base model).
    Case("controlnet_sd1", st("x.safetensors", P("control_model.", L.controlnet(768))), "controlnet", "sd1", None, "control_net_path"),
    Case("controlnet_sd1_pth", lambda d: write_torch_zip(d / "control_sd15_canny.pth", {k: v for k, v in L.controlnet(768).items()}), "controlnet", "sd1", None, "control_net_path"),
    Case("controlnet_sd2", st("x.safetensors", L.controlnet(1024)), "controlnet", "sd2", None, "control_net_path"),
    Case("controlnet_sdxl", st("x.safetensors", L.controlnet(2048, xl=True)), "controlnet", "sdxl", None, "control_net_path"),
    Case("controlnet_flux", st("x.safetensors", {**L.flux(), "input_hint_block.0.weight": (16, 3, 3, 3)}), "controlnet", "flux", None, "control_net_path", False),
    Case("controlnet_diffusers", st("x.safetensors", {"controlnet_cond_embedding.conv_in.weight": (16, 3, 3, 3), **L.unet_diffusers(768)}), "controlnet", None, None, "control_net_path", False),
    # Upscalers.
    Case("esrgan_old_x4", st("x.safetensors", L.esrgan_old(10)), "upscaler", "esrgan", "x4", "upscaler_path"),
    Case("esrgan_old_x2", st("x.safetensors", L.esrgan_old(7)), "upscaler", "esrgan", "x2", "upscaler_path"),
    Case("esrgan_x4_pth", lambda d: write_torch_zip(d / "RealESRGAN_x4plus.pth", {"params_ema": L.esrgan(up=2)}), "upscaler", "esrgan", "x4", "upscaler_path"),  # type: ignore[dict-item]
    Case("esrgan_x2", st("x.safetensors", L.esrgan(up=1)), "upscaler", "esrgan", "x2", "upscaler_path"),
    Case("esrgan_x1", st("x.safetensors", L.esrgan(up=0)), "upscaler", "esrgan", "x1", "upscaler_path"),
    Case("esrgan_unshuffle", st("x.safetensors", L.esrgan(in_ch=12)), "upscaler", "esrgan", "unshuffle", "upscaler_path", False),
    Case("srvgg", st("x.safetensors", L.srvgg()), "upscaler", "srvgg", None, "upscaler_path", False),
    # LoRAs (arch = base family).
    Case("lora_kohya_sd1", st("x.safetensors", L.kohya_lora(768)), "lora", "sd1", None, "lora"),
    Case("lora_kohya_sd2", st("x.safetensors", L.kohya_lora(1024, te_width=1024)), "lora", "sd2", None, "lora"),
    Case("lora_kohya_sdxl", st("x.safetensors", L.kohya_lora(2048, te2=True)), "lora", "sdxl", None, "lora"),
    Case("lora_te_only_sd1", st("x.safetensors", {k: v for k, v in L.kohya_lora(768).items() if "unet" not in k}), "lora", "sd1", None, "lora"),
    Case("lora_peft_sd2", st("x.safetensors", L.lora_pair("base_model.model.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k", (4, 1024), (320, 4), "peft")), "lora", "sd2", None, "lora"),
    Case("lora_loha_sd1", st("x.safetensors", L.lora_pair("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", (4, 768), (320, 4), "loha")), "lora", "sd1", None, "lora"),
    Case("lora_comfy_flux", st("x.safetensors", L.lora_pair("diffusion_model.double_blocks.0.img_attn.qkv", (16, 3072), (9216, 16), "comfy")), "lora", "flux", None, "lora"),
    Case("lora_kohya_flux", st("x.safetensors", L.lora_pair("lora_unet_single_blocks_0_linear1", (16, 3072), (21504, 16), "comfy")), "lora", "flux", None, "lora"),
    Case("lora_diffusers_flux", st("x.safetensors", L.lora_pair("transformer.single_transformer_blocks.0.attn.to_k", (16, 3072), (3072, 16), "peft")), "lora", "flux", None, "lora"),
    Case("lora_flux2", st("x.safetensors", L.lora_pair("diffusion_model.double_stream_modulation_img.lin", (16, 6144), (36864, 16), "peft")), "lora", "flux2", None, "lora"),
    Case("lora_sd3", st("x.safetensors", L.lora_pair("transformer.transformer_blocks.0.attn.add_k_proj", (16, 1536), (1536, 16), "peft")), "lora", "sd3", None, "lora"),
    Case("lora_qwen_image", st("x.safetensors", L.lora_pair("transformer_blocks.0.img_mlp.net.0.proj", (16, 3072), (12288, 16), "peft")), "lora", "qwen_image", None, "lora"),
    Case("lora_wan", st("x.safetensors", L.lora_pair("diffusion_model.blocks.0.cross_attn.k", (16, 5120), (5120, 16), "peft")), "lora", "wan2", None, "lora"),
    Case("lora_z_image", st("x.safetensors", L.lora_pair("diffusion_model.layers.0.attention.qkv", (16, 3840), (11520, 16), "peft")), "lora", "z_image", None, "lora"),
    # Embeddings and PhotoMaker.
    Case("embedding_sd1", st("x.safetensors", {"emb_params": (4, 768)}), "embedding", "sd1", None, "embedding"),
    Case("embedding_sdxl", st("x.safetensors", {"clip_l": (2, 768), "clip_g": (2, 1280)}), "embedding", "sdxl", None, "embedding"),
    Case("embedding_sd2_pt", lambda d: write_torch_zip(d / "x.pt", {"string_to_token": {"*": 265}, "string_to_param": {"*": (3, 1024)}, "name": 0}), "embedding", "sd2", None, "embedding"),  # type: ignore[dict-item]
    Case("photomaker_v1", lambda d: write_torch_zip(d / "photomaker-v1.bin", L.photomaker()), "photomaker", "photomaker", "v1", "photo_maker_path"),
    Case("photomaker_v2", lambda d: write_torch_zip(d / "photomaker-v2.bin", L.photomaker(v2=True)), "photomaker", "photomaker", "v2", "photo_maker_path"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_detects(tmp_path: Path, case: Case) -> None:
    info = inspect(case.write(tmp_path))
    got = (info.kind, info.arch, info.variant, info.slot, info.supported)
    assert got == (case.kind, case.arch, case.variant, case.slot, case.supported), info.reason
    if not info.supported:
        assert info.reason
    if info.kind == "model" and info.supported:
        assert info.defaults is not None
        assert info.engine_version == ENGINE_VERSION_NAMES[info.arch or ""]


def test_every_engine_arch_has_a_case() -> None:
    covered = {c.arch for c in CASES if c.kind == "model"}
    assert set(ENGINE_VERSION_NAMES) <= covered
    assert {r.arch for r in MODEL_RULES} <= covered


@pytest.mark.parametrize(
    ("layout", "contains", "needs"),
    [
        (SD1_CKPT, ("clip_l", "vae"), ()),
        (SD2_CKPT, ("clip_h", "vae"), ()),
        (ckpt(XL_TE, L.unet(2048, xl=True), L.kl_vae(4)), ("clip_g", "clip_l", "vae"), ()),
        (L.flux(), (), ("vae flux", "clip_l", "t5xxl")),
        (L.flux(chroma=True), (), ("vae flux", "t5xxl")),
        (L.flux2(hidden=3072, ctx=7680, singles=20), (), ("vae flux2", "llm qwen3 4b")),
        (L.flux2(hidden=4096, ctx=12288, singles=24), (), ("vae flux2", "llm qwen3 8b")),
        (L.flux2(hidden=6144, ctx=15360, singles=48), (), ("vae flux2", "llm mistral-small-3.2 24b")),
        (L.z_image(), (), ("vae flux", "llm qwen3 4b")),
        (L.qwen_image(), (), ("vae wan2.1", "llm qwen2.5-vl 7b")),
        (L.ovis(), (), ("vae flux", "llm qwen3 1.7b")),
        (L.ernie_image(), (), ("vae flux2", "llm ministral-3 3b")),
        (L.anima(), (), ("vae wan2.1", "llm qwen3 0.6b")),
        (L.wan(1536, 16), (), ("vae wan2.1", "umt5xxl")),
        (L.wan(5120, 36, img_emb=True), (), ("vae wan2.1", "umt5xxl", "clip_vision clip_vision_h")),
        (L.wan(3072, 48), (), ("vae wan2.2", "umt5xxl")),
        (L.sd3(24), (), ("vae flux", "clip_l", "clip_g", "t5xxl")),
        (
            {**P("model.diffusion_model.", L.sd3(38)), **P("first_stage_model.", L.kl_vae(16)),
             **P("text_encoders.clip_l.transformer.", L.clip_text(768)),
             **P("text_encoders.clip_g.transformer.", L.clip_text(1280))},
            ("clip_g", "clip_l", "vae"),
            ("t5xxl",),
        ),
    ],
)  # fmt: skip
def test_contains_and_needs(
    layout: L.Layout, contains: tuple[str, ...], needs: tuple[str, ...]
) -> None:
    found = detect(layout)
    assert found is not None
    assert found.contains == contains
    assert tuple(str(n) for n in found.needs) == needs


def test_names_and_folders_do_not_matter(tmp_path: Path) -> None:
    lying = write_safetensors(
        tmp_path / "loras" / "vae" / "sd15-pruned-emaonly.safetensors", L.flux()
    )
    info = inspect(lying)
    assert (info.kind, info.arch, info.slot) == ("model", "flux", "diffusion_model_path")
    assert info.name == "sd15-pruned-emaonly"


def test_nothing_known_is_none() -> None:
    assert detect({}) is None
    assert detect({"foo.weight": (3, 3), "bar.bias": (3,)}) is None


def test_lora_details() -> None:
    found = detect(L.kohya_lora(2048, te2=True, rank=32))
    assert found is not None
    assert found.details == {"style": "kohya", "rank": 32}
