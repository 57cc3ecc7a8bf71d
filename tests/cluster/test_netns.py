"""API node and worker on separate network stacks: the worker runs in its own network
namespace (``ip netns``), joined to the API's by a veth pair, and reaches PostgreSQL — and
nothing else of the API host — over it. Skipped, with the reason, where the machine cannot
create namespaces (not root, no iproute2, a container without CAP_NET_ADMIN)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import Cluster, row
from tests.cluster.pg import Throwaway


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture
def netns() -> Iterator[tuple[str, str, str]]:
    """(namespace, the API side's address, its network)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2 (ip)")
    tag = uuid.uuid4().hex[:6]
    ns, host, peer = f"sdcpp-{tag}", f"vsa{tag}", f"vsb{tag}"
    net = f"10.{random.randint(64, 250)}.{random.randint(1, 250)}"
    try:
        ip("netns", "add", ns)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc.stderr.strip()}")
    try:
        ip("link", "add", host, "type", "veth", "peer", "name", peer)
        ip("link", "set", peer, "netns", ns)
        ip("addr", "add", f"{net}.1/24", "dev", host)
        ip("link", "set", host, "up")
        ip("netns", "exec", ns, "ip", "addr", "add", f"{net}.2/24", "dev", peer)
        ip("netns", "exec", ns, "ip", "link", "set", peer, "up")
        ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield ns, f"{net}.1", f"{net}.0/24"
    finally:
        subprocess.run(["ip", "link", "del", host], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def test_worker_in_another_network_namespace(netns: tuple[str, str, str], tmp_path: Path,
                                             fake_models: Path) -> None:  # fmt: skip
    ns, address, network = netns
    server = Throwaway(listen=f"127.0.0.1,{address}", trust=network)
    try:
        base = server.start().replace("127.0.0.1", address)
        cluster = Cluster(base, tmp_path, fake_models)
        try:
            # the worker's own loopback has no PostgreSQL: only the veth path works
            probe = subprocess.run(
                ["ip", "netns", "exec", ns, "python3", "-c",
                 f"import socket; socket.create_connection(('127.0.0.1', {server.port}), 2)"],
                capture_output=True, timeout=30)  # fmt: skip
            assert probe.returncode != 0
            cluster.worker("alpha", name="remote", prefix=("ip", "netns", "exec", ns))
            api = cluster.node()
            (worker,) = cluster.wait_workers(api, 1)
            assert worker["id"] == "remote"
            r = api.post("/api/v1/jobs", json={"prompt": "x", "model": "alpha", "steps": 3,
                                               "width": 64, "height": 64, "seed": 4})  # fmt: skip
            view = cluster.wait_job(api, r.json()["id"], ("completed", "failed"))
            assert view["status"] == "completed" and view["seeds"] == [4]
            assert api.get(view["outputs"][0]["url"]).content[:4] == b"\x89PNG"
            assert row(base, view["id"])["owner"] == "remote"
        finally:
            cluster.close()
    finally:
        server.stop()
