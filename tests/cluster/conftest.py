"""PostgreSQL for the cluster tests: ``$SDCPP_TEST_PG`` (``.ci/run`` starts one), else a
throwaway cluster started here when the machine has the server binaries, else a skip naming
what is missing — which fails instead under ``CI=true``. Each test gets its own database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.cluster.pg import Throwaway, bindir

try:
    import procrastinate  # noqa: F401
    import psycopg
except ImportError as exc:  # pragma: no cover - the [cluster] extra is part of [test]
    psycopg = None  # type: ignore[assignment]
    MISSING = f"the [cluster] extra is not installed ({exc}): pip install -e '.[test]'"
else:
    MISSING = ""


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The URL of a PostgreSQL server the tests may create databases on."""
    if MISSING:
        _unavailable(MISSING)
    url = os.environ.get("SDCPP_TEST_PG")
    if url:
        yield url
        return
    if bindir() is None:
        _unavailable("no PostgreSQL: set SDCPP_TEST_PG or install postgresql (initdb)")
    server = Throwaway()
    try:
        url = server.start()
    except Exception as exc:
        server.stop()
        _unavailable(f"could not start a throwaway PostgreSQL: {exc}")
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty database for this test (dropped after)."""
    yield from fresh_database(pg_server)


@pytest.fixture(scope="module")
def pg_module_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty database for this test module (dropped after)."""
    yield from fresh_database(pg_server)


def fresh_database(pg_server: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = pg_server.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- a cluster: API nodes (in-process TestClients) and worker processes ---------------------------

import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from starlette.testclient import TestClient  # noqa: E402

from sdcpp_service.config import Settings  # noqa: E402
from sdcpp_service.server.app import create_app  # noqa: E402
from sdcpp_service.server.options import ServerOptions  # noqa: E402
from tests.fakes import FakeEngine  # noqa: E402
from tests.models import layouts as L  # noqa: E402
from tests.models.corpus import write_safetensors  # noqa: E402

HEARTBEAT, LOST_AFTER = 0.5, 2.0


@pytest.fixture
def fake_models(tmp_path: Path) -> Path:
    """Two SD1 checkpoints (header-only: the fake engine reads none)."""
    root = tmp_path / "models"
    sd1 = {
        **L.prefixed("model.diffusion_model.", L.unet(768)),
        **L.prefixed("cond_stage_model.transformer.", L.clip_text(768)),
    }
    write_safetensors(root / "checkpoints" / "alpha.safetensors", sd1)
    write_safetensors(root / "checkpoints" / "beta.safetensors", sd1)
    return root


class Cluster:
    def __init__(self, url: str, tmp: Path, models: Path) -> None:
        from sdcpp_service.cluster.schema import migrate

        self.url, self.tmp, self.models = url, tmp, models
        self.procs: list[subprocess.Popen[bytes]] = []
        self.clients: list[TestClient] = []
        migrate(url)

    def worker(self, preload: str = "", *, any_model: bool = False, step: float = 0.0,
               workers: int = 1, name: str = "", real: bool = False,
               prefix: tuple[str, ...] = (), args: tuple[str, ...] = ()
               ) -> subprocess.Popen[bytes]:  # fmt: skip
        """Start a worker process (fake engine, or ``real``: ``sdcpp worker``)."""
        n = len(self.procs)
        name = name or f"w{n}"
        data = self.tmp / f"worker-{n}"
        if real:
            cmd = [sys.executable, "-m", "sdcpp_service", "worker", "--queue", self.url,
                   "--models", str(self.models), "--data-dir", str(data), "--name", name,
                   "--heartbeat", str(HEARTBEAT), "--lost-after", str(LOST_AFTER),
                   "--workers", str(workers), "--threads", "1"]  # fmt: skip
        else:
            cmd = [sys.executable, "-m", "tests.cluster.fake_worker", self.url, str(self.models),
                   str(data), "--workers", str(workers), "--step", str(step), "--name", name,
                   "--heartbeat", str(HEARTBEAT), "--lost-after", str(LOST_AFTER)]  # fmt: skip
        if preload:
            cmd += ["--preload", preload]
        if any_model:
            cmd.append("--any")
        cmd += args
        proc = subprocess.Popen([*prefix, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.procs.append(proc)
        return proc

    def node(self, data: str = "api", **options: Any) -> TestClient:
        """An API node (in this process) on the queue."""
        settings = Settings(data_dir=self.tmp / data, model_dirs=(self.models,), threads=1)
        opts = ServerOptions(queue=self.url, lost_after=LOST_AFTER, **options)
        client = TestClient(create_app(settings, FakeEngine(), opts), raise_server_exceptions=False)
        client.__enter__()
        self.clients.append(client)
        return client

    def wait_workers(self, client: TestClient, count: int, timeout: float = 90.0) -> list[Any]:
        """Until ``count`` workers are live (each has warmed its preloads first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = [w for w in client.get("/api/v1/workers").json()["workers"]
                    if w["state"] != "lost"]  # fmt: skip
            if len(live) >= count and all(w["slots"] for w in live):
                return live
            for proc in self.procs:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise AssertionError(f"worker exited {proc.returncode}: {err[-2000:]}")
            time.sleep(0.2)
        raise AssertionError(f"fewer than {count} live workers after {timeout} s")

    def wait_job(self, client: TestClient, job_id: str, states: tuple[str, ...],
                 timeout: float = 120.0) -> dict[str, Any]:  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            view: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()
            if view["status"] in states:
                return view
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} not {states} after {timeout} s: {view}")

    def close(self) -> None:
        for client in reversed(self.clients):
            client.__exit__(None, None, None)
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            if proc.stderr is not None:
                proc.stderr.close()


@pytest.fixture
def cluster(pg_url: str, tmp_path: Path, fake_models: Path) -> Iterator[Cluster]:
    c = Cluster(pg_url, tmp_path, fake_models)
    try:
        yield c
    finally:
        c.close()


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    import json

    out = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def row(url: str, job_id: str) -> dict[str, Any]:
    """The job's stored row (who ran it, how many attempts)."""
    with psycopg.connect(url) as conn:
        r = conn.execute(
            "SELECT owner, attempts, state, error FROM sdcpp_jobs WHERE id = %s", (job_id,)
        ).fetchone()
    assert r is not None
    return {"owner": r[0], "attempts": r[1], "state": r[2], "error": r[3]}


def wait_for(check: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"no {what} after {timeout} s")
