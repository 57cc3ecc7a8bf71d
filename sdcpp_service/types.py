"""Request and result dataclasses shared by every door (CLI, HTTP, library)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

#: Component slots of the engine's context (the bindings' ``*_path`` arguments, without ``_path``).
COMPONENT_SLOTS: tuple[str, ...] = (
    "model",
    "diffusion_model",
    "high_noise_diffusion_model",
    "vae",
    "taesd",
    "clip_l",
    "clip_g",
    "clip_vision",
    "t5xxl",
    "llm",
    "llm_vision",
    "control_net",
    "photo_maker",
)


@dataclass(frozen=True)
class LoadOptions:
    """Everything that decides the loaded engine context: changing any of it means a reload."""

    model: str = ""
    diffusion_model: str = ""
    high_noise_diffusion_model: str = ""
    vae: str = ""
    taesd: str = ""
    clip_l: str = ""
    clip_g: str = ""
    clip_vision: str = ""
    t5xxl: str = ""
    llm: str = ""
    llm_vision: str = ""
    control_net: str = ""
    photo_maker: str = ""
    embeddings: tuple[str, ...] = ()
    threads: int = 0
    #: weight type override ("default" keeps the file's types), e.g. "q8_0"
    wtype: str = "default"
    tensor_type_rules: str = ""
    rng: str = "cuda"
    sampler_rng: str = "cuda"
    prediction: str = "default"
    #: "at_runtime" makes adding and removing LoRAs exact; "immediately" merges (faster, lossy)
    lora_apply_mode: str = "at_runtime"
    offload_to_cpu: bool = False
    mmap: bool = False
    clip_on_cpu: bool = False
    vae_on_cpu: bool = False
    control_net_on_cpu: bool = False
    flash_attn: bool = False
    diffusion_flash_attn: bool = False
    diffusion_conv_direct: bool = False
    vae_conv_direct: bool = False
    vae_decode_only: bool = False
    max_vram: float = 0.0

    def components(self) -> dict[str, str]:
        """Slot → path for every component that is set."""
        return {slot: getattr(self, slot) for slot in COMPONENT_SLOTS if getattr(self, slot)}

    @property
    def main_path(self) -> str:
        return self.model or self.diffusion_model

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Lora:
    """A LoRA file and its weight (multiplier)."""

    path: str
    weight: float = 1.0
    high_noise: bool = False
    #: the name the user gave (a tag's or ``--lora``'s), for the infotext; default: the stem
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "weight": self.weight,
            "high_noise": self.high_noise,
            "name": self.name,
        }


@dataclass
class GenerateRequest:
    """One image generation call. ``None`` means "the engine's default for this model"."""

    prompt: str
    negative_prompt: str = ""
    width: int = 512
    height: int = 512
    steps: int = 20
    cfg_scale: float = 7.0
    image_cfg_scale: float | None = None
    guidance: float = 3.5
    sampler: str | None = None
    scheduler: str | None = None
    seed: int = -1
    batch: int = 1
    clip_skip: int = -1
    eta: float | None = None
    flow_shift: float | None = None
    #: img2img / inpaint
    init_image: Image.Image | None = None
    strength: float = 0.75
    mask: Image.Image | None = None
    #: ControlNet (needs ``LoadOptions.control_net``)
    control_image: Image.Image | None = None
    control_strength: float = 0.9
    canny: bool = False
    #: reference-image editing (Kontext / Flux.2 / Qwen-edit)
    ref_images: list[Image.Image] = field(default_factory=list)
    loras: list[Lora] = field(default_factory=list)
    vae_tiling: bool = False
    cache_mode: str = "disabled"
    #: preview images to the progress callback: none, proj (fast), tae, vae
    preview: str = "none"
    preview_interval: int = 1
    #: hires fix
    hires: bool = False
    hires_upscaler: str = "latent"
    hires_model: str = ""
    hires_scale: float = 2.0
    hires_width: int = 0
    hires_height: int = 0
    hires_steps: int = 0
    hires_denoise: float = 0.7
    #: PhotoMaker (needs ``LoadOptions.photo_maker``, an SDXL model, and the trigger word
    #: ``img`` in the prompt): the ID images of the person, v2's ID embed file (made by the
    #: engine's ``face_detect.py``), and how closely the style keeps the ID (0–100)
    pm_id_images: list[Image.Image] = field(default_factory=list)
    pm_id_embed: str = ""
    pm_style_strength: float = 20.0

    def summary(self) -> dict[str, Any]:
        """The request without images (for logs, metadata and job records)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("init_image", "mask", "control_image"):
                value = None if value is None else list(value.size)
            elif f.name in ("ref_images", "pm_id_images"):
                value = [list(im.size) for im in value]
            elif f.name == "loras":
                value = [lo.to_dict() for lo in value]
            out[f.name] = value
        return out


@dataclass(frozen=True)
class Progress:
    """One progress report: ``step`` of ``total``, seconds so far and estimated left."""

    step: int
    total: int
    elapsed: float
    eta: float
    phase: str = "sampling"
    preview: Image.Image | None = None


ProgressCallback = Callable[[Progress], None]


@dataclass
class GenerateResult:
    """Images plus the parameters actually used (resolved seeds, sampler, scheduler, timings)."""

    images: list[Image.Image]
    seeds: list[int]
    params: dict[str, Any]
    timings: dict[str, float]


@dataclass
class VideoRequest:
    """One video generation call (Wan). ``None`` means "the engine's default for this model".

    ``frames`` must be 4k+1 (1, 5, 9, …, 33, 81); ``fps`` only sets the playback rate of the file.
    """

    prompt: str
    negative_prompt: str = ""
    width: int = 832
    height: int = 480
    frames: int = 33
    fps: float = 16.0
    steps: int = 20
    cfg_scale: float = 6.0
    sampler: str | None = None
    scheduler: str | None = None
    seed: int = -1
    clip_skip: int = -1
    eta: float | None = None
    flow_shift: float | None = None
    #: image-to-video (first frame) and first-last-frame (last frame)
    init_image: Image.Image | None = None
    end_image: Image.Image | None = None
    #: VACE: per-frame control video (depth, pose, …), and how strongly it steers
    control_frames: list[Image.Image] = field(default_factory=list)
    vace_strength: float = 1.0
    #: Wan2.2 A14B pair (needs ``LoadOptions.high_noise_diffusion_model``): steps on the
    #: high-noise model (None: switch where sigma drops below ``moe_boundary``), its CFG and sampler
    high_noise_steps: int | None = None
    high_noise_cfg_scale: float | None = None
    high_noise_sampler: str | None = None
    moe_boundary: float = 0.875
    loras: list[Lora] = field(default_factory=list)
    vae_tiling: bool = False
    cache_mode: str = "disabled"

    def summary(self) -> dict[str, Any]:
        """The request without pixels (for logs, metadata and job records)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("init_image", "end_image"):
                value = None if value is None else list(value.size)
            elif f.name == "control_frames":
                value = len(value)
            elif f.name == "loras":
                value = [lo.to_dict() for lo in value]
            out[f.name] = value
        return out


@dataclass
class VideoResult:
    """Frames plus what was used; ``paths`` lists the files written (a video, or PNG frames)."""

    frames: list[Image.Image]
    seed: int
    fps: float
    params: dict[str, Any]
    timings: dict[str, float]
    infotext: str = ""
    paths: list[Path] = field(default_factory=list)
