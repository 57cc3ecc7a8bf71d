"""Ours against the engine's own binaries, side by side: ratios ours/peer and identical pixels.

    python benchmarks/peers.py [--runs 3] [--threads 2] [--only cold,upscale,server]
                               [--cold sdxs:256,sd1:512]

The peers, ``sd-cli`` and ``sd-server``, are built from the pinned bindings' vendored source into
the cache dir when missing (``benchmarks/peerbuild.py``; a few minutes once), linked against the
same engine library our bindings load. Every measurement alternates sides (ours, peer, ours, …)
so drift in machine load hits both alike, and prints ``ours/peer`` as min / median / max over n
pairs. The same request everywhere: the kit's models, euler_a, cfg 1, seed 42, 2 threads.

- ``cold``: one ``sdcpp generate`` vs one ``sd-cli`` process (wall, peak RSS), SDXS 256² and
  SD1 512²; the PNGs must hold identical pixels.
- ``server``: a warm ``sdcpp serve`` vs ``sd-server``, one A1111 txt2img at a time (latency, and
  the time outside the engine: latency minus the engine's own generate time, from our job record
  and from sd-server's "generate_image completed in" log line, which has 10 ms resolution).
- ``queue``: six requests posted at once, until the last image is back.
- ``upscale``: ``sdcpp upscale`` vs ``sd-cli -M upscale`` (cold, the kit's ESRGAN x4).
- ``start``: from spawning the server (model preloaded) to the first image received.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peerbuild import ensure_peers  # noqa: E402

OURS = [sys.executable, "-m", "sdcpp_service"]
PROMPT = "a lighthouse at dawn"
ENGINE_LOG = re.compile(r"generate_image completed in ([0-9.]+)s")


def run_measured(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one process run to completion (its output to a file)."""
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            log.seek(0)
            tail = log.read().decode(errors="replace").strip()[-800:]
            raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {tail}")
    return wall, usage.ru_maxrss / 1024


def pixels(path_or_bytes: Path | bytes) -> np.ndarray:
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with Image.open(src) as im:
        return np.asarray(im.convert("RGB"))


def same_pixels(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape or not np.array_equal(a, b):
        diff = int(np.abs(a.astype(int) - b.astype(int)).max()) if a.shape == b.shape else -1
        raise SystemExit(f"{what}: pixels differ (max |diff| {diff}, shapes {a.shape} {b.shape})")


def ratio_line(name: str, ours: list[float], peer: list[float], unit: str) -> str:
    ratios = [o / p for o, p in zip(ours, peer, strict=True)]
    return (
        f"{name:38} ours {statistics.median(ours):9.3f} {unit:3} peer "
        f"{statistics.median(peer):9.3f} {unit:3} ratio min {min(ratios):.3f} "
        f"median {statistics.median(ratios):.3f} max {max(ratios):.3f} (n={len(ratios)})"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """Ours (``sdcpp serve``) or sd-server on a free loopback port, model preloaded."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int, peer: bool) -> None:
        self.peer = peer
        self.started = time.perf_counter()
        self.log: list[str] = []
        self.proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=900)

    def _read(self) -> None:
        for line in self.proc.stdout or ():
            self.log.append(line)

    def txt2img(self, request: dict[str, Any]) -> bytes:
        r = self.http.post("/sdapi/v1/txt2img", json=request)
        r.raise_for_status()
        return base64.b64decode(r.json()["images"][0])

    def first_image(self, request: dict[str, Any]) -> float:
        """Seconds from spawn to the first image, posting as soon as the port answers."""
        while time.perf_counter() - self.started < 900:
            if self.proc.poll() is not None:
                raise SystemExit("server exited: " + "".join(self.log[-20:]))
            try:
                self.txt2img(request)
                return time.perf_counter() - self.started
            except (httpx.TransportError, httpx.HTTPStatusError):
                time.sleep(0.05)
        raise SystemExit("no first image within 900 s: " + "".join(self.log[-20:]))

    def engine_seconds(self) -> float:
        """The engine's own time for the last request."""
        if self.peer:
            for line in reversed(self.log):
                if m := ENGINE_LOG.search(line):
                    return float(m.group(1))
            return float("nan")
        job = self.http.get("/api/v1/jobs", params={"limit": 1}).json()["jobs"][0]
        return float(job["timings"]["engine_engine"])

    def close(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Bench:
    def __init__(self, args: Any, root: Path, cli: Path, server: Path) -> None:
        from tests.synth.kit import Kit

        self.args, self.root, self.cli, self.server = args, root, cli, server
        kit = Kit()
        self.models = {"sdxs": kit.path("sdxs"), "sd1": kit.path("sd1")}
        self.esrgan = kit.path("esrgan_x4")
        self.env = {**os.environ, "SDCPP_DATA_DIR": str(root / "data")}
        (root / "models").mkdir()
        for path in self.models.values():
            (root / "models" / path.name).symlink_to(path)
        self.lines: list[str] = []

    def gen_args(self, size: int) -> tuple[list[str], list[str]]:
        t = str(self.args.threads)
        common_ours = ["-W", str(size), "-H", str(size), "--steps", str(self.args.steps)]
        ours = [*common_ours, "--cfg", "1", "--sampler", "euler_a", "--seed", "42", "-t", t]
        peer = ["-W", str(size), "-H", str(size), "--steps", str(self.args.steps), "--cfg-scale"]
        peer += ["1", "--sampling-method", "euler_a", "-s", "42", "-t", t]
        return ours, peer

    def alternate(self, n: int, ours: Callable[[int], Any], peer: Callable[[int], Any]) -> Any:
        out_o, out_p = [], []
        for i in range(n):
            first, second = (ours, peer) if i % 2 == 0 else (peer, ours)
            a, b = first(i), second(i)
            out_o.append(a if i % 2 == 0 else b)
            out_p.append(b if i % 2 == 0 else a)
        return out_o, out_p

    def cold(self) -> None:
        for spec in self.args.cold.split(","):
            name, _, side = spec.partition(":")
            size = int(side or 512)
            model = self.models[name]
            o_args, p_args = self.gen_args(size)

            def ours(i: int, model: Path = model, o_args: list[str] = o_args) -> Any:
                out = self.root / f"ours-{model.stem}-{i}.png"
                argv = [*OURS, "generate", PROMPT, "-m", str(model), *o_args, "-o", str(out)]
                return (*run_measured([*argv, "--force"], self.env), out)

            def peer(i: int, model: Path = model, p_args: list[str] = p_args) -> Any:
                out = self.root / f"peer-{model.stem}-{i}.png"
                argv = [str(self.cli), "-m", str(model), "-p", PROMPT, *p_args, "-o", str(out)]
                return (*run_measured(argv, self.env), out)

            o, p = self.alternate(self.args.runs, ours, peer)
            for (_, _, a), (_, _, b) in zip(o, p, strict=True):
                same_pixels(pixels(a), pixels(b), f"cold {name} {size}²")
            label = f"cold one-shot {name} {size}²"
            self.say(ratio_line(f"{label} wall", [x[0] for x in o], [x[0] for x in p], "s"))
            self.say(ratio_line(f"{label} peak RSS", [x[1] for x in o], [x[1] for x in p], "MiB"))

    def upscale(self) -> None:
        src = self.root / "ours-upscale-in.png"
        Image.fromarray(np.random.default_rng(1).integers(0, 255, (128, 128, 3), np.uint8)).save(
            src
        )
        t = str(self.args.threads)

        def ours(i: int) -> Any:
            out = self.root / f"ours-up-{i}.png"
            argv = [*OURS, "upscale", str(src), "-m", str(self.esrgan), "-o", str(out), "--force"]
            return (*run_measured([*argv, "-t", t], self.env), out)

        def peer(i: int) -> Any:
            out = self.root / f"peer-up-{i}.png"
            argv = [str(self.cli), "-M", "upscale", "--upscale-model", str(self.esrgan)]
            argv += ["-i", str(src), "-o", str(out), "-t", t]
            return (*run_measured(argv, self.env), out)

        o, p = self.alternate(self.args.runs, ours, peer)
        for (_, _, a), (_, _, b) in zip(o, p, strict=True):
            same_pixels(pixels(a), pixels(b), "upscale")
        self.say(
            ratio_line("upscale 128² x4 (cold) wall", [x[0] for x in o], [x[0] for x in p], "s")
        )

    def start(self, peer: bool) -> Server:
        port = free_port()
        model = self.models["sdxs"]
        t = str(self.args.threads)
        if peer:
            argv = [str(self.server), "-m", str(model), "--listen-port", str(port), "-t", t]
            argv += ["--sampling-method", "euler_a", "--cfg-scale", "1"]
        else:
            argv = [*OURS, "serve", "--port", str(port), "--models", str(self.root / "models")]
            argv += ["--preload", model.stem, "--threads", t, "--log-level", "warning"]
        return Server(argv, self.env, port, peer)

    def request(self, seed: int = 42) -> dict[str, Any]:
        size = self.args.server_size
        return {
            "prompt": PROMPT,
            "width": size,
            "height": size,
            "steps": self.args.steps,
            "cfg_scale": 1,
            "seed": seed,
            "sampler_name": "Euler a",
        }

    def servers(self) -> None:
        def first(peer: bool) -> float:
            srv = self.start(peer)
            try:
                return srv.first_image(self.request())
            finally:
                srv.close()

        starts_o, starts_p = self.alternate(
            self.args.runs, lambda i: first(False), lambda i: first(True)
        )
        lat: dict[bool, list[float]] = {False: [], True: []}
        out: dict[bool, list[float]] = {False: [], True: []}
        queue: dict[bool, list[float]] = {False: [], True: []}
        ours, peer = self.start(False), self.start(True)
        try:
            images = {
                s.peer: (s.first_image(self.request()), s.txt2img(self.request()))[1]
                for s in (ours, peer)
            }
            same_pixels(pixels(images[False]), pixels(images[True]), "server")
            for i in range(self.args.warm_runs):
                for side in (ours, peer) if i % 2 == 0 else (peer, ours):
                    t0 = time.perf_counter()
                    side.txt2img(self.request())
                    wall = time.perf_counter() - t0
                    lat[side.peer].append(wall)
                    out[side.peer].append(wall - side.engine_seconds())
            for i in range(self.args.runs):
                for side in (ours, peer) if i % 2 == 0 else (peer, ours):
                    t0 = time.perf_counter()
                    threads = [
                        threading.Thread(target=side.txt2img, args=(self.request(100 + k),))
                        for k in range(6)
                    ]
                    for th in threads:
                        th.start()
                    for th in threads:
                        th.join()
                    queue[side.peer].append(time.perf_counter() - t0)
        finally:
            ours.close()
            peer.close()
        size = self.args.server_size
        self.say(ratio_line(f"warm server {size}² latency", lat[False], lat[True], "s"))
        self.say(ratio_line(f"warm server {size}² outside engine", out[False], out[True], "s"))
        self.say(ratio_line(f"six queued requests {size}²", queue[False], queue[True], "s"))
        self.say(ratio_line("start -> first image", starts_o, starts_p, "s"))

    def say(self, line: str) -> None:
        print(line, flush=True)
        self.lines.append(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="pairs per cold measurement")
    ap.add_argument("--warm-runs", type=int, default=6, help="pairs of warm server requests")
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--server-size", type=int, default=256)
    ap.add_argument("--only", default="cold,upscale,server", help="comma list of sections")
    ap.add_argument("--cold", default="sdxs:256,sd1:512", help="MODEL:SIZE list for cold runs")
    ap.add_argument("--source", type=Path, help="unpacked bindings sdist for the peer build")
    args = ap.parse_args()
    only = set(args.only.split(","))
    cli, server = ensure_peers(args.source, jobs=os.cpu_count() or 2, need_server="server" in only)
    print(f"peers: {cli}, {server}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus")
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(args, Path(tmp), cli, server)
        if "cold" in only:
            bench.cold()
        if "upscale" in only:
            bench.upscale()
        if "server" in only:
            bench.servers()
    print("pixels identical: yes (every pair compared)")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
