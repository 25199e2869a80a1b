"""Errors the user can act on: each prints as one line, without a traceback."""

from __future__ import annotations

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
