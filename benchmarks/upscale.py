"""Upscaling throughput vs the engine's upscale called directly, and peak RSS of a big tiled job.

    python benchmarks/upscale.py [MODEL] [--size 128] [--images 3] [--big 512] [--tile 128]

MODEL defaults to the test kit's ESRGAN x4. "Direct" is the bindings' own ``new_upscaler_ctx`` +
``upscale`` with the same image bytes and tile size, timed the same way in the same process
(its returned buffer is freed too, so both sides do the same work); the two sides alternate
image by image so machine noise hits both. The peak RSS of a tiled upscale of a ``--big``
input (512 → a 2048×2048 output by default) is measured in a fresh process for each side.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def kit_model() -> str:
    sys.path.insert(0, str(ROOT))
    from tests.synth import kit  # type: ignore[import-not-found]

    return str(kit.build("esrgan_x4")["upscaler"])


def make_image(size: int, seed: int = 0) -> object:
    import numpy as np
    from PIL import Image

    data = np.random.default_rng(seed).integers(0, 256, (size, size, 3), np.uint8)
    return Image.fromarray(data)


def direct(model: str, images: list, tile: int, threads: int) -> list[float]:
    import stable_diffusion_cpp.stable_diffusion_cpp as ll

    libc = ctypes.CDLL(None)
    libc.free.argtypes = [ctypes.c_void_p]
    ctx = ll.new_upscaler_ctx(model.encode(), False, False, threads, tile)
    times = []
    for image in images:
        t = time.perf_counter()
        data = image.tobytes()  # type: ignore[attr-defined]
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        src = ll.sd_image_t(
            width=image.width,  # type: ignore[attr-defined]
            height=image.height,  # type: ignore[attr-defined]
            channel=3,
            data=ctypes.cast(buf, ctypes.POINTER(ctypes.c_uint8)),
        )
        out = ll.upscale(ctx, src, 4)
        ctypes.string_at(out.data, out.width * out.height * out.channel)
        libc.free(ctypes.cast(out.data, ctypes.c_void_p))
        times.append(time.perf_counter() - t)
    ll.free_upscaler_ctx(ctx)
    return times


def ours(model: str, images: list, tile: int, threads: int) -> list[float]:
    from sdcpp_service.engine.upscale import Upscaler

    times = []
    with Upscaler(model, threads, tile) as up:
        for image in images:
            t = time.perf_counter()
            up.upscale(image)  # type: ignore[arg-type]
            times.append(time.perf_counter() - t)
    return times


def peak_rss(which: str, model: str, size: int, tile: int, threads: int) -> float:
    code = (
        f"import sys, resource; sys.path.insert(0, {str(ROOT)!r}); "
        "from benchmarks.upscale import make_image, direct, ours; "
        f"im = make_image({size}); {which}({model!r}, [im], {tile}, {threads}); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model", nargs="?")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--images", type=int, default=5)
    ap.add_argument("--big", type=int, default=512)
    ap.add_argument("--tile", type=int, default=128)
    args = ap.parse_args()
    model = args.model or kit_model()
    threads = os.cpu_count() or 2
    images = [make_image(args.size, i) for i in range(args.images)]
    ours(model, images[:1], args.tile, threads)  # warm-up (page cache, first-touch)
    d_times: list[float] = []
    o_times: list[float] = []
    for image in images:  # interleaved, so load changes hit both sides alike
        d_times += direct(model, [image], args.tile, threads)
        o_times += ours(model, [image], args.tile, threads)
    d, o = statistics.median(d_times), statistics.median(o_times)
    mp = (args.size * 4) ** 2 / 1e6
    print(
        f"{args.size}->{args.size * 4} x{args.images}: direct {d:.3f} s/img ({mp / d:.2f} MP/s), "
        f"ours {o:.3f} s/img ({mp / o:.2f} MP/s), time ratio ours/direct {o / d:.3f} (target <= 1.05)"
    )
    print(
        f"  fastest image: direct {min(d_times):.3f} s, ours {min(o_times):.3f} s, ratio {min(o_times) / min(d_times):.3f}"
    )
    rss_d = peak_rss("direct", model, args.big, args.tile, threads)
    rss_o = peak_rss("ours", model, args.big, args.tile, threads)
    print(
        f"{args.big}x{args.big} -> {args.big * 4}x{args.big * 4} tiled ({args.tile}px): "
        f"peak RSS direct {rss_d:.0f} MiB, ours {rss_o:.0f} MiB, ratio {rss_o / rss_d:.3f}"
    )


if __name__ == "__main__":
    main()
