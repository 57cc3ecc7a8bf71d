"""Per-call overhead of our engine layer vs the bindings' high-level API, and RSS over many calls.

Same model, same requests, same process kind. "Overhead" is wall time per call minus the time
spent inside the native ``generate_image`` call (measured around the C function in both cases),
so it is exactly what the Python layer adds: building the request, converting images in and out.

    python benchmarks/engine_overhead.py MODEL [--size 512] [--calls 5] [--rss-calls 200]

MODEL defaults to the test kit's SDXS checkpoint (built if needed). Prints a ratio line.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import statistics
import sys
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def kit_model() -> str:
    sys.path.insert(0, str(ROOT))
    from tests.synth import kit  # type: ignore[import-not-found]

    return str(kit.build("sdxs")["model"])


def ours(model: str, size: int, calls: int, init: Image.Image | None) -> list[float]:
    from sdcpp_service.engine.context import Context
    from sdcpp_service.engine.generate import generate
    from sdcpp_service.types import GenerateRequest, LoadOptions

    ctx = Context(LoadOptions(model=model), threads=os.cpu_count() or 2)
    out = []
    for i in range(calls):
        req = GenerateRequest(
            prompt="a lighthouse", width=size, height=size, steps=1, seed=i, init_image=init
        )
        res = generate(ctx, req)
        out.append(res.timings["overhead"])
    ctx.close()
    return out


def highlevel(model: str, size: int, calls: int, init: Image.Image | None) -> list[float]:
    import stable_diffusion_cpp.stable_diffusion as hl
    import stable_diffusion_cpp.stable_diffusion_cpp as ll

    native_time: list[float] = []
    real = ll.generate_image

    def timed(*args: object) -> object:
        t = time.perf_counter()
        result = real(*args)
        native_time.append(time.perf_counter() - t)
        return result

    hl.sd_cpp.generate_image = timed  # the high-level module calls it through this name
    sd = hl.StableDiffusion(model_path=model, n_threads=os.cpu_count() or 2, verbose=False)
    out = []
    try:
        for i in range(calls):
            t = time.perf_counter()
            sd.generate_image(
                prompt="a lighthouse",
                width=size,
                height=size,
                sample_steps=1,
                seed=i,
                init_image=init,
            )
            out.append(time.perf_counter() - t - native_time[-1])
    finally:
        hl.sd_cpp.generate_image = real
        sd.close()
    return out


def rss_series(model: str, size: int, calls: int, api: str) -> list[tuple[int, float]]:
    from sdcpp_service.engine.context import Context
    from sdcpp_service.engine.generate import generate
    from sdcpp_service.types import GenerateRequest, LoadOptions

    points: list[tuple[int, float]] = []
    marks = {n for n in (1, 10, 50, calls // 2, 150, calls) if 1 <= n <= calls}
    if api == "ours":
        ctx = Context(LoadOptions(model=model), threads=os.cpu_count() or 2)
        for i in range(1, calls + 1):
            generate(
                ctx,
                GenerateRequest(
                    prompt="x", width=size, height=size, steps=1, seed=i, cfg_scale=1.0
                ),
            )
            if i in marks:
                gc.collect()
                points.append((i, rss_mib()))
        ctx.close()
    else:
        import stable_diffusion_cpp.stable_diffusion as hl

        sd = hl.StableDiffusion(model_path=model, n_threads=os.cpu_count() or 2, verbose=False)
        for i in range(1, calls + 1):
            sd.generate_image(
                prompt="x", width=size, height=size, sample_steps=1, seed=i, cfg_scale=1.0
            )
            if i in marks:
                gc.collect()
                points.append((i, rss_mib()))
        sd.close()
    return points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model", nargs="?")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--rss-calls", type=int, default=200)
    ap.add_argument("--rss-size", type=int, default=128)
    ap.add_argument("--only", choices=["overhead", "rss-ours", "rss-highlevel"], default=None)
    args = ap.parse_args()
    model = args.model or kit_model()
    ctypes.CDLL(None)  # keep the same process layout for both runs

    if args.only in (None, "overhead"):
        init = Image.new("RGB", (args.size, args.size), (120, 80, 40))
        print(f"model {model}, {args.size}x{args.size}, {args.calls} calls each, 1 step")
        for label, image in (("txt2img", None), ("img2img", init)):
            mine = ours(model, args.size, args.calls, image)
            theirs = highlevel(model, args.size, args.calls, image)
            m, t = statistics.median(mine) * 1000, statistics.median(theirs) * 1000
            print(
                f"{label}: overhead per call ours {m:.2f} ms, high-level API {t:.2f} ms, "
                f"ratio ours/high-level {m / t:.3f} (target: ours <= 5 ms)"
            )
    if args.only is None:
        # RSS series each in a fresh process so one cannot hide the other's growth.
        import subprocess

        for api in ("ours", "highlevel"):
            cmd = [sys.executable, __file__, model, "--only", f"rss-{api}"]
            cmd += ["--rss-calls", str(args.rss_calls), "--rss-size", str(args.rss_size)]
            subprocess.run(cmd, check=True)
        return
    if args.only.startswith("rss-"):
        api = args.only.removeprefix("rss-")
        pts = rss_series(model, args.rss_size, args.rss_calls, api)
        growth = pts[-1][1] - pts[0][1]
        warm = next((r for n, r in pts if n >= 10), pts[0][1])
        text = ", ".join(f"after {n}: {r:.0f} MiB" for n, r in pts)
        print(
            f"RSS {api} ({args.rss_size}x{args.rss_size}): {text}; growth {growth:+.0f} MiB "
            f"(1 → {pts[-1][0]}), {pts[-1][1] - warm:+.0f} MiB after the first 10 calls"
        )


if __name__ == "__main__":
    main()
