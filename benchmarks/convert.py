"""`sdcpp convert` against the engine's own `convert` called directly, same input and type.

Each run is a fresh process (the CLI as a user runs it; the direct call as a minimal Python
script importing only the bindings), measured from outside: wall time around the process and
peak RSS from ``os.wait4`` (the largest RSS among the process and its waited-for children, so
the CLI's engine child counts). Runs alternate and the first pair is a warm-up, so both sides
see the same page cache. Targets: time ratio <= 1.05, RSS ratio <= 1.10.

    python benchmarks/convert.py                      # the kit's SDXS checkpoint, q8_0
    python benchmarks/convert.py --src model.safetensors --type q4_0 --runs 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TIME_TARGET = 1.05
RSS_TARGET = 1.10

DIRECT = """
import sys
import stable_diffusion_cpp.stable_diffusion_cpp as b
src, dst, type_id = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.exit(0 if b.convert(src.encode(), b"", dst.encode(), type_id, sys.argv[4].encode(), False) else 1)
"""


def measure(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS bytes of ``cmd`` (and its children)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    rss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return wall, rss


def sdcpp_command() -> list[str]:
    exe = shutil.which("sdcpp", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-c", "from sdcpp_service.cli import main; main()"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, help="model file (default: the kit's SDXS)")
    parser.add_argument("--type", default="q8_0")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per side")
    args = parser.parse_args()
    src = args.src
    if src is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.synth.kit import Kit

        src = Kit().path("sdxs")
    from sdcpp_service.convert import plan_conversion
    from sdcpp_service.convert._engine import engine_types

    table = engine_types()
    the_plan = plan_conversion(src, args.type)
    rules = the_plan.engine_rules(table)  # the direct call gets the very same rules
    type_id = table.require(args.type).id

    with tempfile.TemporaryDirectory(prefix="sdcpp-bench-", dir=src.parent) as tmp:
        ours_out = Path(tmp) / "ours.gguf"
        direct_out = Path(tmp) / "direct.gguf"
        ours = [*sdcpp_command(), "convert", str(src), "-o", str(ours_out), "--type", args.type]
        ours.append("--force")
        direct = [sys.executable, "-c", DIRECT, str(src), str(direct_out), str(type_id), rules]
        samples: dict[str, list[tuple[float, int]]] = {"sdcpp convert": [], "engine direct": []}
        for i in range(args.runs + 1):
            for label, cmd, out in (
                ("engine direct", direct, direct_out),
                ("sdcpp convert", ours, ours_out),
            ):
                out.unlink(missing_ok=True)
                wall, rss = measure(cmd)
                if i > 0:
                    samples[label].append((wall, rss))
                print(f"  run {i}{' (warm-up)' if i == 0 else ''} {label:14s} {wall:7.2f} s  {rss / 2**20:7.0f} MiB", flush=True)
        if ours_out.stat().st_size != direct_out.stat().st_size:
            print("WARNING: outputs differ in size")

    t = {k: statistics.median(w for w, _ in v) for k, v in samples.items()}
    r = {k: statistics.median(m for _, m in v) for k, v in samples.items()}
    time_ratio = t["sdcpp convert"] / t["engine direct"]
    rss_ratio = r["sdcpp convert"] / r["engine direct"]
    print(f"input {src.name} ({src.stat().st_size / 1e6:.0f} MB) → {args.type}, {args.runs} runs, medians")
    for k in samples:
        print(f"  {k:14s} {t[k]:7.2f} s  {r[k] / 2**20:7.0f} MiB peak RSS")
    ok_t = "ok" if time_ratio <= TIME_TARGET else "OVER TARGET"
    ok_r = "ok" if rss_ratio <= RSS_TARGET else "OVER TARGET"
    print(f"time ratio {time_ratio:.3f} (target <= {TIME_TARGET}) {ok_t}")
    print(f"RSS  ratio {rss_ratio:.3f} (target <= {RSS_TARGET}) {ok_r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
