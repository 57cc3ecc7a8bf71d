"""The web page's routes (fake engine, no browser): served files, size, no outside requests,
open page with guarded API, and the config the page reads. The browser tests are tests/web/."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from sdcpp_service.server.routes.web import STATIC_TYPES, WEB_DIR
from tests.server.conftest import MakeClient

ROOT = Path(__file__).resolve().parents[2]


def web_files() -> list[Path]:
    return sorted(p for p in WEB_DIR.iterdir() if p.is_file())


def test_index_and_every_module_are_served(client: object) -> None:
    res = client.get("/")  # type: ignore[attr-defined]
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/web/app.js">' in res.text
    imported = set(re.findall(r'from "\./([\w.]+)"', "".join(p.read_text() for p in web_files())))
    linked = set(re.findall(r'"/web/([\w.]+)"', res.text))
    for name in sorted(imported | linked):
        got = client.get(f"/web/{name}")  # type: ignore[attr-defined]
        assert got.status_code == 200, name
        assert got.headers["content-type"].startswith(STATIC_TYPES[Path(name).suffix].split(";")[0])
    # every file shipped is used
    assert {p.name for p in web_files()} == imported | linked | {"index.html"}


def test_unknown_and_sneaky_paths_are_404(client: object) -> None:
    for path in ("/web/nope.js", "/web/index.html", "/web/..%2Fapp.py", "/web/.hidden.js"):
        res = client.get(path)  # type: ignore[attr-defined]
        assert res.status_code == 404 and res.json()["error"]["message"], path


def test_page_is_small_and_self_contained() -> None:
    total = sum(p.stat().st_size for p in web_files())
    assert total < 150 * 1024
    for path in web_files():
        text = path.read_text()
        assert not re.search(r"(src|href|import|url)\s*[=(]?\s*[\"']?(https?:)?//", text), path.name
        if path.suffix == ".js":
            assert len(text.splitlines()) < 300, path.name


def test_package_data_ships_the_page() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    line = re.search(r"^sdcpp_service = \[(.*)\]$", text, re.M)
    assert line is not None
    patterns = re.findall(r'"([^"]+)"', line.group(1))
    for path in web_files():
        rel = path.relative_to(ROOT / "sdcpp_service").as_posix()
        assert any(fnmatch.fnmatch(rel, p) for p in patterns), rel


def test_page_is_open_when_the_api_wants_a_key(make_client: MakeClient) -> None:
    client = make_client(api_keys=("sekrit",), api_auth=("al:pw",))
    page = client.get("/")
    assert page.status_code == 200
    assert "&quot;bearer&quot;:true" in page.text and "&quot;basic&quot;:true" in page.text
    assert client.get("/web/app.js").status_code == 200
    assert client.get("/api/v1/models").status_code == 401
    assert client.get("/web/../api/v1/models").status_code == 401
    assert (
        client.get("/api/v1/models", headers={"Authorization": "Bearer sekrit"}).status_code == 200
    )


def test_config_without_credentials(client: object) -> None:
    page = client.get("/").text  # type: ignore[attr-defined]
    assert "&quot;bearer&quot;:false" in page and "&quot;basic&quot;:false" in page
    workers = "/api/v1/workers" in {getattr(r, "path", "") for r in client.app.routes}  # type: ignore[attr-defined]
    assert f"&quot;workers&quot;:{'true' if workers else 'false'}" in page


def test_config_carries_the_rules_bounds(make_client: MakeClient) -> None:
    import html
    import json

    from sdcpp_service import rules

    page = make_client(max_steps=40).get("/").text
    found = re.search(r'<meta name="sdcpp-config" content="([^"]*)">', page)
    assert found is not None
    bounds = json.loads(html.unescape(found.group(1)))["rules"]
    assert bounds["frames"] == [1, rules.MAX_FRAMES]
    assert bounds["width"] == [rules.MIN_SIDE, rules.MAX_SIDE]
    assert bounds["cfg_scale"] == [
        rules.GENERATION["cfg_scale"].lo,
        rules.GENERATION["cfg_scale"].hi,
    ]
    assert bounds["steps"] == [1, 40]  # this server's --max-steps
    assert "prompt" not in bounds and "preview" not in bounds


def test_readme_screenshots_exist() -> None:
    """Every ``docs/*.png`` the README links is there: a real PNG of the size it was taken at."""
    from PIL import Image

    from tests.web.screenshots import SHOTS

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\(docs/([\w.-]+\.png)\)", readme))
    assert linked == set(SHOTS)
    for name, context in SHOTS.items():
        viewport = context["viewport"]
        scale = int(context.get("device_scale_factor", 1))  # type: ignore[call-overload]
        with Image.open(ROOT / "docs" / name) as im:
            assert im.format == "PNG"
            assert im.size == (viewport["width"] * scale, viewport["height"] * scale)  # type: ignore[index]
