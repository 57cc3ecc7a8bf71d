"""``sdcpp queue``: the cluster's PostgreSQL queue (``migrate``, ``status``)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from sdcpp_service.cli._errors import handle_errors

app = typer.Typer(
    help="The PostgreSQL job queue shared by API nodes and workers (see `sdcpp worker`).",
    no_args_is_help=True,
)

QueueOpt = Annotated[
    str,
    typer.Option("--queue", help="PostgreSQL URL as libpq takes it (postgresql://user:pw@host/db"
                 "?sslmode=require)."),
]  # fmt: skip


@app.command("migrate")
@handle_errors
def migrate(queue: QueueOpt) -> None:
    """Apply the schema: procrastinate's tables (once) and ours (idempotent)."""
    from sdcpp_service.cluster.schema import migrate as apply

    done = apply(queue)
    typer.echo(f"procrastinate schema: {done['procrastinate']}; sdcpp schema: v{done['sdcpp']}")


@app.command("status")
@handle_errors
def status(
    queue: QueueOpt,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    lost_after: Annotated[
        float, typer.Option("--lost-after", help="Seconds of silence after which a worker is lost.")
    ] = 10.0,
) -> None:
    """Queued and running jobs per model, and every worker with its last heartbeat."""
    from sdcpp_service.cluster.schema import status as read

    info = read(queue, lost_after)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"{'model':<32} {'queued':>6} {'running':>7}")
    for name, counts in sorted(info["models"].items()):
        typer.echo(f"{name:<32} {counts['queued']:>6} {counts['running']:>7}")
    if not info["models"]:
        typer.echo("(no queued or running jobs)")
    typer.echo("")
    typer.echo(f"{'worker':<28} {'state':<6} {'models':<24} {'job':<34} heartbeat")
    for w in info["workers"]:
        models = ",".join(w["models"]) + (" +any" if w["any"] else "")
        typer.echo(f"{w['id']:<28} {w['state']:<6} {models:<24} {w['current_job'] or '-':<34} "
                   f"{w['heartbeat_age']:.1f} s ago")  # fmt: skip
    if not info["workers"]:
        typer.echo("(no workers)")
