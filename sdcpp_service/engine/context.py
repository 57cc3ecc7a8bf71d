"""A loaded engine context, driven through the bindings' low-level ctypes API.

Why not the bindings' high-level ``StableDiffusion.generate_image``: it builds a full-size white
mask with a Python list on every call, copies every pixel through ``ctypes`` arrays built from
Python ints, and never frees the C image buffers it receives (memory grows with every call).
Here inputs are copied with one ``memmove``-speed ``from_buffer_copy``, outputs with one
``string_at``, and every returned buffer is released with libc ``free``.

The per-process plumbing (``ENGINE_LOCK``, log routing, progress hub) is in
:mod:`~sdcpp_service.engine.runtime`; the C struct conversions in :mod:`~sdcpp_service.engine.cdata`.
"""

from __future__ import annotations

import ctypes
import time
from typing import Any, TypeVar

from sdcpp_service.engine import aborts
from sdcpp_service.engine.runtime import ENGINE_LOCK, runtime
from sdcpp_service.errors import EngineError, InvalidRequest, ModelError, UnknownName
from sdcpp_service.types import LoadOptions


def enum_value(kind: str, name: str | None, field: str) -> int:
    """Engine enum value for ``name`` (None → the engine's 'default' marker, the COUNT value)."""
    nat = runtime().native
    if name is None or name in ("", "default", "auto") and kind != "lora_apply_mode":
        return nat.counts[kind]
    table = nat.enum_names(kind)
    key = name.strip().lower()
    if key not in table:
        raise UnknownName(field, name, sorted(table))
    return table[key]


def _path_bytes(path: str) -> bytes:
    return path.encode("utf-8") if path else b""


T = TypeVar("T", bound="NativeOwner")


class NativeOwner:
    """Owns one native handle (``_ctx``), freed by the engine function named ``_free_fn``."""

    _free_fn = ""
    _ctx: Any = None

    def close(self) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx:
            with ENGINE_LOCK:
                getattr(runtime().native.lib, self._free_fn)(ctx)

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing sensible left to do
            pass


class Context(NativeOwner):
    """An engine context holding loaded weights; reuse it for many generations, then close it."""

    _free_fn = "free_sd_ctx"

    def __init__(self, options: LoadOptions, threads: int, single_use: bool = False) -> None:
        """``single_use=True`` is sd-cli's ``free_params_immediately``: each stage's weights are
        freed as soon as that stage is done, so the peak holds one stage, not all of them; the
        context then serves exactly one generation (:meth:`use` refuses a second)."""
        from pathlib import Path

        self.options = options
        self.threads = threads
        self.single_use = single_use
        self._used = False
        rt = runtime()
        lib = rt.native.lib
        for slot, path in options.components().items():
            p = Path(path)
            if not p.exists():
                raise ModelError(path, f"{slot} file not found")
            if p.is_file() and not _readable(p):
                raise ModelError(path, f"{slot} file is not readable")
        if not options.main_path:
            raise InvalidRequest("model", "no model given (use model= or diffusion_model=)")
        params = lib.sd_ctx_params_t()
        rt.native.ctx_params_init(ctypes.byref(params))
        self._keep: list[Any] = []
        for slot in options.components():
            setattr(params, f"{slot}_path", _path_bytes(getattr(options, slot)))
        if options.embeddings:
            arr = (lib.sd_embedding_t * len(options.embeddings))()
            for i, emb in enumerate(options.embeddings):
                arr[i].name = Path(emb).stem.encode("utf-8")
                arr[i].path = emb.encode("utf-8")
            params.embeddings = arr
            params.embedding_count = len(options.embeddings)
            self._keep.append(arr)
        params.tensor_type_rules = options.tensor_type_rules.encode("utf-8")
        params.vae_decode_only = options.vae_decode_only
        params.free_params_immediately = single_use
        params.n_threads = threads
        params.wtype = enum_value("type", options.wtype, "wtype")
        params.rng_type = enum_value("rng", options.rng, "rng")
        params.sampler_rng_type = enum_value("rng", options.sampler_rng, "sampler_rng")
        params.prediction = enum_value("prediction", options.prediction, "prediction")
        params.lora_apply_mode = enum_value(
            "lora_apply_mode", options.lora_apply_mode, "lora_apply_mode"
        )
        params.offload_params_to_cpu = options.offload_to_cpu
        params.enable_mmap = options.mmap
        params.keep_clip_on_cpu = options.clip_on_cpu
        params.keep_vae_on_cpu = options.vae_on_cpu
        params.keep_control_net_on_cpu = options.control_net_on_cpu
        params.flash_attn = options.flash_attn
        params.diffusion_flash_attn = options.diffusion_flash_attn
        params.diffusion_conv_direct = options.diffusion_conv_direct
        params.vae_conv_direct = options.vae_conv_direct
        params.max_vram = options.max_vram
        self._params = params
        with ENGINE_LOCK:
            rt.log.install()
            mark = rt.log.mark()
            t0 = time.perf_counter()
            with aborts.running("loading the model", options.components()):
                ctx = lib.new_sd_ctx(ctypes.byref(params))
            self.load_seconds = time.perf_counter() - t0
        if not ctx:
            detail = rt.log.last_error(mark) or "the engine could not load it"
            raise EngineError(f"{options.main_path}: failed to load model: {detail}")
        self._ctx: Any = ctx

    def use(self) -> Any:
        """The handle for one generation call (a single-use context gives it out once)."""
        handle = self.handle
        if self.single_use and self._used:
            raise EngineError(
                "this pipeline was loaded for one generation (one_shot=True) and has freed its "
                "weights; load it again, or load without one_shot to keep them"
            )
        self._used = True
        return handle

    @property
    def handle(self) -> Any:
        if self._ctx is None:
            raise EngineError("the engine context is closed")
        return self._ctx

    def default_sampler(self) -> int:
        return int(runtime().native.lib.sd_get_default_sample_method(self.handle))

    def default_scheduler(self, sampler: int) -> int:
        return int(runtime().native.lib.sd_get_default_scheduler(self.handle, sampler))

    def supports_video(self) -> bool:
        return bool(runtime().native.lib.sd_ctx_supports_video_generation(self.handle))

    def supports_images(self) -> bool:
        return bool(runtime().native.lib.sd_ctx_supports_image_generation(self.handle))


def _readable(path: Any) -> bool:
    try:
        with open(path, "rb") as f:
            f.read(1)
        return True
    except OSError:
        return False
