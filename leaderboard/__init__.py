"""The local leaderboard: its SQLite store and its views."""

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
