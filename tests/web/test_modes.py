"""The page's other modes and its sign-in, in Chromium against live ``sdcpp serve`` processes on
the real engine: ControlNet (kit SD1 + its ControlNet), reference-image edit (Flux.2 klein),
upscale (the exact nearest ×4 ESRGAN), video (Wan2.1 T2V without umT5, "run without" ticked);
and a server with ``--api-key`` whose page asks for the key once, keeps it, and shows the exact
``sdcpp pull`` command for what a model lacks."""

from __future__ import annotations

import io
import os
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.synth.kit import Kit
from tests.web.conftest import Console, open_page
from tests.web.server import Server, serve
from tests.web.test_page import png_bytes

pytestmark = pytest.mark.engine

KEY = "page-key-1"
FLUX = "flux_tiny_dit"


def _place(path: Path, folder: Path, link: bool = False) -> None:
    """Into a model folder: a symlink for main models, a hard link (or copy) for components (a
    component a request names must lie inside the model folders)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():
        return
    if link:
        target.symlink_to(path)
        return
    try:
        os.link(path, target)
    except OSError:  # another filesystem
        shutil.copyfile(path, target)


@pytest.fixture(scope="module")
def modes(browser: Any, kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("web-modes")
    models = root / "models"
    _place(kit.path("sd1"), models / "checkpoints", link=True)
    _place(kit.path("controlnet_sd1"), models / "controlnet")
    _place(kit.path("esrgan_x4"), models / "upscale_models")
    klein = kit.files("flux2_klein")
    _place(klein["diffusion_model"], models / "diffusion_models", link=True)
    _place(klein["vae"], models / "vae")
    _place(klein["llm"], models / "text_encoders")
    wan = kit.files("wan21")
    _place(wan["diffusion_model"], models / "diffusion_models", link=True)
    _place(wan["vae"], models / "vae")
    with serve(models, root / "data", preload=False) as live:
        yield live


@pytest.fixture
def page(browser: Any, modes: Server, console: Console) -> Iterator[Any]:
    p = open_page(browser, modes.url + "/", console, viewport={"width": 1280, "height": 900})
    try:
        yield p
    finally:
        p.context.close()
    assert console.errors == []


def pick(page: Any, model: str, mode: str) -> None:
    """Choose ``model`` and then ``mode`` (a mode the model does not take is not offered)."""
    page.locator("#model").select_option(model)
    radio = page.locator(f'#modes input[value="{mode}"]')
    page.wait_for_function("el => !el.disabled", arg=radio.element_handle())
    page.locator(f'#modes label:has(input[value="{mode}"])').click()


def fill(page: Any, prompt: str, **fields: str) -> None:
    page.get_by_label("Prompt", exact=True).fill(prompt)
    for name, value in fields.items():
        page.locator(f"#gen [name={name}]").fill(value)


def submit(page: Any) -> dict[str, Any]:
    """Click Generate; the request body the page sent."""
    with page.expect_request(lambda r: r.url.endswith("/api/v1/jobs") and r.method == "POST") as req:  # fmt: skip
        page.get_by_role("button", name="Generate").click()
    body: dict[str, Any] = req.value.post_data_json
    return body


def finished(page: Any, server: Server, prompt: str) -> dict[str, Any]:
    """The job's card appears in the gallery; the job as the API has it."""
    page.locator(f'#gallery-grid .card[aria-label*="{prompt}"]').first.wait_for(timeout=300_000)
    jobs = server.request("GET", "/api/v1/jobs?limit=1")["jobs"]
    assert jobs and jobs[0]["status"] == "completed", jobs
    job: dict[str, Any] = jobs[0]
    return job


def test_controlnet_mode(page: Any, modes: Server, tmp_path: Path) -> None:
    pick(page, "sd1", "controlnet")
    control = tmp_path / "edges.png"
    control.write_bytes(png_bytes((64, 64), "white"))
    page.locator("#control-file").set_input_files(str(control))
    page.locator("#control_strength").fill("0.5")
    fill(page, "a controlled tower", width="64", height="64", steps="1", cfg_scale="1")
    body = submit(page)
    assert body["kind"] == "controlnet" and body["control_net"] == "control_sd1"
    assert body["control_image"].startswith("data:image/png") and body["control_strength"] == 0.5
    job = finished(page, modes, "a controlled tower")
    assert job["kind"] == "controlnet"
    assert "ControlNet: control_sd1 (0.5)" in job["outputs"][0]["infotext"]


def test_edit_mode_with_reference_images(page: Any, modes: Server, tmp_path: Path) -> None:
    pick(page, "klein_tiny_dit", "edit")
    refs = [tmp_path / "a.png", tmp_path / "b.png"]
    refs[0].write_bytes(png_bytes((32, 32), "red"))
    refs[1].write_bytes(png_bytes((32, 32), "blue"))
    page.locator("#ref-files").set_input_files([str(p) for p in refs])
    fill(page, "an edited fox", width="64", height="64", steps="1", cfg_scale="1")
    body = submit(page)
    assert body["kind"] == "edit" and len(body["ref_images"]) == 2
    job = finished(page, modes, "an edited fox")
    assert job["kind"] == "edit" and job["outputs"][0]["width"] == 64


def test_upscale_mode(page: Any, modes: Server, tmp_path: Path) -> None:
    page.locator('#modes label:has(input[value="upscale"])').click()
    source = Image.new("RGB", (12, 10))
    source.putdata([((x * 20) % 256, (y * 25) % 256, 90) for y in range(10) for x in range(12)])
    path = tmp_path / "small.png"
    source.save(path)
    page.locator("#init-file").set_input_files(str(path))
    page.locator("#upscaler").select_option("esrgan_x4_nearest")
    body = submit(page)
    assert body["kind"] == "upscale" and body["model"] == "esrgan_x4_nearest"
    page.locator("#gallery-grid .card").first.wait_for(timeout=300_000)
    job = modes.request("GET", "/api/v1/jobs?limit=1")["jobs"][0]
    job = modes.wait_job(job["id"])
    assert job["kind"] == "upscale" and job["status"] == "completed", job
    page.locator(f'#gallery-grid .card[data-job="{job["id"]}"]').click()
    full = page.locator("#detail-media img")
    page.wait_for_function("img => img.complete && img.naturalWidth === 48", arg=full.element_handle())  # fmt: skip
    with urllib.request.urlopen(modes.url + job["outputs"][0]["url"], timeout=60) as res:
        out = Image.open(io.BytesIO(res.read())).convert("RGB")
    assert out.tobytes() == source.resize((48, 40), Image.Resampling.NEAREST).tobytes()


def test_video_mode_plays_in_a_video_element(page: Any, modes: Server) -> None:
    pick(page, "wan21_t2v_1.3b_q4_0", "video")
    info = page.locator("#model-info").inner_text()
    assert "lacks a umt5xxl" in info
    page.get_by_label("run without the umt5xxl (lower quality)").check()
    fill(page, "a running fox", width="16", height="16", steps="1", cfg_scale="1", frames="5")
    page.locator("#format").select_option("webm")
    body = submit(page)
    assert body["kind"] == "video" and body["t5xxl"] is False and body["frames"] == 5
    job = finished(page, modes, "a running fox")
    assert job["kind"] == "video"
    page.locator(f'#gallery-grid .card[data-job="{job["id"]}"]').click()
    video = page.locator("#detail-media video")
    page.wait_for_function("v => v.readyState >= 1 && v.duration > 0", arg=video.element_handle())
    assert video.evaluate("v => [v.videoWidth, v.videoHeight]") == [16, 16]


# -- a server that wants an API key ------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(browser: Any, kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``--api-key``; a Flux DiT alone (no VAE, CLIP-L or T5-XXL in its folder) beside sdxs."""
    root = tmp_path_factory.mktemp("web-keyed")
    models = root / "models"
    _place(kit.path("sdxs"), models / "checkpoints", link=True)
    _place(kit.files("flux")["diffusion_model"], models / "diffusion_models", link=True)
    with serve(models, root / "data", "--api-key", KEY, "--api-auth", "al:pw1") as live:
        yield live


def test_api_key_is_asked_once_and_kept(browser: Any, keyed: Server, console: Console) -> None:
    console.allow("401")  # Chromium logs the first, refused, API call
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(60_000)
    try:
        page = ctx.new_page()
        console.attach(page)
        page.goto(keyed.url + "/")
        dialog = page.locator("#auth-dialog")
        dialog.wait_for()
        page.get_by_role("button", name="Sign in").click()  # nothing typed
        assert "Enter an API key" in page.locator("#auth-error").inner_text()
        page.get_by_label("API key").fill(KEY)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector("body[data-ready=true]")
        assert not dialog.is_visible()
        assert page.locator("#model option").count() >= 2  # the API answered with the key
        assert page.evaluate("localStorage.getItem('sdcpp.auth')") == f"Bearer {KEY}"
        page.reload()
        page.wait_for_selector("body[data-ready=true]")
        assert not dialog.is_visible()  # kept: not asked again
        page.evaluate("localStorage.setItem('sdcpp.auth', 'Bearer wrong')")
        page.reload()
        dialog.wait_for()  # a key the server refuses is asked for again
        page.get_by_label("API key").fill(KEY)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector("body[data-ready=true]")
    finally:
        ctx.close()
    assert console.errors == []


def test_basic_auth_sign_in(browser: Any, keyed: Server, console: Console) -> None:
    console.allow("401")
    ctx = browser.new_context(viewport={"width": 390, "height": 844})
    ctx.set_default_timeout(60_000)
    try:
        page = ctx.new_page()
        console.attach(page)
        page.goto(keyed.url + "/")
        page.locator("#auth-dialog").wait_for()
        page.get_by_label("User").fill("al")
        page.get_by_label("Password").fill("wrong")
        page.get_by_role("button", name="Sign in").click()
        page.locator("#auth-dialog").wait_for()  # refused: asked again
        page.get_by_label("User").fill("al")
        page.get_by_label("Password").fill("pw1")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector("body[data-ready=true]")
        assert page.locator("#model option").count() >= 2
        assert str(page.evaluate("localStorage.getItem('sdcpp.auth')")).startswith("Basic ")
    finally:
        ctx.close()
    assert console.errors == []


def test_missing_components_show_the_pull_command(browser: Any, keyed: Server, console: Console) -> None:  # fmt: skip
    console.allow("422")
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.add_init_script(f"localStorage.setItem('sdcpp.auth', 'Bearer {KEY}')")
    ctx.set_default_timeout(60_000)
    try:
        page = ctx.new_page()
        console.attach(page)
        page.goto(keyed.url + "/")
        page.wait_for_selector("body[data-ready=true]")
        kit_flux = FLUX
        page.locator("#model").select_option(kit_flux)
        view = keyed.request("GET", f"/api/v1/models/{kit_flux}")
        hints = {m["component"]: m["hint"] for m in view["missing"]}
        assert set(hints) == {"vae", "clip_l", "t5xxl"} and all(hints.values())
        info = page.locator("#model-info")
        page.wait_for_function(
            "el => el.textContent.includes('lacks a t5xxl')", arg=info.element_handle()
        )
        text = info.inner_text()
        for component, hint in hints.items():
            assert f"lacks a {component}: run {hint}" in text
        page.get_by_label("Prompt", exact=True).fill("no encoders")
        page.get_by_role("button", name="Generate").click()
        error = page.locator("#form-error")
        page.wait_for_function("el => el.textContent.includes('sdcpp pull')", arg=error.element_handle())  # fmt: skip
        assert hints["vae"] in error.inner_text() or hints["vae"] in page.content()
        assert keyed.request("GET", "/api/v1/jobs")["jobs"] == []  # refused, nothing queued
    finally:
        ctx.close()
    assert console.errors == []
