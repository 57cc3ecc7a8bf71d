"""The cluster's own cost: throughput with 1, 2, 3 worker processes on a fixed-sleep fake
engine, and one job's latency through the cluster against the embedded server, real engine.

    python benchmarks/cluster.py [--jobs 12] [--sleep 0.5] [--real MODEL] [--runs 5]

- **queue**: ``--jobs`` jobs submitted at once to one API node, each sleeping ``--sleep`` s in
  the fake engine (steps × step time), run by 1, 2 and 3 ``worker`` processes. Per-job queue
  overhead = wall × workers / jobs − sleep (targets: ≤ 50 ms, and ≥ 2.7× speed-up at 3).
  The embedded server's pool (``--workers N``) runs the same jobs first, for reference.
- **real** (``--real MODEL``, default the kit's ``sdxs``): one 64×64 2-step job at a time,
  submit → terminal SSE event less the engine's own time (``timings.engine_total``), on the
  embedded server (``--preload MODEL``) and on an API node with one ``sdcpp worker --preload
  MODEL``, alternating; medians and their difference.

PostgreSQL: ``$SDCPP_TEST_PG``, else a throwaway cluster (``tests/cluster/pg.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from tests.cluster.conftest import Cluster, fresh_database  # noqa: E402
from tests.cluster.pg import Throwaway  # noqa: E402


def wait_all(api: TestClient, ids: list[str], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = api.get("/api/v1/jobs?status=completed&limit=1").json()["total"]
        failed = api.get("/api/v1/jobs?status=failed&limit=1").json()["total"]
        if failed:
            raise SystemExit(f"{failed} job(s) failed")
        if done == len(ids):
            return
        time.sleep(0.02)
    raise SystemExit("the jobs did not finish")


def embedded_bench(jobs: int, sleep: float, steps: int) -> dict[int, float]:
    """The same jobs on the embedded server's pool (``--workers N``), for reference."""
    from sdcpp_service.config import Settings
    from sdcpp_service.server.app import create_app
    from sdcpp_service.server.options import ServerOptions
    from tests.fakes import FakeEngine

    walls: dict[int, float] = {}
    for n in (1, 2, 3):
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(data_dir=Path(tmp) / "d", model_dirs=(models_dir(Path(tmp)),))
            app = create_app(settings, FakeEngine(step_seconds=sleep / steps),
                             ServerOptions(workers=n))  # fmt: skip
            with TestClient(app) as api:
                body = {"prompt": "x", "model": "alpha", "width": 64, "height": 64, "steps": steps}
                api.post("/api/v1/jobs", json=body)  # warm
                wait_all(api, ["warm"])
                t0 = time.perf_counter()
                ids = ["warm"] + [api.post("/api/v1/jobs", json=body).json()["id"]
                                  for _ in range(jobs)]  # fmt: skip
                wait_all(api, ids)
                walls[n] = time.perf_counter() - t0
        print(f"embedded {n} worker(s): {jobs} jobs in {walls[n]:.2f} s, overhead "
              f"{(walls[n] * n / jobs - sleep) * 1000:.0f} ms/job, speed-up "
              f"{walls[1] / walls[n]:.2f}×")  # fmt: skip
    return walls


def models_dir(tmp: Path) -> Path:
    from tests.models import layouts as L
    from tests.models.corpus import write_safetensors

    root = tmp / "models"
    sd1 = {**L.prefixed("model.diffusion_model.", L.unet(768)),
           **L.prefixed("cond_stage_model.transformer.", L.clip_text(768))}  # fmt: skip
    write_safetensors(root / "checkpoints" / "alpha.safetensors", sd1)
    return root


def queue_bench(server: str, jobs: int, sleep: float) -> None:
    steps = 10
    walls: dict[int, float] = {}
    for n in (1, 2, 3):
        with tempfile.TemporaryDirectory() as tmp:
            gen = fresh_database(server)
            url = next(gen)
            c = Cluster(url, Path(tmp), models_dir(Path(tmp)))
            try:
                for i in range(n):
                    c.worker("alpha", step=sleep / steps, name=f"b{i}")
                api = c.node()
                c.wait_workers(api, n)
                body = {"prompt": "x", "model": "alpha", "width": 64, "height": 64, "steps": steps}
                t0 = time.perf_counter()
                ids = [api.post("/api/v1/jobs", json=body).json()["id"] for _ in range(jobs)]
                wait_all(api, ids)
                walls[n] = time.perf_counter() - t0
                with psycopg.connect(url) as conn:
                    done = conn.execute("SELECT count(*) FROM sdcpp_jobs WHERE state = "
                                        "'completed' AND attempts = 1").fetchone()  # fmt: skip
                assert done == (jobs,), done
            finally:
                c.close()
                gen.close()
        overhead = walls[n] * n / jobs - sleep
        print(f"queue  {n} worker(s): {jobs} jobs of {sleep:.2f} s in {walls[n]:.2f} s, "
              f"overhead {overhead * 1000:.0f} ms/job, speed-up {walls[1] / walls[n]:.2f}×")  # fmt: skip


def timed_job(api: TestClient, body: dict[str, Any]) -> float:
    """Seconds from submission to the terminal event, less the engine's own time."""
    t0 = time.perf_counter()
    job_id = api.post("/api/v1/jobs", json=body).json()["id"]
    with api.stream("GET", f"/api/v1/jobs/{job_id}/events") as r:
        text = r.read().decode()
    total = time.perf_counter() - t0
    assert "event: completed" in text, text[-500:]
    engine = api.get(f"/api/v1/jobs/{job_id}").json()["timings"]["engine_total"]
    return total - float(engine)


def real_bench(server: str, model: Path, runs: int) -> None:
    from sdcpp_service.config import Settings
    from sdcpp_service.server.app import create_app
    from sdcpp_service.server.options import ServerOptions

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "models"
        folder.mkdir()
        (folder / model.name).symlink_to(model.resolve())
        name = model.stem
        gen = fresh_database(server)
        url = next(gen)
        c = Cluster(url, Path(tmp), folder)
        settings = Settings(data_dir=Path(tmp) / "embedded", model_dirs=(folder,), threads=0)
        embedded = TestClient(create_app(settings, options=ServerOptions(preload=name)))
        try:
            embedded.__enter__()
            c.worker(name, real=True, name="r0")
            api = c.node()
            c.wait_workers(api, 1, timeout=300)
            body = {"prompt": "a lighthouse", "model": name, "width": 64, "height": 64,
                    "steps": 2, "seed": 1}  # fmt: skip
            timed_job(embedded, body), timed_job(api, body)  # warm both
            local, remote = [], []
            for _ in range(runs):
                local.append(timed_job(embedded, body))
                remote.append(timed_job(api, body))
            lm, rm = statistics.median(local), statistics.median(remote)
            print(f"real   time around the engine per job (median of {runs}): embedded "
                  f"{lm * 1000:.0f} ms, cluster {rm * 1000:.0f} ms: the cluster adds "
                  f"{(rm - lm) * 1000:.0f} ms")  # fmt: skip
        finally:
            embedded.__exit__(None, None, None)
            c.close()
            gen.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--sleep", type=float, default=0.5)
    ap.add_argument("--real", type=Path, default=None, help="model file (default: kit sdxs)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip-real", action="store_true")
    a = ap.parse_args()
    throwaway = None
    server = os.environ.get("SDCPP_TEST_PG", "")
    if not server:
        throwaway = Throwaway()
        server = throwaway.start()
    try:
        embedded_bench(a.jobs, a.sleep, 10)
        queue_bench(server, a.jobs, a.sleep)
        if not a.skip_real:
            if a.real is None:
                from tests.synth.kit import Kit

                a.real = Kit().path("sdxs")
            real_bench(server, a.real, a.runs)
    finally:
        if throwaway is not None:
            throwaway.stop()


if __name__ == "__main__":
    main()
