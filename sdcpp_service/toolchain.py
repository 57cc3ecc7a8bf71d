"""Preflight for ``sdcpp backend install``: what each build preset needs, checked before building.

Each check gives one :class:`Check`: ``ok``, ``warn`` (the build works, but something the user
probably wants is absent, e.g. no GPU visible) or ``missing`` (the build would fail; ``--force``
builds anyway), with one line saying how to get the missing piece.

Minimum versions come from the vendored engine (stable-diffusion.cpp in the bindings' sdist,
``vendor/stable-diffusion.cpp/ggml``):

- Vulkan headers ``VK_HEADER_VERSION >= 272``: ``src/ggml-vulkan/ggml-vulkan.cpp`` line 5757 uses
  ``vk::LayerSettingEXT`` unconditionally (``VK_EXT_layer_settings``), which Vulkan-Headers first
  ship in 1.3.272 (commit 19a863c, "Update for Vulkan-Docs 1.3.272"). Debian 12's 1.3.239 fails
  there with "'LayerSettingEXT' is not a member of 'vk'".
- CUDA ``>= 11.0``: ``src/ggml-cuda/vendors/cuda.h`` line 6 includes ``cuda_bf16.h`` (new in
  CUDA 11.0), and its compatibility defines (line 18, ``CUDART_VERSION < 11020``) reach no lower.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

VULKAN_MIN_HEADER = 272
CUDA_MIN = (11, 0)

#: Searched after the environment's own folders; tests point these at a temporary tree.
SYSTEM_INCLUDE = ("/usr/local/include", "/usr/include", "/opt/homebrew/include")
SYSTEM_LIB = (
    "/usr/local/lib",
    "/usr/lib",
    "/usr/lib64",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/opt/homebrew/lib",
)
#: Where toolkits put their compilers when they are not on PATH: from the toolkit's variable…
TOOL_HOMES = {
    "nvcc": ("{CUDA_PATH}/bin", "{CUDA_HOME}/bin"),
    "hipcc": ("{ROCM_PATH}/bin",),
    "glslc": ("{VULKAN_SDK}/bin",),
    "vulkaninfo": ("{VULKAN_SDK}/bin",),
}
#: … or from the toolkit's default install folder.
SYSTEM_TOOLS = {
    "nvcc": ("/usr/local/cuda/bin",),
    "nvidia-smi": ("/usr/lib/wsl/lib",),
    "hipcc": ("/opt/rocm/bin",),
    "clang": ("/opt/rocm/llvm/bin",),
    "clang++": ("/opt/rocm/llvm/bin",),
    "icx": ("/opt/intel/oneapi/compiler/latest/bin",),
    "icpx": ("/opt/intel/oneapi/compiler/latest/bin",),
}

VULKAN_SDK_HINT = (
    "install the LunarG Vulkan SDK (https://vulkan.lunarg.com/sdk/home, then "
    "`source VULKAN_SDK_DIR/setup-env.sh`, which sets VULKAN_SDK)"
)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok" | "warn" | "missing"
    detail: str  # what was found, or what is wrong and how to get it

    def line(self) -> str:
        return f"{self.status:8} {self.name}: {self.detail}"


@dataclass(frozen=True)
class Host:
    """What the checks look at, so tests can fake every piece of it."""

    env: Mapping[str, str]
    platform: str = sys.platform
    system_include: tuple[str, ...] = field(default_factory=lambda: SYSTEM_INCLUDE)
    system_lib: tuple[str, ...] = field(default_factory=lambda: SYSTEM_LIB)
    system_tools: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: SYSTEM_TOOLS)
    timeout: float = 20.0
    cache: dict[str, str | None] = field(default_factory=dict, compare=False)

    def _env_dirs(self, *names: str) -> list[Path]:
        return [Path(p) for n in names for p in self.env.get(n, "").split(":") if p]

    def include_dirs(self) -> list[Path]:
        sdk = [Path(self.env["VULKAN_SDK"]) / "include"] if self.env.get("VULKAN_SDK") else []
        extra = self._env_dirs("CPATH", "C_INCLUDE_PATH", "CPLUS_INCLUDE_PATH")
        return [*sdk, *extra, *map(Path, self.system_include)]

    def lib_dirs(self) -> list[Path]:
        sdk = [Path(self.env["VULKAN_SDK"]) / "lib"] if self.env.get("VULKAN_SDK") else []
        extra = self._env_dirs("LIBRARY_PATH", "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH")
        return [*sdk, *extra, *map(Path, self.system_lib)]

    def which(self, tool: str) -> str | None:
        found = shutil.which(tool, path=self.env.get("PATH", ""))
        homes = [*TOOL_HOMES.get(tool, ()), *self.system_tools.get(tool, ())]
        for home in homes:
            if found:
                break
            try:
                folder = home.format_map(self.env)
            except KeyError:
                continue
            found = shutil.which(tool, path=folder)
        return found

    def run(self, argv: list[str]) -> str | None:
        """The tool's stdout+stderr, or None when it cannot be run."""
        key = "\0".join(argv)
        if key not in self.cache:
            try:
                done = subprocess.run(
                    argv, capture_output=True, text=True, timeout=self.timeout, env=dict(self.env)
                )
                self.cache[key] = done.stdout + done.stderr if done.returncode == 0 else None
            except (OSError, subprocess.TimeoutExpired):
                self.cache[key] = None
        return self.cache[key]

    def find(self, dirs: list[Path], *names: str) -> Path | None:
        for folder in dirs:
            for name in names:
                if (folder / name).is_file():
                    return folder / name
        return None


def compiler(host: Host, names: tuple[str, ...], label: str, fix: str) -> Check:
    for name in names:
        path = host.which(name)
        if path:
            return Check(label, "ok", path)
    return Check(label, "missing", f"no {' or '.join(names)} on PATH; {fix}")


def cxx(host: Host) -> Check:
    fix = (
        "install a C/C++ compiler (Debian/Ubuntu: apt install build-essential; "
        "Fedora: dnf install gcc-c++; macOS: xcode-select --install)"
    )
    return compiler(host, ("c++", "g++", "clang++"), "C++ compiler", fix)


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def cuda_checks(host: Host) -> list[Check]:
    fix = (
        "install the CUDA toolkit >= 11.0 (https://developer.nvidia.com/cuda-downloads; "
        "Debian/Ubuntu: apt install nvidia-cuda-toolkit) and put its bin/ on PATH"
    )
    nvcc = host.which("nvcc")
    if not nvcc:
        return [
            Check("nvcc", "missing", f"no nvcc on PATH, in $CUDA_PATH or /usr/local/cuda; {fix}")
        ]
    out = host.run([nvcc, "--version"]) or ""
    match = re.search(r"release (\d+\.\d+)", out)
    if not match:
        return [Check("nvcc", "missing", f"{nvcc} --version says no release number; {fix}")]
    found = version_tuple(match.group(1))
    want = ".".join(map(str, CUDA_MIN))
    if found < CUDA_MIN:
        return [
            Check("nvcc", "missing", f"CUDA {match.group(1)} at {nvcc} is older than {want}; {fix}")
        ]
    checks = [Check("nvcc", "ok", f"CUDA {match.group(1)} at {nvcc} (>= {want})")]
    roots = [host.env.get("CUDA_PATH", ""), host.env.get("CUDA_HOME", "")]
    roots += [str(Path(d).parent) for d in host.system_tools.get("nvcc", ())]
    roots.append(str(Path(nvcc).parent.parent))
    dirs = [
        Path(r) / sub for r in roots if r for sub in ("lib64", "lib", "targets/x86_64-linux/lib")
    ]
    cublas = host.find([*dirs, *host.lib_dirs()], "libcublas.so", "cublas.lib")
    checks.append(
        Check("cuBLAS", "ok", str(cublas))
        if cublas
        else Check(
            "cuBLAS",
            "missing",
            "no libcublas.so next to nvcc or in the library folders (ggml-cuda links it); "
            "install the full CUDA toolkit (Debian/Ubuntu: apt install nvidia-cuda-toolkit, "
            "or NVIDIA's cuda-toolkit package)",
        )
    )
    smi = host.which("nvidia-smi")
    listed = host.run([smi, "-L"]) if smi else None
    gpus = [line for line in (listed or "").splitlines() if line.startswith("GPU ")]
    if gpus:
        checks.append(Check("CUDA device", "ok", gpus[0].split(" (UUID")[0]))
    else:
        checks.append(
            Check(
                "CUDA device",
                "warn",
                "nvidia-smi lists no GPU: the build works, but the engine will run on the CPU "
                "here until an NVIDIA driver and GPU are present",
            )
        )
    return checks


def vulkan_header(host: Host) -> Check:
    core = host.find(host.include_dirs(), "vulkan/vulkan_core.h")
    if core is None:
        return Check(
            "Vulkan headers",
            "missing",
            f"no vulkan/vulkan_core.h; {VULKAN_SDK_HINT} (distribution packages such as "
            f"Debian 12's libvulkan-dev 1.3.239 are older than the 1.3.{VULKAN_MIN_HEADER} "
            "ggml needs)",
        )
    text = core.read_text(errors="replace")
    match = re.search(r"#define\s+VK_HEADER_VERSION\s+(\d+)", text)
    version = int(match.group(1)) if match else 0
    full = re.search(
        r"VK_HEADER_VERSION_COMPLETE\s+VK_MAKE_API_VERSION\(\s*0,\s*(\d+),\s*(\d+)", text
    )
    name = f"{full.group(1)}.{full.group(2)}.{version}" if full else str(version)
    if version < VULKAN_MIN_HEADER:
        return Check(
            "Vulkan headers",
            "missing",
            f"{core} is version {name}, older than 1.3.{VULKAN_MIN_HEADER} that ggml's Vulkan "
            f"backend needs (VK_EXT_layer_settings); {VULKAN_SDK_HINT}",
        )
    if host.find([core.parent.parent], "vulkan/vulkan.hpp") is None:
        return Check(
            "Vulkan headers",
            "missing",
            f"{core.parent}/vulkan.hpp (the C++ headers) is missing; {VULKAN_SDK_HINT}",
        )
    return Check("Vulkan headers", "ok", f"{name} at {core.parent}")


def vulkan_checks(host: Host) -> list[Check]:
    lib = host.find(host.lib_dirs(), "libvulkan.so", "libvulkan.dylib", "vulkan-1.lib")
    checks = [
        Check("Vulkan loader", "ok", str(lib))
        if lib
        else Check(
            "Vulkan loader",
            "missing",
            "no libvulkan.so (the link-time loader library); "
            f"{VULKAN_SDK_HINT} or apt install libvulkan-dev",
        ),
        vulkan_header(host),
    ]
    glslc = host.which("glslc")
    checks.append(
        Check("glslc", "ok", glslc)
        if glslc
        else Check(
            "glslc",
            "missing",
            f"no glslc (the shader compiler) on PATH; {VULKAN_SDK_HINT} or apt install glslc",
        )
    )
    info = host.which("vulkaninfo")
    out = host.run([info, "--summary"]) if info else None
    names = re.findall(r"deviceName\s*=\s*(.+)", out or "")
    if names:
        checks.append(Check("Vulkan device", "ok", ", ".join(n.strip() for n in names)))
    elif not info:
        checks.append(
            Check(
                "Vulkan device",
                "warn",
                "cannot look for a device without vulkaninfo (apt install vulkan-tools); the "
                "build works either way",
            )
        )
    else:
        checks.append(
            Check(
                "Vulkan device",
                "warn",
                "vulkaninfo sees no device: the build works, but install your GPU's Vulkan "
                "driver (mesa-vulkan-drivers, the NVIDIA driver…) or the engine runs on the CPU",
            )
        )
    return checks


def openblas_checks(host: Host) -> list[Check]:
    fix = "apt install libopenblas-dev (Fedora: dnf install openblas-devel; macOS: brew install openblas)"
    header = host.find(
        host.include_dirs(),
        "cblas.h",
        "openblas/cblas.h",
        "x86_64-linux-gnu/openblas-pthread/cblas.h",
    )
    lib = host.find(
        host.lib_dirs(),
        "libopenblas.so",
        "libopenblas.dylib",
        "libopenblas.a",
        "openblas-pthread/libopenblas.so",
    )
    return [
        Check("OpenBLAS headers", "ok", str(header))
        if header
        else Check("OpenBLAS headers", "missing", f"no cblas.h; {fix}"),
        Check("OpenBLAS library", "ok", str(lib))
        if lib
        else Check("OpenBLAS library", "missing", f"no libopenblas; {fix}"),
    ]


def metal_checks(host: Host) -> list[Check]:
    if host.platform != "darwin":
        return [
            Check(
                "macOS",
                "missing",
                f"Metal exists only on macOS (this is {host.platform}); "
                "pick cuda, vulkan, hipblas or sycl for this machine's GPU",
            )
        ]
    fix = "install Xcode's command line tools: xcode-select --install"
    return [Check("macOS", "ok", "darwin"), compiler(host, ("xcrun",), "xcrun", fix)]


def hipblas_checks(host: Host) -> list[Check]:
    fix = "install ROCm (https://rocm.docs.amd.com) and add /opt/rocm/bin and /opt/rocm/llvm/bin to PATH"
    return [
        compiler(host, ("hipcc",), "hipcc", fix),
        compiler(host, ("clang",), "clang (ROCm's)", fix),
        compiler(host, ("clang++",), "clang++ (ROCm's)", fix),
    ]


def sycl_checks(host: Host) -> list[Check]:
    fix = (
        "install Intel oneAPI Base Toolkit (https://www.intel.com/content/www/us/en/developer/"
        "tools/oneapi/base-toolkit.html), then `source /opt/intel/oneapi/setvars.sh`"
    )
    return [compiler(host, ("icx",), "icx", fix), compiler(host, ("icpx",), "icpx", fix)]


#: preset → the checks beyond the C++ compiler (hipblas and sycl bring their own compilers).
PRESET_CHECKS = {
    "cpu": lambda host: [],
    "openblas": openblas_checks,
    "cuda": cuda_checks,
    "vulkan": vulkan_checks,
    "metal": metal_checks,
    "hipblas": hipblas_checks,
    "sycl": sycl_checks,
}


def preflight(preset: str, host: Host) -> list[Check]:
    """Every check for ``preset`` (a name from ``backends.PRESETS``), in a stable order."""
    own = PRESET_CHECKS[preset](host)
    if preset in ("hipblas", "sycl", "metal"):
        return own
    return [cxx(host), *own]
