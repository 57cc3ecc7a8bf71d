"""What the engine's ``ModelLoader`` does to tensors, mirrored as data (read from
``src/model.cpp`` and ``src/model_io/*_io.cpp`` of the pinned stable-diffusion.cpp).

These tables make a plan exact; the engine tests compare every planned type with the file the
engine writes, so a change in the pinned engine shows up there.
"""

from __future__ import annotations

from collections.abc import Mapping

#: On-disk dtype → the type the engine holds it as (``src/model_io/*_io.cpp``).
READ_AS: Mapping[str, str] = {
    "F64": "f32",
    "F32": "f32",
    "F16": "f16",
    "BF16": "bf16",
    "F8_E4M3": "f16",
    "F8_E5M2": "f16",
    "I64": "i32",
    "I32": "i32",
}
#: dtypes the engine's safetensors reader skips silently (they never reach the output).
SKIPPED_DTYPES = frozenset({"U8"})

#: Tensors the engine drops on reading (``unused_tensors`` in ``src/model.cpp``), by prefix.
ENGINE_UNUSED: tuple[str, ...] = (
    "betas",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
    "cond_stage_model.transformer.text_model.embeddings.position_ids",
    "cond_stage_model.1.model.text_model.embeddings.position_ids",
    "cond_stage_model.transformer.vision_model.embeddings.position_ids",
    "cond_stage_model.model.logit_scale",
    "conditioner.embedders.0.transformer.text_model.embeddings.position_ids",
    "conditioner.embedders.0.model.logit_scale",
    "conditioner.embedders.1.model.logit_scale",
    "model.diffusion_model.time_embedding.cond_proj.weight",
    "unet.time_embedding.cond_proj.weight",
    "model_ema.decay",
    "model_ema.num_updates",
    "model_ema.diffusion_model",
    "embedding_manager",
    "denoiser.sigmas",
    "text_encoders.t5xxl.transformer.encoder.embed_tokens.weight",
    "ztsnr",
    "edm_vpred.sigma_min",
    "text_encoders.llm.output.weight",
    "text_encoders.llm.lm_head.",
    "first_stage_model.bn.",
)

#: ``tensor_should_be_converted``: names the engine never converts, with the reason it has.
ENGINE_KEEPS_SUFFIX: tuple[tuple[str, str], ...] = ((".bias", "bias"), (".scale", "scale"))
ENGINE_KEEPS_CONTAINS: tuple[tuple[str, str], ...] = tuple(
    (marker, why)
    for why, markers in (
        ("Flux input/output layer", ("img_in.", "txt_in.", "time_in.", "vector_in.")),
        ("Flux input/output layer", ("guidance_in.", "final_layer.")),
        ("MMDiT embedder", ("x_embedder.", "t_embedder.", "y_embedder.", "pos_embed")),
        ("MMDiT embedder", ("context_embedder.",)),
        ("UNet time/label embedding", ("time_embed.", "label_emb.")),
        ("embedding", ("embedding",)),
    )
    for marker in markers
)


def engine_keeps(name: str) -> str | None:
    """Why ``tensor_should_be_converted`` refuses ``name`` whatever the type (None: it may)."""
    for suffix, why in ENGINE_KEEPS_SUFFIX:
        if name.endswith(suffix):
            return why
    for marker, why in ENGINE_KEEPS_CONTAINS:
        if marker in name:
            return why
    return None


def engine_drops(name: str, dtype: str) -> bool:
    """The engine never reads this tensor (skipped dtype or an unused name)."""
    return dtype.upper() in SKIPPED_DTYPES or name.startswith(ENGINE_UNUSED)
