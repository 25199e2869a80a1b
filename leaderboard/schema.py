"""The leaderboard's SQLite schema: its columns, and the migrations from every earlier version."""

from __future__ import annotations

from .row import COLUMNS

SCHEMA_VERSION = 8
"""Schema version stored in ``PRAGMA user_version``."""

JSON_COLUMNS = {"params", "members", "provenance", "data"}
"""Columns stored as JSON text."""

SQL_TYPES = {
    "id": "TEXT PRIMARY KEY",
    "kind": "TEXT NOT NULL",
    "recipe": "TEXT NOT NULL",
    "run_dir": "TEXT NOT NULL",
    "state": "TEXT NOT NULL",
    "backbone": "TEXT",
    "params": "TEXT NOT NULL",
    "val_accuracy": "REAL",
    "val_loss": "REAL",
    "metric": "TEXT",
    "metric_value": "REAL",
    "epochs": "INTEGER",
    "seconds": "REAL",
    "submission": "TEXT",
    "members": "TEXT NOT NULL",
    "trial_number": "INTEGER",
    "created_at": "TEXT NOT NULL",
    "public_score": "REAL",
    "provenance": "TEXT NOT NULL DEFAULT '{}'",
    "folds": "INTEGER",
    "fold_mean": "REAL",
    "fold_std": "REAL",
    "best_epoch": "INTEGER",
    "estimate": "REAL",
    "profile": "TEXT",
    "data": "TEXT NOT NULL DEFAULT '{}'",
    "replaced_by": "TEXT",
}
"""Each column's SQL type."""

ADDED_COLUMNS: dict[int, tuple[str, ...]] = {
    2: ("provenance",),
    3: ("folds", "fold_mean", "fold_std"),
    5: ("best_epoch",),
    6: ("estimate",),
    7: ("profile",),
    8: ("data", "replaced_by"),
}
"""The columns each schema version added to the first one."""

_LATER = {name for names in ADDED_COLUMNS.values() for name in names}

_SCHEMA_V1 = [
    "CREATE TABLE IF NOT EXISTS entries ("
    + ", ".join(f"{name} {SQL_TYPES[name]}" for name in COLUMNS if name not in _LATER)
    + ")",
    "CREATE INDEX IF NOT EXISTS entries_run_dir ON entries (run_dir)",
    "CREATE INDEX IF NOT EXISTS entries_recipe ON entries (recipe)",
]

_KIND_CHANGES: dict[int, list[str]] = {
    # plain runs were "trial" rows without a trial number
    4: ["UPDATE entries SET kind = 'run' WHERE kind = 'trial' AND trial_number IS NULL"],
    # a trial's seed copies (RUN/t0003-s1) were "trial" rows
    5: ["UPDATE entries SET kind = 'seed' WHERE kind = 'trial' AND id GLOB '*/t[0-9]*-s[0-9]*'"],
}
"""Rows that a version gave a kind of their own."""


def _added(version: int) -> list[str]:
    return [
        f"ALTER TABLE entries ADD COLUMN {name} {SQL_TYPES[name]}"
        for name in ADDED_COLUMNS.get(version, ())
    ]


MIGRATIONS: dict[int, list[str]] = {
    version: [
        *(_SCHEMA_V1 if version == 1 else ()),
        *_added(version),
        *_KIND_CHANGES.get(version, ()),
    ]
    for version in range(1, SCHEMA_VERSION + 1)
}
"""Statements that bring a database from version ``n - 1`` to version ``n``."""
