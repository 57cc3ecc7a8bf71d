"""A loaded engine context, driven through the bindings' low-level ctypes API.

Why not the bindings' high-level ``StableDiffusion.generate_image``: it builds a full-size white
mask with a Python list on every call, copies every pixel through ``ctypes`` arrays built from
Python ints, and never frees the C image buffers it receives (memory grows with every call).
Here inputs are copied with one ``memmove``-speed ``from_buffer_copy``, outputs with one
``string_at``, and every returned buffer is released with libc ``free``.

The engine's progress and log callbacks are process-wide; ``ENGINE_LOCK`` makes one job at a time
per process explicit (the server runs the engine in a child process for isolation).
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from PIL import Image

from sdcpp_service.engine import aborts
from sdcpp_service.engine.sdcpp import Native, native
from sdcpp_service.errors import EngineError, InvalidRequest, ModelError, UnknownName
from sdcpp_service.types import LoadOptions, Lora, ProgressCallback

log = logging.getLogger("sdcpp_service.engine")

#: One engine job per process at a time: the native progress/log callbacks are process-wide.
ENGINE_LOCK = threading.RLock()

_LOG_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR}


#: Engine warnings about fallbacks that then succeed: logged at debug level only. ggml's GGUF
#: reader refuses Wan's 5-D patch embedding (and says it failed to read the tensor info); the
#: engine then reads the file with its own loader.
HARMLESS = ("has invalid number of dimensions: 5 > 4",)


class EngineLog:
    """Routes the engine's log lines to :mod:`logging` and remembers recent ones (for errors)."""

    def __init__(self, nat: Native) -> None:
        self.lines: deque[tuple[int, int, str]] = deque(maxlen=500)
        self.seq = 0
        #: called with every line (the progress hub names its stage from them)
        self.listeners: list[Callable[[str], None]] = []
        self._after_harmless = False
        self._lib = nat.lib
        self._cb = nat.lib.sd_log_callback(self._on_log)
        self.install()

    def install(self) -> None:
        """(Re)install our callback: the engine's log hook is process-wide and other code
        (the bindings' own wrapper, test fixtures) may have replaced it."""
        self._lib.sd_set_log_callback(self._cb, None)

    def _on_log(self, level: int, text: bytes | None, _data: Any) -> None:
        line = (text or b"").decode("utf-8", "replace").rstrip()
        if line:
            self.seq += 1
            self.lines.append((self.seq, level, line))
            shown = _LOG_LEVELS.get(level, logging.INFO)
            if any(h in line for h in HARMLESS) or (
                self._after_harmless and "failed to read tensor info" in line
            ):
                shown = logging.DEBUG  # a fallback that works: kept for errors, not shown
            self._after_harmless = any(h in line for h in HARMLESS)
            log.log(shown, "%s", line)
            for listener in self.listeners:
                listener(line)

    def mark(self) -> int:
        return self.seq

    def since(self, mark: int, min_level: int = 0) -> list[str]:
        """Lines logged after ``mark`` at ``min_level`` or above (0 debug … 3 error)."""
        return [line for seq, level, line in self.lines if seq > mark and level >= min_level]

    def last_error(self, mark: int = 0) -> str:
        errors = self.since(mark, 3)
        return errors[-1].split("] ", 1)[-1].strip() if errors else ""


#: Engine log lines that start a stage, → the stage's name in progress reports. The engine
#: reports LoRA and tensor loading through the same callback as sampling steps.
STAGES: tuple[tuple[str, str], ...] = (
    ("loading LoRA from", "loading LoRA"),
    ("apply lora", "loading LoRA"),
    ("sampling", "sampling"),  # "sampling using …" and "sampling(high noise) using …"
    ("decoding ", "decoding"),
)


class ProgressHub:
    """The single native progress callback of this process, dispatching to the current job."""

    def __init__(self, nat: Native) -> None:
        self.target: ProgressCallback | None = None
        self.started = 0.0
        self.phase = "sampling"
        self.total = 0
        self.eta = 0.0
        self.preview_interval = 1
        self._lib = nat.lib
        self._cb = nat.lib.sd_progress_callback(self._on_progress)
        self._preview_cb = nat.lib.sd_preview_callback(self._on_preview)
        nat.lib.sd_set_progress_callback(self._cb, None)

    def _on_progress(self, step: int, steps: int, seconds_per_step: float, _data: Any) -> None:
        target = self.target
        if target is None or steps <= 0:
            return
        from sdcpp_service.types import Progress

        elapsed = time.perf_counter() - self.started
        # At step 0 the engine's loading reports divide by ~0 (elapsed / 1e-6 s per step).
        eta = max(0.0, (steps - step) * float(seconds_per_step)) if step > 0 else 0.0
        self.total, self.eta = steps, eta
        try:
            target(Progress(step, steps, elapsed, eta, self.phase))
        except Exception:  # never let a Python error unwind through C frames
            log.exception("progress callback failed")

    def _on_preview(self, step: int, count: int, frames: Any, _noisy: bool, _data: Any) -> None:
        """Engine-owned preview frames (freed by the engine after we return): copy the first."""
        target = self.target
        if target is None or count < 1 or not frames or not frames[0].data:
            return
        if abs(step) % self.preview_interval:  # the pinned engine ignores its own interval
            return
        from sdcpp_service.types import Progress

        try:
            preview = pil_from_c(frames[0])
            elapsed = time.perf_counter() - self.started
            target(Progress(step, self.total, elapsed, self.eta, "preview", preview))
        except Exception:  # never let a Python error unwind through C frames
            log.exception("preview callback failed")

    def note_log(self, line: str) -> None:
        """Name the stage from the engine's log (only while a job is attached)."""
        if self.target is None:
            return
        text = line.split(" - ", 1)[-1].lstrip()  # "stable-diffusion.cpp:2814 - sampling …"
        for prefix, stage in STAGES:
            if text.startswith(prefix):
                self.phase = stage
                return

    @contextmanager
    def attached(
        self,
        target: ProgressCallback | None,
        phase: str = "sampling",
        preview_mode: int = 0,
        preview_interval: int = 1,
    ) -> Iterator[None]:
        """Route progress (and, with ``preview_mode`` > 0, preview images) to ``target``."""
        self.target, self.started, self.phase = target, time.perf_counter(), phase
        self.total, self.eta = 0, 0.0
        self.preview_interval = max(1, preview_interval)
        self._lib.sd_set_progress_callback(self._cb, None)
        if preview_mode and target is not None:
            self._lib.sd_set_preview_callback(
                self._preview_cb, preview_mode, max(1, preview_interval), True, False, None
            )
        try:
            yield
        finally:
            self.target = None
            if preview_mode:
                self._lib.sd_set_preview_callback(None, 0, 1, True, False, None)


class Runtime:
    """Per-process engine plumbing: native API, log routing, progress hub (created once)."""

    def __init__(self) -> None:
        self.native = native()
        self.log = EngineLog(self.native)
        self.progress = ProgressHub(self.native)
        self.log.listeners.append(self.progress.note_log)
        aborts.install(self.native.lib._lib)  # a GGML_ASSERT: one line naming the cause


_RUNTIME: list[Runtime] = []


def runtime() -> Runtime:
    with ENGINE_LOCK:
        if not _RUNTIME:
            _RUNTIME.append(Runtime())
        return _RUNTIME[0]


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


def image_to_c(image: Image.Image, keep: list[Any]) -> Any:
    """A PIL image as an ``sd_image_t`` (one buffer copy); the buffer is kept alive in ``keep``."""
    lib = runtime().native.lib
    data = image.tobytes()
    buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
    keep.append(buf)
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[image.mode]
    return lib.sd_image_t(
        width=image.width,
        height=image.height,
        channel=channels,
        data=ctypes.cast(buf, ctypes.POINTER(ctypes.c_uint8)),
    )


def loras_to_c(loras: Sequence[Lora], keep: list[Any]) -> tuple[Any, int]:
    """An ``sd_lora_t`` array for ``loras`` (paths and array kept alive in ``keep``)."""
    arr = (runtime().native.lib.sd_lora_t * len(loras))()
    for i, lora in enumerate(loras):
        raw = lora.path.encode("utf-8")
        keep.append(raw)
        arr[i].path, arr[i].multiplier, arr[i].is_high_noise = raw, lora.weight, lora.high_noise
    keep.append(arr)
    return arr, len(loras)


def pil_from_c(img: Any) -> Image.Image:
    """Copy one engine ``sd_image_t`` into a PIL image (the engine buffer is not freed here)."""
    mode = {3: "RGB", 1: "L", 4: "RGBA"}[img.channel]
    raw = ctypes.string_at(img.data, img.width * img.height * img.channel)
    return Image.frombuffer(mode, (img.width, img.height), raw, "raw", mode, 0, 1)


def images_from_c(ptr: Any, count: int) -> list[Image.Image]:
    """Copy ``count`` engine images out, then free the engine's buffers (data and array)."""
    nat = runtime().native
    out: list[Image.Image] = []
    if not ptr:
        return out
    try:
        for i in range(count):
            if ptr[i].data:
                out.append(pil_from_c(ptr[i]))
    finally:
        for i in range(count):
            if ptr[i].data:
                nat.free(ctypes.cast(ptr[i].data, ctypes.c_void_p))
        nat.free(ctypes.cast(ptr, ctypes.c_void_p))
    return out
