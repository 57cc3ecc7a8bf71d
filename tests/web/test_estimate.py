"""The memory estimate beside Generate (issue 18): the page asks ``POST /api/v1/estimate`` for
the form's job and shows it next to the button, following the form as it changes."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.web.server import Server

pytestmark = pytest.mark.engine
LINE = re.compile(r"≈ (\d+\.\d\d) GiB RAM of (\d+\.\d\d) GiB")


def estimate(server: Server, width: int, height: int) -> str:
    """The line the page should show for the form's job, as the API answers it."""
    view = httpx.post(server.url + "/api/v1/estimate", timeout=60,
                      json={"prompt": "a fox", "width": width, "height": height}).json()  # fmt: skip
    ram, budget = view["estimate"]["peak_ram_bytes"], view["budget_bytes"]
    return f"≈ {ram / 2**30:.2f} GiB RAM of {budget / 2**30:.2f} GiB"


def shows(page: Any, line: str) -> re.Match[str]:
    """Wait until the page shows ``line``: its estimates are debounced, so one for a form half
    filled (width 64, height still 512) may show first on a slow machine."""
    page.wait_for_function(
        "line => document.querySelector('#estimate').textContent.includes(line)", arg=line
    )
    found = LINE.search(page.locator("#estimate").inner_text())
    assert found, line
    return found


def test_the_estimate_beside_generate_follows_the_form(page: Any, server: Server) -> None:
    assert page.locator(".actions #generate + #estimate").count() == 1  # beside the button
    page.get_by_label("Prompt", exact=True).fill("a fox")
    for name, value in {"width": "64", "height": "64"}.items():
        page.locator(f"#gen [name={name}]").fill(value)
    small = shows(page, estimate(server, 64, 64))
    for name in ("width", "height"):
        page.locator(f"#gen [name={name}]").fill("512")
    large = shows(page, estimate(server, 512, 512))
    assert float(large[1]) > float(small[1])  # the decoder's buffer grows with the size
