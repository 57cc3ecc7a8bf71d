"""Derive and check the memory-cost table of ``sdcpp_service.fit`` on the real engine.

Each case is a fresh process (``benchmarks/fit_child.py``) that loads a kit model, makes one
image with one step, and reports the engine's own ``params backend buffer size`` and ``compute
buffer size`` log lines; its peak RSS comes from ``os.wait4``. Three steps:

- ``measure``: run the cases (models × sizes × batch × switch settings), appending to a JSON
  file of runs (cases already in it are skipped, so an interrupted sweep resumes);
- ``derive``: fit, per engine runner (``unet``, ``vae``, ``taesd``, ``clip`` …), family and
  switch setting, the compute buffer as ``c0 + c1·T + c2·T²`` bytes (T = latent pixels of one
  image, or of one VAE tile when tiling), plus the process's base RSS and the residual per
  image pixel, and write them to ``sdcpp_service/fit/costs.json``; sizes listed in
  ``--hold-out`` are left out of the fit;
- ``check``: predict every run's peak RSS with ``sdcpp_service.fit.estimate`` and print each
  ratio predicted/measured and the worst (target: within ±15 %).

    python benchmarks/fit.py                    # all three, the default sweep (sdxs, sd1)
    python benchmarks/fit.py measure --models sdxs --sizes 64,128 --runs /tmp/runs.json
    python benchmarks/fit.py derive --runs benchmarks/fit_runs.json
    python benchmarks/fit.py check --runs benchmarks/fit_runs.json

Regenerate after an engine upgrade: delete the runs file and run it again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "fit_child.py"
RUNS = Path(__file__).resolve().parent / "fit_runs.json"
SETTINGS = {"default": {}, "low": {"vae_tiling": True, "flash_attn": True}}
#: How the process holds its weights: ``warm`` keeps them (a server worker, a reused Pipeline),
#: ``one_shot`` frees each stage's as it ends and skips the VAE encoder (``sdcpp generate``).
MODES = ("warm", "one_shot")
TARGET = 0.15


def run_case(
    model: str, width: int, height: int, batch: int, switches: dict[str, bool], mode: str = "warm"
) -> dict:
    """One fresh process: its engine buffer lines, peak RSS bytes and wall seconds."""
    args = [f"{k}={int(v)}" for k, v in sorted(switches.items())]
    if mode == "one_shot":
        args.append("one_shot=1")
    cmd = [sys.executable, str(CHILD), model, str(width), str(height), str(batch), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    report = json.loads(out.strip().splitlines()[-1])
    rss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {**report, "peak_rss": rss, "seconds": round(time.perf_counter() - t0, 1)}


def kit_path(name: str) -> str:
    sys.path.insert(0, str(ROOT))
    from tests.synth.kit import build

    if name == "esrgan":
        return "esrgan=" + str(build("esrgan_x4")["upscaler"])
    return str(build(name)["model"])


def measure(ns: argparse.Namespace) -> None:
    runs: list[dict] = json.loads(ns.runs.read_text()) if ns.runs.exists() else []
    done = {(r["model"], r["width"], r["height"], r["batch"], r["setting"], mode_of(r))
            for r in runs}  # fmt: skip
    cases = [("base", 0, 0, 0, "default", "warm")]
    for model in (m for m in ns.models.split(",") if m):
        for size in (int(s) for s in ns.sizes.split(",") if s):
            for batch in (int(b) for b in ns.batches.split(",") if b):
                for setting in SETTINGS:
                    for mode in ns.modes.split(","):
                        cases.append((model, size, size, batch, setting, mode))
    for tile in (int(t) for t in ns.tiles.split(",") if t):  # ESRGAN: one tile-sized image
        cases.append(("esrgan", tile, tile, 1, "default", "warm"))
    for model, w, h, batch, setting, mode in cases:
        if (model, w, h, batch, setting, mode) in done:
            continue
        path = "base" if model == "base" else kit_path(model)
        result = run_case(path, w, h, batch, SETTINGS[setting], mode)
        row = {"model": model, "width": w, "height": h, "batch": batch, "setting": setting,
               "mode": mode}  # fmt: skip
        runs.append({**row, **result})
        ns.runs.write_text(json.dumps(runs, indent=1) + "\n")
        print(f"{model:6} {w}x{h} b{batch} {setting:7} {mode:8} peak "
              f"{result['peak_rss'] / 2**20:8.1f} MB  {result['seconds']:6.1f} s", flush=True)  # fmt: skip


def mode_of(run: dict) -> str:
    """A run's mode (runs recorded before one-shot runs existed were warm)."""
    return str(run.get("mode", "warm"))


def _case(run: dict) -> tuple[dict[str, str], object, object]:
    sys.path.insert(0, str(ROOT))
    from sdcpp_service.fit import Switches, UpscaleJob
    from sdcpp_service.types import GenerateRequest

    if run["model"] == "esrgan":
        job = UpscaleJob(run["width"], run["height"], tile=run["width"])
        return {"upscaler": kit_path("esrgan").removeprefix("esrgan=")}, job, Switches()

    sw = Switches(**SETTINGS[run["setting"]])
    req = GenerateRequest("a fox", width=run["width"], height=run["height"], batch=run["batch"],
                          vae_tiling=sw.vae_tiling)  # fmt: skip
    return {"model": kit_path(run["model"])}, req, sw


def _fit(points: list[tuple[float, float]]) -> dict:
    """Least-squares ``c0 + c1·T + c2·T²`` (lower degree when there are few distinct T)."""
    import numpy as np

    ts = np.array([p[0] for p in points], dtype=float)
    ys = np.array([p[1] for p in points], dtype=float)
    degree = min(2, len(set(ts.tolist())) - 1)
    coef = np.polynomial.polynomial.polyfit(ts, ys, degree) if degree > 0 else [ys.mean()]
    coef = [float(c) for c in coef] + [0.0] * (3 - len(coef))
    fitted = coef[0] + coef[1] * ts + coef[2] * ts**2
    err = float(np.max(np.abs(fitted - ys) / np.maximum(ys, 1.0)))
    return {"coef": coef, "error": round(err, 4), "points": len(points)}


def derive(ns: argparse.Namespace) -> None:
    """Fit the compute curves and the residuals; write the package's costs.json."""
    sys.path.insert(0, str(ROOT))
    from sdcpp_service.fit import costs, estimate
    from sdcpp_service.fit.shape import VAE_TILE
    from sdcpp_service.models import inspect

    runs = json.loads(ns.runs.read_text())
    held = {int(s) for s in ns.hold_out.split(",") if s}
    fit_runs = [r for r in runs if r["model"] != "base" and r["width"] not in held]
    points: dict[str, list[tuple[float, float]]] = {}
    runners: dict[str, dict[str, set[str]]] = {}
    for run in fit_runs:
        if run["model"] == "esrgan":  # T = pixels of one tile
            for runner, size in run["compute"]:
                k = costs.key(runner, "esrgan", False)
                points.setdefault(k, []).append((run["width"] * run["height"], size))
            continue
        arch = str(inspect(kit_path(run["model"])).arch)
        sw = SETTINGS[run["setting"]]
        lw, lh = run["width"] // 8, run["height"] // 8
        for runner, size in run["compute"]:
            phase = costs.RUNNER_PHASES.get(runner, "sampling")
            runners.setdefault(arch, {}).setdefault(phase, set()).add(runner)
            tokens = lw * lh
            family = arch
            if phase == "decode":
                family = costs.decode_family(arch)
                if sw.get("vae_tiling"):
                    tokens = min(lw, VAE_TILE) * min(lh, VAE_TILE)
            flash = bool(sw.get("flash_attn")) and phase != "decode"  # the VAE has no flash path
            k = costs.key(runner, family, flash)
            points.setdefault(k, []).append((tokens, size))
    curves = {k: _fit(v) for k, v in sorted(points.items())}
    table = {"curves": curves,
             "runners": {a: {p: sorted(r) for p, r in ph.items()} for a, ph in runners.items()},
             "runtime_bytes": 0, "per_pixel_bytes": 0.0}  # fmt: skip
    bare = costs.Table.from_dict(table)
    import numpy as np

    xs, ys = [], []
    for run in fit_runs:
        if run["model"] == "esrgan":  # the residual is the generations'
            continue
        plan, req, sw = _case(run)
        est = estimate(plan, req, sw, one_shot=mode_of(run) == "one_shot", table=bare)
        xs.append(run["width"] * run["height"] * run["batch"])
        ys.append(run["peak_rss"] - est.peak_ram_bytes)
    c0, c1 = np.polynomial.polynomial.polyfit(np.array(xs, float), np.array(ys, float), 1)
    base = [r["peak_rss"] for r in runs if r["model"] == "base"]
    up = []  # an upscale-only process: its own (smaller) runtime, the mean residual
    for run in (r for r in fit_runs if r["model"] == "esrgan"):
        plan, req, sw = _case(run)
        up.append(run["peak_rss"] - estimate(plan, req, sw, table=bare).peak_ram_bytes)
    if up:
        table["upscale_runtime_bytes"] = int(sum(up) / len(up))
    from sdcpp_service._version import __version__

    table.update(runtime_bytes=int(c0), per_pixel_bytes=round(float(c1), 3), meta={
        "derived_by": "benchmarks/fit.py derive",
        "engine": "stable-diffusion-cpp-python 0.4.7", "package": __version__,
        "runs": len(fit_runs), "held_out_sizes": sorted(held),
        "engine_library_only_rss": base[0] if base else None,
    })  # fmt: skip
    out = ROOT / "sdcpp_service" / "fit" / "costs.json"
    out.write_text(json.dumps(table, indent=1) + "\n")
    costs.default_table.cache_clear()
    print(f"wrote {out}: {len(curves)} curves, runtime {c0 / 2**20:.1f} MB, "
          f"{c1:.2f} bytes per output pixel")  # fmt: skip
    for k, c in curves.items():
        print(f"  {k:28} worst fit error {c['error'] * 100:5.1f} % over {c['points']} points")


def check(ns: argparse.Namespace) -> float:
    """Predicted / measured peak RSS for every run; returns the worst deviation."""
    sys.path.insert(0, str(ROOT))
    from sdcpp_service.fit import estimate

    runs = [r for r in json.loads(ns.runs.read_text()) if r["model"] != "base"]
    held = {int(s) for s in ns.hold_out.split(",") if s}
    worst = 0.0
    print(f"{'model':6} {'size':>9} {'batch':>5} {'switches':8} {'mode':8} {'measured':>10} "
          f"{'predicted':>10} {'ratio':>6}")  # fmt: skip
    for run in runs:
        plan, req, sw = _case(run)
        est = estimate(plan, req, sw, one_shot=mode_of(run) == "one_shot")
        ratio = est.peak_ram_bytes / run["peak_rss"]
        worst = max(worst, abs(ratio - 1))
        tag = " (held out)" if run["width"] in held else ""
        print(f"{run['model']:6} {run['width']:>4}x{run['height']:<4} {run['batch']:>5} "
              f"{run['setting']:8} {mode_of(run):8} {run['peak_rss'] / 2**20:8.0f}MB {est.peak_ram_bytes / 2**20:8.0f}MB "
              f"{ratio:6.3f}{tag}")  # fmt: skip
    verdict = "within" if worst <= TARGET else "OUTSIDE"
    print(f"worst: {worst * 100:.1f} % off over {len(runs)} runs ({verdict} ±{TARGET * 100:.0f} %)")
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step")
    for name in ("measure", "derive", "check", "all"):
        p = sub.add_parser(name)
        p.add_argument("--runs", type=Path, default=RUNS)
        p.add_argument("--models", default="sdxs,sd1")
        p.add_argument("--sizes", default="64,128,256,384,512")
        p.add_argument("--batches", default="1,2")
        p.add_argument("--modes", default=",".join(MODES))
        p.add_argument("--tiles", default="32,64,96,128", help="ESRGAN tile sizes")
        p.add_argument("--hold-out", default="384", help="sizes left out of the fit")
    ns = parser.parse_args(sys.argv[1:] or ["all"])
    if ns.step in ("measure", "all"):
        measure(ns)
    if ns.step in ("derive", "all"):
        derive(ns)
    if ns.step in ("check", "all"):
        return 0 if check(ns) <= TARGET else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
