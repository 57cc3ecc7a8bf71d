from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from sdcpp_service import backends
from sdcpp_service.cli import app

ROOT = Path(__file__).resolve().parents[1]

EXPECTED = {
    "cpu": {},
    "openblas": {"GGML_BLAS": "ON", "GGML_BLAS_VENDOR": "OpenBLAS"},
    "cuda": {"SD_CUDA": "ON"},
    "vulkan": {"SD_VULKAN": "ON"},
    "metal": {"SD_METAL": "ON"},
    "hipblas": {"SD_HIPBLAS": "ON"},
    "sycl": {"SD_SYCL": "ON"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_sets_backend_flag(name: str) -> None:
    cache = dict(backends.get_preset(name).cache)
    for key, value in EXPECTED[name].items():
        assert cache[key] == value
    # exactly one GPU backend switch per preset, none for CPU presets
    gpu = {k for k in cache if k in ("SD_CUDA", "SD_VULKAN", "SD_METAL", "SD_HIPBLAS", "SD_SYCL")}
    assert gpu == {k for k in EXPECTED[name] if k.startswith("SD_")}


def test_cmake_presets_file_matches_table() -> None:
    doc = json.loads((ROOT / "CMakePresets.json").read_text())
    presets = {p["name"]: p for p in doc["configurePresets"] if not p.get("hidden")}
    assert list(presets) == [p.name for p in backends.PRESETS]
    for preset in backends.PRESETS:
        assert presets[preset.name]["cacheVariables"] == dict(preset.cache)


def test_args_command_prints_cmake_args() -> None:
    result = CliRunner().invoke(app, ["backend", "args", "cuda"])
    assert result.exit_code == 0
    assert result.output.strip() == "-DCMAKE_BUILD_TYPE=Release -DSD_CUDA=ON"


def test_unknown_preset_is_one_line_error() -> None:
    result = CliRunner().invoke(app, ["backend", "args", "tpu"])
    assert result.exit_code == 2
    assert "unknown preset 'tpu'" in result.output
    assert "Traceback" not in result.output


@pytest.fixture
def bare_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only a C++ compiler, and empty system include/lib/toolkit folders."""
    from sdcpp_service import toolchain

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cxx = bin_dir / "c++"
    cxx.write_text("#!/bin/sh\n")
    cxx.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    for var in ("VULKAN_SDK", "CUDA_PATH", "CUDA_HOME", "ROCM_PATH", "CPATH", "LIBRARY_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SDCPP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(toolchain, "SYSTEM_INCLUDE", (str(tmp_path / "include"),))
    monkeypatch.setattr(toolchain, "SYSTEM_LIB", (str(tmp_path / "lib"),))
    monkeypatch.setattr(toolchain, "SYSTEM_TOOLS", {})
    return tmp_path


def test_install_dry_run_shows_pinned_pip_command(bare_machine: Path) -> None:
    result = CliRunner().invoke(app, ["backend", "install", "cpu", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "ok       C++ compiler:" in result.output
    line = result.output.strip().splitlines()[-1]
    assert "CMAKE_ARGS=-DCMAKE_BUILD_TYPE=Release" in line
    assert "--force-reinstall --no-cache-dir" in line
    assert "stable-diffusion-cpp-python==0.4.7" in line


def test_install_stops_with_one_line_per_missing_piece(bare_machine: Path) -> None:
    result = CliRunner().invoke(app, ["backend", "install", "vulkan"])
    assert result.exit_code == 8
    lines = result.output.strip().splitlines()
    missing = [line for line in lines if line.startswith("missing ")]
    assert [m.split(":")[0].split(None, 1)[1] for m in missing] == [
        "Vulkan loader",
        "Vulkan headers",
        "glslc",
    ]
    assert all("install" in m for m in missing)  # each says how to get it
    assert lines[-1].startswith("error: the vulkan build needs 3 missing piece(s)")
    assert "--force" in lines[-1] and "Traceback" not in result.output
    assert not (bare_machine / "data" / "logs").exists()  # nothing was built


def test_dry_run_reports_missing_pieces_too(bare_machine: Path) -> None:
    result = CliRunner().invoke(app, ["backend", "install", "cuda", "--dry-run"])
    assert result.exit_code == 8
    assert "missing  nvcc:" in result.output and "SD_CUDA=ON" in result.output
    forced = CliRunner().invoke(app, ["backend", "install", "cuda", "--dry-run", "--force"])
    assert forced.exit_code == 0
    assert "warning: --force: building without nvcc" in forced.output


def test_check_command(bare_machine: Path) -> None:
    assert CliRunner().invoke(app, ["backend", "check", "sycl"]).exit_code == 8
    ok = CliRunner().invoke(app, ["backend", "check", "cpu"])
    assert ok.exit_code == 0 and "the cpu toolchain is complete" in ok.output


FAKE_BUILD = r"""
import sys
print("Building wheel for stable-diffusion-cpp-python (pyproject.toml): started")
for i in range(1, 4):
    print(f"[{i}/9] Building CXX object ggml/src/file{i}.cpp.o")
print("filler line that belongs in the log only")
print("ggml-vulkan.cpp:5757:22: error: 'LayerSettingEXT' is not a member of 'vk'")
print("ninja: build stopped: subcommand failed.")
print("  error: subprocess-exited-with-error")
print("ERROR: Failed building wheel for stable-diffusion-cpp-python")
sys.exit(1)
"""


def test_failed_build_ends_with_compiler_error_and_log_path(
    bare_machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the build itself is faked (a real one takes many minutes); the runner, its log and the
    # error extraction are real
    script = bare_machine / "fake_build.py"
    script.write_text(FAKE_BUILD)
    monkeypatch.setattr(backends, "install_command", lambda p: ([sys.executable, str(script)], {}))
    result = CliRunner().invoke(app, ["backend", "install", "cpu"])
    assert result.exit_code == 8
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: the cpu build failed (exit 1): ggml-vulkan.cpp:5757:22: error:")
    (log,) = (bare_machine / "data" / "logs").glob("backend-cpu-*.log")
    assert last.endswith(f"; full log: {log}")
    assert "filler line" in log.read_text() and "filler line" not in result.output


def test_successful_build_says_so(bare_machine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        backends, "install_command", lambda p: ([sys.executable, "-c", "print('[1/1] ok')"], {})
    )
    result = CliRunner().invoke(app, ["backend", "install", "cpu"])
    assert result.exit_code == 0, result.output
    assert "built and installed the cpu engine" in result.output


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (['a.cu(12): error: identifier "x" is undefined', "error: subprocess-exited"], 0),
        (
            [
                "x.cpp:1:2: fatal error: vulkan/vulkan.hpp: No such file",
                "collect2: error: ld returned 1 exit status",
            ],
            0,
        ),
        (
            [
                "CMake Error at ggml/src/ggml-vulkan/CMakeLists.txt:9 (find_package):",
                "  Could not find Vulkan",
            ],
            -1,
        ),
        (["nothing useful", "the end"], 1),
    ],
)
def test_last_error_picks_the_compiler_line(lines: list[str], expected: int) -> None:
    got = backends.last_error(lines)
    if expected == -1:
        assert got == f"{lines[0]} {lines[1].strip()}"
    else:
        assert got == lines[expected]


def test_help_does_not_import_engine() -> None:
    code = (
        "import sys; from sdcpp_service.cli import app\n"
        "try:\n    app(['info', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('stable_diffusion_cpp' in sys.modules, 'PIL.Image' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False False"


def test_info_json_reports_engine_and_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SDCPP_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["bindings_version"] == "0.4.7"
    assert "cpu" in data["backends"]
    assert data["physical_cores"] >= 1 and data["default_threads"] >= 1
    assert data["data_dir"] == str(tmp_path / "data")
    assert "AVX" in data["system_info"] or "NEON" in data["system_info"]


def test_main_builds_only_the_command_it_runs() -> None:
    # typer inspects every registered command before parsing: `sdcpp convert …` must not pay
    # for (or import) the others, and must keep the usage line of the whole group.
    code = (
        "import sys; sys.argv = ['sdcpp', 'upscale', '--help']\n"
        "from sdcpp_service.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('sdcpp_service.cli.')"
        " and not m.rsplit('.', 1)[1].startswith('_')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Usage: sdcpp upscale [OPTIONS]" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "['upscale']"


def test_full_group_lists_every_command() -> None:
    from sdcpp_service.cli import COMMANDS, build

    names = {c.name for c in typer.main.get_command(build()).commands.values()}  # type: ignore[attr-defined]
    assert names == set(COMMANDS)
    one = typer.main.get_command(build("convert"))
    assert set(one.commands) == {"convert"}  # type: ignore[attr-defined]


def test_info_names_backend_devices_and_the_device_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the real engine: its device registry and its compiled-in backends
    monkeypatch.setenv("SDCPP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SD_VK_DEVICE", raising=False)
    data = json.loads(CliRunner().invoke(app, ["info", "--json"]).output)
    assert data["backend"] == backends.preset_for_backends(data["backends"]).name
    assert data["devices"] and any(d["type"] == "cpu" for d in data["devices"])
    assert data["device"] in data["devices"]
    if data["backend"] == "cpu":
        assert data["device"]["type"] == "cpu"
    text = CliRunner().invoke(app, ["info"]).output
    assert f"backend           {data['backend']} (compiled in: " in text
    assert f"engine runs on    {data['device']['name']} ({data['device']['description']})" in text


def _dev(name: str, kind: str) -> Any:
    from sdcpp_service.engine.devices import Device

    return Device(name, f"{name} desc", kind, 2**30, 2**29)


def test_engine_device_follows_the_engines_choice() -> None:
    from sdcpp_service.engine.devices import engine_device

    cpu, igpu = _dev("CPU", "cpu"), _dev("Vulkan0", "igpu")
    gpu0, gpu1 = _dev("Vulkan1", "gpu"), _dev("Vulkan2", "gpu")
    assert engine_device([cpu, igpu, gpu0, gpu1]) == gpu0  # first discrete GPU
    assert engine_device([cpu, igpu]) == igpu
    assert engine_device([cpu]) == cpu
    assert engine_device([cpu, igpu, gpu0], vk_device="0") == igpu  # SD_VK_DEVICE=0
    assert engine_device([cpu, gpu0], vk_device="7") == gpu0  # unknown: the default
    assert engine_device([]) is None


def test_info_says_when_a_gpu_build_finds_no_gpu() -> None:
    from sdcpp_service.cli.info import device_lines

    cpu = _dev("CPU", "cpu").as_dict()
    lines = device_lines({"backend": "cuda", "devices": [cpu], "device": cpu})
    assert lines[0] == "devices           CPU: CPU desc (cpu, 1.0 GiB)"
    assert lines[-1].endswith("no cuda device found, so the engine computes on the CPU")
    gpu = _dev("CUDA0", "gpu").as_dict()
    lines = device_lines({"backend": "cuda", "devices": [gpu, cpu], "device": gpu})
    assert lines == [
        "devices           CUDA0: CUDA0 desc (gpu, 1.0 GiB)",
        "                  CPU: CPU desc (cpu, 1.0 GiB)",
        "engine runs on    CUDA0 (CUDA0 desc)",
    ]
