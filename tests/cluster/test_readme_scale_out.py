"""README "Scale out", run as written: its migrate line and its three commands, with the
database URL swapped for the test's, on the kit's SDXS under the README's model name."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.cluster.pg import free_port
from tests.synth.kit import Kit

pytestmark = pytest.mark.engine
README = Path(__file__).resolve().parents[2] / "README.md"
URL = "postgresql://sdcpp:secret@localhost/sdcpp"


def scale_out_commands() -> list[str]:
    text = README.read_text().split("## Scale out", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [ln for b in blocks for ln in b.splitlines() if ln.startswith("sdcpp ")]


def test_readme_scale_out_runs(kit: Kit, pg_url: str, tmp_path: Path) -> None:
    lines = scale_out_commands()
    assert [ln.split()[:3] for ln in lines] == [
        ["sdcpp", "queue", "migrate"], ["sdcpp", "worker", "--queue"],
        ["sdcpp", "serve", "--queue"], ["sdcpp", "queue", "status"],
    ]  # fmt: skip
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "sd_turbo.safetensors").symlink_to(kit.path("sdxs"))
    port = free_port()

    def argv(line: str) -> list[str]:
        assert URL in line
        args = shlex.split(line.replace(URL, pg_url).replace("--port 7860", f"--port {port}"))
        return [sys.executable, "-m", "sdcpp_service", *args[1:]]

    migrate = subprocess.run(argv(lines[0]), capture_output=True, text=True, timeout=120,
                             cwd=tmp_path)  # fmt: skip
    assert migrate.returncode == 0, migrate.stderr
    worker = subprocess.Popen([*argv(lines[1]), "--data-dir", str(tmp_path / "w")], cwd=tmp_path,
                              stderr=subprocess.PIPE)  # fmt: skip
    serve = subprocess.Popen([*argv(lines[2]), "--data-dir", str(tmp_path / "api")], cwd=tmp_path,
                             stderr=subprocess.PIPE)  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                for proc in (worker, serve):
                    if proc.poll() is not None:
                        assert proc.stderr is not None
                        raise AssertionError(proc.stderr.read().decode()[-3000:])
                try:
                    if http.get("/health").json()["worker"] == "ready":
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            r = http.post("/sdapi/v1/txt2img", json={"prompt": "a lighthouse", "steps": 2,
                                                      "width": 64, "height": 64, "seed": 3})  # fmt: skip
            assert r.status_code == 200, r.text
            assert r.json()["images"] and '"seed": 3' in r.json()["info"]
        status = subprocess.run(argv(lines[3]), capture_output=True, text=True, timeout=60,
                                cwd=tmp_path)  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert "sd_turbo" in status.stdout and "idle" in status.stdout
    finally:
        for proc in (serve, worker):
            proc.terminate()
        for proc in (serve, worker):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            assert proc.stderr is not None
            proc.stderr.close()
