"""Map the error tree to one line on stderr and an exit code (the CLI's only error handling)."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

import typer

from sdcpp_service import errors

P = ParamSpec("P")
R = TypeVar("R")

#: Ordered: the first matching class decides the exit code.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (errors.Cancelled, 130),
    (errors.InvalidRequest, 2),
    (errors.OutputExists, 3),
    (errors.MissingComponent, 4),
    (errors.ModelError, 4),
    (errors.ConvertError, 5),
    (errors.DoesNotFit, 9),
    (errors.EngineNotInstalled, 6),
    (errors.EngineError, 7),
    (errors.BackendError, 8),
    (errors.SdcppError, 1),
)


def exit_code_for(exc: BaseException) -> int:
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return 1


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one error line and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


#: Exit status when the reader of stdout went away (``sdcpp … | head``): a process killed by
#: SIGPIPE reports 128 + 13, as ``yes | head`` does.
CLOSED_PIPE = 141


def closed_pipe() -> typer.Exit:
    """stdout's reader is gone: point stdout at /dev/null (so the interpreter's last flush
    cannot fail again) and end quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return typer.Exit(CLOSED_PIPE)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator for commands: known errors become one line; others too unless SDCPP_DEBUG."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except BrokenPipeError:
            raise closed_pipe() from None
        except KeyboardInterrupt:
            typer.echo("error: interrupted", err=True)
            raise typer.Exit(130) from None
        except errors.SdcppError as exc:
            if os.environ.get("SDCPP_DEBUG", "") not in ("", "0"):
                traceback.print_exc(file=sys.stderr)
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exit_code_for(exc)) from None
        except OSError as exc:
            if os.environ.get("SDCPP_DEBUG", "") not in ("", "0"):
                traceback.print_exc(file=sys.stderr)
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            typer.echo(f"error: {where}{exc.strerror or exc}", err=True)
            raise typer.Exit(1) from None
        except Exception as exc:  # a bug: still one line unless asked for the traceback
            if os.environ.get("SDCPP_DEBUG", "") not in ("", "0"):
                raise
            typer.echo(
                f"error: internal error: {type(exc).__name__}: {exc} (SDCPP_DEBUG=1 shows details)",
                err=True,
            )
            raise typer.Exit(70) from None

    return wrapper
