"""The local leaderboard: its SQLite store and its views.

The package is callable: ``toolkit.leaderboard(RUN_DIR_OR_DB)`` is
:func:`toolkit.api.leaderboard` (the rows as a DataFrame), so that the name means the
same whether or not this package was imported first.
"""

import sys
import types
from typing import Any

from .location import DB_ENV, DEFAULT_DB, default_db_path
from .row import COLUMNS, KINDS, STATES, LeaderboardError, Row
from .store import Leaderboard
from .view import render_table, to_csv, to_json

__all__ = [
    "COLUMNS",
    "DB_ENV",
    "DEFAULT_DB",
    "KINDS",
    "STATES",
    "Leaderboard",
    "LeaderboardError",
    "Row",
    "default_db_path",
    "render_table",
    "to_csv",
    "to_json",
]


class _CallablePackage(types.ModuleType):
    """This package, callable as :func:`toolkit.api.leaderboard`."""

    def __call__(self, source: Any) -> Any:
        """The leaderboard rows of a run folder or a database as a DataFrame
        (:func:`toolkit.api.leaderboard`)."""
        from toolkit.api import leaderboard

        return leaderboard(source)


sys.modules[__name__].__class__ = _CallablePackage
