"""A1111's whole /sdapi/v1 route table, options as A1111 keeps them, prompt styles and the
fidelity of ``info`` (fake engine; the real engine runs these doors in test_engine_a1111.py)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from starlette.testclient import TestClient

from sdcpp_service.engine import names
from sdcpp_service.server import a1111_options
from sdcpp_service.server.routes.a1111_lists import UNSUPPORTED
from tests.models.corpus import write_safetensors
from tests.server.conftest import MakeClient

SMALL = {"prompt": "a cat", "steps": 1, "width": 64, "height": 64, "seed": 4}


def keys(*names: str) -> Callable[[Any], bool]:
    return lambda item: isinstance(item, dict) and set(names) <= set(item)


def list_of(*names: str) -> Callable[[Any], bool]:
    return lambda data: isinstance(data, list) and bool(data) and all(map(keys(*names), data))


def equals(value: Any) -> Callable[[Any], bool]:
    return lambda data: data == value


#: A1111's GET routes (modules/api/api.py, 1.10, plus the built-in Lora extension's) → a check
#: of the documented response shape (modules/api/models.py).
GET_ROUTES: list[tuple[str, Callable[[Any], bool]]] = [
    ("progress", keys("progress", "eta_relative", "state", "current_image", "textinfo")),
    ("options", keys("sd_model_checkpoint", "send_seed", "samples_format", "sd_vae")),
    ("cmd-flags", keys("api", "listen", "port", "ckpt_dir", "lora_dir", "data_dir")),
    ("samplers", list_of("name", "aliases", "options")),
    ("schedulers", list_of("name", "label", "aliases", "default_rho", "need_inner_model")),
    ("upscalers", list_of("name", "model_name", "model_path", "model_url", "scale")),
    ("latent-upscale-modes", list_of("name")),
    ("sd-models", list_of("title", "model_name", "hash", "sha256", "filename", "config")),
    ("sd-vae", list_of("model_name", "filename")),
    ("sd-modules", list_of("model_name", "filename")),
    ("hypernetworks", equals([])),
    ("face-restorers", equals([])),
    ("realesrgan-models", list_of("name", "path", "scale")),
    ("prompt-styles", list_of("name", "prompt", "negative_prompt")),
    ("embeddings", keys("loaded", "skipped")),
    ("memory", keys("ram", "cuda")),
    ("scripts", equals({"txt2img": [], "img2img": []})),
    ("script-info", equals([])),
    ("extensions", equals([])),
    ("loras", list_of("name", "alias", "path", "metadata")),
]
#: A1111's POST routes that take no body → the answer.
POST_ROUTES = [
    "refresh-checkpoints",
    "refresh-vae",
    "refresh-embeddings",
    "refresh-loras",
    "interrupt",
    "skip",
    "unload-checkpoint",
    "reload-checkpoint",
]


@pytest.fixture
def styled(model_dir: Path, tmp_path: Path) -> Path:
    """The model folder plus an embedding, and a styles.csv in the data dir."""
    write_safetensors(model_dir / "embeddings" / "easyneg.safetensors", {"emb_params": (8, 768)})
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "styles.csv").write_text(
        'name,prompt,negative_prompt\n"oil","oil painting of {prompt}, framed","blurry"\n'
        '"moody","dark, moody light",""\n',
        encoding="utf-8",
    )
    return data


@pytest.mark.parametrize(("path", "check"), GET_ROUTES, ids=[p for p, _ in GET_ROUTES])
def test_get_route_shapes(styled: Path, client: TestClient, path: str, check: Any) -> None:
    r = client.get(f"/sdapi/v1/{path}")
    assert r.status_code == 200, r.text
    assert check(r.json()), r.json()


def test_post_routes_and_unsupported(styled: Path, client: TestClient) -> None:
    for path in POST_ROUTES:
        r = client.post(f"/sdapi/v1/{path}")
        assert r.status_code == 200, (path, r.text)
    for path, reason in UNSUPPORTED.items():
        r = client.post(f"/sdapi/v1/{path}", json={})
        assert r.status_code == 501, path
        assert r.json() == {
            "error": "NotImplementedError",
            "detail": reason,
            "body": "",
            "errors": reason,
        }
    # without --api-server-stop the stop routes are not there (as in A1111)
    assert client.post("/sdapi/v1/server-stop").status_code == 404


def test_embeddings_from_the_folder(styled: Path, client: TestClient) -> None:
    data = client.get("/sdapi/v1/embeddings").json()
    assert data["loaded"]["easyneg"]["vectors"] == 8 and data["loaded"]["easyneg"]["shape"] == 768
    realesrgan = client.get("/sdapi/v1/realesrgan-models").json()
    upscalers = {u["name"]: u["scale"] for u in client.get("/sdapi/v1/upscalers").json()}
    assert [(u["name"], u["scale"]) for u in realesrgan] == [("4x_test", upscalers["4x_test"])]


def test_cmd_flags_report_real_settings(model_dir: Path, client: TestClient) -> None:
    flags = client.get("/sdapi/v1/cmd-flags").json()
    assert flags["ckpt_dir"] == str(model_dir / "checkpoints")
    assert flags["lora_dir"] == str(model_dir / "loras")
    assert flags["api"] is True and flags["api_server_stop"] is False


def test_options_round_trip_and_restart(make_client: MakeClient) -> None:
    client = make_client()
    before = client.get("/sdapi/v1/options").json()
    defaults = a1111_options.defaults()
    assert set(defaults) <= set(before) and len(defaults) > 200
    assert before["send_seed"] is True and before["CLIP_stop_at_last_layers"] == 1
    flipped = {k: (not v if isinstance(v, bool) else v) for k, v in before.items()}
    flipped["sd_model_checkpoint"] = None  # nothing loaded yet: leave it
    flipped["samples_format"] = "jpg"
    flipped["custom_key_of_an_extension"] = {"nested": [1, 2]}
    r = client.post("/sdapi/v1/options", json=flipped)
    assert r.status_code == 200, r.text
    after = client.get("/sdapi/v1/options").json()
    assert after == flipped
    client.__exit__(None, None, None)  # restart on the same data dir
    again = make_client().get("/sdapi/v1/options").json()
    assert again == flipped


def test_options_checked_and_acted_on(make_client: MakeClient) -> None:
    client = make_client()
    bad = client.post(
        "/sdapi/v1/options",
        json={"CLIP_stop_at_last_layers": 99, "samples_format": "bmp", "sd_vae": "nope"},
    )
    assert bad.status_code == 422
    locs = {d["loc"][-1] for d in bad.json()["detail"]}
    assert locs == {"CLIP_stop_at_last_layers", "samples_format", "sd_vae"}
    options = {
        "CLIP_stop_at_last_layers": 2,
        "samples_format": "webp",
        "enable_pnginfo": False,
        "sd_vae": "myvae",
    }
    assert client.post("/sdapi/v1/options", json=options).status_code == 200
    r = client.post("/sdapi/v1/txt2img", json=SMALL).json()
    image = Image.open(io.BytesIO(base64.b64decode(r["images"][0])))
    assert image.format == "WEBP" and "parameters" not in image.info
    info = json.loads(r["info"])
    assert info["clip_skip"] == 2 and info["sd_vae_name"] == "myvae"
    assert client.post("/sdapi/v1/options", json={"samples_format": "png"}).status_code == 200
    r = client.post("/sdapi/v1/txt2img", json=SMALL).json()
    assert "parameters" not in Image.open(io.BytesIO(base64.b64decode(r["images"][0]))).info


def test_styles_applied_as_a1111(styled: Path, client: TestClient) -> None:
    r = client.post("/sdapi/v1/txt2img", json={**SMALL, "styles": ["oil", "moody"]})
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert info["prompt"] == "oil painting of a cat, framed, dark, moody light"
    assert info["negative_prompt"] == "blurry" and info["styles"] == ["oil", "moody"]
    text = Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0]))).info["parameters"]
    assert text.startswith(
        "oil painting of a cat, framed, dark, moody light\nNegative prompt: blurry"
    )
    r = client.post("/sdapi/v1/txt2img", json={**SMALL, "styles": ["nope"]})
    assert r.status_code == 422 and "oil" in r.json()["detail"][0]["msg"]


def test_info_fields_and_image_switches(styled: Path, client: TestClient) -> None:
    r = client.post("/sdapi/v1/txt2img", json={**SMALL, "batch_size": 2, "send_images": False})
    assert r.status_code == 200 and r.json()["images"] == []
    info = json.loads(r.json()["info"])
    a1111_fields = {
        "prompt", "all_prompts", "negative_prompt", "all_negative_prompts", "seed", "all_seeds",
        "subseed", "all_subseeds", "subseed_strength", "width", "height", "sampler_name",
        "cfg_scale", "steps", "batch_size", "restore_faces", "face_restoration_model",
        "sd_model_name", "sd_model_hash", "sd_vae_name", "sd_vae_hash", "seed_resize_from_w",
        "seed_resize_from_h", "denoising_strength", "extra_generation_params",
        "index_of_first_image", "infotexts", "styles", "job_timestamp", "clip_skip",
        "is_using_inpainting_conditioning", "version",
    }  # fmt: skip
    assert a1111_fields <= set(info)
    assert info["all_seeds"] == [4, 5] and info["all_prompts"] == ["a cat", "a cat"]
    assert info["is_using_inpainting_conditioning"] is False and info["clip_skip"] == 1
    r = client.post("/sdapi/v1/txt2img", json={**SMALL, "save_images": True})
    saved = list((styled / "outputs" / "txt2img-images").glob("*/*.png"))
    assert [p.name for p in saved] == ["00000-4.png"]
    assert base64.b64decode(r.json()["images"][0]) == saved[0].read_bytes()


def test_every_a1111_sampler_name_is_accepted(client: TestClient) -> None:
    """Every name and alias passes the request checks (the real engine's answer for each is in
    test_engine_a1111.py); a name A1111 does not have either is still refused."""
    given = [*names.A1111_SAMPLERS, *names.A1111_NEAREST, *names.A1111_ALIASES]
    for name in [*given, "DPM++ 2M Karras", "PLMS Exponential"]:
        r = client.post("/sdapi/v1/txt2img", json={**SMALL, "sampler_name": name})
        assert r.status_code == 200, (name, r.text)
    r = client.post("/sdapi/v1/txt2img", json={**SMALL, "sampler_name": "Nope"})
    assert r.status_code == 422


def test_sampler_table() -> None:
    assert set(names.A1111_NAMES) <= {*names.A1111_SAMPLERS, *names.A1111_NEAREST}
    assert set(names.A1111_ALIASES.values()) <= set(names.A1111_NAMES)
    assert names.sampler_from_label("PLMS") == ("ipndm", None)
    assert names.sampler_from_label("k_dpmpp_2m_sde") == ("er_sde", "exponential")
    assert names.sampler_from_label("DPM++ 2M SDE Karras") == ("er_sde", "karras")
    assert names.sampler_from_label("k_euler_a") == ("euler_a", None)
    assert {"PLMS", "LMS", "plms", "k_lms"} <= set(names.a1111_aliases("ipndm"))


def test_eta_options_by_sampler_family(client: TestClient) -> None:
    assert (
        client.post("/sdapi/v1/options", json={"eta_ancestral": 0.5, "eta_ddim": 0.3}).status_code
        == 200
    )
    seen = {}
    for sampler in ("Euler a", "DDIM", "Euler", "k_dpmpp_2m_sde"):
        client.post("/sdapi/v1/txt2img", json={**SMALL, "sampler_name": sampler})
        job = client.get("/api/v1/jobs", params={"limit": 1}).json()["jobs"][0]
        seen[sampler] = job["params"].get("eta")
    assert seen == {"Euler a": 0.5, "DDIM": 0.3, "Euler": None, "k_dpmpp_2m_sde": 0.5}
    r = client.post("/sdapi/v1/txt2img", json={**SMALL, "sampler_name": "Euler a", "eta": 0.1})
    assert r.status_code == 200
    assert client.get("/api/v1/jobs", params={"limit": 1}).json()["jobs"][0]["params"]["eta"] == 0.1


def test_unload_and_reload_checkpoint(client: TestClient) -> None:
    def loaded() -> list[str]:
        listed = client.get("/api/v1/models").json()["models"]
        return [m["name"] for m in listed if m["loaded"]]

    assert client.post("/sdapi/v1/txt2img", json=SMALL).status_code == 200
    assert loaded() == ["alpha"]
    assert client.post("/sdapi/v1/unload-checkpoint").status_code == 200
    assert loaded() == []
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "beta"}).status_code == 200
    assert client.post("/sdapi/v1/unload-checkpoint").status_code == 200
    assert client.post("/sdapi/v1/reload-checkpoint").status_code == 200
    assert loaded() == ["beta"]
