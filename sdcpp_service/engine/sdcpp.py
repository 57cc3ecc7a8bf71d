"""The ONLY module that imports ``stable_diffusion_cpp`` — lazily, with an install hint."""

from __future__ import annotations

import importlib
from functools import cache
from types import ModuleType
from typing import Any

from sdcpp_service.backends import preset_for_backends
from sdcpp_service.config import engine_vk_device
from sdcpp_service.engine.devices import engine_device, list_devices
from sdcpp_service.errors import EngineNotInstalled

INSTALL_HINT = (
    "install the engine bindings: pip install stable-diffusion-cpp-python==0.4.7 "
    "(or `sdcpp backend install cpu|cuda|vulkan|metal|…`)"
)


@cache
def bindings() -> ModuleType:
    """The low-level ctypes module ``stable_diffusion_cpp.stable_diffusion_cpp``."""
    try:
        return importlib.import_module("stable_diffusion_cpp.stable_diffusion_cpp")
    except (ImportError, OSError, RuntimeError) as exc:
        raise EngineNotInstalled(
            f"cannot load stable-diffusion.cpp ({exc}); {INSTALL_HINT}"
        ) from exc


@cache
def highlevel() -> ModuleType:
    """The bindings' high-level module (for its name maps; never on the hot path)."""
    bindings()
    return importlib.import_module("stable_diffusion_cpp.stable_diffusion")


def bindings_version() -> str:
    bindings()
    mod = importlib.import_module("stable_diffusion_cpp")
    return str(getattr(mod, "__version__", "unknown"))


def system_info() -> dict[str, Any]:
    """Engine version, commit, system info string, SIMD features and backends compiled in."""
    lib = bindings()
    raw = lib.sd_get_system_info().decode("utf-8", "replace").strip()
    features: dict[str, bool] = {}
    for part in raw.replace("\n", "|").split("|"):
        if "=" in part:
            key, _, value = part.partition("=")
            key = key.strip()
            if key and value.strip() in ("0", "1"):
                features[key] = value.strip() == "1"
    so_path = str(getattr(lib._lib, "_name", ""))
    compiled = compiled_backends(so_path)
    devices = list_devices(lib._lib)
    used = engine_device(devices, engine_vk_device())
    from sdcpp_service._version import engine_identity

    version = bindings_version()
    return {
        "bindings_version": version,
        **engine_identity(
            lib.sd_version().decode("utf-8", "replace"),
            lib.sd_commit().decode("utf-8", "replace"),
            version,
        ),
        "system_info": raw,
        "features": features,
        "backends": compiled,
        "backend": preset_for_backends(compiled).name,
        "devices": [d.as_dict() for d in devices],
        "device": used.as_dict() if used else None,
        "physical_cores": int(lib.sd_get_num_physical_cores()),
        "library": so_path,
    }


def compiled_backends(so_path: str) -> list[str]:
    """Backends linked into the engine library, read from its dynamic symbol names."""
    found = ["cpu"]
    if not so_path:
        return found
    try:
        with open(so_path, "rb") as f:
            data = f.read()
    except OSError:
        return found
    for name, marker in (
        ("cuda", b"ggml_backend_cuda_init"),
        ("vulkan", b"ggml_backend_vk_init"),
        ("metal", b"ggml_backend_metal_init"),
        ("hip", b"amdhip64"),  # ggml's HIP build reuses the CUDA names; it links the HIP runtime
        ("sycl", b"ggml_backend_sycl_init"),
        ("opencl", b"ggml_backend_opencl_init"),
        ("blas", b"ggml_backend_blas_init"),
    ):
        if marker in data:
            found.append(name)
    return found


class Native:
    """Typed access to the engine's C API, including the exported functions the bindings do not
    wrap (``*_params_init``, the enum name tables) and libc ``free`` for returned buffers."""

    def __init__(self) -> None:
        import ctypes
        import ctypes.util
        import sys

        self.lib = bindings()
        self.ct = ctypes
        cdll = self.lib._lib

        def declare(name: str, argtypes: list[Any], restype: Any) -> Any:
            func = getattr(cdll, name)
            func.argtypes = argtypes
            func.restype = restype
            return func

        lib = self.lib
        self.img_gen_params_init = declare(
            "sd_img_gen_params_init", [ctypes.POINTER(lib.sd_img_gen_params_t)], None
        )
        self.vid_gen_params_init = declare(
            "sd_vid_gen_params_init", [ctypes.POINTER(lib.sd_vid_gen_params_t)], None
        )
        self.ctx_params_init = declare(
            "sd_ctx_params_init", [ctypes.POINTER(lib.sd_ctx_params_t)], None
        )
        self.names: dict[str, Any] = {
            "sample_method": declare("sd_sample_method_name", [ctypes.c_int], ctypes.c_char_p),
            "scheduler": declare("sd_scheduler_name", [ctypes.c_int], ctypes.c_char_p),
            "type": declare("sd_type_name", [ctypes.c_int], ctypes.c_char_p),
            "rng": declare("sd_rng_type_name", [ctypes.c_int], ctypes.c_char_p),
            "prediction": declare("sd_prediction_name", [ctypes.c_int], ctypes.c_char_p),
            "lora_apply_mode": declare("sd_lora_apply_mode_name", [ctypes.c_int], ctypes.c_char_p),
            "hires_upscaler": declare("sd_hires_upscaler_name", [ctypes.c_int], ctypes.c_char_p),
            "preview": declare("sd_preview_name", [ctypes.c_int], ctypes.c_char_p),
        }
        self.counts: dict[str, int] = {
            "sample_method": int(lib.SampleMethod.SAMPLE_METHOD_COUNT),
            "scheduler": int(lib.Scheduler.SCHEDULER_COUNT),
            "type": int(lib.GGMLType.SD_TYPE_COUNT),
            "rng": int(lib.RNGType.RNG_TYPE_COUNT),
            "prediction": int(lib.Prediction.PREDICTION_COUNT),
            "lora_apply_mode": int(lib.LoraApplyMode.LORA_APPLY_MODE_COUNT),
            "hires_upscaler": int(lib.SDHiresUpscaler.SD_HIRES_UPSCALER_COUNT),
            "preview": int(lib.Preview.PREVIEW_COUNT),
        }
        if sys.platform == "win32":  # pragma: no cover - the engine is built against the UCRT
            libc = ctypes.CDLL("ucrtbase")
        else:
            libc = ctypes.CDLL(ctypes.util.find_library("c"))
        self.free = libc.free
        self.free.argtypes = [ctypes.c_void_p]
        self.free.restype = None

    def enum_names(self, kind: str) -> dict[str, int]:
        """Name → value for an engine enum, read from the engine's own name table."""
        out: dict[str, int] = {}
        for value in range(self.counts[kind]):
            raw = self.names[kind](value)
            name = raw.decode("utf-8").lower() if raw else ""
            if name and name != "deprecated" and "removed" not in name:
                out[name] = value
        return out


@cache
def native() -> Native:
    return Native()
