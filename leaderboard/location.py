"""Which leaderboard database to read: ``--db``, the environment's, the run's, the workspace's."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DB = Path("runs") / "leaderboard.db"
"""Workspace database, relative to the current directory."""

DB_ENV = "TOOLKIT_LEADERBOARD"
"""Environment variable naming the workspace database, overriding :data:`DEFAULT_DB`."""

RUN_DB_NAME = "leaderboard.db"
"""A run directory may hold its own database (or a symlink to the workspace one)."""


def default_db_path() -> Path:
    """The workspace database: ``$TOOLKIT_LEADERBOARD`` if set, else ``runs/leaderboard.db``."""
    env = os.environ.get(DB_ENV, "").strip()
    return Path(env) if env else DEFAULT_DB


def choose_db(run_dir: Path | None, db: Path | None) -> tuple[Path, bool]:
    """The database to read and whether to filter its rows by ``run_dir``."""
    if db is not None:
        return db, True
    if run_dir is None:
        return DEFAULT_DB, False
    own = run_dir / RUN_DB_NAME
    if own.is_file():
        # a regular file holds this run's rows only (the run may have moved); a
        # symlink points at a shared workspace database, so filter by run
        return own, own.is_symlink()
    # the workspace holding the run, which is DEFAULT_DB for runs/NAME from the workspace
    parent = run_dir.parent / RUN_DB_NAME
    return (parent if parent.is_file() else DEFAULT_DB), True
