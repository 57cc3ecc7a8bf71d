"""The one rich progress bar the commands share: on stderr, silent when it is not a terminal;
subclasses name their columns and how an engine progress report moves the bar."""

from __future__ import annotations

from typing import Any


class Bar:
    """A rich progress bar on stderr (step, it/s, ETA); silent when stderr is not a terminal."""

    description = "sampling"
    #: Start (and import rich, ~0.1 s) at the first update instead of on entering.
    lazy = False

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.progress: Any = None
        self.task: Any = None

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
        if self.progress is None and self.enabled:
            self._start()
        if self.progress is not None:
            self.progress.update(self.task, **self.update(p))

    def update(self, p: Any) -> dict[str, Any]:
        rate = f"{p.step / p.elapsed:.2f} it/s" if p.elapsed > 0 and p.step else ""
        return {"total": p.total, "completed": p.step, "rate": rate}

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(None, None, None)
