"""The ``sdcpp`` console entry: starts the convert engine child before the CLI is imported.

``sdcpp convert SRC`` spends most of its life in one engine call made by a child process
(:mod:`sdcpp_service.convert._child`). Importing typer and our commands takes a few hundred
milliseconds; starting the child first lets it load the engine during that time, so the command
costs about what the engine's own ``convert`` does. The child waits for a job on stdin and exits
on EOF, so a child nobody claims (``--help``, a usage error) ends with this process.
"""

from __future__ import annotations

import os
import subprocess
import sys

#: Options after which ``sdcpp convert`` runs no engine child.
_NO_CHILD = frozenset({"--help", "-h", "--plan", "--list-types"})

_prestarted: subprocess.Popen[str] | None = None


def spawn_child() -> subprocess.Popen[str]:
    """A new engine child for one conversion (see :mod:`sdcpp_service.convert._worker`)."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", "sdcpp_service.convert._child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
    )


def take_child() -> subprocess.Popen[str]:
    """The child started at launch if it is still waiting, else a new one."""
    global _prestarted
    proc, _prestarted = _prestarted, None
    if proc is not None and proc.poll() is None:
        return proc
    return spawn_child()


def wants_child(argv: list[str]) -> bool:
    return len(argv) > 2 and argv[1] == "convert" and not _NO_CHILD.intersection(argv[2:])


def main() -> None:
    global _prestarted
    if wants_child(sys.argv) and os.environ.get("SDCPP_NO_PRESTART") != "1":
        _prestarted = spawn_child()
    from sdcpp_service.cli import main as cli_main

    cli_main()
