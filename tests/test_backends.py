from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def test_install_dry_run_shows_pinned_pip_command() -> None:
    result = CliRunner().invoke(app, ["backend", "install", "vulkan", "--dry-run"])
    assert result.exit_code == 0
    line = result.output.strip()
    assert "CMAKE_ARGS='-DCMAKE_BUILD_TYPE=Release -DSD_VULKAN=ON'" in line
    assert "--force-reinstall --no-cache-dir" in line
    assert "stable-diffusion-cpp-python==0.4.7" in line


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
