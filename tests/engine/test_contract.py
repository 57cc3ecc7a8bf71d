"""One contract for every :class:`~sdcpp_service.engine.base.Engine`: the fake one the server
tests use and the real one (on the kit's SDXS, 64×64, 1 step) answer the same typed jobs alike:
outputs, seeds, infotext, progress, warm-model state, errors that pickle as themselves."""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from sdcpp_service.config import Settings
from sdcpp_service.engine.base import Engine, ImageJob, JobOutput, UpscaleJob, engine_job
from sdcpp_service.errors import InvalidRequest, SdcppError, WorkerDied
from sdcpp_service.server.engine import PipelineEngine
from sdcpp_service.types import Progress
from tests.fakes import FakeEngine
from tests.synth.kit import Kit

JOB = {"width": 64, "height": 64, "steps": 1, "seed": 5, "cfg_scale": 1.0}


@pytest.fixture(scope="module", params=["fake", pytest.param("real", marks=pytest.mark.engine)])
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Engine, str]]:
    """(an engine, the model path its jobs name)."""
    if request.param == "fake":
        yield FakeEngine(), "fake.safetensors"
        return
    kit: Kit = request.getfixturevalue("kit")
    data = tmp_path_factory.mktemp("contract")
    real = PipelineEngine(Settings(data_dir=data, model_dirs=(data,), threads=2))
    try:
        yield real, str(kit.path("sdxs"))
    finally:
        real.unload()


def image_job(model: str, **params: object) -> ImageJob:
    job = engine_job("c1", "txt2img", model, {}, {"prompt": "a lighthouse", **JOB, **params})
    assert isinstance(job, ImageJob)
    return job


def test_start_names_samplers_and_schedulers(engine: tuple[Engine, str]) -> None:
    info = engine[0].start()
    assert "euler" in info["samplers"] and info["schedulers"]


def test_txt2img_output_seeds_infotext_progress(engine: tuple[Engine, str]) -> None:
    eng, model = engine
    seen: list[Progress] = []
    out = eng.run(image_job(model, batch=2), seen.append)
    assert isinstance(out, JobOutput) and out.fps is None
    assert [im.size for im in out.images] == [(64, 64), (64, 64)] and out.seeds == [5, 6]
    assert all("a lighthouse" in t for t in out.infotexts)
    assert "Seed: 5" in out.infotexts[0] and "Seed: 6" in out.infotexts[1]
    assert out.timings["engine"] > 0 and out.params["seed"] == 5
    steps = [p for p in seen if p.phase == "sampling"]  # per image, for a batch
    assert steps and steps[-1].step == steps[-1].total
    assert all(0 <= p.step <= p.total for p in steps)
    again = pickle.loads(pickle.dumps(out))  # crosses the process boundary
    assert again.seeds == out.seeds and again.images[0].tobytes() == out.images[0].tobytes()


def test_state_tracks_the_warm_model_and_seeds_repeat(engine: tuple[Engine, str]) -> None:
    eng, model = engine
    first = eng.run(image_job(model), lambda p: None)
    state = eng.state()
    assert state["model"] == model and state["load"] == {}
    loads = state["loads"]
    second = eng.run(image_job(model), lambda p: None)
    assert eng.state()["loads"] == loads  # warm: no reload
    assert first.images[0].tobytes() == second.images[0].tobytes()  # same seed, same image
    eng.unload()
    assert eng.state()["model"] == ""
    eng.load(model, {})
    state = eng.state()
    assert {k: state[k] for k in ("model", "load", "loads")} == {
        "model": model,
        "load": {},
        "loads": loads + 1,
    }


def test_a_bad_size_is_an_error_naming_the_field(engine: tuple[Engine, str]) -> None:
    eng, model = engine
    with pytest.raises(InvalidRequest) as caught:
        eng.run(image_job(model, width=65), lambda p: None)
    assert caught.value.field == "width" and "multiple of" in str(caught.value)
    again = pickle.loads(pickle.dumps(caught.value))
    assert (
        type(again) is InvalidRequest and again.field == "width" and str(again) == str(caught.value)
    )


def test_builtin_upscale(engine: tuple[Engine, str]) -> None:
    buf = io.BytesIO()
    source = Image.new("RGBA", (16, 12), (10, 20, 30, 128))
    source.save(buf, format="PNG")
    out = engine[0].run(UpscaleJob("u1", "", buf.getvalue(), 2.0, 128, "lanczos"), lambda p: None)
    (image,) = out.images
    assert image.size == (32, 24) and image.mode == "RGBA"
    assert "Postprocess upscale by: 2" in out.infotexts[0] and out.params["upscaler"] == "Lanczos"


def test_typed_jobs_refuse_fields_of_another_kind() -> None:
    with pytest.raises(InvalidRequest) as caught:
        engine_job("x", "txt2img", "m", {}, {"prompt": "p", "frames": 5})
    assert caught.value.field == "frames"
    video = engine_job("v", "video", "m", {}, {"prompt": "p", "frames": 5, "format": "webm"})
    assert video.kind == "video" and getattr(video, "format", "") == "webm"


def test_typed_params_are_the_rules_fields() -> None:
    """ImageParams and VideoParams declare exactly the request fields (rules and requests), each
    with the rule's type, so the typed jobs and every door cannot drift apart."""
    import typing
    from dataclasses import fields

    from sdcpp_service import rules
    from sdcpp_service.engine.base import ImageParams, VideoParams
    from sdcpp_service.types import GenerateRequest, VideoRequest

    image_fields = {f.name for f in fields(ImageParams)}
    assert image_fields == set(rules.GENERATION) - {"prompt"}
    images = {"init_image", "mask", "control_image", "ref_images", "end_image", "control_frames",
              "pm_id_images"}  # fmt: skip
    local = {"pm_id_embed"}  # a file path: the CLI and library take it, the server does not
    request = {f.name for f in fields(GenerateRequest)} - {"prompt", "loras"} - images - local
    assert image_fields == request
    video_fields = {f.name for f in fields(VideoParams)}
    assert video_fields == {f.name for f in fields(VideoRequest)} - {"prompt", "loras"} - images
    for cls in (ImageParams, VideoParams):
        hints = typing.get_type_hints(cls)
        for name, hint in hints.items():
            rule = rules.GENERATION.get(name) or rules.KIND_FIELDS.get(name)
            if rule is not None:
                assert typing.get_args(hint) == (rule.kind, type(None)), (cls, name, hint)


def test_typed_jobs_carry_typed_values() -> None:
    job = engine_job("t", "img2img", "m", {}, {"prompt": "p", "cfg_scale": 7, "width": 64,
                                              "init_image": b"png", "ref_images": [b"a"]})  # fmt: skip
    assert isinstance(job, ImageJob) and job.kind == "img2img"
    assert job.params.cfg_scale == 7.0 and isinstance(job.params.cfg_scale, float)
    assert job.params.steps is None and job.params.given() == {"cfg_scale": 7.0, "width": 64}
    assert job.images.init_image == b"png" and job.images.ref_images == (b"a",)
    with pytest.raises(InvalidRequest) as caught:
        engine_job("t", "upscale_all", "m", {}, {"prompt": "p"})
    assert caught.value.field == "kind"


@pytest.mark.parametrize(
    "error",
    [
        InvalidRequest("width", "must be a multiple of 8"),
        WorkerDied(-9),
        SdcppError("plain"),
    ],
)
def test_every_error_pickles_as_itself(error: SdcppError, tmp_path: Path) -> None:
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error)
    assert again.__dict__ == error.__dict__
