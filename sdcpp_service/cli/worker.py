"""``sdcpp worker``: a GPU host of a cluster, taking jobs from the PostgreSQL queue."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sdcpp_service.cli._errors import fail, handle_errors
from sdcpp_service.cli._options import ParallelOpt, ThreadsOpt, check_pool, host_settings

Opt = typer.Option


@handle_errors
def worker(
    queue: Annotated[
        str, Opt("--queue", help="PostgreSQL URL as libpq takes it (as for `sdcpp serve --queue`).")
    ],
    models: Annotated[
        list[Path] | None, Opt("--models", help="Model folder (repeatable; adds to SDCPP_MODELS).")
    ] = None,
    preload: Annotated[
        str | None,
        Opt("--preload", help="Models this worker keeps warm and takes jobs for, comma-separated."),
    ] = None,
    any_model: Annotated[
        bool, Opt("--any", help="Also take jobs for models no live worker preloads (loads them).")
    ] = False,
    workers: Annotated[
        int, Opt("--workers", help="Engine processes, each keeping one model warm.")
    ] = 1,
    parallel: ParallelOpt = 0,
    max_memory: Annotated[
        float, Opt("--max-memory", min=0, help="GB the warm models may use together (0: 90% RAM).")
    ] = 0.0,
    data_dir: Annotated[
        Path | None, Opt("--data-dir", help="Scratch space for outputs before they are stored.")
    ] = None,
    heartbeat: Annotated[
        float, Opt("--heartbeat", min=0.2, help="Seconds between two heartbeats.")
    ] = 2.0,
    lost_after: Annotated[
        float,
        Opt("--lost-after", min=1, help="Seconds of silence after which a worker counts as lost."),
    ] = 10.0,
    name: Annotated[str, Opt("--name", help="This worker's id (default: host:pid).")] = "",
    threads: ThreadsOpt = 0,
) -> None:
    """Run jobs from the queue on this host's engine (until Ctrl-C; running jobs finish)."""
    from sdcpp_service.cluster.runner import WorkerConfig, run_worker
    from sdcpp_service.server.engine import PipelineEngine

    preloads = tuple(n.strip() for n in (preload or "").split(",") if n.strip())
    if not preloads and not any_model:
        raise fail("give --preload MODEL[,MODEL…] (the models this worker serves), or --any")
    check_pool(workers, parallel, len(preloads))
    if heartbeat * 2 > lost_after:
        raise fail("--lost-after must be at least twice --heartbeat")
    settings = host_settings(models, data_dir, threads)
    cfg = WorkerConfig(url=queue, preload=preloads, any_model=any_model, workers=workers,
                       parallel=parallel, heartbeat=heartbeat, lost_after=lost_after,
                       max_memory_gb=max_memory, name=name)  # fmt: skip
    typer.echo(f"sdcpp worker: {', '.join(preloads) or '-'}{' +any' if any_model else ''} "
               f"on {workers} engine process(es)", err=True)  # fmt: skip
    run_worker(settings, PipelineEngine(settings), cfg)
