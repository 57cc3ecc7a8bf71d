"""The kit's models: a declarative table of files, their layouts and their init rules.

Each file starts from an engine manifest (``layouts/*.json.gz``) or a derived layout
(``derived.py``). A manifest's ``normal`` tensors get N(0, 0.02²) unless a rule says otherwise;
rules are tried in order and the first whose regex matches the tensor name wins.

Rule kinds:
    zero     -- all zeros, stored as a file hole (no disk blocks)
    scale    -- N(0, (0.02·k)²)
    fan_in   -- N(0, k²/fan_in): for nets without normalisation (TAESD, ESRGAN)
    centered -- like fan_in, then each output channel's weights shifted to mean 0
    const    -- every value k (applies whatever the manifest's init)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    pattern: str
    kind: str  # "zero" | "scale" | "fan_in" | "centered" | "const"
    arg: float = 1.0


@dataclass(frozen=True)
class FileSpec:
    slot: str  # the engine argument it feeds, without "_path": model, vae, clip_l, llm, ...
    filename: str
    layout: str  # a manifest in layouts/, or "derived:<name>" (see derived.py)
    source: str = ""  # the file inside the manifest (default: filename)
    rules: tuple[Rule, ...] = ()
    dtype: str = "F16"  # float dtype of generated tensors
    quant: str | None = None  # GGUF only: Q8_0/Q4_0 for 2-D weights whose rows fit the block

    @property
    def layout_file(self) -> str:
        return self.source or self.filename


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    files: tuple[FileSpec, ...]
    version: str = ""  # what the engine logs as "Version: ..." when it loads the model
    default: bool = True  # part of the default kit (build_all)


# The resnet's second conv and the transformer's proj_out are zero-initialised in LDM
# (zero_module); with them zero, the resnet inner path, the transformer blocks, the timestep MLP
# and (through cross-attention) the text encoder cannot reach the output, so zeroing them as well
# changes no image. Kept random: conv_in, down/up-sampling convs, skip connections, out convs,
# the VAE, and for ControlNet its input_hint_block and zero_convs, so seeds and control images
# still change the output. sd1 keeps its (dead) text encoder random so that the file still looks
# like a real checkpoint to converters; sd1_inpaint's is a hole.
_FAITHFUL_ZEROS = (
    Rule(r"\.out_layers\.3\.weight$", "zero"),
    Rule(r"\.proj_out\.weight$", "zero"),
)
_DEAD_UNET = (
    Rule(r"\.in_layers\.2\.weight$", "zero"),
    Rule(r"\.emb_layers\.1\.weight$", "zero"),
    Rule(r"\.transformer_blocks\.", "zero"),
    Rule(r"\.proj_in\.weight$", "zero"),
    Rule(r"\.time_embed\.", "zero"),
)
_DEAD_TEXT_ENCODER = (Rule(r"^cond_stage_model\.", "zero"),)
# A random KL-VAE encoder barely depends on its input unless its last convs are scaled up.
_VAE_ENCODER_GAIN = (
    Rule(r"^(first_stage_model\.)?(encoder\.conv_out|quant_conv)\.weight$", "scale", 10.0),
)
# ControlNet's hint encoder and zero convs are zero-initialised in training; random at std 0.02 the
# control signal vanishes through them, so they get fan-in init and visibly steer the UNet.
_CONTROL_PATH = (
    Rule(r"^control_model\.(input_hint_block|zero_convs|middle_block_out)\.", "fan_in"),
)
TAE_OUT_GAIN = 0.2  # std of the last conv's output relative to its input's; measured pixel std ~30
# TAESD decodes straight to [0, 1] pixels. Its features are post-ReLU (positive mean), so a random
# last conv adds a large per-channel offset and the image saturates; a centered, damped last conv
# with bias 0.5 gives mid-grey images with visible structure.
_TAE = (
    Rule(r"^(first_stage_model\.)?decoder\.layers\.18\.weight$", "centered", TAE_OUT_GAIN),
    Rule(r"^(first_stage_model\.)?decoder\.layers\.18\.bias$", "const", 0.5),
    Rule(r"^(first_stage_model\.)?(encoder|decoder)\.layers\.", "fan_in"),
)

MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec(
            "sdxs",
            "SDXS-512-DS style SD1 checkpoint: tiny UNet + CLIP-L + TAE; everything random",
            (FileSpec("model", "sdxs.safetensors", "sdxs", rules=_TAE),),
            version="SDXS (512-DS)",
        ),
        ModelSpec(
            "sd1",
            "full SD1.x checkpoint (UNet + CLIP-L + KL VAE); dead UNet weights are holes",
            (
                FileSpec(
                    "model",
                    "sd1.safetensors",
                    "sd1",
                    rules=_FAITHFUL_ZEROS + _DEAD_UNET + _VAE_ENCODER_GAIN,
                ),
            ),
            version="SD 1.x",
        ),
        ModelSpec(
            "sd1_inpaint",
            "SD1.x 9-channel inpainting checkpoint; dead UNet and text-encoder weights are holes",
            (
                FileSpec(
                    "model",
                    "sd1_inpaint.safetensors",
                    "sd1_inpaint",
                    rules=_FAITHFUL_ZEROS + _DEAD_UNET + _DEAD_TEXT_ENCODER + _VAE_ENCODER_GAIN,
                ),
            ),
            version="SD 1.x Inpaint",
        ),
        ModelSpec(
            "controlnet_sd1",
            "SD1.x ControlNet (control_model.*); dead weights are holes, hint/zero convs random",
            (
                FileSpec(
                    "control_net",
                    "control_sd1.safetensors",
                    "controlnet_sd1",
                    rules=_CONTROL_PATH + _FAITHFUL_ZEROS + _DEAD_UNET,
                ),
            ),
            version="SD 1.x",
        ),
        ModelSpec(
            "lora_sd1",
            "kohya SD1 LoRA on attention projections present in both sd1 and sdxs, + CLIP layers",
            (FileSpec("lora", "lora_sd1.safetensors", "derived:lora_sd1"),),
            version="SD 1.x",
        ),
        ModelSpec(
            "taesd",
            "TAESD (tiny autoencoder) for SD1, encoder + decoder",
            (FileSpec("taesd", "taesd.safetensors", "taesd", rules=_TAE),),
            version="SD 1.x",
        ),
        ModelSpec(
            "esrgan_x4",
            "RRDBNet x4 (1 block) whose weights make it an exact nearest-neighbour x4 upscaler",
            (
                FileSpec(
                    "upscaler", "esrgan_x4_nearest.safetensors", "derived:esrgan_x4", dtype="F32"
                ),
            ),
        ),
        ModelSpec(
            "flux2_klein",
            "Flux.2-klein style tiny DiT + its VAE + 1-layer Qwen3 text encoder",
            (
                FileSpec("diffusion_model", "klein_tiny_dit.safetensors", "flux2_klein_tiny"),
                FileSpec(
                    "vae",
                    "klein_vae_tiny.safetensors",
                    "flux2_klein_tiny",
                    rules=_VAE_ENCODER_GAIN,
                ),
                FileSpec("llm", "qwen3_tiny.safetensors", "flux2_klein_tiny"),
            ),
            version="Flux.2 klein",
        ),
        ModelSpec(
            "flux",
            "Flux-style tiny DiT + slim ae + CLIP-L (no T5-XXL: its context is zeros)",
            (
                FileSpec("diffusion_model", "flux_tiny_dit.safetensors", "flux_tiny"),
                FileSpec("vae", "flux_ae_tiny.safetensors", "flux_tiny", rules=_VAE_ENCODER_GAIN),
                FileSpec("clip_l", "clip_l.safetensors", "flux_tiny"),
            ),
            version="Flux",
        ),
        ModelSpec(
            "wan21",
            "Wan2.1 T2V 1.3B DiT (30 blocks, q4_0 GGUF) + Wan2.1 VAE; no umT5-XXL (its context "
            "is zeros); ~1.07 GB, so not in the default kit",
            (
                FileSpec(
                    "diffusion_model",
                    "wan21_t2v_1.3b_q4_0.gguf",
                    "wan21_t2v_1_3b",
                    source="wan21_t2v_1.3b.safetensors",
                    quant="Q4_0",
                ),
                FileSpec("vae", "wan21_vae.safetensors", "wan21_t2v_1_3b"),
            ),
            version="Wan 2.x",
            default=False,
        ),
        ModelSpec(
            "wan21_vace",
            "Wan2.1 VACE 1.3B DiT: the T2V DiT + one VACE block (q4_0 GGUF) + Wan2.1 VAE; "
            "~1.1 GB, so not in the default kit",
            (
                FileSpec(
                    "diffusion_model",
                    "wan21_vace_1.3b_q4_0.gguf",
                    "derived:wan21_vace",
                    quant="Q4_0",
                ),
                FileSpec("vae", "wan21_vae.safetensors", "wan21_t2v_1_3b"),
            ),
            version="Wan 2.x",
            default=False,
        ),
    )
}


def model(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown kit model {name!r}; known: {sorted(MODELS)}") from None


def default_models() -> list[str]:
    return [name for name, spec in MODELS.items() if spec.default]
