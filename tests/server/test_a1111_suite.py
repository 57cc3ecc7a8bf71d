"""The requests of A1111's own API test suite (its ``test/test_txt2img.py``, ``test_img2img.py``,
``test_extras.py`` and ``test_utils.py``), replayed against the service on the fake engine (the
dialect is under test; the real engine runs every A1111 sampler name in test_engine_a1111.py).
Each answers 200 as on A1111, except the one that names a script A1111 ships and we do not: 422
naming it, as A1111 answers for a script it does not have."""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image
from starlette.testclient import TestClient


def png_b64(image: Image.Image) -> str:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


INIT = png_b64(Image.new("RGB", (64, 64), (120, 80, 40)))


def half_mask() -> Image.Image:
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 0, 64, 64))
    return mask


MASK = png_b64(half_mask())

TXT2IMG: dict[str, Any] = {
    "batch_size": 1, "cfg_scale": 7, "denoising_strength": 0, "enable_hr": False, "eta": 0,
    "firstphase_height": 0, "firstphase_width": 0, "height": 64, "n_iter": 1,
    "negative_prompt": "", "prompt": "example prompt", "restore_faces": False, "s_churn": 0,
    "s_noise": 1, "s_tmax": 0, "s_tmin": 0, "sampler_index": "Euler a", "seed": -1,
    "seed_resize_from_h": -1, "seed_resize_from_w": -1, "steps": 3, "styles": [], "subseed": -1,
    "subseed_strength": 0, "tiling": False, "width": 64,
}  # fmt: skip
IMG2IMG: dict[str, Any] = {
    "batch_size": 1, "cfg_scale": 7, "denoising_strength": 0.75, "eta": 0, "height": 64,
    "include_init_images": False, "init_images": [INIT], "inpaint_full_res": False,
    "inpaint_full_res_padding": 0, "inpainting_fill": 0, "inpainting_mask_invert": False,
    "mask": None, "mask_blur": 4, "n_iter": 1, "negative_prompt": "", "override_settings": {},
    "prompt": "example prompt", "resize_mode": 0, "restore_faces": False, "s_churn": 0,
    "s_noise": 1, "s_tmax": 0, "s_tmin": 0, "sampler_index": "Euler a", "seed": -1,
    "seed_resize_from_h": -1, "seed_resize_from_w": -1, "steps": 3, "styles": [], "subseed": -1,
    "subseed_strength": 0, "tiling": False, "width": 64,
}  # fmt: skip
EXTRAS: dict[str, Any] = {
    "resize_mode": 0, "show_extras_results": True, "gfpgan_visibility": 0,
    "codeformer_visibility": 0, "codeformer_weight": 0, "upscaling_resize": 2,
    "upscaling_resize_w": 128, "upscaling_resize_h": 128, "upscaling_crop": True,
    "upscaler_1": "Lanczos", "upscaler_2": "None", "extras_upscaler_2_visibility": 0,
    "image": INIT,
}  # fmt: skip

#: (test name in A1111's suite, route, body)
REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("txt2img_simple", "txt2img", TXT2IMG),
    ("txt2img_negative_prompt", "txt2img", {**TXT2IMG, "negative_prompt": "example negative"}),
    ("txt2img_complex_prompt", "txt2img", {**TXT2IMG, "prompt": "((emphasis)), (emphasis1:1.1), "
                                           "[to:1], [from::2], [from:to:0.3], [alt|alt1]"}),
    ("txt2img_not_square", "txt2img", {**TXT2IMG, "height": 128}),
    ("txt2img_hrfix", "txt2img", {**TXT2IMG, "enable_hr": True}),
    ("txt2img_tiling", "txt2img", {**TXT2IMG, "tiling": True}),
    ("txt2img_restore_faces", "txt2img", {**TXT2IMG, "restore_faces": True}),
    ("txt2img_plms", "txt2img", {**TXT2IMG, "sampler_index": "PLMS"}),
    ("txt2img_ddim", "txt2img", {**TXT2IMG, "sampler_index": "DDIM"}),
    ("txt2img_unipc", "txt2img", {**TXT2IMG, "sampler_index": "UniPC"}),
    ("txt2img_multiple_batches", "txt2img", {**TXT2IMG, "n_iter": 2}),
    ("txt2img_batch", "txt2img", {**TXT2IMG, "batch_size": 2}),
    ("img2img_simple", "img2img", IMG2IMG),
    ("inpainting_masked", "img2img", {**IMG2IMG, "mask": MASK}),
    ("inpainting_inverted_mask", "img2img", {**IMG2IMG, "mask": MASK, "inpainting_mask_invert": True}),
    ("extras_simple_upscaling", "extra-single-image", EXTRAS),
    ("extras_png_info", "extra-single-image", {"image": INIT}),
    ("extras_interrogate", "extra-single-image", {"image": INIT, "model": "clip"}),
]  # fmt: skip
GETS = ["cmd-flags", "samplers", "upscalers", "sd-models", "hypernetworks", "face-restorers"]
GETS += ["realesrgan-models", "prompt-styles", "embeddings"]


def test_a1111_suite_requests(client: TestClient) -> None:
    for name, route, body in REQUESTS:
        r = client.post(f"/sdapi/v1/{route}", json=body)
        assert r.status_code == 200, (name, r.text)
        data = r.json()
        first = data["images"][0] if "images" in data else data["image"]
        size = Image.open(io.BytesIO(base64.b64decode(first))).size
        want = {"txt2img_not_square": (64, 128), "txt2img_hrfix": (128, 128)}.get(name, (64, 64))
        want = (128, 128) if name == "extras_simple_upscaling" else want
        assert size == want, name
        if route != "extra-single-image":
            count = 2 if name in ("txt2img_multiple_batches", "txt2img_batch") else 1
            assert len(data["images"]) == count, name
    # test_img2img_sd_upscale_performed: a script A1111 ships; we have none and say so
    r = client.post(
        "/sdapi/v1/img2img",
        json={**IMG2IMG, "script_name": "sd upscale", "script_args": ["", 8, "Lanczos", 2.0]},
    )
    assert r.status_code == 422 and "Script 'sd upscale' not found" in r.text


def test_a1111_suite_utils(client: TestClient) -> None:
    for url in GETS:
        assert client.get(f"/sdapi/v1/{url}").status_code == 200, url
    pre = client.get("/sdapi/v1/options").json()["send_seed"]
    assert client.post("/sdapi/v1/options", json={"send_seed": not pre}).status_code == 200
    assert client.get("/sdapi/v1/options").json()["send_seed"] is (not pre)
    client.post("/sdapi/v1/options", json={"send_seed": pre})
