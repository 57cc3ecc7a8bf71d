"""Engine build presets: backend name → the cmake cache variables the bindings' build needs.

``CMakePresets.json`` at the repository root carries the same table for people who build
stable-diffusion.cpp by hand; ``tests/test_backends.py`` keeps the two in step.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass

from sdcpp_service._version import PINNED_BINDINGS
from sdcpp_service.errors import UnknownName


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    cache: tuple[tuple[str, str], ...]

    def cmake_args(self) -> str:
        return " ".join(f"-D{key}={value}" for key, value in self.cache)


#: Ordered; the first is the default. Values follow the bindings' own install notes.
PRESETS: tuple[Preset, ...] = (
    Preset("cpu", "Plain CPU build (ggml's native SIMD)", (("CMAKE_BUILD_TYPE", "Release"),)),
    Preset(
        "openblas",
        "CPU with OpenBLAS matrix products",
        (
            ("CMAKE_BUILD_TYPE", "Release"),
            ("GGML_BLAS", "ON"),
            ("GGML_BLAS_VENDOR", "OpenBLAS"),
        ),
    ),
    Preset(
        "cuda", "NVIDIA GPUs (CUDA toolkit)", (("CMAKE_BUILD_TYPE", "Release"), ("SD_CUDA", "ON"))
    ),
    Preset(
        "vulkan",
        "Any Vulkan GPU (Vulkan SDK)",
        (("CMAKE_BUILD_TYPE", "Release"), ("SD_VULKAN", "ON")),
    ),
    Preset("metal", "Apple silicon GPUs", (("CMAKE_BUILD_TYPE", "Release"), ("SD_METAL", "ON"))),
    Preset(
        "hipblas",
        "AMD GPUs (ROCm)",
        (
            ("CMAKE_BUILD_TYPE", "Release"),
            ("SD_HIPBLAS", "ON"),
            ("CMAKE_C_COMPILER", "clang"),
            ("CMAKE_CXX_COMPILER", "clang++"),
        ),
    ),
    Preset(
        "sycl",
        "Intel GPUs (oneAPI)",
        (
            ("CMAKE_BUILD_TYPE", "Release"),
            ("SD_SYCL", "ON"),
            ("CMAKE_C_COMPILER", "icx"),
            ("CMAKE_CXX_COMPILER", "icpx"),
        ),
    ),
)


def get_preset(name: str) -> Preset:
    for preset in PRESETS:
        if preset.name == name.strip().lower():
            return preset
    raise UnknownName("preset", name, [p.name for p in PRESETS])


def install_command(preset: Preset) -> tuple[list[str], dict[str, str]]:
    """The pip command (and extra environment) that rebuilds the bindings with ``preset``."""
    argv = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--force-reinstall",
        "--no-cache-dir",
        "--no-deps",
        f"stable-diffusion-cpp-python=={PINNED_BINDINGS}",
    ]
    return argv, {"CMAKE_ARGS": preset.cmake_args(), "FORCE_CMAKE": "1"}


def describe_command(argv: list[str], env: dict[str, str]) -> str:
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return f"{prefix} {shlex.join(argv)}"


def merged_env(env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **env}
