"""A queue URL as libpq takes it: password and TLS (``sslmode=require``) in the URL, through
``sdcpp queue``, a worker process and an API node, on a PostgreSQL that refuses plain TCP and
clients without the password. A wrong password is one line that does not echo it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sdcpp_service.cli import build
from tests.cluster.conftest import Cluster, _unavailable
from tests.cluster.pg import Throwaway, bindir

runner = CliRunner()
SECRET = "s3cret-Pw"


@pytest.fixture(scope="module")
def tls_server() -> Iterator[Throwaway]:
    if bindir() is None:
        _unavailable("no PostgreSQL server binaries (initdb) for the TLS test")
    server = Throwaway(password=SECRET, tls=True)
    try:
        server.start()
    except Exception as exc:
        server.stop()
        _unavailable(f"could not start a TLS PostgreSQL: {exc}")
    try:
        yield server
    finally:
        server.stop()


def test_password_and_tls_in_the_url(tls_server: Throwaway, tmp_path: Path,
                                     fake_models: Path) -> None:  # fmt: skip
    url = tls_server.url()
    assert "sslmode=require" in url and SECRET in url
    app = build("queue")
    done = runner.invoke(app, ["queue", "migrate", "--queue", url])
    assert done.exit_code == 0, done.output
    # Plain TCP is refused by the server: the URL's sslmode is what gets the job through.
    plain = url.replace("sslmode=require", "sslmode=disable")
    refused = runner.invoke(app, ["queue", "status", "--queue", plain])
    assert refused.exit_code == 1 and refused.output.count("\n") == 1, refused.output
    assert SECRET not in refused.output
    wrong = url.replace(SECRET, "not-the-password")
    bad = runner.invoke(app, ["queue", "status", "--queue", wrong])
    assert bad.exit_code == 1 and bad.output.startswith("error:"), bad.output
    assert "password" in bad.output and "not-the-password" not in bad.output
    cluster = Cluster(url, tmp_path, fake_models)
    try:
        cluster.worker("alpha")
        api = cluster.node()
        cluster.wait_workers(api, 1)
        job = api.post("/api/v1/jobs", json={"prompt": "over tls", "model": "alpha",
                                              "steps": 2, "width": 64, "height": 64}).json()  # fmt: skip
        view = cluster.wait_job(api, job["id"], ("completed", "failed", "cancelled"))
        assert view["status"] == "completed", view
        assert api.get(view["outputs"][0]["url"]).status_code == 200
        status = runner.invoke(app, ["queue", "status", "--queue", url])
        assert status.exit_code == 0 and "w0" in status.output
    finally:
        cluster.close()
