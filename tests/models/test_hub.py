"""Pulling from the Hub, against a local server that answers the Hub's download routes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sdcpp_service.config import Settings
from sdcpp_service.errors import InvalidRequest, ModelError
from sdcpp_service.models import hub, pull
from sdcpp_service.models.recipes import Fetch
from tests.models import layouts as L
from tests.models.corpus import write_safetensors

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """``/{repo}/resolve/{revision}/{file}`` for HEAD and GET, like huggingface.co."""

    def __init__(self, files: dict[tuple[str, str], bytes]) -> None:
        self.files = files
        self.requests: list[str] = []
        hub_ = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _lookup(self) -> bytes | None:
                hub_.requests.append(f"{self.command} {self.path}")
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return None
                return hub_.files.get(("/".join(parts[:2]), "/".join(parts[4:])))

            def _headers(self, body: bytes | None) -> None:
                if body is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()

            def do_HEAD(self) -> None:  # noqa: N802
                self._headers(self._lookup())

            def do_GET(self) -> None:  # noqa: N802
                body = self._lookup()
                self._headers(body)
                if body is not None:
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _bytes(tmp_path: Path, name: str, layout: L.Layout) -> bytes:
    """A small model file's bytes (shapes kept tiny: the server holds real data)."""
    return write_safetensors(tmp_path / "src" / name, layout).read_bytes()


@pytest.fixture
def fake_hub(tmp_path: Path) -> Iterator[FakeHub]:
    files = {
        ("acme/tiny", "split/vae/tiny_vae.safetensors"): _bytes(
            tmp_path, "v.safetensors", {"decoder.conv_in.weight": (8, 16, 3, 3)}
        ),
        ("acme/tiny", "readme.safetensors"): b"not a model at all",
    }
    with FakeHub(files) as server:
        yield server


def test_pull_files_lands_flat_and_inspects(tmp_path: Path, fake_hub: FakeHub) -> None:
    dest = tmp_path / "models"
    got = pull(
        "acme/tiny", ["split/vae/tiny_vae.safetensors"], Settings.from_env(), dest=dest,
        endpoint=fake_hub.url,
    )  # fmt: skip
    assert [(Path(r.path).name, r.downloaded) for r in got] == [("tiny_vae.safetensors", True)]
    assert got[0].info is not None and (got[0].info.kind, got[0].info.arch) == ("vae", "flux")
    assert sorted(p.name for p in dest.iterdir()) == ["tiny_vae.safetensors"]  # no staging left
    again = pull("acme/tiny", ["split/vae/tiny_vae.safetensors"], dest=dest, endpoint=fake_hub.url)
    assert not again[0].downloaded  # already there
    assert any(r.startswith("GET /acme/tiny/resolve/") for r in fake_hub.requests)


def test_pull_reports_unreadable_files(tmp_path: Path, fake_hub: FakeHub) -> None:
    got = pull("acme/tiny", ["readme.safetensors"], dest=tmp_path, endpoint=fake_hub.url)
    assert got[0].info is None and got[0].error


def test_missing_file_is_one_clear_error(tmp_path: Path, fake_hub: FakeHub) -> None:
    with pytest.raises(ModelError, match="no such file"):
        pull("acme/tiny", ["nope.gguf"], dest=tmp_path / "m", endpoint=fake_hub.url)
    assert not (tmp_path / "m").exists()  # nothing half-written, no staging, no empty folder


def test_offline_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot reach the Hugging Face Hub"):
        pull("acme/tiny", ["x.gguf"], dest=tmp_path, endpoint="http://127.0.0.1:9")


def test_recipes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_hub: FakeHub) -> None:
    with pytest.raises(InvalidRequest, match="not a recipe"):
        pull("no-such-recipe", dest=tmp_path)
    monkeypatch.setitem(
        hub.RECIPES, "tiny", (Fetch("acme/tiny", "split/vae/tiny_vae.safetensors"),)
    )
    got = pull("tiny", dest=tmp_path, endpoint=fake_hub.url)
    assert got[0].info is not None and got[0].info.kind == "vae"
    for name, files in hub.RECIPES.items():
        assert files and all(f.repo.count("/") == 1 and f.local_name for f in files), name


def test_cli_pull_honours_hf_endpoint(tmp_path: Path, fake_hub: FakeHub) -> None:
    env = {**os.environ, "HF_ENDPOINT": fake_hub.url, "SDCPP_DATA_DIR": str(tmp_path / "d")}
    cmd = [sys.executable, "-c", "from sdcpp_service.cli import main; main()", "models", "pull",
           "acme/tiny", "split/vae/tiny_vae.safetensors", "--dir", str(tmp_path / "m"), "--json"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["info"]["arch"] == "flux"
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    cmd[-4] = "other.safetensors"
    done = subprocess.run(cmd, env=offline, capture_output=True, text=True, timeout=120)
    assert done.returncode == 4
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
