"""Writing videos (no engine): every format decodes back to the frames' count and size, carries
the parameters, is written atomically and never overwrites without ``force``."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from sdcpp_service.engine.videofile import check_fps, save_video, video_target
from sdcpp_service.errors import InvalidRequest, OutputExists

PARAMS = "a fox running\nNegative prompt: blurry\nSteps: 1, Seed: 3, Size: 16x16, Frames: 5"


def clip(count: int = 5, size: tuple[int, int] = (16, 16), seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    w, h = size
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for _ in range(count)]


def decode_av(path: Path) -> tuple[list[np.ndarray], dict[str, str], str, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        rate = float(stream.average_rate or 0)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        meta = {k.lower(): v for k, v in container.metadata.items()}
    return frames, meta, codec, rate


def pillow_frames(path: Path) -> tuple[int, tuple[int, int], dict[str, object]]:
    with Image.open(path) as im:
        return im.n_frames, im.size, dict(im.info)


@pytest.mark.parametrize(("suffix", "codec"), [(".mp4", "h264"), (".webm", "vp9")])
def test_mp4_and_webm_decode_back_with_metadata(tmp_path: Path, suffix: str, codec: str) -> None:
    out = tmp_path / f"clip{suffix}"
    paths = save_video(clip(), out, 16, PARAMS, {"seed": 3})
    assert paths == [out] and not list(tmp_path.glob("*.incomplete"))
    frames, meta, got_codec, rate = decode_av(out)
    assert len(frames) == 5 and frames[0].shape == (16, 16, 3)
    assert got_codec == codec and rate == pytest.approx(16)
    assert meta["comment"] == PARAMS
    assert json.loads(meta["description"]) == {"seed": 3}


def test_mp4_is_yuv420p_h264_with_the_index_first(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    save_video(clip(), out, 24)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.pix_fmt == "yuv420p"
    data = out.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # +faststart


def test_odd_sizes_are_padded_to_even_for_h264_only(tmp_path: Path) -> None:
    frames = clip(3, (15, 9))
    save_video(frames, tmp_path / "odd.mp4", 16)
    decoded, *_ = decode_av(tmp_path / "odd.mp4")
    assert len(decoded) == 3 and decoded[0].shape == (10, 16, 3)
    save_video(frames, tmp_path / "odd.webm", 16)
    decoded, *_ = decode_av(tmp_path / "odd.webm")
    assert decoded[0].shape == (9, 15, 3)  # VP9 takes odd sizes as they are


def test_gif_and_webp_decode_back_with_parameters(tmp_path: Path) -> None:
    save_video(clip(), tmp_path / "a.gif", 16, PARAMS)
    count, size, info = pillow_frames(tmp_path / "a.gif")
    assert (count, size) == (5, (16, 16))
    assert info["comment"] == PARAMS.encode()
    assert info["duration"] == 60  # 62.5 ms in GIF's 10 ms units
    save_video(clip(), tmp_path / "a.webp", 16, PARAMS)
    count, size, _ = pillow_frames(tmp_path / "a.webp")
    assert (count, size) == (5, (16, 16))
    with Image.open(tmp_path / "a.webp") as im:
        assert im.getexif()[0x9286] == PARAMS


def test_folder_of_numbered_pngs_first_carries_parameters(tmp_path: Path) -> None:
    out = tmp_path / "frames"
    paths = save_video(clip(), str(out) + "/", 16, PARAMS, {"seed": 3})
    assert [p.name for p in paths] == [f"frame_{i:04d}.png" for i in range(1, 6)]
    with Image.open(paths[0]) as first, Image.open(paths[1]) as second:
        assert first.size == (16, 16)
        assert first.info["parameters"] == PARAMS
        assert json.loads(str(first.info["sdcpp"])) == {"seed": 3}
        assert "parameters" not in second.info
    # an existing folder is a frames target even without the trailing slash
    assert video_target(out).kind == "frames"


def test_never_overwrites_without_force(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"precious")
    with pytest.raises(OutputExists):
        save_video(clip(), out, 16)
    assert out.read_bytes() == b"precious"
    save_video(clip(), out, 16, force=True)
    assert decode_av(out)[0][0].shape == (16, 16, 3)
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "frame_0003.png").write_bytes(b"precious")
    with pytest.raises(OutputExists):
        save_video(clip(), folder, 16)
    assert sorted(p.name for p in folder.iterdir()) == ["frame_0003.png"]  # nothing half-written


def test_a_failed_encode_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sdcpp_service.engine.videofile as videofile

    def boom(*args: object) -> None:
        Path(str(args[1])).write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(videofile, "_encode_av", boom)
    with pytest.raises(RuntimeError):
        save_video(clip(), tmp_path / "x.mp4", 16)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["clip.avi", "clip", "clip.png"])
def test_unknown_formats_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as err:
        video_target(tmp_path / name)
    assert err.value.field == "output" and ".mp4" in str(err.value)


@pytest.mark.parametrize("fps", [0, -1, float("nan"), 1000])
def test_bad_fps(fps: float) -> None:
    with pytest.raises(InvalidRequest) as err:
        check_fps(fps)
    assert err.value.field == "fps"


def test_fractional_fps(tmp_path: Path) -> None:
    save_video(clip(3), tmp_path / "ntsc.mp4", 23.976)
    assert decode_av(tmp_path / "ntsc.mp4")[3] == pytest.approx(23.976, abs=1e-3)
