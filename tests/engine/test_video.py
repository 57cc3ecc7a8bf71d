"""Video through the real engine: a synthesized Wan2.1 T2V 1.3B (q4_0 GGUF) + Wan VAE, no umT5
(the engine feeds zeros), 16×16, 5 frames, 1 step. Files written in every format decode back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sdcpp_service import InvalidRequest, Pipeline, UnknownName, VideoResult
from sdcpp_service.cli import app
from sdcpp_service.config import Settings
from sdcpp_service.engine.images import parse_infotext
from sdcpp_service.engine.runtime import runtime
from sdcpp_service.engine.videofile import save_video
from tests.synth.kit import Kit

pytestmark = pytest.mark.engine

TINY: dict[str, Any] = {"width": 16, "height": 16, "frames": 5, "steps": 1, "cfg": 1.0}


@pytest.fixture(scope="module")
def wan(kit: Kit) -> dict[str, Path]:
    return kit.files("wan21")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


def load_wan(files: dict[str, Path], data_dir: Path) -> Pipeline:
    """A kit Wan model with its VAE and no text encoder, 2 threads."""
    settings = Settings(data_dir=data_dir, model_dirs=(), threads=2)
    return Pipeline.load(files["diffusion_model"], settings=settings, vae=files["vae"], t5xxl=False)


@pytest.fixture(scope="module")
def pipe(wan: dict[str, Path], data_dir: Path) -> Iterator[Pipeline]:
    with load_wan(wan, data_dir) as pipeline:
        yield pipeline


@pytest.fixture(scope="module")
def progress_seen() -> list[tuple[int, int]]:
    return []


@pytest.fixture(scope="module")
def result(pipe: Pipeline, progress_seen: list[tuple[int, int]]) -> VideoResult:
    return pipe.generate_video(
        "a fox running", seed=3, progress=lambda p: progress_seen.append((p.step, p.total)), **TINY
    )


@pytest.fixture
def cli_home(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI runs in ``tmp_path`` with the module's data dir and no model folders."""
    monkeypatch.setenv("SDCPP_DATA_DIR", str(data_dir))
    monkeypatch.delenv("SDCPP_MODELS", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def read_frames(paths: list[str]) -> list[np.ndarray]:
    out = []
    for path in paths:
        with Image.open(path) as im:
            out.append(np.asarray(im, dtype=np.int16))
    return out


def arrays(frames: list[Image.Image]) -> list[np.ndarray]:
    return [np.asarray(f, dtype=np.int16) for f in frames]


def test_frames_size_seed_and_parameters(
    result: VideoResult, progress_seen: list[tuple[int, int]]
) -> None:
    assert [f.size for f in result.frames] == [(16, 16)] * 5
    assert all(f.mode == "RGB" for f in result.frames)
    assert result.seed == 3 and result.fps == 16.0
    assert float(np.std(arrays(result.frames))) > 1.0  # not flat
    assert (1, 1) in progress_seen
    fields = parse_infotext(result.frames[0].info["parameters"])
    assert fields["Prompt"] == "a fox running"
    assert fields["Frames"] == "5" and fields["FPS"] == "16" and fields["Size"] == "16x16"
    assert fields["Seed"] == "3" and fields["Steps"] == "1"
    assert fields["Model"] == "wan21_t2v_1.3b_q4_0" and len(fields["Model hash"]) == 10
    assert result.params["family"] == "Wan T2V" and result.params["frames_out"] == 5
    assert result.timings["engine"] > 0


@pytest.mark.parametrize("name", ["clip.mp4", "clip.webm", "clip.gif", "clip.webp", "frames/"])
def test_written_files_decode_back_to_five_frames(
    result: VideoResult, tmp_path: Path, name: str
) -> None:
    out = f"{tmp_path}/{name}"
    paths = save_video(result.frames, out, result.fps, result.infotext, result.params)
    if name.endswith((".mp4", ".webm")):
        with av.open(str(paths[0])) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            comment = {k.lower(): v for k, v in container.metadata.items()}["comment"]
        assert len(decoded) == 5 and decoded[0].shape == (16, 16, 3)
        assert "Frames: 5" in comment
    elif name.endswith((".gif", ".webp")):
        with Image.open(paths[0]) as im:
            assert (im.n_frames, im.size) == (5, (16, 16))
    else:
        assert len(paths) == 5
        for path, frame in zip(paths, result.frames, strict=True):
            with Image.open(path) as im:
                assert np.array_equal(np.asarray(im), np.asarray(frame))  # lossless


@pytest.mark.parametrize(
    ("params", "field", "needle"),
    [
        ({"frames": 6}, "frames", "nearest valid count is 5"),
        ({"frames": 3}, "frames", "nearest valid count is 1 or 5"),
        ({"width": 20}, "width", "nearest valid size is 16"),
        ({"fps": 0}, "fps", "above 0"),
        ({"steps": 0}, "steps", "between 1"),
        ({"init_image": Image.new("RGB", (16, 16))}, "init_image", "text-to-video only"),
        ({"end_image": Image.new("RGB", (16, 16))}, "end_image", "no end image"),
        ({"control_frames": [Image.new("RGB", (16, 16))]}, "control_frames", "VACE"),
        ({"high_noise_steps": 2}, "high_noise_steps", "high-noise model"),
        ({"moe_boundary": 1.5}, "moe_boundary", "between 0 and 1"),
        ({"cache_mode": "magic"}, "cache_mode", "unknown cache mode"),
        ({"seed": 2**40}, "seed", "at most"),
        ({"flux_capacitor": 1}, "flux_capacitor", "not a video"),
    ],
)
def test_bad_requests_fail_before_the_engine_runs(
    pipe: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
    params: dict[str, Any],
    field: str,
    needle: str,
) -> None:
    def engine_must_not_run(*args: object) -> None:
        raise AssertionError("the engine ran")

    monkeypatch.setattr(runtime().native.lib, "generate_video", engine_must_not_run)
    with pytest.raises(InvalidRequest) as err:
        pipe.generate_video("x", **{**TINY, **params})
    assert err.value.field == field and needle in str(err.value)


def test_unknown_sampler(pipe: Pipeline) -> None:
    with pytest.raises(UnknownName) as err:
        pipe.generate_video("x", sampler="warp_drive", **TINY)
    assert err.value.field == "sampler"


def test_cli_writes_frames_equal_to_the_library_and_refuses_overwrites(
    wan: dict[str, Path],
    result: VideoResult,
    cli_home: Path,
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    model = str(wan["diffusion_model"])
    base = ["video", "a fox running", "-m", model, "--vae", str(wan["vae"]), "--no-text-encoder"]
    tiny = ["-W", "16", "-H", "16", "--frames", "5", "--steps", "1", "--cfg", "1", "--seed", "3"]
    ok = runner.invoke(app, [*base, *tiny, "-t", "2", "-o", "frames/", "--json"])
    assert ok.exit_code == 0, ok.output
    record = json.loads(ok.output.strip().splitlines()[-1])
    assert (record["frames"], record["width"], record["height"]) == (5, 16, 16)
    assert record["seed"] == 3 and len(record["files"]) == 5
    written = read_frames(record["files"])
    # same seed, same settings: the CLI's frames are the library's, pixel for pixel
    assert all(np.array_equal(a, b) for a, b in zip(written, arrays(result.frames), strict=True))
    with Image.open(record["files"][0]) as first:
        assert "Frames: 5" in first.info["parameters"]
    # errors: one line, non-zero exit, before any generation
    (tmp_path / "taken.mp4").write_bytes(b"precious")
    for args, code, needle in (
        ([*base, *tiny, "-o", "taken.mp4"], 3, "already exists"),
        ([*base, "--frames", "6"], 2, "nearest valid count is 5"),
        ([*base, "-o", "clip.avi"], 2, "cannot write a video"),
        (["video", "x", "-m", model, "--no-text-encoder"], 4, "needs a vae wan2.1"),
    ):
        bad = runner.invoke(app, args)
        assert bad.exit_code == code, bad.output
        lines = bad.output.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("error: ")
    assert (tmp_path / "taken.mp4").read_bytes() == b"precious"


def test_high_and_low_noise_pair_runs_both_models(
    wan: dict[str, Path], data_dir: Path, result: VideoResult
) -> None:
    """The Wan2.2 A14B path (two diffusion models, MoE switch) with the 1.3B file in both slots."""
    settings = Settings(data_dir=data_dir, model_dirs=(), threads=2)
    seen: list[tuple[int, int, str]] = []
    with Pipeline.load(
        wan["diffusion_model"],
        settings=settings,
        vae=wan["vae"],
        t5xxl=False,
        high_noise_diffusion_model=wan["diffusion_model"],
    ) as pair:
        out = pair.generate_video(
            "a fox running",
            seed=3,
            high_noise_steps=1,
            high_noise_cfg=1.0,
            progress=lambda p: seen.append((p.step, p.total, p.phase)),
            **{**TINY, "steps": 2},
        )
    assert [f.size for f in out.frames] == [(16, 16)] * 5
    assert seen[-1][:2] == (3, 3) and {t for _, t, _ in seen} == {3}
    assert seen[0][2] == "high noise" and seen[-1][2] == "sampling"
    fields = parse_infotext(out.infotext)
    assert fields["High noise steps"] == "1" and fields["High noise model"] == fields["Model"]


# -- Wan VACE: the T2V DiT + one VACE block (tests/synth/derived.py), steered by control frames

SOLID_RED, SOLID_BLUE = (255, 0, 0), (0, 0, 255)


@pytest.fixture(scope="module")
def vace_files(kit: Kit) -> dict[str, Path]:
    return kit.files("wan21_vace")


@pytest.fixture(scope="module")
def vace(vace_files: dict[str, Path], data_dir: Path) -> Iterator[Pipeline]:
    with load_wan(vace_files, data_dir) as pipeline:
        yield pipeline


def solid(color: tuple[int, int, int]) -> list[Image.Image]:
    return [Image.new("RGB", (16, 16), color) for _ in range(5)]


def same(a: VideoResult, b: VideoResult) -> bool:
    return all(
        np.array_equal(x, y) for x, y in zip(arrays(a.frames), arrays(b.frames), strict=True)
    )


@pytest.fixture(scope="module")
def vace_red(vace: Pipeline) -> VideoResult:
    return vace.generate_video("a fox", seed=3, control_frames=solid(SOLID_RED), **TINY)


def test_vace_control_frames_steer_the_video(vace: Pipeline, vace_red: VideoResult) -> None:
    assert vace.model_info().variant == "vace-1.3b"
    again = vace.generate_video("a fox", seed=3, control_frames=solid(SOLID_RED), **TINY)
    blue = vace.generate_video("a fox", seed=3, control_frames=solid(SOLID_BLUE), **TINY)
    plain = vace.generate_video("a fox", seed=3, **TINY)
    assert [f.size for f in vace_red.frames] == [(16, 16)] * 5
    assert same(vace_red, again)  # deterministic: the differences below are the control's
    assert not same(vace_red, blue)
    assert not same(vace_red, plain)
    fields = parse_infotext(vace_red.infotext)
    assert fields["Control frames"] == "5" and "Control frames" not in parse_infotext(
        plain.infotext
    )


def test_cli_control_frames_folder_matches_the_library(
    vace_files: dict[str, Path],
    vace_red: VideoResult,
    cli_home: Path,
    tmp_path: Path,
) -> None:
    control = tmp_path / "control"
    control.mkdir()
    for i, frame in enumerate(solid(SOLID_RED)):
        frame.save(control / f"{i}.png")
    args = ["video", "a fox", "-m", str(vace_files["diffusion_model"]), "--vae",
            str(vace_files["vae"]), "--no-text-encoder", "-W", "16", "-H", "16", "--frames", "5",
            "--steps", "1", "--cfg", "1", "--seed", "3", "-t", "2", "-o", "out/", "--json"]  # fmt: skip
    ok = CliRunner().invoke(app, [*args, "--control-frames", str(control)])
    assert ok.exit_code == 0, ok.output
    record = json.loads(ok.output.strip().splitlines()[-1])
    written = read_frames(record["files"])
    assert all(np.array_equal(a, b) for a, b in zip(written, arrays(vace_red.frames), strict=True))
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = CliRunner().invoke(app, [*args, "--control-frames", str(empty)])
    assert bad.exit_code != 0 and bad.output.strip().splitlines()[-1].startswith("error: ")
    assert "no image files" in bad.output
