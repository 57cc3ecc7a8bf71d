"""The engine boundary: typed jobs in, a typed output out, and the :class:`Engine` protocol.

An :class:`Engine` runs in a worker process (``server/worker.py``); the server never calls it
directly. Everything crossing the process boundary pickles: an :data:`EngineJob` in, a
:class:`JobOutput` out (the worker writes its files), and errors as themselves (every
:class:`~sdcpp_service.errors.SdcppError` pickles with its data). The real engine is
``server/engine.py``'s ``PipelineEngine``; the fake one for tests is ``tests/fakes.py``; one
contract suite (``tests/engine/test_contract.py``) runs against both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any, Literal, Protocol, TypeVar, cast

from PIL import Image

from sdcpp_service import rules
from sdcpp_service.errors import InvalidRequest
from sdcpp_service.types import ProgressCallback

#: Job kinds and the inputs each one needs (checked at submission, before queueing).
JOB_KINDS: dict[str, tuple[str, ...]] = {
    "txt2img": (),
    "img2img": ("init_image",),
    "inpaint": ("init_image", "mask"),
    "controlnet": ("control_image",),
    "edit": ("ref_images",),
    "upscale": ("image",),
    "video": (),
}
#: Kinds that generate on the warm model (an upscale leaves it as it is).
PIPELINE_KINDS = ("txt2img", "img2img", "inpaint", "controlnet", "edit", "video")
#: Built-in (PIL) upscalers of the ``upscale`` kind; anything else names an ESRGAN file.
BUILTIN_UPSCALERS = {"lanczos": "LANCZOS", "nearest": "NEAREST"}
#: Video container → file suffix (``frames`` folders are not offered by the server).
VIDEO_FORMATS = rules.VIDEO_FORMATS
#: Fields of a ``video`` job that are not VideoRequest fields.
VIDEO_ONLY = ("format",)
#: Request fields that carry encoded images (those in ``IMAGE_LISTS`` carry a list of them).
IMAGE_FIELDS = (
    "init_image", "mask", "control_image", "image", "end_image", "ref_images", "control_frames",
    "pm_id_images",
)  # fmt: skip
IMAGE_LISTS = ("ref_images", "control_frames", "pm_id_images")

Images = dict[str, "bytes | list[bytes]"]
#: The image-generation modes (each takes the images :data:`JOB_KINDS` names).
ImageKind = Literal["txt2img", "img2img", "inpaint", "controlnet", "edit"]


class _Given:
    def given(self) -> dict[str, Any]:
        """The fields that are set (None: the model's or the engine's default)."""
        return {f.name: getattr(self, f.name) for f in dataclass_fields(self)  # type: ignore[arg-type]
                if getattr(self, f.name) is not None}  # fmt: skip


@dataclass(frozen=True)
class ImageParams(_Given):
    """The settings of an image job: the fields of :data:`sdcpp_service.rules.GENERATION`
    (bounds and choices there), typed; None leaves a field to the model's default
    (:class:`~sdcpp_service.types.GenerateRequest` documents each)."""

    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    image_cfg_scale: float | None = None
    guidance: float | None = None
    sampler: str | None = None
    scheduler: str | None = None
    seed: int | None = None
    batch: int | None = None
    clip_skip: int | None = None
    eta: float | None = None
    flow_shift: float | None = None
    strength: float | None = None
    control_strength: float | None = None
    canny: bool | None = None
    vae_tiling: bool | None = None
    cache_mode: str | None = None
    hires: bool | None = None
    hires_upscaler: str | None = None
    hires_model: str | None = None
    hires_scale: float | None = None
    hires_width: int | None = None
    hires_height: int | None = None
    hires_steps: int | None = None
    hires_denoise: float | None = None
    preview: str | None = None
    preview_interval: int | None = None
    pm_style_strength: float | None = None


@dataclass(frozen=True)
class ImageInputs(_Given):
    """The encoded images of an image job (decoded in the worker, with the pixel limit)."""

    init_image: bytes | None = None
    mask: bytes | None = None
    control_image: bytes | None = None
    ref_images: tuple[bytes, ...] | None = None
    #: PhotoMaker ID images (with the ``photo_maker`` load slot)
    pm_id_images: tuple[bytes, ...] | None = None


@dataclass(frozen=True)
class VideoParams(_Given):
    """The settings of a video job: the :class:`~sdcpp_service.types.VideoRequest` fields a
    request may set (bounds in :mod:`sdcpp_service.rules`), typed; None: the model's default."""

    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    fps: float | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    sampler: str | None = None
    scheduler: str | None = None
    seed: int | None = None
    clip_skip: int | None = None
    eta: float | None = None
    flow_shift: float | None = None
    vace_strength: float | None = None
    high_noise_steps: int | None = None
    high_noise_cfg_scale: float | None = None
    high_noise_sampler: str | None = None
    moe_boundary: float | None = None
    vae_tiling: bool | None = None
    cache_mode: str | None = None


@dataclass(frozen=True)
class VideoInputs(_Given):
    """The encoded images of a video job: first and last frame, VACE control frames."""

    init_image: bytes | None = None
    end_image: bytes | None = None
    control_frames: tuple[bytes, ...] | None = None


@dataclass(frozen=True)
class ImageJob:
    """txt2img, img2img, inpaint, controlnet or edit: typed settings and encoded images."""

    id: str
    kind: ImageKind
    model: str
    load: dict[str, Any] = field(default_factory=dict)
    prompt: str = ""
    loras: tuple[tuple[str, float], ...] = ()
    params: ImageParams = ImageParams()
    images: ImageInputs = ImageInputs()


@dataclass(frozen=True)
class VideoJob:
    """A video (Wan): typed settings and images; ``format`` the container the worker writes."""

    id: str
    model: str
    load: dict[str, Any] = field(default_factory=dict)
    prompt: str = ""
    loras: tuple[tuple[str, float], ...] = ()
    params: VideoParams = VideoParams()
    images: VideoInputs = VideoInputs()
    format: str = "mp4"
    kind: Literal["video"] = "video"


@dataclass(frozen=True)
class UpscaleJob:
    """One image through an ESRGAN file (``model``) or a built-in resizer (``upscaler``)."""

    id: str
    model: str
    image: bytes
    scale: float | None = None
    tile: int = 128
    upscaler: str = ""
    kind: Literal["upscale"] = "upscale"


EngineJob = ImageJob | VideoJob | UpscaleJob
_T = TypeVar("_T")


def engine_job(
    job_id: str, kind: str, model: str, load: dict[str, Any], params: dict[str, Any]
) -> EngineJob:
    """A stored job (plain fields, images as bytes) as the typed job its kind takes; a field the
    kind does not take is ``InvalidRequest`` naming it."""
    values = {k: v for k, v in params.items() if v is not None}
    images = {k: values.pop(k) for k in IMAGE_FIELDS if k in values}
    for name in IMAGE_LISTS:
        if name in images:
            images[name] = tuple(images[name])
    prompt = str(values.pop("prompt", ""))
    loras = tuple((str(n), float(w)) for n, w in values.pop("loras", None) or [])
    if kind == "upscale":
        image = images.get("image")
        if not isinstance(image, bytes):
            raise InvalidRequest("image", "required for upscale")
        scale = values.get("scale")
        return UpscaleJob(
            job_id,
            model,
            image,
            None if scale is None else float(scale),
            int(values.get("tile") or 128),
            str(values.get("upscaler") or ""),
        )
    if kind == "video":
        fmt = str(values.pop("format", "mp4"))
        return VideoJob(job_id, model, dict(load), prompt, loras, _typed(VideoParams, values),
                        _typed(VideoInputs, images), fmt)  # fmt: skip
    if kind not in JOB_KINDS or kind == "upscale":
        raise InvalidRequest("kind", f"must be one of {', '.join(JOB_KINDS)}")
    image_kind = cast(ImageKind, kind)
    return ImageJob(job_id, image_kind, model, dict(load), prompt, loras,
                    _typed(ImageParams, values), _typed(ImageInputs, images))  # fmt: skip


def _typed(cls: type[_T], values: dict[str, Any]) -> _T:
    """``cls(**values)``, coerced to each field's type; an unknown field names itself."""
    names = {f.name for f in dataclass_fields(cls)}  # type: ignore[arg-type]
    for name in values:
        if name not in names:
            raise InvalidRequest(name, "not a parameter of this kind of job")
    return cls(**{k: _coerce(k, v) for k, v in values.items()})


def _coerce(name: str, value: Any) -> Any:
    """Stored JSON numbers as the rules' types (an int ``cfg_scale`` becomes a float)."""
    rule = rules.GENERATION.get(name) or rules.KIND_FIELDS.get(name)
    if rule is not None and rule.kind is float and isinstance(value, int) and not isinstance(value, bool):  # fmt: skip
        return float(value)
    return value


@dataclass
class JobOutput:
    """What a job made: images (or a video's frames, with ``fps``), seeds, the parameters used
    and timings. Each image carries ``info["parameters"]`` (infotext) and ``info["sdcpp"]``
    (for a video: the first frame)."""

    images: list[Image.Image]
    seeds: list[int]
    params: dict[str, Any]
    timings: dict[str, float]
    fps: float | None = None

    @property
    def infotexts(self) -> list[str]:
        return [str(im.info.get("parameters", "")) for im in self.images]


class Engine(Protocol):
    """What a worker process drives. Implementations must pickle (workers are spawned)."""

    def start(self) -> dict[str, Any]:
        """Called once in the worker; returns system information for ``/system``."""
        ...

    def load(self, model: str, load: dict[str, Any]) -> dict[str, Any]:
        """Make ``model`` (with ``load`` overrides) the warm model; no-op when it already is."""
        ...

    def unload(self) -> None:
        """Free the loaded model, if any."""
        ...

    def run(self, job: EngineJob, progress: ProgressCallback) -> JobOutput:
        """Run one job (loading its model first when it is not the warm one)."""
        ...

    def state(self) -> dict[str, Any]:
        """What is warm: ``{"model": path or "", "load": overrides, "loads": models built}``,
        and optionally ``"threads"``: the CPU threads its engine context was made with."""
        ...
