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

    def __init__(self, listen: str = "127.0.0.1", trust: str = "", password: str = "",
                 tls: bool = False) -> None:  # fmt: skip
        #: addresses to listen on, and a network (CIDR) whose clients are trusted as well
        self.listen, self.trust = listen, trust
        #: ``password``: TCP clients must give it (scram-sha-256); ``tls``: and come over TLS
        #: (a self-signed certificate made here), plain TCP refused
        self.password, self.tls = password, tls
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
        auth = ["-A", "trust"]
        if self.password:
            pwfile = self.dir / "pw"
            pwfile.write_text(self.password + "\n")
            if os.geteuid() == 0:
                shutil.chown(pwfile, "postgres")
            auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", *auth)
        if self.trust:
            with open(data / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {self.trust} trust\n")
        opts = f"-c fsync=off -c listen_addresses={self.listen} -p {self.port} -k {self.dir}"
        if self.tls:
            opts += self._certificate(data)
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-o", opts, "-w", "-l",
                  str(self.dir / "log"), "start")  # fmt: skip
        self.started = True
        return self.url()

    def _certificate(self, data: Path) -> str:
        """A self-signed certificate for 127.0.0.1; pg_hba admits TCP clients over TLS only."""
        key, crt = data / "server.key", data / "server.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(crt)],
                       check=True, capture_output=True, timeout=120)  # fmt: skip
        hba = data / "pg_hba.conf"
        method = "scram-sha-256" if self.password else "trust"
        kept = [ln for ln in hba.read_text().splitlines() if not ln.startswith("host")]
        hba.write_text("\n".join([*kept, f"hostssl all all 127.0.0.1/32 {method}", ""]))
        for path in (key, crt, hba):
            if os.geteuid() == 0:
                shutil.chown(path, "postgres")
        key.chmod(0o600)
        return " -c ssl=on"

    def url(self, user: str = "postgres") -> str:
        """The URL clients use: the password and, with TLS, ``sslmode=require``."""
        auth = f"{user}:{self.password}" if self.password else user
        query = "?sslmode=require" if self.tls else ""
        return f"postgresql://{auth}@127.0.0.1:{self.port}/postgres{query}"

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
