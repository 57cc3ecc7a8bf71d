"""An engine that dies with its parent: a worker host ``kill -9``'d must not leave its engine
processes running the lost job (Linux ``PR_SET_PDEATHSIG``; elsewhere a plain pass-through)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

from sdcpp_service.engine.base import Engine, EngineJob, JobOutput
from sdcpp_service.types import ProgressCallback

PR_SET_PDEATHSIG = 1


@dataclass
class DeathSignal:
    engine: Engine

    def start(self) -> dict[str, Any]:
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
                if os.getppid() == 1:  # the parent is already gone
                    os._exit(1)
            except (OSError, AttributeError):
                pass
        return self.engine.start()

    def load(self, model: str, load: dict[str, Any]) -> dict[str, Any]:
        return self.engine.load(model, load)

    def unload(self) -> None:
        self.engine.unload()

    def run(self, job: EngineJob, progress: ProgressCallback) -> JobOutput:
        return self.engine.run(job, progress)

    def state(self) -> dict[str, Any]:
        return self.engine.state()
