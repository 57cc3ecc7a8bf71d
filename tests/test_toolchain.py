"""The backend preflight on every preset, with the tools faked on PATH and the headers/libraries
faked in a temporary tree: present, missing and too old."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sdcpp_service import backends, toolchain
from sdcpp_service.toolchain import Host

VK_CORE = """\
#define VK_HEADER_VERSION {v}
#define VK_HEADER_VERSION_COMPLETE VK_MAKE_API_VERSION(0, 1, 3, VK_HEADER_VERSION)
"""
NVCC = "Cuda compilation tools, release {v}, V{v}.1\\n"
VULKANINFO = "GPU0:\\n\\tdeviceName         = llvmpipe (LLVM 15.0.6, 256 bits)\\n"
SMI = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1234)\\n"


class Tree:
    """A fake machine: ``bin/`` is the whole PATH, ``include/`` and ``lib/`` the system folders."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("bin", "include", "lib"):
            (root / sub).mkdir()
        self.env = {"PATH": str(root / "bin")}

    def tool(self, name: str, prints: str = "", code: int = 0) -> None:
        path = self.root / "bin" / name
        path.write_text(f'#!/bin/sh\nprintf "{prints}"\nexit {code}\n')
        path.chmod(path.stat().st_mode | stat.S_IEXEC)

    def file(self, rel: str, text: str = "") -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def host(self, platform: str = "linux") -> Host:
        return Host(
            env=self.env,
            platform=platform,
            system_include=(str(self.root / "include"),),
            system_lib=(str(self.root / "lib"),),
            system_tools={},
        )

    def statuses(self, preset: str, platform: str = "linux") -> dict[str, str]:
        return {c.name: c.status for c in toolchain.preflight(preset, self.host(platform))}

    def detail(self, preset: str, name: str) -> str:
        return next(c.detail for c in toolchain.preflight(preset, self.host()) if c.name == name)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


def vulkan_sdk(tree: Tree, version: int, where: str = "") -> None:
    tree.file(f"{where}include/vulkan/vulkan_core.h", VK_CORE.format(v=version))
    tree.file(f"{where}include/vulkan/vulkan.hpp")
    tree.file(f"{where}lib/libvulkan.so")


def test_every_preset_has_a_preflight() -> None:
    assert set(toolchain.PRESET_CHECKS) == {p.name for p in backends.PRESETS}


def test_cpu_present_and_missing(tree: Tree) -> None:
    assert tree.statuses("cpu") == {"C++ compiler": "missing"}
    assert "build-essential" in tree.detail("cpu", "C++ compiler")
    tree.tool("g++")
    assert tree.statuses("cpu") == {"C++ compiler": "ok"}


def test_openblas_present_and_missing(tree: Tree) -> None:
    tree.tool("c++")
    assert tree.statuses("openblas") == {
        "C++ compiler": "ok",
        "OpenBLAS headers": "missing",
        "OpenBLAS library": "missing",
    }
    assert "libopenblas-dev" in tree.detail("openblas", "OpenBLAS library")
    tree.file("include/openblas/cblas.h")
    tree.file("lib/libopenblas.so")
    assert set(tree.statuses("openblas").values()) == {"ok"}


def test_cuda_present(tree: Tree) -> None:
    tree.tool("c++")
    tree.tool("nvcc", NVCC.format(v="12.4"))
    tree.tool("nvidia-smi", SMI)
    tree.file("lib/libcublas.so")
    assert set(tree.statuses("cuda").values()) == {"ok"}
    assert "CUDA 12.4" in tree.detail("cuda", "nvcc")
    assert tree.detail("cuda", "CUDA device") == "GPU 0: NVIDIA H100 80GB HBM3"


def test_cuda_missing_too_old_and_no_gpu(tree: Tree) -> None:
    tree.tool("c++")
    assert tree.statuses("cuda") == {"C++ compiler": "ok", "nvcc": "missing"}
    assert "install the CUDA toolkit >= 11.0" in tree.detail("cuda", "nvcc")
    tree.tool("nvcc", NVCC.format(v="10.2"))
    assert tree.statuses("cuda")["nvcc"] == "missing"
    assert "CUDA 10.2" in tree.detail("cuda", "nvcc") and "older than 11.0" in tree.detail(
        "cuda", "nvcc"
    )
    tree.tool("nvcc", NVCC.format(v="12.4"))
    # nvcc alone (a pip-installed compiler, say) without cuBLAS, and no GPU: cuBLAS blocks the
    # build, the missing device only warns
    assert tree.statuses("cuda") == {
        "C++ compiler": "ok",
        "nvcc": "ok",
        "cuBLAS": "missing",
        "CUDA device": "warn",
    }
    tree.tool("nvidia-smi", "", code=9)  # driver present, no GPU
    assert tree.statuses("cuda")["CUDA device"] == "warn"


def test_cuda_finds_nvcc_off_path_through_cuda_path(tree: Tree) -> None:
    tree.tool("c++")
    tree.file("cuda/lib64/libcublas.so")
    nvcc = tree.root / "cuda" / "bin" / "nvcc"
    nvcc.parent.mkdir(parents=True)
    nvcc.write_text(f'#!/bin/sh\nprintf "{NVCC.format(v="11.8")}"\n')
    nvcc.chmod(0o755)
    tree.env["CUDA_PATH"] = str(tree.root / "cuda")
    statuses = tree.statuses("cuda")
    assert statuses["nvcc"] == "ok" and statuses["cuBLAS"] == "ok"
    assert str(nvcc) in tree.detail("cuda", "nvcc")


def test_vulkan_present(tree: Tree) -> None:
    tree.tool("c++")
    tree.tool("glslc")
    tree.tool("vulkaninfo", VULKANINFO)
    vulkan_sdk(tree, 275)
    assert set(tree.statuses("vulkan").values()) == {"ok"}
    assert tree.detail("vulkan", "Vulkan headers").startswith("1.3.275 at ")
    assert tree.detail("vulkan", "Vulkan device").startswith("llvmpipe")


def test_vulkan_missing(tree: Tree) -> None:
    tree.tool("c++")
    assert tree.statuses("vulkan") == {
        "C++ compiler": "ok",
        "Vulkan loader": "missing",
        "Vulkan headers": "missing",
        "glslc": "missing",
        "Vulkan device": "warn",
    }
    assert "vulkan-tools" in tree.detail("vulkan", "Vulkan device")
    assert "LunarG Vulkan SDK" in tree.detail("vulkan", "glslc")


def test_vulkan_headers_too_old_as_on_debian_12(tree: Tree) -> None:
    tree.tool("c++")
    tree.tool("glslc")
    tree.tool("vulkaninfo", "no devices\\n")
    vulkan_sdk(tree, 239)
    statuses = tree.statuses("vulkan")
    assert statuses["Vulkan headers"] == "missing" and statuses["Vulkan loader"] == "ok"
    assert statuses["Vulkan device"] == "warn"  # vulkaninfo runs but lists no deviceName
    detail = tree.detail("vulkan", "Vulkan headers")
    assert "version 1.3.239, older than 1.3.272" in detail and "VULKAN_SDK" in detail
    # one version below the minimum fails too; the minimum itself passes
    vulkan_sdk(tree, toolchain.VULKAN_MIN_HEADER - 1)
    assert tree.statuses("vulkan")["Vulkan headers"] == "missing"
    vulkan_sdk(tree, toolchain.VULKAN_MIN_HEADER)
    assert tree.statuses("vulkan")["Vulkan headers"] == "ok"


def test_vulkan_sdk_wins_over_old_system_headers(tree: Tree) -> None:
    tree.tool("c++")
    vulkan_sdk(tree, 239)
    vulkan_sdk(tree, 296, where="sdk/")
    (tree.root / "sdk" / "bin").mkdir()
    glslc = tree.root / "sdk" / "bin" / "glslc"
    glslc.write_text("#!/bin/sh\n")
    glslc.chmod(0o755)
    tree.env["VULKAN_SDK"] = str(tree.root / "sdk")
    statuses = tree.statuses("vulkan")
    assert statuses["Vulkan headers"] == "ok" and statuses["glslc"] == "ok"
    assert str(tree.root / "sdk") in tree.detail("vulkan", "Vulkan headers")


def test_vulkan_c_headers_without_cpp_headers(tree: Tree) -> None:
    tree.file("include/vulkan/vulkan_core.h", VK_CORE.format(v=280))
    assert "vulkan.hpp" in tree.detail("vulkan", "Vulkan headers")


def test_metal_needs_macos(tree: Tree) -> None:
    assert tree.statuses("metal", "linux") == {"macOS": "missing"}
    assert tree.statuses("metal", "darwin") == {"macOS": "ok", "xcrun": "missing"}
    tree.tool("xcrun")
    assert tree.statuses("metal", "darwin") == {"macOS": "ok", "xcrun": "ok"}


def test_hipblas_present_and_missing(tree: Tree) -> None:
    assert set(tree.statuses("hipblas").values()) == {"missing"}
    assert "ROCm" in tree.detail("hipblas", "hipcc")
    for tool in ("hipcc", "clang", "clang++"):
        tree.tool(tool)
    assert set(tree.statuses("hipblas").values()) == {"ok"}


def test_sycl_present_and_missing(tree: Tree) -> None:
    assert tree.statuses("sycl") == {"icx": "missing", "icpx": "missing"}
    assert "setvars.sh" in tree.detail("sycl", "icpx")
    tree.tool("icx")
    tree.tool("icpx")
    assert tree.statuses("sycl") == {"icx": "ok", "icpx": "ok"}


def test_a_tool_that_hangs_or_fails_counts_as_absent(tree: Tree) -> None:
    tree.tool("c++")
    tree.tool("nvcc", "garbage", code=0)
    assert "no release number" in tree.detail("cuda", "nvcc")
    tree.tool("nvcc", NVCC.format(v="12.4"), code=1)
    assert tree.statuses("cuda")["nvcc"] == "missing"
