"""The parent's handle on one engine child (:mod:`sdcpp_service.convert._child`)."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections import deque
from typing import IO, Any

from sdcpp_service.errors import ConvertError, EngineNotInstalled


class Worker:
    """Starts the child at once (it loads the engine while the parent plans), or takes the one
    ``sdcpp convert`` started at launch; one job."""

    def __init__(self, label: str) -> None:
        self.label = label
        from sdcpp_service._launch import take_child

        self.proc = take_child()
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.stderr: deque[str] = deque(maxlen=40)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._read_events, args=(self.proc.stdout,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(self.proc.stderr,), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read_events(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                try:
                    self.events.put(json.loads(line))
                except ValueError:
                    self.stderr.append(line.rstrip())
        except (OSError, ValueError):  # closed under us by close()
            pass
        self.events.put(None)  # EOF: the child exited

    def _read_stderr(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                if line.strip():
                    self.stderr.append(line.rstrip())
        except (OSError, ValueError):  # closed under us by close()
            pass

    def next(self, timeout: float) -> dict[str, Any]:
        """The next event; ``{}`` on timeout; raises when the child died without ``done``."""
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            return {}
        if event is None:
            self.proc.wait()
            raise self.died()
        return event

    def died(self) -> ConvertError:
        code = self.proc.returncode
        tail = " | ".join(list(self.stderr)[-3:])
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
        detail = f": {tail}" if tail else ""
        return ConvertError(self.label, f"the engine process failed ({how}){detail}")

    def expect(self, name: str, timeout: float = 120.0) -> dict[str, Any]:
        while True:
            event = self.next(timeout)
            if not event:
                raise ConvertError(self.label, f"the engine process did not answer ({name})")
            if event.get("event") == "not_installed":
                raise EngineNotInstalled(event["message"])
            if event.get("event") == name:
                return event

    def send(self, job: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        """Stop the child now (no-op when it has exited) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - kill never fails on POSIX
            pass
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
