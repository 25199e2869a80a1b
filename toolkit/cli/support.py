"""What every ``toolkit`` command shares: its consoles, one-line errors and the traceback
file, and help that shows no value beside a flag."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from toolkit.errors import USAGE_ERROR, ToolkitError, error_line, write_traceback
from toolkit.registry.guard import PluginError

CLOSED_PIPE = 141
"""Exit status when the reader of our output went away (``| head``): 128 + SIGPIPE, what a
shell reports for ``git log | head`` or ``ls | head``."""


class ClosedPipe(KeyboardInterrupt):
    """stdout or stderr is a pipe whose reader has gone: the command ends quietly. An
    interrupt, so that work in progress stops as on Ctrl-C (finished work is kept)."""


class _PipeGuard:
    """A stream whose write or flush into a closed pipe raises :class:`ClosedPipe`."""

    closed = False
    """Whether a write found its pipe closed (typer turns an interrupt into exit 130)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            _PipeGuard.closed = True
            raise ClosedPipe from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            _PipeGuard.closed = True
            raise ClosedPipe from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_pipes() -> None:
    """Make a closed stdout or stderr pipe end the command as :class:`ClosedPipe`."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _PipeGuard):
            setattr(sys, name, _PipeGuard(stream))


def pipe_closed() -> bool:
    """Whether stdout or stderr was found to be a closed pipe."""
    return _PipeGuard.closed


def silence_closed_pipe() -> int:
    """After :class:`ClosedPipe`: point stdout and stderr at the null device, so that nothing
    more is written (not even Python's complaint at exit); the exit status to end with."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    return CLOSED_PIPE


out = Console(markup=False, highlight=False, soft_wrap=True)
err = Console(stderr=True)


class _FlagsTakeNoValue:
    """Help that shows no value type beside a flag (typer would print ``<bool>``)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:  # the help option included
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class Group(_FlagsTakeNoValue, TyperGroup):
    """The ``toolkit`` group."""


class Command(_FlagsTakeNoValue, TyperCommand):
    """A ``toolkit`` command."""


def status(message: str) -> None:
    """One line about the run on stderr (stdout keeps the results), unless progress is off."""
    from toolkit.progress import progress_enabled

    if progress_enabled():
        err.print(message, markup=False, highlight=False, soft_wrap=True)


def stop_on_sigterm() -> None:
    """Make SIGTERM stop the process as Ctrl-C does: rows end ``interrupted``, run folders
    stay whole."""
    import signal

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def fail(message: str, code: int = USAGE_ERROR) -> None:
    """Print one error line to stderr and exit."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def friendly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the user's errors into one line and an exit code, never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ToolkitError as exc:
            if isinstance(exc, PluginError):  # a bug in a plugin: its author needs the trace
                fail(f"{exc} (traceback in {write_traceback(exc)})", exc.exit_code)
            fail(str(exc), exc.exit_code)
        except ClosedPipe:
            raise typer.Exit(silence_closed_pipe()) from None
        except KeyboardInterrupt:
            err.print("interrupted: finished clips and trials are kept; run again to resume")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - an unexpected failure: one line, trace in a file
            from toolkit.disk import DiskFullError, is_disk_full

            if is_disk_full(exc):  # a write no layer of ours wrapped (a library's database)
                fail(str(DiskFullError(None)), DiskFullError.exit_code)
            log = write_traceback(exc)
            fail(f"{error_line(exc, typed=True)} (traceback in {log})", 1)

    return wrapper


def click_classes(exc: BaseException) -> set[str]:
    """Class names in the exception's ancestry (typer may bundle its own click)."""
    return {cls.__name__ for cls in type(exc).__mro__}
