"""A native abort ends the process in one line that names the likely cause.

ggml's ``GGML_ASSERT`` calls ``ggml_abort``, which prints the assertion and a gdb backtrace
(~190 lines) and calls ``abort()``: a user sees a core dump, a server sees "exit signal 6".
``ggml_set_abort_callback`` (exported by the bindings' library) lets us take that call instead:
:func:`install` registers a callback that turns the assertion and what the engine was doing
(:func:`running`: loading, generating…, with which model and add-ons) into an
:class:`~sdcpp_service.errors.EngineAborted`, hands it to the process's reporter (the CLI: one
``error:`` line on stderr; a server worker: the error over its pipe, so the job names the cause),
then ends the process with ``os._exit`` — the engine's state is not recoverable after a failed
assertion, and the callback must not return (ggml would ``abort()``).

Aborts that do not go through ``ggml_abort`` (a segfault, a C++ exception) still end the process
as before; the server reports those as :class:`~sdcpp_service.errors.WorkerDied`.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdcpp_service.errors import EngineAborted

#: Exit status after a reported abort: the CLI's code for an engine error.
ABORT_EXIT = 7

Reporter = Callable[[EngineAborted], None]


@dataclass(frozen=True)
class Doing:
    """What the engine is doing now: ``action`` (``loading``…), its files by slot, LoRAs."""

    action: str
    files: Mapping[str, str]
    loras: tuple[str, ...] = ()


def print_line(error: EngineAborted) -> None:
    """The CLI's reporter: one ``error:`` line on stderr."""
    try:
        if sys.stderr.isatty():  # a progress bar may own the line and have hidden the cursor
            sys.stderr.write("\r\x1b[2K\x1b[?25h")
        sys.stderr.write(f"error: {error}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class _State:
    def __init__(self) -> None:
        self.doing: Doing | None = None
        self.reporter: Reporter = print_line
        self.callback: Any = None


_STATE = _State()


def set_reporter(reporter: Reporter) -> None:
    """Who is told of an abort before the process ends (default: :func:`print_line`)."""
    _STATE.reporter = reporter


@contextmanager
def running(action: str, files: Mapping[str, str], loras: Sequence[str] = ()) -> Iterator[None]:
    """Mark a native call, so an abort inside it can name its likely cause."""
    before = _STATE.doing
    _STATE.doing = Doing(action, dict(files), tuple(loras))
    try:
        yield
    finally:
        _STATE.doing = before


def likely_cause(doing: Doing | None) -> str:
    """The add-on (LoRA, ControlNet, PhotoMaker) of the running call, else its model file."""
    if doing is None:
        return "unknown (no engine call was marked)"
    files = doing.files
    main = Path(files.get("model") or files.get("diffusion_model") or "?").name
    if doing.loras:
        names = ", ".join(Path(p).name for p in doing.loras)
        return (
            f"the LoRA {names}, which may not fit {main} (remove it, or use a LoRA of its family)"
        )
    for slot, label in (("control_net", "ControlNet"), ("photo_maker", "PhotoMaker model")):
        if files.get(slot):
            name = Path(files[slot]).name
            return f"the {label} {name}, which may not fit {main} (use one made for its family)"
    others = [Path(p).name for s, p in files.items() if s not in ("model", "diffusion_model")]
    if others:
        return f"the model {main} or a file loaded with it ({', '.join(others)})"
    return f"the model {main}: its tensors are not what the engine expects for its architecture"


def _on_abort(message: bytes | None) -> None:
    text = (message or b"").decode("utf-8", "replace").strip()
    where, sep, what = text.partition(": ")
    assertion = f"{what} ({Path(where).name})" if sep and what else text or "ggml_abort"
    doing = _STATE.doing
    error = EngineAborted(assertion, doing.action if doing else "running", likely_cause(doing))
    try:
        _STATE.reporter(error)
    finally:
        os._exit(ABORT_EXIT)


def install(lib: Any) -> None:
    """Take ggml's aborts in this process (idempotent). ``lib``: the bindings' ctypes CDLL."""
    if _STATE.callback is not None:
        return
    setter = getattr(lib, "ggml_set_abort_callback", None)
    if setter is None:  # an engine build without it: aborts stay native
        return
    kind = ctypes.CFUNCTYPE(None, ctypes.c_char_p)
    setter.argtypes = [kind]
    setter.restype = ctypes.c_void_p
    _STATE.callback = kind(_on_abort)
    setter(_STATE.callback)
