"""``sdcpp queue migrate`` / ``status`` and the one-line refusals of a queue that is not there."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from sdcpp_service.cli import build
from tests.cluster.conftest import Cluster
from tests.cluster.pg import free_port

runner = CliRunner()


def test_migrate_is_idempotent_and_status_lists_workers(pg_url: str, tmp_path, fake_models) -> None:  # type: ignore[no-untyped-def]
    app = build("queue")
    first = runner.invoke(app, ["queue", "migrate", "--queue", pg_url])
    assert first.exit_code == 0, first.output
    assert "procrastinate schema: applied; sdcpp schema: v2" in first.output
    again = runner.invoke(app, ["queue", "migrate", "--queue", pg_url])
    assert again.exit_code == 0 and "procrastinate schema: present" in again.output
    cluster = Cluster(pg_url, tmp_path, fake_models)
    try:
        cluster.worker("alpha", step=0.2)
        api = cluster.node()
        cluster.wait_workers(api, 1)
        job = api.post("/api/v1/jobs", json={"prompt": "a", "model": "alpha", "steps": 40,
                                              "width": 64, "height": 64}).json()  # fmt: skip
        cluster.wait_job(api, job["id"], ("running",))
        out = runner.invoke(app, ["queue", "status", "--queue", pg_url, "--json"])
        assert out.exit_code == 0, out.output
        info = json.loads(out.output)
        assert info["models"] == {"alpha": {"queued": 0, "running": 1}}
        (worker,) = info["workers"]
        assert worker["id"] == "w0" and worker["models"] == ["alpha"]
        assert worker["state"] == "busy" and worker["current_job"] == job["id"]
        text = runner.invoke(app, ["queue", "status", "--queue", pg_url])
        assert text.exit_code == 0 and "w0" in text.output and job["id"] in text.output
        api.post(f"/api/v1/jobs/{job['id']}/cancel")
    finally:
        cluster.close()


def test_unreachable_and_unmigrated_queues_are_one_line(pg_url: str) -> None:
    app = build("queue")
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    out = runner.invoke(app, ["queue", "status", "--queue", dead])
    assert out.exit_code == 1
    assert out.output.startswith("error: cannot reach the queue database:")
    assert out.output.count("\n") == 1 and "Traceback" not in out.output
    bare = runner.invoke(app, ["queue", "status", "--queue", pg_url])
    assert bare.exit_code == 1
    assert "run `sdcpp queue migrate --queue URL` first" in bare.output


def out_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def test_worker_needs_models_to_serve(pg_url: str) -> None:
    out = runner.invoke(build("worker"), ["worker", "--queue", pg_url])
    assert out.exit_code == 2
    assert "give --preload MODEL" in out.output
    more = runner.invoke(build("worker"), ["worker", "--queue", pg_url, "--any", "--parallel", "2"])
    assert more.exit_code == 2
    assert (
        out_line(more.output) == "error: --parallel must be between 0 (automatic) and --workers (1)"
    )


def test_serve_and_worker_refuse_a_missing_queue_in_one_line(pg_url: str) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    for name, extra in (("serve", []), ("worker", ["--any"])):
        out = runner.invoke(build(name), [name, "--queue", dead, *extra])
        assert out.exit_code == 1, out.output
        assert out_line(out.output).startswith("error: cannot reach the queue database:")
        bare = runner.invoke(build(name), [name, "--queue", pg_url, *extra])
        assert bare.exit_code == 1 and "run `sdcpp queue migrate" in bare.output
