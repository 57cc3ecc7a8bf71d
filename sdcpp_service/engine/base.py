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
from typing import Any, Protocol

from PIL import Image

from sdcpp_service import rules
from sdcpp_service.errors import InvalidRequest
from sdcpp_service.types import GenerateRequest, ProgressCallback, VideoRequest

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
)  # fmt: skip
IMAGE_LISTS = ("ref_images", "control_frames")

Images = dict[str, "bytes | list[bytes]"]

_IMAGE_PARAMS = {f.name for f in dataclass_fields(GenerateRequest)} - {"prompt", "loras"}
_VIDEO_PARAMS = {f.name for f in dataclass_fields(VideoRequest)} - {"prompt", "loras"}


@dataclass(frozen=True)
class ImageJob:
    """txt2img, img2img, inpaint, controlnet or edit: ``params`` are
    :class:`~sdcpp_service.types.GenerateRequest` fields, ``images`` encoded images (decoded in
    the worker, with the pixel limit)."""

    id: str
    kind: str
    model: str
    load: dict[str, Any] = field(default_factory=dict)
    prompt: str = ""
    loras: tuple[tuple[str, float], ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    images: Images = field(default_factory=dict)


@dataclass(frozen=True)
class VideoJob:
    """A video: ``params`` are :class:`~sdcpp_service.types.VideoRequest` fields; ``format``
    the container the worker writes."""

    id: str
    model: str
    load: dict[str, Any] = field(default_factory=dict)
    prompt: str = ""
    loras: tuple[tuple[str, float], ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    images: Images = field(default_factory=dict)
    format: str = "mp4"
    kind: str = "video"


@dataclass(frozen=True)
class UpscaleJob:
    """One image through an ESRGAN file (``model``) or a built-in resizer (``upscaler``)."""

    id: str
    model: str
    image: bytes
    scale: float | None = None
    tile: int = 128
    upscaler: str = ""
    kind: str = "upscale"


EngineJob = ImageJob | VideoJob | UpscaleJob


def engine_job(
    job_id: str, kind: str, model: str, load: dict[str, Any], params: dict[str, Any]
) -> EngineJob:
    """A stored job (plain fields, images as bytes) as the typed job its kind takes."""
    values = dict(params)
    images: Images = {k: values.pop(k) for k in IMAGE_FIELDS if values.get(k) is not None}
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
        _known(values, _VIDEO_PARAMS)
        return VideoJob(job_id, model, dict(load), prompt, loras, values, images, fmt)
    if kind not in JOB_KINDS:
        raise InvalidRequest("kind", f"must be one of {', '.join(JOB_KINDS)}")
    _known(values, _IMAGE_PARAMS)
    return ImageJob(job_id, kind, model, dict(load), prompt, loras, values, images)


def _known(values: dict[str, Any], names: set[str]) -> None:
    for name in values:
        if name not in names:
            raise InvalidRequest(name, "not a parameter of this kind of job")


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
        """What is warm: ``{"model": path or "", "load": overrides, "loads": models built}``."""
        ...
