"""The one rich progress bar the commands share, on stderr; subclasses name their columns and
how an engine progress report moves the bar. When stderr is not a terminal (a log file, CI, a
pipe) and ``lines`` is set, each stage (loading LoRA, sampling, decoding) prints one line there
instead, so progress still shows without a screen of carriage returns."""

from __future__ import annotations

import sys
from typing import Any


class Bar:
    """A rich progress bar on stderr (step, it/s, ETA); silent when stderr is not a terminal."""

    description = "sampling"
    #: Start (and import rich, ~0.1 s) at the first update instead of on entering.
    lazy = False

    def __init__(self, enabled: bool, lines: bool = False) -> None:
        self.enabled = enabled
        self.lines = lines and not enabled
        self.progress: Any = None
        self.task: Any = None
        self.stage: str | None = None

    def columns(self) -> list[Any]:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

        return [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
        ]

    def fields(self) -> dict[str, Any]:
        """The task's extra fields and their start values."""
        return {"rate": ""}

    def __enter__(self) -> Bar:
        if self.enabled and not self.lazy:
            self._start()
        return self

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import Progress

        self.progress = Progress(*self.columns(), console=Console(stderr=True), transient=True)
        self.progress.__enter__()
        self.task = self.progress.add_task(self.description, total=None, **self.fields())

    def __call__(self, p: Any) -> None:
        stage = getattr(p, "phase", None)
        if stage == "preview":
            return
        changed, self.stage = stage != self.stage, stage
        if self.lines and changed:
            steps = f": {p.total} steps" if stage in ("sampling", "high noise") else "…"
            sys.stderr.write(f"{stage}{steps}\n")
            sys.stderr.flush()
        if self.progress is None and self.enabled:
            self._start()
        if self.progress is not None:
            if changed and stage:
                self.progress.reset(self.task, description=stage)
            self.progress.update(self.task, **self.update(p))

    def update(self, p: Any) -> dict[str, Any]:
        sampling = getattr(p, "phase", "sampling") in ("sampling", "high noise")
        rate = f"{p.step / p.elapsed:.2f} it/s" if sampling and p.elapsed > 0 and p.step else ""
        return {"total": p.total, "completed": p.step, "rate": rate}

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(None, None, None)
