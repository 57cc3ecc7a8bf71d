"""Latency of one request on a warm ``sdcpp serve`` against its peers, printed as ratios.

    python benchmarks/server.py MODEL [--size 128] [--steps 2] [--runs 5] [--cfg 1.0]
    python benchmarks/server.py MODEL --mixed MODEL2 [--runs 4]   # the worker pool

Peers, for the same request (prompt, size, steps, seed):

- **direct**: ``Pipeline.run`` in this process on a warm pipeline (the floor: no HTTP, no queue,
  no worker process, no PNG encoding). Target: server / direct ≤ 1.05.
- **cold**: ``sdcpp generate`` as a fresh process (what a script calling the CLI pays each time).

Server, direct and cold calls alternate, so drift in machine load hits both alike; medians are
reported. The server runs as a subprocess on a free loopback port and is stopped at the end.

``--mixed MODEL2``: jobs alternating between the two models (A, B, A, B, …, ``2 × runs`` of
them) on ``sdcpp serve --workers 2 --preload A,B`` against ``--workers 1 --preload A`` (which
reloads on every switch), printed as the ratio of total times (target ≤ 0.6 where reloads
dominate), with the resident memory of each warm model, in two scenarios: one after the other
(one client waiting for each job: at best engine / (engine + reload)) and all submitted at once
(several clients: on a GPU two workers also run two jobs at once; on the CPU, where every engine
uses every core, they take turns, each on its warm worker — ``Pool.parallel``).
Both servers run side by side (own data dirs) and the four runs go 1, 2, 2, 1 so that drift in
the machine's load falls on both. One job per model runs first, untimed, on each server: the
first job on a model pays for its sha256 (the infotext's model hash) and its first compute
buffers, which are not reloads.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

CLI = [sys.executable, "-c", "from sdcpp_service.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(http: httpx.Client, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the server exited during start-up")
        try:
            if http.get("/health").json().get("worker") == "ready":
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not become ready")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cfg", type=float, default=1.0, help="CFG scale (1.0 suits distilled models)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--mixed", type=Path, help="a second model: the worker pool scenario")
    args = ap.parse_args()
    if args.mixed is not None:
        return mixed(args)
    model = args.model.resolve()
    request: dict[str, Any] = {
        "prompt": "a lighthouse at dawn",
        "width": args.size,
        "height": args.size,
        "steps": args.steps,
        "cfg_scale": args.cfg,
        "seed": 42,
    }

    from sdcpp_service.config import Settings
    from sdcpp_service.engine.pipeline import Pipeline

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "models").mkdir()
        (root / "models" / model.name).symlink_to(model)
        env = {**os.environ, "SDCPP_DATA_DIR": str(root / "data")}
        port = free_port()
        cmd = [*CLI, "serve", "--port", str(port), "--models", str(root / "models")]
        cmd += ["--preload", model.stem, "--log-level", "warning"]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        server: list[float] = []
        direct: list[float] = []
        cold: list[float] = []
        #: seconds inside the native generate call, as each side measured it
        server_engine: list[float] = []
        direct_engine: list[float] = []
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as http:
                wait_ready(http, proc, 300)
                settings = Settings.from_env({"SDCPP_DATA_DIR": str(root / "data")})
                settings = settings.with_model_dirs((root / "models",))
                load = {"threads": args.threads} if args.threads else {}
                with Pipeline.load(model, settings=settings, **load) as pipe:
                    http.post("/sdapi/v1/txt2img", json=request).raise_for_status()  # warm
                    pipe.run(pipe.request(request["prompt"], **_params(request)))
                    for i in range(args.runs):
                        t0 = time.perf_counter()
                        r = http.post("/sdapi/v1/txt2img", json=request)
                        r.raise_for_status()
                        server.append(time.perf_counter() - t0)
                        job = http.get("/api/v1/jobs", params={"limit": 1}).json()["jobs"][0]
                        server_engine.append(job["timings"]["engine_engine"])
                        t0 = time.perf_counter()
                        result = pipe.run(pipe.request(request["prompt"], **_params(request)))
                        direct.append(time.perf_counter() - t0)
                        direct_engine.append(result.timings["engine"])
                        cold.append(_cold(model, request, root / f"cold-{i}.png", env, args))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)

    s, d, c = (statistics.median(x) for x in (server, direct, cold))
    print(f"request: {args.size}x{args.size}, {args.steps} steps, {model.name}")
    print(f"warm server (A1111 txt2img over HTTP)  median {s:8.3f} s  of {len(server)}")
    print(f"direct Pipeline.run in-process         median {d:8.3f} s  of {len(direct)}")
    print(f"cold `sdcpp generate`                  median {c:8.3f} s  of {len(cold)}")
    print(f"server / direct = {s / d:.3f}  (overhead {100 * (s / d - 1):+.1f} %, target <= +5 %)")
    # Wall time minus native engine time: what each path adds around the engine. Robust to
    # other load on the machine, which stretches the engine call itself.
    added = statistics.median(w - e for w, e in zip(server, server_engine, strict=True))
    floor = statistics.median(w - e for w, e in zip(direct, direct_engine, strict=True))
    engine = statistics.median(direct_engine)
    print(
        f"around the engine: server adds {1000 * added:.1f} ms, direct {1000 * floor:.1f} ms; "
        f"server overhead / engine time = {100 * (added - floor) / engine:.2f} %"
    )
    print(f"cold / server   = {c / s:.2f}x")
    return 0


def _serve(
    root: Path, env: dict[str, str], extra: list[str]
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cmd = [*CLI, "serve", "--port", str(port), "--models", str(root / "models")]
    cmd += ["--log-level", "warning", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL), port


def mixed(args: Any) -> int:
    """Two models on two workers (both warm) against one (a reload per model switch): jobs one
    after the other (A, B, A, B, …) and all of them submitted at once."""
    a, b = args.model.resolve(), args.mixed.resolve()
    request = {"prompt": "a lighthouse at dawn", "width": args.size, "height": args.size}
    request.update(steps=args.steps, cfg_scale=args.cfg, seed=42)
    names = [(a, b)[i % 2].stem for i in range(2 * args.runs)]
    runs: dict[tuple[str, int], Run] = {}
    warm: list[dict[str, Any]] = []
    threads: dict[int, list[Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "models").mkdir()
        for model in (a, b):
            (root / "models" / model.name).symlink_to(model)
        procs: dict[int, subprocess.Popen[bytes]] = {}
        clients: dict[int, httpx.Client] = {}
        try:
            # both servers up at once (separate data dirs), so the scenarios can alternate
            for workers, preload in ((2, f"{a.stem},{b.stem}"), (1, a.stem)):
                env = {**os.environ, "SDCPP_DATA_DIR": str(root / f"data-{workers}")}
                extra = ["--workers", str(workers), "--preload", preload]
                extra += ["--threads", str(args.threads)] if args.threads else []
                procs[workers], port = _serve(root, env, extra)
                clients[workers] = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
            for workers, http in clients.items():
                wait_ready(http, procs[workers], 300)
                _wait_idle(http, workers)
                for name in (a.stem, b.stem):  # untimed: first-use costs (the model's
                    # sha256 for the infotext, the first compute buffers) are not reloads
                    body = {**request, "override_settings": {"sd_model_checkpoint": name}}
                    http.post("/sdapi/v1/txt2img", json=body).raise_for_status()
                threads[workers] = [w.get("threads") for w in _workers(http)]
            # A B B A: sequential on 1 and 2 workers, then queued on 2 and 1 (linear drift in
            # the machine's load falls on both sides alike)
            for scenario, workers in (("seq", 1), ("seq", 2), ("queued", 2), ("queued", 1)):
                run = _sequential if scenario == "seq" else _queued
                runs[scenario, workers] = run(clients[workers], request, names)
            warm = _workers(clients[2])
        finally:
            for http in clients.values():
                http.close()
            for proc in procs.values():
                proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                proc.wait(60)
    jobs = len(names)
    print(f"request: {args.size}x{args.size}, {args.steps} steps, {jobs} jobs A,B,A,B,…")
    print(f"A = {a.name}, B = {b.name}; CPU threads per worker: "
          f"--workers 1 {threads[1]}, --workers 2 {threads[2]}")  # fmt: skip
    titles = {"seq": "one after the other", "queued": "all submitted at once"}
    for scenario in ("seq", "queued"):
        print(f"{titles[scenario]}:")
        for n in (1, 2):
            r = runs[scenario, n]
            line = " ".join(f"{t:.2f}" for t in r.each)
            print(f"  --workers {n}: total {r.total:8.2f} s  ({r.total / jobs:.2f} s a job; "
                  f"{r.loads} model loads during the jobs; each: {line})")  # fmt: skip
            print(f"    in the engine {r.engine:.2f} s, rest of the jobs on the worker "
                  f"(model loads) {r.rest:.2f} s")  # fmt: skip
        one, two = runs[scenario, 1], runs[scenario, 2]
        print(f"  workers-2 / workers-1 = {two.total / one.total:.3f}  (target <= 0.6)")
        if scenario == "seq":
            loads = one.rest - two.rest
            print(f"  model loads are {100 * loads / one.total:.0f} % of the --workers 1 total; "
                  f"engine time alone varies {two.engine / max(one.engine, 1e-9):.2f}x "
                  "between the runs")  # fmt: skip
    for w in warm:
        rss, model = w["resident_bytes"] / 1e6, w["model_bytes"] / 1e6
        print(f"worker {w['id']}: {w['model_name']}: RSS {rss:.0f} MB (model {model:.0f} MB)")
    return 0


@dataclass
class Run:
    """One scenario on one server: wall time, each job's time, loads, engine and other time."""

    total: float = 0.0
    each: list[float] = field(default_factory=list)
    loads: int = 0
    #: seconds in the engine's generate call, and the rest of the jobs on their workers (loads)
    engine: float = 0.0
    rest: float = 0.0

    def add(self, job: dict[str, Any]) -> None:
        engine = float(job["timings"].get("engine_total") or 0.0)
        self.engine += engine
        self.rest += float(job["timings"]["running_seconds"]) - engine


def _sequential(http: httpx.Client, request: dict[str, Any], names: list[str]) -> Run:
    """Each job waits for the one before (one client, A1111 txt2img)."""
    run, before = Run(), _loads(http)
    t0 = time.perf_counter()
    for name in names:
        body = {**request, "override_settings": {"sd_model_checkpoint": name}}
        t1 = time.perf_counter()
        http.post("/sdapi/v1/txt2img", json=body).raise_for_status()
        run.each.append(time.perf_counter() - t1)
        run.add(http.get("/api/v1/jobs", params={"limit": 1}).json()["jobs"][0])
    run.total = time.perf_counter() - t0
    run.loads = _loads(http) - before
    return run


def _queued(http: httpx.Client, request: dict[str, Any], names: list[str]) -> Run:
    """Every job submitted at once (as several clients would, native API), then waited for;
    ``each`` is a job's time from submission to done."""
    run, before = Run(), _loads(http)
    t0 = time.perf_counter()
    ids = []
    for name in names:
        r = http.post("/api/v1/jobs", json={**request, "model": name})
        r.raise_for_status()
        ids.append(r.json()["id"])
    pending = dict.fromkeys(ids, 0.0)
    while pending:
        for job_id in list(pending):
            job = http.get(f"/api/v1/jobs/{job_id}").json()
            if job["status"] in ("completed", "failed", "cancelled"):
                if job["status"] != "completed":
                    raise SystemExit(f"job {job_id} {job['status']}: {job.get('error')}")
                pending.pop(job_id)
                run.each.append(time.perf_counter() - t0)
                run.add(job)
        time.sleep(0.05)
    run.total = time.perf_counter() - t0
    run.loads = _loads(http) - before
    return run


def _workers(http: httpx.Client) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = http.get("/api/v1/workers").json()["workers"]
    return listed


def _loads(http: httpx.Client) -> int:
    """Models built so far by all workers together."""
    return sum(int(w.get("loads") or 0) for w in _workers(http))


def _wait_idle(http: httpx.Client, workers: int, timeout: float = 600) -> None:
    """Until every worker is idle with its preloaded model warm."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = _workers(http)
        if sum(1 for w in listed if w["state"] == "idle" and w["model"]) >= workers:
            return
        time.sleep(0.2)
    raise SystemExit("the preloaded models never became warm")


def _cold(model: Path, request: dict[str, Any], out: Path, env: dict[str, str], args: Any) -> float:
    """One ``sdcpp generate`` in a fresh process: start-up, load, generate, save."""
    gen = [*CLI, "generate", str(request["prompt"]), "-m", str(model), "-o", str(out)]
    gen += ["-W", str(args.size), "-H", str(args.size), "--steps", str(args.steps)]
    gen += ["--seed", "42", "--cfg", str(request["cfg_scale"])] + (
        ["-t", str(args.threads)] if args.threads else []
    )
    t0 = time.perf_counter()
    subprocess.run(gen, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _params(request: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in request.items() if k != "prompt"}


if __name__ == "__main__":
    raise SystemExit(main())
