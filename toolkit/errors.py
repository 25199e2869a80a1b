"""Errors the user can act on: each prints as one line, without a traceback."""

from __future__ import annotations

from pathlib import Path

USAGE_ERROR = 2
"""Exit code for bad input (recipe, plugin, data); a failed run exits 1."""


class ToolkitError(Exception):
    """A problem with the user's input, explained in one line."""

    exit_code = USAGE_ERROR


class RecipeError(ToolkitError):
    """The recipe is invalid; the message names the file and the key path."""


class PluginLoadError(ToolkitError):
    """A plugin failed to import or to register; the message names its source."""


class DataError(ToolkitError):
    """The competition folder or one of its clips cannot be used."""


class SearchError(ToolkitError):
    """A search problem the user can act on (storage, study mismatch, no trial completed)."""


class ModelError(ToolkitError):
    """A trained model's files are missing or damaged; the message names the file."""


INTERRUPTED = "interrupted: finished clips and trials are kept; run again to resume"
"""What a run stopped by Ctrl-C (or SIGTERM) says: the CLI's line, :class:`RunInterrupted`'s."""


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C (or SIGTERM) after keeping its finished work: finished clips,
    trials and models stay, the run folder is whole, and running the recipe again resumes."""

    def __init__(self, message: str = INTERRUPTED) -> None:
        super().__init__(message)


def error_line(exc: BaseException, *, typed: bool = False) -> str:
    """The one-line text of ``exc``: the first non-blank line of its message, after the name
    of its type when ``typed`` (``ValueError: ...``); the type's name alone when the message
    is blank."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    if not text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text}" if typed else text


def error_at(where: object, problem: BaseException | str, *, typed: bool = False) -> str:
    """A problem after the file or key path it is about: ``WHERE: TEXT``, TEXT an exception's
    one-line text (:func:`error_line`) or the text given; the text alone when ``where`` is
    ``None``."""
    text = problem if isinstance(problem, str) else error_line(problem, typed=typed)
    return text if where is None else f"{where}: {text}"


def write_traceback(exc: BaseException) -> Path:
    """Save the exception's traceback to a temporary log file and return its path (what a
    one-line error points at, instead of printing the traceback)."""
    import tempfile
    import traceback

    fd, name = tempfile.mkstemp(prefix="toolkit-error-", suffix=".log")
    with open(fd, "w") as handle:
        handle.write("".join(traceback.format_exception(exc)))
    return Path(name)
