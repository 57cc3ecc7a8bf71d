"""The README's screenshots of the page, from a live ``sdcpp serve`` on the kit's ``sdxs``:

    python -m tests.web.screenshots [docs/]

writes ``web-desktop-light.png`` (1280×900) and ``web-phone-dark.png`` (390×844, dark scheme)
after two real jobs, so the gallery, the queue panel and the model picker show what a user sees.
"""

from __future__ import annotations

import sys
import tempfile
import urllib.error
from pathlib import Path

from tests.synth.kit import Kit
from tests.web.conftest import CHROMIUM_ARGS, chromium_path
from tests.web.server import model_folder, serve

SHOTS = {
    "web-desktop-light.png": {"viewport": {"width": 1280, "height": 900}, "color_scheme": "light"},
    "web-phone-dark.png": {
        "viewport": {"width": 390, "height": 844},
        "color_scheme": "dark",
        "device_scale_factor": 2,
        "is_mobile": True,
        "has_touch": True,
    },
}
JOBS = [
    {"prompt": "a red lighthouse on a cliff at dawn", "seed": 7},
    {"prompt": "a fox in the snow, watercolor", "seed": 11},
]


def take(out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        models = model_folder(Kit(), Path(tmp) / "models")
        with serve(models, Path(tmp) / "data") as server:
            for body in JOBS:
                try:
                    job = server.request("POST", "/api/v1/jobs",
                                         {**body, "width": 128, "height": 128, "steps": 4})  # fmt: skip
                except urllib.error.HTTPError as exc:
                    raise SystemExit(f"{exc}: {exc.read().decode()}") from None
                assert server.wait_job(job["id"])["status"] == "completed"
            browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            try:
                for name, context in SHOTS.items():
                    ctx = browser.new_context(**context)  # type: ignore[arg-type]
                    page = ctx.new_page()
                    page.goto(server.url + "/")
                    page.wait_for_selector("body[data-ready=true]")
                    page.get_by_label("Prompt", exact=True).fill(str(JOBS[0]["prompt"]))
                    page.wait_for_function(
                        "() => [...document.querySelectorAll('#gallery-grid img')]"
                        ".every(i => i.complete && i.naturalWidth > 0)"
                    )
                    page.screenshot(path=str(out / name))
                    written.append(out / name)
                    ctx.close()
            finally:
                browser.close()
    return written


if __name__ == "__main__":
    for path in take(Path(sys.argv[1] if len(sys.argv) > 1 else "docs")):
        print(path, path.stat().st_size, "bytes")
