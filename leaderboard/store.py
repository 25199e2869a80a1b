"""The leaderboard's SQLite store: one database per workspace, every run's rows.

A row (:mod:`.row`) is one trained model or one ensemble; its kind is the
kind of its :class:`~toolkit.runs.model_key.ModelKey` (a plain run, a trial, a seed
copy, a bag, a refit, an ensemble, a reproduction). Several worker processes
may write to the same database at once: the store uses WAL mode, a busy
timeout and one short ``BEGIN IMMEDIATE`` transaction per write, and opens a
fresh connection per operation so a ``Leaderboard`` survives ``fork``. The
schema and its migrations are :mod:`.schema`.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import os
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from toolkit.disk import DiskFullError, is_disk_full
from toolkit.metrics import METRICS

from .row import COLUMNS, KINDS, MODEL_KINDS, STATES, LeaderboardError, Row
from .schema import JSON_COLUMNS, MIGRATIONS, SCHEMA_VERSION

BUSY_TIMEOUT_S = 60.0
"""How long a writer waits for another process's transaction before giving up."""


def normalize_run_dir(run_dir: Path | str) -> str:
    """The absolute, symlink-resolved form under which a run directory is stored."""
    return str(Path(run_dir).expanduser().resolve())


class Leaderboard:
    """The SQLite leaderboard at ``path``; the file and schema are created on first write."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).expanduser()
        self._ready = False

    def __repr__(self) -> str:
        return f"Leaderboard({str(self.path)!r})"

    def exists(self) -> bool:
        """Whether the database file exists (reads of a missing file find no rows)."""
        return self.path.is_file()

    # ----------------------------------------------------------------- plumbing
    @contextlib.contextmanager
    def _connect(self, write: bool) -> Iterator[sqlite3.Connection]:
        """A connection; for ``write`` inside one ``BEGIN IMMEDIATE`` transaction."""
        if write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise LeaderboardError(f"cannot open leaderboard {self.path}: {exc}") from exc
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if not self._ready:
                self._prepare(conn, create=write)
            if write:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            else:
                yield conn
        except sqlite3.DatabaseError as exc:
            if is_disk_full(exc):
                raise DiskFullError(self.path.parent) from None
            raise LeaderboardError(f"leaderboard {self.path} is unusable: {exc}") from exc
        finally:
            conn.close()

    def _prepare(self, conn: sqlite3.Connection, create: bool) -> None:
        """Switch to WAL and create or migrate the schema (only when ``create``)."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LeaderboardError(
                f"leaderboard {self.path} has schema version {version}, newer than this "
                f"toolkit's {SCHEMA_VERSION}; upgrade the toolkit"
            )
        if version == SCHEMA_VERSION:
            self._ready = True
            return
        if not create:
            return  # an empty or older database is read as having no rows
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")  # serialises two processes creating the file at once
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[target]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self._ready = True

    def _has_table(self, conn: sqlite3.Connection) -> bool:
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'entries'"
        ).fetchone()
        return found is not None

    def _fetch(self, where: str = "", args: tuple[Any, ...] = ()) -> list[Row]:
        if not self.exists():
            return []
        with self._connect(write=False) as conn:
            if not self._has_table(conn):
                return []
            cursor = conn.execute(f"SELECT * FROM entries {where}", args)
            return [_from_sql(r) for r in cursor.fetchall()]

    # ------------------------------------------------------------------- writes
    def upsert(self, row: Row) -> None:
        """Insert ``row``, or replace the row with the same id.

        ``run_dir`` is stored absolute and resolved. An empty ``created_at`` is
        set to now on insert and keeps the stored value on update.
        """
        values = _to_sql(_validated(row))
        with self._connect(write=True) as conn:
            if not values["created_at"]:
                old = conn.execute(
                    "SELECT created_at FROM entries WHERE id = ?", (row.id,)
                ).fetchone()
                values["created_at"] = old[0] if old else _now()
            names = ", ".join(COLUMNS)
            marks = ", ".join("?" for _ in COLUMNS)
            conn.execute(
                f"INSERT OR REPLACE INTO entries ({names}) VALUES ({marks})",
                tuple(values[c] for c in COLUMNS),
            )

    def record_score(self, id: str, score: float) -> Row:
        """Store the public (Kaggle) score of row ``id``'s submission; return the row."""
        score = float(score)
        if not math.isfinite(score):
            raise LeaderboardError(f"public score for {id!r} must be a finite number, not {score}")
        with self._connect(write=True) as conn:
            changed = conn.execute(
                "UPDATE entries SET public_score = ? WHERE id = ?", (score, id)
            ).rowcount
        if not changed:
            raise self._unknown(id)
        return self.get(id)

    def supersede(self, submission: Path | str, by: str) -> int:
        """Rows other than ``by`` whose submission is the file ``submission`` (written again by
        row ``by``'s run): their submission is cleared and ``replaced_by`` says ``by``.

        Returns how many rows changed.
        """
        keys = _run_dir_keys(submission)
        marks = ", ".join("?" for _ in keys)
        with self._connect(write=True) as conn:
            return conn.execute(
                f"UPDATE entries SET submission = NULL, replaced_by = ? "
                f"WHERE submission IN ({marks}) AND id != ?",
                (by, *keys, by),
            ).rowcount

    def mark_stale_running(self, run_dir: Path | str, state: str = "interrupted") -> int:
        """Set rows of ``run_dir`` still ``running`` (left by a killed process) to ``state``.

        Returns how many rows changed.
        """
        if state not in STATES or state == "running":
            valid = ", ".join(s for s in STATES if s != "running")
            raise LeaderboardError(f"cannot mark stale rows as {state!r}; use one of {valid}")
        keys = _run_dir_keys(run_dir)
        marks = ", ".join("?" for _ in keys)
        with self._connect(write=True) as conn:
            return conn.execute(
                f"UPDATE entries SET state = ? WHERE state = 'running' AND run_dir IN ({marks})",
                (state, *keys),
            ).rowcount

    # -------------------------------------------------------------------- reads
    def ids(self) -> list[str]:
        """Every row id, sorted."""
        return sorted(r.id for r in self._fetch())

    def run_dirs(self) -> list[str]:
        """Every run directory that has rows, sorted."""
        return sorted({r.run_dir for r in self._fetch()})

    def get(self, id: str) -> Row:
        """The row with ``id``; an unknown id raises naming the closest ids."""
        found = self._fetch("WHERE id = ?", (id,))
        if not found:
            raise self._unknown(id)
        return found[0]

    def rows(
        self,
        run_dir: Path | str | None = None,
        recipe: str | None = None,
        kind: str | None = None,
        state: str | None = None,
        sort: str | None = None,
        descending: bool | None = None,
        top: int | None = None,
        profile: str | None = None,
    ) -> list[Row]:
        """Rows matching the filters, best first, each ensemble above its members.

        The default order is each row's metric, best first (``metric_value`` in
        its metric's direction). ``sort`` names any column; ``descending=None``
        means best first for score columns (``val_accuracy`` and
        ``public_score`` descending, ``metric_value`` by each row's metric
        direction, ``val_loss`` ascending) and ascending otherwise. NULLs always
        come last. ``run_dir`` may be relative to the current directory. ``top``
        keeps the best ``top`` models of each run directory (the best ensembles
        with ``kind="ensemble"``); ensembles are otherwise always kept. ``profile`` keeps the
        models of one profile and the ensembles with a member of it.
        """
        if kind is not None and kind not in KINDS:
            raise LeaderboardError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        if state is not None and state not in STATES:
            raise LeaderboardError(f"unknown state {state!r}; use one of {', '.join(STATES)}")
        if top is not None and top < 1:
            raise LeaderboardError(f"top must be at least 1, not {top}")
        check_column(sort)
        clauses: list[str] = []
        args: list[Any] = []
        if run_dir is not None:
            keys = _run_dir_keys(run_dir)
            clauses.append(f"run_dir IN ({', '.join('?' for _ in keys)})")
            args.extend(keys)
        for column, value in (("recipe", recipe), ("kind", kind), ("state", state)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if profile is not None:  # an ensemble's profile joins its members' with '+'
            joined = "instr('+' || profile || '+', ?) > 0"
            clauses.append(f"(profile = ? OR (kind = 'ensemble' AND {joined}))")
            args.extend([profile, f"+{profile}+"])
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        found = sort_rows(self._fetch(where, tuple(args)), sort, descending)
        if top is not None:
            limited = ("ensemble",) if kind == "ensemble" else MODEL_KINDS
            seen: dict[str, int] = {}
            kept = []
            for r in found:
                if r.kind in limited:
                    seen[r.run_dir] = seen.get(r.run_dir, 0) + 1
                    if seen[r.run_dir] > top:
                        continue
                kept.append(r)
            found = kept
        return ensembles_first(found)

    def _unknown(self, id: str) -> LeaderboardError:
        if not self.exists():
            return LeaderboardError(f"unknown id {id!r}: no leaderboard database at {self.path}")
        ids = self.ids()
        close = difflib.get_close_matches(id, ids, n=3, cutoff=0.5)
        if close:
            hint = f"closest: {', '.join(close)}"
        elif ids:
            hint = f"known ids include: {', '.join(ids[:3])}"
        else:
            hint = "the leaderboard is empty"
        return LeaderboardError(f"unknown leaderboard id {id!r} in {self.path}; {hint}")


# ------------------------------------------------------------------ ordering
def check_column(column: str | None, valid: Sequence[str] = COLUMNS) -> None:
    """Raise naming the closest and all valid columns if ``column`` is not one of ``valid``."""
    if column is not None and column not in valid:
        close = difflib.get_close_matches(column, valid, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise LeaderboardError(
            f"unknown column {column!r}; {hint}valid columns: {', '.join(valid)}"
        )


def sort_rows(
    rows: list[Row], sort: str | None = None, descending: bool | None = None
) -> list[Row]:
    """``rows`` ordered by column ``sort``, NULLs last, ties by id.

    The default is each row's own metric, best first (``metric_value`` in the
    direction :data:`toolkit.metrics.METRICS` gives its metric). With
    ``descending=None`` score columns sort best first (see :meth:`Leaderboard.rows`).
    """
    column = sort or "metric_value"
    check_column(column)
    by_id = sorted(rows, key=lambda r: r.id)
    present = [r for r in by_id if getattr(r, column) is not None]
    missing = [r for r in by_id if getattr(r, column) is None]

    if column == "metric_value" and descending is None:
        # best first whatever each row's metric direction: negate lower-is-better values
        def key(r: Row) -> Any:
            value = float(r.metric_value)  # type: ignore[arg-type]
            return METRICS[r.metric].goodness(value) if r.metric in METRICS else value

        return sorted(present, key=key, reverse=True) + missing

    if descending is None:
        descending = column in {"val_accuracy", "public_score"}

    def plain(r: Row) -> Any:
        value = getattr(r, column)
        if column in JSON_COLUMNS:
            return json.dumps(value, sort_keys=True, default=str)
        return value

    return sorted(present, key=plain, reverse=descending) + missing


def ensembles_first(rows: list[Row]) -> list[Row]:
    """``rows`` in the same order, except that each ensemble moves just above its first member."""
    ensembles_of: dict[str, list[Row]] = {}
    for r in rows:
        if r.kind == "ensemble":
            for member_id in r.member_weights():
                ensembles_of.setdefault(member_id, []).append(r)
    out: list[Row] = []
    placed: set[str] = set()
    for r in rows:
        for ensemble in ensembles_of.get(r.id, []):
            if ensemble.id not in placed:
                placed.add(ensemble.id)
                out.append(ensemble)
        if r.id not in placed:
            placed.add(r.id)
            out.append(r)
    return out


# ------------------------------------------------------------- conversions
def _run_dir_keys(run_dir: Path | str) -> list[str]:
    """Stored forms a run directory argument may match: resolved and plain absolute."""
    path = Path(run_dir).expanduser()
    return sorted({normalize_run_dir(path), os.path.abspath(path)})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _validated(row: Row) -> Row:
    if not isinstance(row.id, str) or not row.id.strip():
        raise LeaderboardError(f"a leaderboard row needs a non-empty id, got {row.id!r}")
    if row.kind not in KINDS:
        raise LeaderboardError(
            f"row {row.id!r}: unknown kind {row.kind!r}; use one of {', '.join(KINDS)}"
        )
    if row.state not in STATES:
        raise LeaderboardError(
            f"row {row.id!r}: unknown state {row.state!r}; use one of {', '.join(STATES)}"
        )
    if not isinstance(row.params, dict):
        raise LeaderboardError(f"row {row.id!r}: params must be a dict")
    for member in row.members:
        if not isinstance(member, dict) or not isinstance(member.get("id"), str):
            raise LeaderboardError(
                f"row {row.id!r}: each member must be a dict with a string 'id', got {member!r}"
            )
    return row


def _to_sql(row: Row) -> dict[str, Any]:
    values = row.to_dict()
    values["run_dir"] = normalize_run_dir(row.run_dir)
    for name in JSON_COLUMNS:
        values[name] = json.dumps(values[name], default=str)
    floats = ("val_accuracy", "val_loss", "metric_value", "seconds", "public_score")
    for name in (*floats, "fold_mean", "fold_std", "estimate"):
        if values[name] is not None:
            values[name] = float(values[name])
    for name in ("epochs", "trial_number", "folds"):
        if values[name] is not None:
            values[name] = int(values[name])
    return values


def _from_sql(record: sqlite3.Row) -> Row:
    # a database of an older schema, read before any write migrates it, lacks newer columns
    values = {name: record[name] for name in COLUMNS if name in record.keys()}  # noqa: SIM118
    for name in JSON_COLUMNS:
        if name in values:
            values[name] = json.loads(values[name])
    return Row(**values)
