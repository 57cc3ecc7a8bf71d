"""Helpers of the reliability suite: a real ``sdcpp serve`` in a subprocess (optionally in its
own mount namespace with a small tmpfs as its data dir), filling and freeing that disk, waiting
on jobs over HTTP."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.test_real_clients import free_port

SERVE = [sys.executable, "-c", "from sdcpp_service.cli import main; main()", "serve"]
#: ``sh -c`` script mounting a tmpfs of size $1 on $2, then running the rest
MOUNT = 'mount -t tmpfs -o "size=$1" tmpfs "$2" && shift 2 && exec "$@"'


def namespace_command() -> list[str] | None:
    """How to run a process in a private mount namespace where it may mount a tmpfs: ``unshare
    -m`` (root), else ``unshare -rm`` (an unprivileged user namespace); None where neither
    works (then the disk-full test cannot make a small disk)."""
    if shutil.which("unshare") is None:
        return None
    with tempfile.TemporaryDirectory() as where:
        for prefix in (["unshare", "-m"], ["unshare", "-r", "-m"]):
            cmd = [*prefix, "--propagation", "private", "sh", "-c", MOUNT, "sh", "1m", where]
            probe = subprocess.run([*cmd, "true"], capture_output=True, timeout=30)
            if probe.returncode == 0:
                return prefix
    return None


def unavailable(reason: str) -> None:
    """Skip (a machine lacking the component), or fail under ``CI=true``."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass
class Served:
    """A running ``sdcpp serve``; ``data`` is its data dir as this process reaches it."""

    proc: subprocess.Popen[bytes]
    url: str
    data: Path
    http: httpx.Client
    log: Path
    tmpfs: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def wait_ready(self, timeout: float = 180) -> dict[str, Any]:
        """Until ``/health`` answers and a worker is ready (the preload warm)."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                health: dict[str, Any] = self.http.get("/health").json()
                if health["worker"] == "ready" and health["workers"].get("idle"):
                    return health
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.2)

    def job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.http.get(f"/api/v1/jobs/{job_id}").json()
        return job

    def wait(self, job_id: str, until: tuple[str, ...] = ("completed", "failed", "cancelled"),
             timeout: float = 240) -> dict[str, Any]:  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in until:
                return job
            assert time.monotonic() < deadline, (job, self.log.read_text()[-3000:])
            time.sleep(0.1)

    def submit(self, body: dict[str, Any]) -> httpx.Response:
        return self.http.post("/api/v1/jobs", json=body)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(timeout=60)

    def close(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        try:  # the whole session (orphaned workers included)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass


def serve(root: Path, models: Path, data: str, *args: str, tmpfs: str = "") -> Served:
    """``sdcpp serve`` on a free port with ``models``, data dir ``root/data``; with ``tmpfs``
    (a size such as ``24m``) the data dir is a tmpfs of that size in the server's own mount
    namespace (it goes when the server does), reached from here through ``/proc/PID/root``."""
    port = free_port()
    data_dir = root / data
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [*SERVE, "--port", str(port), "--models", str(models), "--data-dir", str(data_dir)]
    cmd += ["--log-level", "warning", *args]
    if tmpfs:
        prefix = namespace_command()
        assert prefix is not None
        cmd = [*prefix, "--propagation", "private", "sh", "-c", MOUNT, "sh", tmpfs,
               str(data_dir), *cmd]  # fmt: skip
    log = root / f"{data}.log"
    with log.open("ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    seen = Path(f"/proc/{proc.pid}/root") / str(data_dir).lstrip("/") if tmpfs else data_dir
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    return Served(proc, f"http://127.0.0.1:{port}", seen, http, log, bool(tmpfs))


def fill(directory: Path) -> Path:
    """Write a file until the disk is full (to the last byte); returns it."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return filler


def wait_for(check: Any, timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
