"""A live ``sdcpp serve`` for browser tests and screenshots: a subprocess on a free loopback
port, with the kit's fast model (``sdxs``) and a LoRA in its model folder."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.synth.kit import Kit

START_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    headers: dict[str, str]

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", **self.headers}
        req = urllib.request.Request(self.url + path, data, headers, method=method)
        with urllib.request.urlopen(req, timeout=60) as res:
            return json.load(res)

    def wait_job(self, job_id: str, timeout: float = 300.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            view: dict[str, Any] = self.request("GET", f"/api/v1/jobs/{job_id}")
            if view["status"] not in ("queued", "running"):
                return view
            time.sleep(0.2)
        raise TimeoutError(f"job {job_id} still running after {timeout} s")


def model_folder(kit: Kit, root: Path) -> Path:
    """A model folder with the kit's sdxs checkpoint and its LoRA (symlinks: no copies)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, sub in (("sdxs", "checkpoints"), ("lora_sd1", "loras")):
        src = kit.path(name)
        (root / sub).mkdir(exist_ok=True)
        link = root / sub / src.name
        if not link.exists():
            link.symlink_to(src)
    return root


@contextlib.contextmanager
def serve(models: Path, data: Path, *extra: str, preload: bool = True) -> Iterator[Server]:
    """Run ``sdcpp serve`` until the block ends; waits for the worker to be ready."""
    port = free_port()
    data.mkdir(parents=True, exist_ok=True)
    log = data / "serve.log"
    args = [sys.executable, "-m", "sdcpp_service", "serve", "--port", str(port)]
    args += ["--models", str(models), "--data-dir", str(data), "--threads", "2", *extra]
    if preload:
        args += ["--preload", "sdxs"]
    env = {**os.environ, "SDCPP_MODELS": ""}
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=data)
    server = Server(f"http://127.0.0.1:{port}", process, log, {})
    if "--api-key" in extra:
        server.headers["Authorization"] = f"Bearer {extra[extra.index('--api-key') + 1]}"
    try:
        _wait_ready(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"sdcpp serve exited: {server.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(server.url + "/health", timeout=5) as res:
                if json.load(res).get("worker") == "ready":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"sdcpp serve not ready after {START_TIMEOUT} s: {server.log.read_text()}")
