"""ESRGAN upscaling through the engine: any image size, any target scale, alpha kept.

The network runs at its native factor (read from the file by the engine); a Lanczos resize then
reaches the requested scale. The engine tiles internally (``tile`` pixels), so memory stays
bounded for large inputs. An alpha channel is upscaled separately (as a grey image through the
same network) and re-attached.
"""

from __future__ import annotations

import ctypes
import time
from pathlib import Path
from typing import Any

from PIL import Image

from sdcpp_service.config import Settings
from sdcpp_service.engine import aborts
from sdcpp_service.engine.cdata import image_to_c, pil_from_c
from sdcpp_service.engine.context import NativeOwner
from sdcpp_service.engine.runtime import ENGINE_LOCK, runtime
from sdcpp_service.errors import (
    EngineError,
    InvalidRequest,
    ModelError,
    UnknownName,
    UnsupportedModel,
)
from sdcpp_service.types import ProgressCallback

#: Largest output we produce (pixels); beyond it the request is refused up front.
MAX_OUTPUT_PIXELS = 16384 * 16384


def resolve_upscaler(model: str | Path | None, settings: Settings) -> str:
    """A path or catalog name (or None: the first cataloged upscaler) → a checked ESRGAN file."""
    from sdcpp_service.models import inspect, scan

    if model is not None and Path(model).expanduser().exists():
        info = inspect(Path(model).expanduser())
    else:
        catalog = scan(settings)
        if model is None:
            found = catalog.usable("upscaler")
            if not found:
                roots = ", ".join(str(r.path) for r in catalog.roots) or "no model folders"
                raise ModelError(
                    roots,
                    "no upscaler model found; pass --model FILE or put an ESRGAN file in "
                    "models/upscale_models (e.g. `sdcpp pull esrgan-x4`)",
                )
            info = found[0].info  # type: ignore[assignment]
        else:
            try:
                entry = catalog.find(str(model), kind="upscaler", label="upscaler", other=True)
            except UnknownName as exc:  # the built-ins are choices too
                raise UnknownName(
                    "upscaler", str(model), [*exc.choices, "lanczos", "nearest"]
                ) from None
            if entry.info is None:
                raise ModelError(entry.path, entry.error or "unreadable")
            info = entry.info
    if info.kind != "upscaler":
        raise UnsupportedModel(info.path, f"is a {info.title} {info.kind}, not an ESRGAN upscaler")
    return str(info.path)


class Upscaler(NativeOwner):
    """A loaded ESRGAN model; reuse it for many images, then ``close``."""

    _free_fn = "free_upscaler_ctx"

    def __init__(self, path: str, threads: int, tile: int = 128, offload: bool = False) -> None:
        if tile < 16:
            raise InvalidRequest("tile", f"must be at least 16 pixels, got {tile}")
        rt = runtime()
        self.path = path
        with ENGINE_LOCK:
            rt.log.install()
            mark = rt.log.mark()
            with aborts.running("loading the upscaler", {"model": path}):
                ctx = rt.native.lib.new_upscaler_ctx(
                    path.encode("utf-8"), offload, False, threads, tile
                )
        if not ctx:
            detail = rt.log.last_error(mark) or "the engine could not load it"
            raise EngineError(f"{path}: failed to load upscaler: {detail}")
        self._ctx: Any = ctx
        self.factor = int(rt.native.lib.get_upscale_factor(ctx))

    def _run(self, image: Image.Image, progress: ProgressCallback | None) -> Image.Image:
        rt = runtime()
        keep: list[Any] = []
        with ENGINE_LOCK, rt.progress.attached(progress, "upscaling"):
            rt.log.install()
            mark = rt.log.mark()
            with aborts.running("upscaling", {"model": self.path}):
                out = rt.native.lib.upscale(self._ctx, image_to_c(image, keep), self.factor)
        if not out.data:
            detail = rt.log.last_error(mark) or "no image came back"
            raise EngineError(f"upscaling failed: {detail}")
        try:
            return pil_from_c(out)
        finally:
            rt.native.free(ctypes.cast(out.data, ctypes.c_void_p))

    def upscale(
        self,
        image: Image.Image,
        scale: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> Image.Image:
        """``image`` upscaled by ``scale`` (default: the network's native factor)."""
        if self._ctx is None:
            raise EngineError("the upscaler is closed")
        scale = float(self.factor if scale is None else scale)
        if not 0 < scale <= 16:
            raise InvalidRequest("scale", f"must be in (0, 16], got {scale}")
        w, h = image.size
        target = (max(1, round(w * scale)), max(1, round(h * scale)))
        if target[0] * target[1] > MAX_OUTPUT_PIXELS:
            raise InvalidRequest(
                "scale",
                f"output {target[0]}x{target[1]} is over the {MAX_OUTPUT_PIXELS} pixel limit",
            )
        alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
        rgb = self._run(image.convert("RGB"), progress)
        if alpha is not None:
            a = self._run(Image.merge("RGB", (alpha, alpha, alpha)), progress).getchannel(0)
            rgb = rgb.convert("RGBA")
            rgb.putalpha(a)
        if rgb.size != target:
            rgb = rgb.resize(target, Image.Resampling.LANCZOS)
        return rgb


class BuiltinUpscaler:
    """``lanczos`` / ``nearest``: a plain resize with the :class:`Upscaler` interface (factor 2
    by default, as the server's built-ins), for ``-m lanczos`` where no ESRGAN file is needed."""

    def __init__(self, method: str) -> None:
        from sdcpp_service.engine.base import BUILTIN_UPSCALERS

        self.method = method.strip().lower()
        self.path = self.method.capitalize()  # the infotext's "Postprocess upscaler"
        self.factor = 2
        self._resample = getattr(Image.Resampling, BUILTIN_UPSCALERS[self.method])

    def __enter__(self) -> BuiltinUpscaler:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def close(self) -> None:
        return None

    def upscale(
        self,
        image: Image.Image,
        scale: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> Image.Image:
        scale = float(self.factor if scale is None else scale)
        if not 0 < scale <= 16:
            raise InvalidRequest("scale", f"must be in (0, 16], got {scale}")
        target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        if target[0] * target[1] > MAX_OUTPUT_PIXELS:
            raise InvalidRequest(
                "scale",
                f"output {target[0]}x{target[1]} is over the {MAX_OUTPUT_PIXELS} pixel limit",
            )
        return image.resize(target, self._resample)


def is_builtin(model: str | Path | None) -> bool:
    """Whether ``model`` names a built-in resizer (``lanczos``, ``nearest``)."""
    from sdcpp_service.engine.base import BUILTIN_UPSCALERS

    return isinstance(model, str) and model.strip().lower() in BUILTIN_UPSCALERS


def open_upscaler(
    model: str | Path | None, settings: Settings, tile: int = 128
) -> Upscaler | BuiltinUpscaler:
    """A built-in resizer by name, else the ESRGAN file ``model`` names, loaded."""
    if is_builtin(model):
        return BuiltinUpscaler(str(model))
    return Upscaler(resolve_upscaler(model, settings), settings.default_threads, tile)


def upscale(
    image: str | Path | bytes | Image.Image,
    model: str | Path | None = None,
    scale: float | None = None,
    tile: int = 128,
    settings: Settings | None = None,
) -> Image.Image:
    """Library entry point: upscale one image (path, bytes or PIL image) with an ESRGAN model."""
    from sdcpp_service.engine.images import GeneratedImage, load_image

    settings = settings or Settings.from_env()
    source = load_image(image, "image", mode="auto")
    t0 = time.perf_counter()
    with open_upscaler(model, settings, tile) as up:
        path = up.path
        out = up.upscale(source, scale)
        label = f"{scale:g}" if scale is not None else str(up.factor)
    out.info["parameters"] = upscale_infotext(source.info.get("parameters"), label, path)
    out.info["sdcpp"] = {
        "upscaled_from": str(image) if isinstance(image, (str, Path)) else None,
        "model": path,
        "scale": float(scale if scale is not None else up.factor),
        "seconds": time.perf_counter() - t0,
    }
    out.info["sdcpp_seconds"] = out.info["sdcpp"]["seconds"]
    return GeneratedImage.adopt(out)  # .save() writes the infotext


def upscale_infotext(parameters: object, label: str, model: str) -> str:
    """The input's infotext (if any) plus A1111's ``Postprocess upscale by`` fields."""
    note = f"Postprocess upscale by: {label}, Postprocess upscaler: {Path(model).stem}"
    return f"{parameters}, {note}" if isinstance(parameters, str) else note
