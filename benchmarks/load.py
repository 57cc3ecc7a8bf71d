"""Latency of the cheap endpoints while jobs run, and whether any job is lost or run twice.

    python benchmarks/load.py                      # the kit's SDXS, 20 clients, 30 s
    python benchmarks/load.py MODEL --models DIR   # a model of yours
    python benchmarks/load.py --clients 20 --seconds 60 --inflight 3 --size 64 --steps 4

A real ``sdcpp serve`` (a subprocess on a free loopback port, the real engine, ``--preload``)
runs jobs without pause (``--inflight`` submitted at a time, each followed by an SSE watcher)
while ``--clients`` concurrent clients poll ``/health`` and ``/sdapi/v1/progress`` as fast as
they are answered (``--interval``: a pause between a client's requests); first for
``--seconds`` on the idle server (the machine's own floor), then as long with jobs. Printed: p50/p95/p99/max of each endpoint (target: p99 < 100 ms), the jobs
submitted and completed, and the number lost (submitted, never completed) or duplicated (run
more than once, or listed twice) — target 0. The pollers run in a process of their own on bare
keep-alive connections (an httpx client costs more CPU per request than the server spends
answering it, so it would measure itself); client and server still share the machine, so the
figures include the clients' own CPU use.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx

CLI = [sys.executable, "-c", "from sdcpp_service.cli import main; main()"]
CHEAP = ("/health", "/sdapi/v1/progress")
POLLERS = ProcessPoolExecutor(max_workers=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def kit_models(root: Path) -> tuple[Path, str]:
    """A model folder holding the kit's SDXS checkpoint (synthesized on first use)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.synth.kit import build

    folder = root / "models" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "sdxs.safetensors").symlink_to(build("sdxs")["model"])
    return root / "models", "sdxs"


async def wait_ready(http: httpx.AsyncClient, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the server exited during start-up")
        try:
            health = (await http.get("/health")).json()
            if health.get("worker") == "ready" and health["workers"].get("idle"):
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit("the server did not become ready")


async def _poll_one(host: str, port: int, n: int, stop: float, interval: float,
                    latencies: dict[str, list[float]], failures: list[str]) -> None:  # fmt: skip
    """One client: a keep-alive HTTP/1.1 connection asking the cheap endpoints in turn."""
    reader, writer = await asyncio.open_connection(host, port)
    i = n
    try:
        while time.monotonic() < stop:
            path = CHEAP[i % len(CHEAP)]
            i += 1
            t0 = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies[path].append((time.perf_counter() - t0) * 1000)
            status = head.split(b" ", 2)[1]
            if status != b"200":
                failures.append(f"{path}: {status.decode()}")
            if interval:
                await asyncio.sleep(interval)
    finally:
        writer.close()


def poll(url: str, clients: int, seconds: float, interval: float
         ) -> tuple[dict[str, list[float]], list[str]]:  # fmt: skip
    """``clients`` concurrent pollers for ``seconds``, in a process of their own: the load
    generator must not be what is measured (an httpx request costs the client more CPU than
    the server spends answering it, and on one event loop 20 of them queue behind each
    other), so each client is a bare keep-alive connection."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    latencies: dict[str, list[float]] = {path: [] for path in CHEAP}
    failures: list[str] = []
    stop = time.monotonic() + seconds

    async def all_clients() -> None:
        await asyncio.gather(*(_poll_one(host, int(port), n, stop, interval, latencies,
                                         failures) for n in range(clients)))  # fmt: skip

    asyncio.run(all_clients())
    return latencies, failures


async def run(args: argparse.Namespace, url: str, inflight: int) -> dict[str, Any]:
    """One phase: ``inflight`` job submitters (0: an idle server) beside the clients."""
    limits = httpx.Limits(max_connections=args.clients + inflight + 4)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        body = {"prompt": "a lighthouse", "model": args.model, "width": args.size,
                "height": args.size, "steps": args.steps}  # fmt: skip
        submitted: list[str] = []
        stream_ends: dict[str, str] = {}
        failures: list[str] = []
        stop = time.monotonic() + args.seconds

        async def watch(job_id: str) -> None:
            last = ""
            async with http.stream("GET", f"/api/v1/jobs/{job_id}/events") as r:
                async for line in r.aiter_lines():
                    if line.startswith("event: "):
                        last = line[7:]
            stream_ends[job_id] = last

        async def feeder() -> None:
            seed = 0
            while time.monotonic() < stop:
                seed += 1
                r = await http.post("/api/v1/jobs", json={**body, "seed": seed})
                if r.status_code == 429:
                    await asyncio.sleep(0.5)
                    continue
                if r.status_code != 202:
                    failures.append(f"submit: {r.status_code} {r.text[:200]}")
                    return
                submitted.append(r.json()["id"])
                await watch(r.json()["id"])

        polled = asyncio.get_running_loop().run_in_executor(
            POLLERS, poll, url, args.clients, args.seconds, args.interval
        )
        await asyncio.gather(*(feeder() for _ in range(inflight)))
        latencies, poll_failures = await polled
        failures += poll_failures
        listing = (await http.get("/api/v1/jobs", params={"limit": 1000})).json()["jobs"]
    ids = [j["id"] for j in listing]
    mine = [j for j in listing if j["id"] in set(submitted)]
    completed = [j for j in mine if j["status"] == "completed"]
    return {
        "jobs_running": bool(inflight),
        "endpoints": {
            path: {
                "requests": len(v),
                "p50_ms": round(statistics.median(v), 1),
                "p95_ms": round(percentile(v, 0.95), 1),
                "p99_ms": round(percentile(v, 0.99), 1),
                "max_ms": round(max(v), 1),
            }
            for path, v in latencies.items()
            if v
        },
        "jobs_submitted": len(submitted),
        "jobs_completed": len(completed),
        "jobs_lost": len(set(submitted) - {j["id"] for j in completed}),
        "jobs_duplicated": (len(ids) - len(set(ids))) + sum(j["attempts"] > 1 for j in mine),
        "streams_ended": sum(stream_ends.get(i) in ("completed", "failed") for i in submitted),
        "failures": failures[:10],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", help="a catalog name (default: the kit's sdxs)")
    parser.add_argument("--models", type=Path, help="the model folder (with MODEL)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--inflight", type=int, default=2, help="jobs submitted at a time")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--interval", type=float, default=0.0,
                        help="seconds a client waits between requests (0: none)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sdcpp-load-") as tmp:
        root = Path(tmp)
        if args.model is None or args.models is None:
            models, args.model = kit_models(root)
        else:
            models = args.models
        port = free_port()
        cmd = [*CLI, "serve", "--port", str(port), "--models", str(models), "--data-dir",
               str(root / "data"), "--preload", args.model, "--workers", str(args.workers),
               "--log-level", "warning"]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:

            async def both() -> dict[str, Any]:
                async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                    await wait_ready(http, proc)
                idle = await run(args, url, 0)
                busy = await run(args, url, args.inflight)
                return {"clients": args.clients, "seconds": args.seconds,
                        "interval": args.interval, "idle": idle, "jobs": busy}  # fmt: skip

            figures = asyncio.run(both())
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    busy = figures["jobs"]
    if args.json:
        print(json.dumps(figures, indent=2))
        return 1 if busy["jobs_lost"] or busy["jobs_duplicated"] or busy["failures"] else 0
    print(f"{figures['clients']} clients, {figures['seconds']:g} s per phase, "
          f"{args.interval * 1000:g} ms between a client's requests")  # fmt: skip
    print(f"{'phase':<6}{'endpoint':<22}{'requests':>9}{'p50 ms':>9}{'p95 ms':>9}"
          f"{'p99 ms':>9}{'max ms':>9}")  # fmt: skip
    for phase in ("idle", "jobs"):
        for path, f in figures[phase]["endpoints"].items():
            print(f"{phase:<6}{path:<22}{f['requests']:>9}{f['p50_ms']:>9}{f['p95_ms']:>9}"
                  f"{f['p99_ms']:>9}{f['max_ms']:>9}")  # fmt: skip
    print(f"jobs: {busy['jobs_submitted']} submitted, {busy['jobs_completed']} completed,"
          f" {busy['jobs_lost']} lost, {busy['jobs_duplicated']} duplicated;"
          f" {busy['streams_ended']} event streams ended")  # fmt: skip
    for line in figures["idle"]["failures"] + busy["failures"]:
        print("failure:", line)
    return 1 if busy["jobs_lost"] or busy["jobs_duplicated"] or busy["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
