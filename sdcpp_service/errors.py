"""One exception tree for every door.

::

    SdcppError                      base; ``str(e)`` is a one-line message for a user
    ├── InvalidRequest              a request field is wrong (``field``)
    │   ├── InvalidImage            an input image cannot be used (``field``, ``path``)
    │   └── UnknownName             a name (LoRA, model, sampler…) resolves to nothing
    ├── ModelError                  a model file or folder problem (``path``)
    │   ├── InvalidModelFile        unreadable, truncated or corrupt header
    │   ├── UnsupportedModel        readable, but no architecture we (or the engine) run
    │   └── MissingComponent        the model needs a component we cannot find (``kind``)
    ├── EngineError                 the native engine failed (load or generate)
    │   ├── EngineNotInstalled      the bindings cannot be imported
    │   ├── Cancelled               a job was cancelled
    │   ├── WorkerDied              the engine process died mid-job (``exitcode``)
    │   └── EngineAborted           a native assertion ended the engine (``assertion``, ``cause``)
    ├── QueueError                  the cluster's PostgreSQL queue is unreachable or not set up
    ├── OutputExists                refusing to overwrite a file (``path``)
    ├── StorageFull                 the disk holding the data (jobs, outputs) is full (``path``)
    ├── DoesNotFit                  a job's estimated memory exceeds the budget
    ├── ConvertError                conversion failed (``path``)
    └── BackendError                building the engine for a backend preset (``preset``)
        ├── ToolchainMissing        the preflight found missing pieces (``missing``)
        └── BuildFailed             the build ran and failed (``error_line``, ``log_path``)

Messages are made where the error is raised, short and actionable; the edges (CLI, HTTP)
only choose an exit code or a status from the class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class SdcppError(Exception):
    """Base class: every error the package raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as class, message and data (the attributes), whatever ``__init__`` takes, so
        an error crosses the worker process boundary as itself."""
        return _rebuild, (type(self), self.args, dict(self.__dict__))


def _rebuild(cls: type[SdcppError], args: tuple[Any, ...], state: dict[str, Any]) -> SdcppError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class InvalidRequest(SdcppError):
    """A request field has a value we cannot use."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class InvalidImage(InvalidRequest):
    """An input image is missing, undecodable, too large or the wrong size."""

    def __init__(self, field: str, message: str, path: str | Path | None = None) -> None:
        super().__init__(field, message)
        self.path = None if path is None else str(path)


class UnknownName(InvalidRequest):
    """A name (LoRA, model, sampler, scheduler, …) that matches nothing known."""

    def __init__(
        self, field: str, name: str, choices: list[str] | None = None, hint: str = ""
    ) -> None:
        import difflib

        close = difflib.get_close_matches(name, choices or [], n=3, cutoff=0.6)
        if not close:  # case and separators: sd-turbo ~ SD_Turbo
            fold = {c.lower().replace("-", "_"): c for c in choices or []}
            close = [fold[k] for k in difflib.get_close_matches(
                name.lower().replace("-", "_"), list(fold), n=3, cutoff=0.6)]  # fmt: skip
        text = f"unknown {field} '{name}'"
        if close:
            text += f"; did you mean {' or '.join(close)}?"
        if hint:
            text += f"; {hint}"
        if choices:
            shown = ", ".join(choices[:12]) + (", …" if len(choices) > 12 else "")
            text += f" (known: {shown})"
        super().__init__(field, text)
        self.name = name
        self.choices = list(choices or [])
        self.close = close


class ModelError(SdcppError):
    """A problem with a model file or folder."""

    def __init__(self, path: str | Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = str(path)
        self.reason = message


class InvalidModelFile(ModelError):
    """The file's header is unreadable, truncated, corrupt or absurd."""


class UnsupportedModel(ModelError):
    """The file is readable but is nothing the engine can run in the asked role."""


class MissingComponent(ModelError):
    """The model needs a component (VAE, text encoder, …) that was not found."""

    def __init__(
        self,
        path: str | Path,
        kind: str,
        message: str,
        looked_for: list[str] | None = None,
        hint: str | None = None,
    ) -> None:
        text = message + (f"; try: {hint}" if hint else "")
        super().__init__(path, text)
        self.kind = kind
        self.looked_for = list(looked_for or [])
        self.hint = hint


class EngineError(SdcppError):
    """The native engine refused or failed."""


class EngineNotInstalled(EngineError):
    """The stable-diffusion-cpp-python bindings are missing or broken."""


class Cancelled(EngineError):
    """The job was cancelled before it finished."""


class WorkerDied(EngineError):
    """The engine worker process ended in the middle of a call (native crash, ``kill -9``,
    out of memory)."""

    def __init__(self, exitcode: int | None) -> None:
        how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"{exitcode}"
        super().__init__(f"the engine process died (exit {how}); the job was not finished")
        self.exitcode = exitcode


class EngineAborted(EngineError):
    """A native assertion (``GGML_ASSERT``) ended the engine's process; ``cause`` names what
    most likely did it (the add-on or model file of the running call)."""

    def __init__(self, assertion: str, doing: str, cause: str) -> None:
        super().__init__(
            f"the engine aborted while {doing}: {assertion}; likely cause: {cause}; "
            "nothing was written"
        )
        self.assertion = assertion
        self.doing = doing
        self.cause = cause


class QueueError(SdcppError):
    """The cluster's PostgreSQL queue cannot be reached or is not set up (``sdcpp queue``)."""


class OutputExists(SdcppError):
    """Refusing to overwrite an existing file."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(f"{path}: already exists; pass --force to overwrite")
        self.path = str(path)


class StorageFull(SdcppError):
    """A write failed because the disk (or the quota) holding ``path`` is full."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(
            f"no space left on the disk holding {path}: free some space there (or point "
            "--data-dir at a larger disk)"
        )
        self.path = str(path)


class DoesNotFit(SdcppError):
    """A job would need more memory than the budget, whatever switches are chosen."""

    #: the request field a refusal names: the model does not fit this budget
    field = "model"

    def __init__(
        self,
        message: str,
        budget_bytes: int = 0,
        needed_bytes: int = 0,
        estimate: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.budget_bytes = budget_bytes
        self.needed_bytes = needed_bytes
        self.estimate = dict(estimate or {})

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message, self.budget_bytes, self.needed_bytes, self.estimate))


class ConvertError(SdcppError):
    """A conversion failed; nothing was written at the destination."""

    def __init__(self, path: str | Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = str(path)
        self.reason = message


class BackendError(SdcppError):
    """Building the engine bindings for a backend preset went wrong."""

    def __init__(self, preset: str, message: str) -> None:
        super().__init__(message)
        self.preset = preset


class ToolchainMissing(BackendError):
    """The preset's preflight found pieces missing; nothing was built."""

    def __init__(self, preset: str, missing: list[str]) -> None:
        super().__init__(
            preset,
            f"the {preset} build needs {len(missing)} missing piece(s) (listed above); "
            "install them, or pass --force to build anyway",
        )
        self.missing = list(missing)


class BuildFailed(BackendError):
    """The build ran and failed; ``error_line`` is its last compiler error."""

    def __init__(self, preset: str, code: int, error_line: str, log_path: str | Path) -> None:
        super().__init__(
            preset, f"the {preset} build failed (exit {code}): {error_line}; full log: {log_path}"
        )
        self.code = code
        self.error_line = error_line
        self.log_path = str(log_path)
