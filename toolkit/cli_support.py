"""What every ``toolkit`` command shares: its consoles, one-line errors and the traceback
file, and help that shows no value beside a flag."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from toolkit.errors import USAGE_ERROR, ToolkitError
from toolkit.plugin_guard import PluginError

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
            fail(f"{type(exc).__name__}: {exc} (traceback in {log})".replace("\n", " "), 1)

    return wrapper


def write_traceback(exc: BaseException) -> Path:
    """Save the exception's traceback to a temporary log file and return its path."""
    import tempfile
    import traceback

    fd, name = tempfile.mkstemp(prefix="toolkit-error-", suffix=".log")
    with open(fd, "w") as handle:
        handle.write("".join(traceback.format_exception(exc)))
    return Path(name)


def click_classes(exc: BaseException) -> set[str]:
    """Class names in the exception's ancestry (typer may bundle its own click)."""
    return {cls.__name__ for cls in type(exc).__mro__}
