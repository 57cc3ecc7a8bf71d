"""The ONLY module that imports ``stable_diffusion_cpp`` — lazily, with an install hint."""

from __future__ import annotations

import importlib
from functools import cache
from types import ModuleType
from typing import Any

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
        raise EngineNotInstalled(f"cannot load stable-diffusion.cpp ({exc}); {INSTALL_HINT}") from exc


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
    return {
        "bindings_version": bindings_version(),
        "engine_version": lib.sd_version().decode("utf-8", "replace"),
        "engine_commit": lib.sd_commit().decode("utf-8", "replace"),
        "system_info": raw,
        "features": features,
        "backends": compiled_backends(so_path),
        "physical_cores": int(lib.sd_get_num_physical_cores()),
        "library": so_path,
    }


def compiled_backends(so_path: str) -> list[str]:
    """Backends linked into the engine library, read from its dynamic symbol names."""
    found = ["cpu"]
    if not so_path:
        return found
    try:
        data = open(so_path, "rb").read()
    except OSError:
        return found
    for name, marker in (
        ("cuda", b"ggml_backend_cuda_init"),
        ("vulkan", b"ggml_backend_vk_init"),
        ("metal", b"ggml_backend_metal_init"),
        ("hip", b"ggml_backend_hip"),
        ("sycl", b"ggml_backend_sycl_init"),
        ("opencl", b"ggml_backend_opencl_init"),
        ("blas", b"ggml_backend_blas_init"),
    ):
        if marker in data:
            found.append(name)
    return found
