"""Engine build presets: backend name → the cmake cache variables the bindings' build needs.

``CMakePresets.json`` at the repository root carries the same table for people who build
stable-diffusion.cpp by hand; ``tests/test_backends.py`` keeps the two in step.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from sdcpp_service._version import PINNED_BINDINGS
from sdcpp_service.errors import BuildFailed, UnknownName


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


#: Backend names as ``engine.sdcpp.compiled_backends`` reports them → the preset that builds them.
BACKEND_PRESETS: tuple[tuple[str, str], ...] = (
    ("hip", "hipblas"),  # before cuda: a HIP build also carries ggml's CUDA symbol names
    ("cuda", "cuda"),
    ("vulkan", "vulkan"),
    ("metal", "metal"),
    ("sycl", "sycl"),
    ("blas", "openblas"),
)


def preset_for_backends(compiled: list[str]) -> Preset:
    """The preset a library with these compiled-in backends was (most likely) built with."""
    for backend, name in BACKEND_PRESETS:
        if backend in compiled:
            return get_preset(name)
    return PRESETS[0]


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
        "--verbose",  # the compiler's output goes to the build log
        f"stable-diffusion-cpp-python=={PINNED_BINDINGS}",
    ]
    return argv, {"CMAKE_ARGS": preset.cmake_args(), "FORCE_CMAKE": "1"}


def describe_command(argv: list[str], env: dict[str, str]) -> str:
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return f"{prefix} {shlex.join(argv)}"


def merged_env(env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **env}


#: A compiler's (gcc, clang, nvcc, MSVC) or CMake's error line; pip's own summary lines are not.
_ERROR = re.compile(
    r"(:\d+(:\d+)?: (fatal )?error\b|\berror( C\d+)?: |undefined reference to)", re.I
)
_NOT_COMPILER = re.compile(
    r"subprocess-exited-with-error|Failed building wheel|^\s*error: |ld returned \d+ exit", re.I
)
_STEP = re.compile(r"^\s*\[(\d+)/(\d+)\]")


def last_error(lines: Iterable[str]) -> str:
    """The last compiler or CMake error line of a build log (else its last non-empty line)."""
    compiler = cmake = other = ""
    follow = False
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if follow:  # CMake puts the message on the lines after "CMake Error at …:"
            cmake, follow = f"{cmake} {line}", False
        elif line.startswith("CMake Error"):
            cmake, follow = line, True
        elif _ERROR.search(line) and not _NOT_COMPILER.search(line):
            compiler = line
        other = line
    return compiler or cmake or other or "(the build printed nothing)"


def build(
    preset: Preset, log_path: Path, on_step: Callable[[int, int], None] | None = None
) -> None:
    """Run the install command for ``preset`` with every output line going to ``log_path``;
    ``on_step(done, total)`` follows the compile steps. Raises :class:`BuildFailed`."""
    argv, env = install_command(preset)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8", errors="replace") as log:
        log.write(describe_command(argv, env) + "\n")
        log.flush()
        with subprocess.Popen(
            argv,
            env=merged_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        ) as proc:
            for line in proc.stdout or ():
                log.write(line)
                step = _STEP.match(line)
                if step and on_step is not None:
                    on_step(int(step.group(1)), int(step.group(2)))
            code = proc.wait()
    if code != 0:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            raise BuildFailed(preset.name, code, last_error(f), log_path)
