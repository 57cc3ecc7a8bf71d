"""A throwaway PostgreSQL cluster for tests and benchmarks: ``initdb`` into a temp dir (as the
``postgres`` user when run as root), ``pg_ctl`` on a free loopback port with ``fsync=off``.

``.ci/run`` starts one the same way in bash and exports ``SDCPP_TEST_PG``; this module is the
fallback for ``python -m pytest`` on a developer machine (and ``benchmarks/cluster.py``).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def bindir() -> Path | None:
    """The PostgreSQL server binaries (``initdb``, ``pg_ctl``), newest version first."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(cand) / "initdb").exists():
            return Path(cand)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Throwaway:
    """``with Throwaway() as url:`` a running cluster, removed on exit."""

    def __init__(self, listen: str = "127.0.0.1", trust: str = "") -> None:
        #: addresses to listen on, and a network (CIDR) whose clients are trusted as well
        self.listen, self.trust = listen, trust
        self.dir = Path(tempfile.mkdtemp(prefix="sdcpp-pg-"))
        self.port = free_port()
        self.bin = bindir()
        self.started = False

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if os.geteuid() == 0:  # initdb refuses root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> str:
        if self.bin is None:
            raise RuntimeError("no PostgreSQL server binaries (initdb) found")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        data = self.dir / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust")
        if self.trust:
            with open(data / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {self.trust} trust\n")
        opts = f"-c fsync=off -c listen_addresses={self.listen} -p {self.port} -k {self.dir}"
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-o", opts, "-w", "-l",
                  str(self.dir / "log"), "start")  # fmt: skip
        self.started = True
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        if self.started and self.bin is not None:
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m",
                          "immediate", "stop")  # fmt: skip
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> str:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
