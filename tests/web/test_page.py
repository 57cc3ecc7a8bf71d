"""The web page at ``/`` in a real Chromium against a live ``sdcpp serve`` on the kit's ``sdxs``:
what a person sees after each action (the real engine runs every job)."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

from tests.web.conftest import Console, open_page
from tests.web.server import Server

pytestmark = pytest.mark.engine

SMALL = {"width": "64", "height": "64", "steps": "2"}


def fill_form(page: Any, prompt: str, **fields: str) -> None:
    page.get_by_label("Prompt", exact=True).fill(prompt)
    for name, value in {**SMALL, **fields}.items():
        page.locator(f"#gen [name={name}]").fill(value)


def watch_text(page: Any, selector: str) -> None:
    """Record every text ``selector`` shows into ``window.seen`` (the page's own updates)."""
    page.evaluate(
        """sel => {
            window.seen = [];
            const el = document.querySelector(sel);
            new MutationObserver(() => window.seen.push(el.textContent))
                .observe(el, {childList: true, characterData: true, subtree: true});
        }""",
        selector,
    )


def card(page: Any, prompt: str) -> Any:
    return page.locator("#gallery-grid .card", has=page.locator(f'img[alt*="{prompt}"]'))


def png_bytes(size: tuple[int, int] = (64, 64), color: str = "gray", text: str = "") -> bytes:
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("parameters", text)
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def test_generate_progress_and_gallery(page: Any) -> None:
    fill_form(page, "a red lighthouse", seed="7")
    watch_text(page, "#progress-text")
    page.get_by_role("button", name="Generate").click()
    item = card(page, "a red lighthouse")
    item.wait_for(timeout=300_000)
    seen = page.evaluate("window.seen")
    assert any(text.startswith("step 1/2") for text in seen), seen
    assert any(text.startswith("step 2/2") for text in seen), seen
    thumb = item.locator("img")
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle()
    )
    item.click()
    detail = page.locator("#detail")
    assert detail.is_visible()
    info = page.locator("#detail-info").inner_text()
    assert "a red lighthouse" in info
    assert "Steps: 2" in info and "Seed: 7" in info and "Size: 64x64" in info
    full = page.locator("#detail-media img")
    page.wait_for_function(
        "img => img.complete && img.naturalWidth === 64", arg=full.element_handle()
    )
    page.get_by_role("button", name="Close").click()


def test_inpaint_sends_the_painted_mask(page: Any, server: Server, tmp_path: Any) -> None:
    page.get_by_text("Inpaint", exact=True).click()
    source = tmp_path / "in.png"
    source.write_bytes(png_bytes((64, 64), "steelblue"))
    page.locator("#init-file").set_input_files(str(source))
    canvas = page.locator("#mask-canvas")
    canvas.wait_for()
    page.locator("#brush").fill("40")
    box = canvas.bounding_box()
    # a horizontal stroke across the top quarter, left to right
    y = box["y"] + box["height"] * 0.25
    page.mouse.move(box["x"] + 5, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 5, y, steps=8)
    page.mouse.up()
    page.get_by_label("Prompt", exact=True).fill("inpaint a band")
    page.locator("#gen [name=steps]").fill("1")
    with page.expect_request(
        lambda r: r.url.endswith("/api/v1/jobs") and r.method == "POST"
    ) as req:
        page.get_by_role("button", name="Generate").click()
    body = req.value.post_data_json
    assert body["kind"] == "inpaint" and body["init_image"].startswith("data:image/png")
    assert (body["width"], body["height"]) == (64, 64)  # the image's size
    mask = Image.open(io.BytesIO(base64.b64decode(body["mask"].partition(",")[2]))).convert("L")
    assert mask.size == (64, 64)
    assert mask.getpixel((32, 16)) == 255 and mask.getpixel((5, 16)) == 255  # the painted band
    assert mask.getpixel((32, 50)) == 0 and mask.getpixel((32, 2)) == 0  # untouched
    card(page, "inpaint a band").wait_for(timeout=300_000)


def test_reuse_parameters_fills_the_form(page: Any, server: Server) -> None:
    job = server.request(
        "POST",
        "/api/v1/jobs",
        {"prompt": "reuse me", "negative_prompt": "blurry", "width": 64, "height": 128,
         "steps": 2, "seed": 1234, "cfg_scale": 2.5, "sampler": "euler"},
    )  # fmt: skip
    assert server.wait_job(job["id"])["status"] == "completed"
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.locator(f'#gallery-grid .card[data-job="{job["id"]}"]').click()
    page.get_by_role("button", name="Reuse parameters").click()
    assert page.get_by_label("Prompt", exact=True).input_value() == "reuse me"
    assert page.get_by_label("Negative prompt").input_value() == "blurry"
    values = {n: page.locator(f"#gen [name={n}]").input_value() for n in
              ("width", "height", "steps", "seed", "cfg_scale", "sampler")}  # fmt: skip
    assert values == {"width": "64", "height": "128", "steps": "2", "seed": "1234",
                      "cfg_scale": "2.5", "sampler": "euler"}  # fmt: skip


def test_dropped_png_fills_the_form(page: Any) -> None:
    text = (
        "a castle on a hill\nNegative prompt: fog, rain\n"
        "Steps: 3, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 4.5, Seed: 99, "
        "Size: 128x192, Model: sdxs"
    )
    data = base64.b64encode(png_bytes(text=text)).decode()
    page.evaluate(
        """data => {
            const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "castle.png", {type: "image/png"}));
            const target = document.querySelector("#gallery");
            target.dispatchEvent(new DragEvent("dragover", {bubbles: true, dataTransfer: dt}));
            target.dispatchEvent(new DragEvent("drop", {bubbles: true, dataTransfer: dt}));
        }""",
        data,
    )
    prompt = page.get_by_label("Prompt", exact=True)
    page.wait_for_function("() => document.querySelector('#prompt').value !== ''")
    assert prompt.input_value() == "a castle on a hill"
    assert page.get_by_label("Negative prompt").input_value() == "fog, rain"
    form = {n: page.locator(f"#gen [name={n}]").input_value() for n in
            ("steps", "cfg_scale", "seed", "width", "height", "sampler", "scheduler")}  # fmt: skip
    assert form == {"steps": "3", "cfg_scale": "4.5", "seed": "99", "width": "128",
                    "height": "192", "sampler": "dpm++2m", "scheduler": "karras"}  # fmt: skip
    assert page.locator("#drop-overlay").is_hidden()


def test_two_jobs_queue_and_complete(page: Any) -> None:
    fill_form(page, "first queued", width="128", height="128")
    page.get_by_role("button", name="Generate").click()
    page.locator("#queue-list li").first.wait_for()
    page.get_by_label("Prompt", exact=True).fill("second queued")
    page.get_by_label("Prompt", exact=True).press("Control+Enter")  # the keyboard path
    rows = page.locator("#queue-list li")
    page.wait_for_function("() => document.querySelectorAll('#queue-list li').length === 2")
    texts = rows.all_inner_texts()
    assert any("first queued" in t for t in texts) and any("second queued" in t for t in texts)
    assert any("queued #1" in t for t in texts)
    card(page, "second queued").wait_for(timeout=300_000)
    card(page, "first queued").wait_for(timeout=300_000)
    assert page.locator("#queue-list li").count() == 0
    assert page.locator("#queue-empty").is_visible()


def test_api_error_next_to_its_field(page: Any, console: Console) -> None:
    console.allow("status of 422")
    fill_form(page, "bad steps", steps="0")
    page.get_by_role("button", name="Generate").click()
    error = page.locator('[data-for="steps"] .field-error')
    error.wait_for()
    assert "steps" in error.inner_text() and "between 1" in error.inner_text()
    assert page.locator("#queue-list li").count() == 0


def test_phone_viewport_dark(browser: Any, server: Server, console: Console) -> None:
    page = open_page(
        browser, server.url + "/", console, viewport={"width": 390, "height": 844},
        is_mobile=True, has_touch=True, color_scheme="dark",
    )  # fmt: skip
    try:
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        generate = page.get_by_role("button", name="Generate")
        generate.scroll_into_view_if_needed()
        box = generate.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(17, 20, 24)"  # the dark palette
        # every visible control has a label a screen reader reads
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea, button')]
                .filter(el => el.checkVisibility() && el.type !== 'radio')
                .filter(el => !(el.labels?.length || el.getAttribute('aria-label') || el.textContent.trim()))
                .map(el => el.id || el.outerHTML.slice(0, 60))"""
        )
        assert unlabelled == []
    finally:
        page.context.close()
    assert console.errors == []


def test_cancel_running_job(page: Any, server: Server) -> None:
    fill_form(page, "a long job to cancel", width="256", height="256", steps="30")
    page.get_by_role("button", name="Generate").click()
    row = page.locator('#queue-list li[data-status="running"]')
    row.wait_for(timeout=300_000)
    page.wait_for_function(
        "() => document.querySelector('#progress-text').textContent.startsWith('step')",
        timeout=300_000,
    )
    job_id = row.get_attribute("data-job")
    row.get_by_role("button", name="Cancel").click()
    page.locator(f'#queue-list li[data-job="{job_id}"]').wait_for(state="detached", timeout=120_000)
    assert server.request("GET", f"/api/v1/jobs/{job_id}")["status"] == "cancelled"
    assert page.locator("#progress-text").inner_text() == "idle"
