"""``sdcpp serve``: the HTTP service (native, A1111 and OpenAI APIs) on one port."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from sdcpp_service.cli._errors import fail, handle_errors
from sdcpp_service.cli._options import ParallelOpt, ThreadsOpt, check_pool, host_settings

Opt = typer.Option


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> None:
    """Bind (host, port) as uvicorn will (SO_REUSEADDR), then let go; OSError if it cannot."""
    import socket

    infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)


def check_port(host: str, port: int) -> None:
    """Refuse, in one line and before anything starts, a port that cannot be listened on,
    naming a free one to use instead."""
    import errno
    import socket

    if not 0 <= port <= 65535:  # 0: the system picks a free one
        raise fail(f"--port {port} is not a TCP port; use one from 1 to 65535, e.g. --port 7860")
    try:
        _bind(host, port)
    except socket.gaierror as exc:
        raise fail(
            f"--host {host}: cannot resolve it ({exc.strerror}); try --host 127.0.0.1"
        ) from None
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
            raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        start = port + 1 if exc.errno == errno.EADDRINUSE else 7860
        free = next((p for p in range(start, min(start + 50, 65536)) if _free(host, p)), None)
        why = "is in use" if exc.errno == errno.EADDRINUSE else "needs more privileges"
        hint = f"; try --port {free}" if free else "; pick another --port"
        raise fail(f"cannot listen on {host}:{port}: the port {why}{hint}") from None


def _free(host: str, port: int) -> bool:
    try:
        _bind(host, port)
    except OSError:
        return False
    return True


def auth_shown(cred: str) -> str:
    """``--api-auth`` as typed, the password hidden: ``alice``, ``alice:``, ``alice:…``."""
    user, sep, password = cred.partition(":")
    return user + sep + ("…" if password else "")


@handle_errors
def serve(
    host: Annotated[str, Opt("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, Opt("--port", help="Port to listen on (0: any free one).")] = 7860,
    models: Annotated[
        list[Path] | None, Opt("--models", help="Model folder (repeatable; adds to SDCPP_MODELS).")
    ] = None,
    api_key: Annotated[
        list[str] | None, Opt("--api-key", help="Bearer API key clients must send (repeatable).")
    ] = None,
    api_auth: Annotated[
        list[str] | None, Opt("--api-auth", help="Basic-auth credentials user:pass (A1111 style).")
    ] = None,
    max_queue: Annotated[int, Opt("--max-queue", help="Queued jobs before 429.")] = 100,
    keep_jobs: Annotated[
        float,
        Opt(
            "--keep-jobs",
            min=0,
            help="Hours a finished job and its files are kept (0: until deleted).",
        ),
    ] = 168.0,
    keep_outputs_gb: Annotated[
        float,
        Opt(
            "--keep-outputs-gb",
            min=0,
            help="Disk cap for output files: past it the oldest finished jobs go (0: no cap).",
        ),
    ] = 0.0,
    preload: Annotated[
        str | None,
        Opt(
            "--preload",
            help="Models to load at start, comma-separated, one per worker (the first is the "
            "default model).",
        ),
    ] = None,
    workers: Annotated[
        int,
        Opt("--workers", help="Engine processes, each keeping one model warm."),
    ] = 1,
    parallel: ParallelOpt = 0,
    max_memory: Annotated[
        float,
        Opt(
            "--max-memory",
            min=0,
            help="GB the warm models may use together; past it idle ones are unloaded "
            "(0: 90% of RAM).",
        ),
    ] = 0.0,
    data_dir: Annotated[
        Path | None, Opt("--data-dir", help="Job database and outputs (default: SDCPP_DATA_DIR).")
    ] = None,
    insecure: Annotated[
        bool, Opt("--insecure", help="Allow a non-loopback --host without --api-key/--api-auth.")
    ] = False,
    api_server_stop: Annotated[
        bool,
        Opt(
            "--api-server-stop",
            help="Allow POST /sdapi/v1/server-stop, server-kill and server-restart (A1111's flag).",
        ),
    ] = False,
    queue: Annotated[
        str | None,
        Opt(
            "--queue",
            help="PostgreSQL URL: run as an API node of a cluster; `sdcpp worker` hosts run the "
            "jobs (see `sdcpp queue migrate`).",
        ),
    ] = None,
    lost_after: Annotated[
        float,
        Opt(
            "--lost-after",
            min=1,
            help="With --queue: seconds of silence after which a worker "
            "is lost and its job re-run elsewhere.",
        ),
    ] = 10.0,
    threads: ThreadsOpt = 0,
    log_level: Annotated[str, Opt("--log-level", help="uvicorn log level.")] = "info",
) -> None:
    """Serve the engine over HTTP: /api/v1 (jobs, SSE), /sdapi/v1 (A1111), /v1 (OpenAI)."""
    from sdcpp_service.server.app import create_app
    from sdcpp_service.server.options import ServerOptions

    keys = tuple(k for k in api_key or [] if k)
    creds = tuple(api_auth or [])
    for cred in creds:
        user, sep, password = cred.partition(":")
        if not sep or not user or not password:
            missing = "a ':'" if not sep else ("a user" if not user else "a password")
            raise fail(
                f"--api-auth '{auth_shown(cred)}' must be user:password ({missing} is missing)"
            )
    if not is_loopback(host) and not (keys or creds) and not insecure:
        raise fail(
            f"refusing to serve on {host} without credentials: add --api-key KEY "
            "(or --api-auth user:pass), or --insecure if the network is trusted"
        )
    if not 1 <= max_queue <= 100_000:
        raise fail("--max-queue must be between 1 and 100000")
    preloads = [name.strip() for name in (preload or "").split(",") if name.strip()]
    check_pool(workers, parallel, len(preloads))
    check_port(host, port)
    if queue and (preloads or workers != 1 or parallel):
        raise fail("with --queue the workers run the engine: give --preload and --workers to "
                   "`sdcpp worker`, not to `serve`")  # fmt: skip
    settings = host_settings(models, data_dir, threads)
    options = ServerOptions(
        api_keys=keys,
        api_auth=creds,
        max_queue=max_queue,
        preload=",".join(preloads),
        workers=workers,
        parallel=parallel,
        max_memory_gb=max_memory,
        keep_jobs_hours=keep_jobs,
        keep_outputs_gb=keep_outputs_gb,
        api_server_stop=api_server_stop,
        queue=queue or "",
        lost_after=lost_after,
    )
    if preloads:  # fail now, not in the background, when a name is wrong
        from sdcpp_service.server import models as catalog

        for name in preloads:
            catalog.resolve(name, settings, field="preload")
    if queue:  # one line now, not a failed start-up later
        from sdcpp_service.cluster.store import check_schema, connect

        with connect(queue) as conn:
            check_schema(conn)
    if not queue:  # the job store opens now: a full disk is one line, not a failed start-up
        from sdcpp_service.server.sqlite import SQLiteJobStore

        SQLiteJobStore(settings.data_dir / "jobs.sqlite").close()
    app = create_app(settings, options=options)
    import uvicorn

    typer.echo(
        f"sdcpp serve: http://{host}:{port}  (models: {', '.join(map(str, settings.model_dirs))})",
        err=True,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level)
    if getattr(getattr(app, "state", None), "restart", False):  # POST /sdapi/v1/server-restart
        typer.echo("sdcpp serve: restarting", err=True)
        os.execv(sys.executable, [sys.executable, "-m", "sdcpp_service", *sys.argv[1:]])
