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


def shown(page: Any, previous: str = "") -> re.Match[str]:
    page.wait_for_function(
        """prev => { const t = document.querySelector('#estimate').textContent;
                     return t.includes('GiB RAM') && t !== prev; }""",
        arg=previous,
    )
    text = page.locator("#estimate").inner_text()
    found = LINE.search(text)
    assert found, text
    return found


def test_the_estimate_beside_generate_follows_the_form(page: Any, server: Server) -> None:
    assert page.locator(".actions #generate + #estimate").count() == 1  # beside the button
    page.get_by_label("Prompt", exact=True).fill("a fox")
    for name, value in {"width": "64", "height": "64"}.items():
        page.locator(f"#gen [name={name}]").fill(value)
    small = shown(page)
    asked = httpx.post(server.url + "/api/v1/estimate", timeout=60,
                       json={"prompt": "a fox", "width": 64, "height": 64}).json()  # fmt: skip
    assert small[1] == f"{asked['estimate']['peak_ram_bytes'] / 2**30:.2f}"
    assert small[2] == f"{asked['budget_bytes'] / 2**30:.2f}"
    for name in ("width", "height"):
        page.locator(f"#gen [name={name}]").fill("512")
    large = shown(page, small[0])
    assert float(large[1]) > float(small[1])  # the decoder's buffer grows with the size
