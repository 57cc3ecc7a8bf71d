"""``python -m tests.cluster.fake_worker URL MODELS DATA [--preload a,b] [--any] [--workers N]
[--step S] [--name X] [--output-chunk BYTES]``: ``sdcpp worker`` with the fake engine (fast placement/queue tests and
the benchmark's fixed-sleep engine)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from sdcpp_service.cluster.runner import WorkerConfig, run_worker
from sdcpp_service.config import Settings
from tests.fakes import FakeEngine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("models", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--preload", default="")
    ap.add_argument("--any", action="store_true")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--step", type=float, default=0.0)
    ap.add_argument("--name", default="")
    ap.add_argument("--heartbeat", type=float, default=0.5)
    ap.add_argument("--lost-after", type=float, default=2.0)
    ap.add_argument("--output-chunk", type=int, default=1 << 20)
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = Settings(data_dir=a.data, model_dirs=(a.models,), threads=1)
    cfg = WorkerConfig(url=a.url, preload=tuple(n for n in a.preload.split(",") if n),
                       any_model=a.any, workers=a.workers, heartbeat=a.heartbeat,
                       lost_after=a.lost_after, name=a.name, start_timeout=60,
                       output_chunk=a.output_chunk)  # fmt: skip
    run_worker(settings, FakeEngine(step_seconds=a.step), cfg)


if __name__ == "__main__":
    main()
