"""The library's front door: ``Pipeline.load(model, **components_and_options)``.

A pipeline owns one loaded engine context (kept warm between calls, freed on ``close``) and turns
friendly arguments (paths or PIL images, LoRA names, A1111 sampler labels) into engine requests.
Every returned image carries ``image.info["parameters"]`` (A1111 infotext) and
``image.info["sdcpp"]`` (the full parameters as a dict).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from sdcpp_service import rules
from sdcpp_service._version import __version__
from sdcpp_service.config import Settings
from sdcpp_service.engine import loras as lora_mod
from sdcpp_service.engine import names
from sdcpp_service.engine.context import Context
from sdcpp_service.engine.generate import generate, size_multiple
from sdcpp_service.engine.images import (
    GeneratedImage,
    infotext,
    load_image,
    lora_hashes,
    size_for_image,
)
from sdcpp_service.engine.photomaker import id_images
from sdcpp_service.errors import InvalidRequest
from sdcpp_service.models.loadplan import plan_model
from sdcpp_service.types import (
    GenerateRequest,
    GenerateResult,
    LoadOptions,
    ProgressCallback,
    VideoRequest,
    VideoResult,
)

if TYPE_CHECKING:
    from sdcpp_service.models import ModelInfo

ImageInput = str | Path | bytes | Image.Image

_LOAD_FIELDS = {f.name for f in dataclasses.fields(LoadOptions)}
_REQUEST_FIELDS = {f.name for f in dataclasses.fields(GenerateRequest)}
#: Friendly aliases accepted by ``Pipeline.generate``.
_ALIASES = {"negative": "negative_prompt", "cfg": "cfg_scale", "batch_count": "batch", "n": "batch"}

#: path → sha256 hex; None when not known yet (a server worker reads only the cache: the hash is
#: then left out of the infotext, as A1111 does, and computed in the background)
HashFn = Callable[[str], str | None]
#: Request fields where None is meaningful (engine default), not "unset".
_NULLABLE = {"eta", "flow_shift", "image_cfg_scale", "sampler", "scheduler"}


log = logging.getLogger("sdcpp_service.engine")


class Pipeline:
    """A warm engine context plus the friendly generation API."""

    def __init__(
        self,
        options: LoadOptions,
        settings: Settings | None = None,
        hash_fn: HashFn | None = None,
        info: Any = None,
        request_defaults: dict[str, Any] | None = None,
        one_shot: bool = False,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.options = options
        self.info = info
        self._hash = hash_fn
        #: generation parameters given to ``load`` (``vae_tiling=True``…): every request's default
        self.request_defaults = dict(request_defaults or {})
        threads = options.threads or self.settings.default_threads
        self.context = Context(options, threads=threads, single_use=one_shot)

    @classmethod
    def load(
        cls,
        model: str | Path,
        *,
        settings: Settings | None = None,
        slot: str | None = None,
        one_shot: bool = False,
        **components_and_options: Any,
    ) -> Pipeline:
        """Load ``model`` (a path or a catalog name). Keyword arguments are component files
        (``vae``, ``taesd``, ``clip_l``, ``clip_g``, ``t5xxl``, ``llm``, ``control_net``, …) and
        load options (``threads``, ``offload_to_cpu``, ``flash_attn``…); generation parameters
        (``vae_tiling``, ``steps``, ``sampler``…) become the defaults of every request;
        ``slot="diffusion_model"`` forces the DiT loader slot.

        ``one_shot=True`` is for a pipeline that serves one generation (as sd-cli does): the
        engine frees each stage's weights as soon as it is done, so the memory peak is the
        largest stage instead of the whole model; a second generation raises ``EngineError``.
        Add ``vae_decode_only=True`` when that generation encodes nothing (no init or
        reference image, no pixel-space hires pass) to skip loading the VAE encoder."""
        settings = settings or Settings.from_env()
        defaults = {
            _ALIASES.get(k, k): components_and_options.pop(k)
            for k in list(components_and_options)
            if k not in _LOAD_FIELDS and _ALIASES.get(k, k) in _REQUEST_FIELDS - {"prompt"}
        }
        options, info = plan_model(model, settings, slot=slot, **components_and_options)
        from sdcpp_service.models import hash_file

        def sha256(path: str) -> str:
            return hash_file(path, settings).sha256

        return cls(
            options,
            settings,
            hash_fn=sha256,
            info=info,
            request_defaults=defaults,
            one_shot=one_shot,
        )

    # -- generation -------------------------------------------------------------------------

    def request(self, prompt: str, **params: Any) -> GenerateRequest:
        """Build a :class:`GenerateRequest` from friendly arguments (validated by the engine)."""
        values: dict[str, Any] = dict(self.request_defaults)
        for key, value in params.items():
            key = _ALIASES.get(key, key)
            if key not in _REQUEST_FIELDS:
                raise InvalidRequest(key, "not a generation parameter")
            values[key] = value
        for key, mode in (("init_image", "RGB"), ("control_image", "RGB"), ("mask", "L")):
            if values.get(key) is not None:
                values[key] = load_image(values[key], key, mode)
        init = values.get("init_image")
        if init is not None and (values.get("width") is None or values.get("height") is None):
            values["width"], values["height"] = size_for_image(
                init.size, size_multiple(self.options), values.get("width"), values.get("height")
            )
        defaults = getattr(self.info, "defaults", None)
        for key in ("width", "height", "steps", "cfg_scale", "sampler", "guidance"):
            if values.get(key) is None and getattr(defaults, key, None) is not None:
                values[key] = getattr(defaults, key)
        values = {k: v for k, v in values.items() if v is not None or k in _NULLABLE}
        values["ref_images"] = [
            load_image(im, "ref_images", "RGB") for im in values.get("ref_images") or []
        ]
        values["pm_id_images"] = [
            load_image(im, "pm_id_images", "RGB")
            for im in id_images(values.get("pm_id_images") or [])
        ]
        specs: Sequence[Any] = values.pop("loras", None) or []
        pairs = [
            lora_mod.parse_spec(s) if isinstance(s, str) else (str(s[0]), float(s[1]))
            for s in specs
        ]
        if self.info is not None:  # the model's own rules: size multiple, prompt length
            given = {
                k for k in ("init_image", "mask", "control_image") if values.get(k) is not None
            }
            found = rules.for_model(self.info, "image", {**values, "prompt": prompt}, given)
            for field, reason in found.items():
                raise InvalidRequest(field, reason)
        clean, items = lora_mod.collect(prompt, pairs, self.lora_dirs())
        self.check_loras(items)
        return GenerateRequest(prompt=clean, loras=items, **values)

    def check_loras(self, loras: Sequence[Any]) -> None:
        """Refuse, naming both files, a LoRA that does not fit the loaded model."""
        from sdcpp_service.models.addons import check_loras

        check_loras(self.options.main_path, [lo.path for lo in loras if not lo.high_noise])

    def lora_dirs(self) -> list[Path]:
        dirs: list[Path] = []
        for root in self.settings.model_dirs:
            dirs += [root / "loras", root / "Lora", root]
        return dirs

    def run(
        self, request: GenerateRequest, progress: ProgressCallback | None = None
    ) -> GenerateResult:
        """Generate; each image gets its infotext in ``image.info``."""
        result = generate(self.context, request, progress)
        for image, seed in zip(result.images, result.seeds, strict=True):
            text = self.infotext(request, result, seed, image.size)
            params = {**result.params, "seed": seed, "model": self.options.main_path}
            image.info["parameters"] = text
            image.info["sdcpp"] = params
        # image.save("out.png") keeps the infotext, as the CLI writes it
        result.images = [GeneratedImage.adopt(im) for im in result.images]
        return result

    def generate(
        self, prompt: str, progress: ProgressCallback | None = None, **params: Any
    ) -> list[Image.Image]:
        """``pipe.generate("a fox", steps=4, seed=1)`` → PIL images carrying ``.info``."""
        return self.run(self.request(prompt, **params), progress).images

    def infotext(
        self, req: GenerateRequest, result: GenerateResult, seed: int, size: tuple[int, int]
    ) -> str:
        main = self.options.main_path
        fields: dict[str, Any] = {
            "Steps": req.steps,
            "Sampler": names.sampler_label(result.params["sampler"]),
            "Schedule type": names.scheduler_label(result.params["scheduler"]),
            "CFG scale": req.cfg_scale,
            "Seed": seed,
            # A1111 records the first pass's size; the hires fields say how it grew
            "Size": f"{req.width}x{req.height}" if req.hires else f"{size[0]}x{size[1]}",
            "Model hash": self.short_hash(main),
            "Model": Path(main).stem,
        }
        if self.options.diffusion_model:
            fields["Distilled CFG Scale"] = req.guidance
        if req.init_image is not None:
            fields["Denoising strength"] = req.strength
        if req.clip_skip > 1:
            fields["Clip skip"] = req.clip_skip
        if req.control_image is not None:
            fields["ControlNet"] = f"{Path(self.options.control_net).stem} ({req.control_strength})"
        if req.loras:
            fields["Lora hashes"] = lora_hashes(
                [(lora_mod.display_name(lo), self.short_hash(lo.path)) for lo in req.loras]
            )
        if req.hires:
            fields["Denoising strength"] = req.hires_denoise
            if req.hires_width or req.hires_height:
                fields["Hires resize"] = f"{req.hires_width}x{req.hires_height}"
            else:
                fields["Hires upscale"] = f"{req.hires_scale:g}"
            fields["Hires steps"] = req.hires_steps or req.steps
            upscaler = req.hires_model and Path(req.hires_model).stem or req.hires_upscaler
            fields["Hires upscaler"] = upscaler[:1].upper() + upscaler[1:]
        fields["Version"] = f"sdcpp-service {__version__}"
        # the LoRA tags stay in the prompt, as A1111 writes it (--lora ones appended)
        prompt = " ".join(p for p in (req.prompt, lora_mod.tags(req.loras)) if p)
        return infotext(prompt, req.negative_prompt, fields)

    # -- video ------------------------------------------------------------------------------

    def video_request(self, prompt: str, **params: Any) -> VideoRequest:
        """Build a :class:`VideoRequest` (Wan models; unset values get the model's defaults)."""
        from sdcpp_service.engine.video import video_request

        return video_request(self, prompt, **params)

    def run_video(
        self, request: VideoRequest, progress: ProgressCallback | None = None
    ) -> VideoResult:
        """Generate a video; frame 0 carries the infotext in ``.info`` (see engine/video.py)."""
        from sdcpp_service.engine.video import run_video

        return run_video(self, request, progress)

    def generate_video(
        self, prompt: str, progress: ProgressCallback | None = None, **params: Any
    ) -> VideoResult:
        """``pipe.generate_video("a fox running", frames=33, fps=16)`` → frames, seed, fps, info."""
        return self.run_video(self.video_request(prompt, **params), progress)

    def model_info(self) -> ModelInfo:
        """The main model's :class:`~sdcpp_service.models.ModelInfo` (read once if not given)."""
        if self.info is None:
            from sdcpp_service.models import inspect

            self.info = inspect(Path(self.options.main_path))
        info: ModelInfo = self.info
        return info

    def short_hash(self, path: str) -> str | None:
        """A1111's short model hash (sha256[:10]) of ``path``, when hashing is set up and the
        hash is known."""
        found = self._hash(path) if self._hash else None
        return found[:10] if found else None

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        self.context.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
