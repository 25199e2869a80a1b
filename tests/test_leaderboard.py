"""The local leaderboard: SQLite store, views and the ``leaderboard`` command."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import multiprocessing
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import typer
from click.testing import Result
from rich.cells import cell_len
from rich.console import Console
from typer.testing import CliRunner

from toolkit.errors import USAGE_ERROR, ToolkitError
from toolkit.leaderboard import COLUMNS, Leaderboard, LeaderboardError, Row
from toolkit.leaderboard.cli import leaderboard_command, register
from toolkit.leaderboard.columns import PARAMS_MIN_WIDTH, TABLE_COLUMNS
from toolkit.leaderboard.schema import SCHEMA_VERSION
from toolkit.leaderboard.view import plain_table, render_table, to_csv, to_json


def trial(id: str, run_dir: Path | str, **kw: Any) -> Row:
    """A complete trial row of recipe 'demo' unless ``kw`` says otherwise."""
    values: dict[str, Any] = {"recipe": "demo", "state": "complete", "backbone": "resnet18"}
    values.update(kw)
    return Row(id=id, kind="trial", run_dir=str(run_dir), **values)


def ensemble(id: str, run_dir: Path | str, members: dict[str, float], **kw: Any) -> Row:
    """A complete ensemble row over ``members`` (id -> weight)."""
    values: dict[str, Any] = {"recipe": "demo", "state": "complete"}
    values.update(kw)
    return Row(
        id=id,
        kind="ensemble",
        run_dir=str(run_dir),
        members=[{"id": m, "weight": w} for m, w in members.items()],
        **values,
    )


@pytest.fixture
def demo(tmp_path: Path) -> tuple[Leaderboard, Path, Path]:
    """A workspace db with run 'demo' (4 trials, 1 ensemble) and run 'other' (2 trials)."""
    runs = tmp_path / "runs"
    demo_dir, other_dir = runs / "demo", runs / "other"
    demo_dir.mkdir(parents=True)
    other_dir.mkdir()
    board = Leaderboard(runs / "leaderboard.db")
    # run 'demo' is ranked by accuracy, run 'other' by log loss (lower is better)
    acc = {"metric": "accuracy"}
    board.upsert(
        trial(
            "demo/t0000", demo_dir, val_accuracy=0.70, val_loss=0.9, seconds=30.0,
            metric_value=0.70, **acc,
        )
    )  # fmt: skip
    board.upsert(trial("demo/t0001", demo_dir, val_accuracy=None, state="failed", seconds=5.0))
    board.upsert(
        trial(
            "demo/t0002", demo_dir, val_accuracy=0.80, val_loss=0.6, seconds=90.0,
            metric_value=0.80, **acc,
        )
    )  # fmt: skip
    board.upsert(
        trial(
            "demo/t0003", demo_dir, val_accuracy=0.75, val_loss=0.7, state="pruned",
            metric_value=0.75, **acc,
        )
    )  # fmt: skip
    board.upsert(
        ensemble(
            "demo/e0001",
            demo_dir,
            {"demo/t0002": 0.625, "demo/t0000": 0.375},
            val_accuracy=0.79,
            metric_value=0.79,
            submission=str(demo_dir / "submission.csv"),
            **acc,
        )
    )
    loss = {"recipe": "final", "metric": "log_loss"}
    board.upsert(trial("other/t0000", other_dir, val_accuracy=0.77, metric_value=0.62, **loss))
    board.upsert(trial("other/t0001", other_dir, val_accuracy=0.72, metric_value=0.48, **loss))
    return board, demo_dir, other_dir


def ids(rows: list[Row]) -> list[str]:
    return [r.id for r in rows]


# ---------------------------------------------------------------------- store
def test_schema_created_on_first_write_with_wal_and_version(tmp_path: Path) -> None:
    path = tmp_path / "ws" / "runs" / "leaderboard.db"
    board = Leaderboard(path)
    assert board.rows() == []  # reading a missing store creates nothing
    assert not path.exists()
    board.upsert(trial("a/t0", tmp_path))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 8
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_version_1_database_is_read_then_migrated_keeping_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # a leaderboard written by the first release
        later = (
            "provenance",
            "folds",
            "fold_mean",
            "fold_std",
            "best_epoch",
            "estimate",
            "profile",
            "data",
            "replaced_by",
        )
        columns = [c for c in COLUMNS if c not in later]
        conn.execute(f"CREATE TABLE entries ({', '.join(columns)})")
        values = {c: None for c in columns}
        values.update(
            id="old/r1", kind="trial", recipe="old", run_dir=str(tmp_path), state="complete",
            params="{}", members="[]", created_at="2026-01-01T00:00:00+00:00", val_accuracy=0.5,
        )  # fmt: skip
        conn.execute(
            f"INSERT INTO entries VALUES ({', '.join('?' for _ in columns)})",
            [values[c] for c in columns],
        )
        conn.execute("PRAGMA user_version = 1")
    board = Leaderboard(path)
    assert board.get("old/r1").provenance == {}  # read before any write migrates it
    board.upsert(trial("old/r2", tmp_path, provenance={"metric": "accuracy"}))
    board.upsert(trial("old/r3", tmp_path, folds=5, fold_mean=0.8, fold_std=0.05))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert board.get("old/r1").val_accuracy == 0.5
    assert board.get("old/r1").folds is None
    assert board.get("old/r2").provenance == {"metric": "accuracy"}
    cv = board.get("old/r3")
    assert (cv.folds, cv.fold_mean, cv.fold_std) == (5, 0.8, 0.05)
    assert board.get("old/r1").kind == "run"  # a plain run: no trial number


OLD_COLUMNS = {
    1: "id TEXT PRIMARY KEY, kind TEXT NOT NULL, recipe TEXT NOT NULL, run_dir TEXT NOT NULL, "
    "state TEXT NOT NULL, backbone TEXT, params TEXT NOT NULL, val_accuracy REAL, val_loss REAL, "
    "metric TEXT, metric_value REAL, epochs INTEGER, seconds REAL, submission TEXT, "
    "members TEXT NOT NULL, trial_number INTEGER, created_at TEXT NOT NULL, public_score REAL",
}
OLD_COLUMNS[2] = OLD_COLUMNS[1] + ", provenance TEXT NOT NULL DEFAULT '{}'"
OLD_COLUMNS[3] = OLD_COLUMNS[2] + ", folds INTEGER, fold_mean REAL, fold_std REAL"
OLD_COLUMNS[4] = OLD_COLUMNS[3]
OLD_COLUMNS[5] = OLD_COLUMNS[4] + ", best_epoch INTEGER"
OLD_COLUMNS[6] = OLD_COLUMNS[5] + ", estimate REAL"
"""The ``entries`` table as each earlier schema version made it (4 only changed rows)."""


def old_database(path: Path, version: int, run_dir: Path) -> None:
    """A leaderboard as the release of schema ``version`` wrote it: a plain run (then kind
    'trial' without a trial number), a pruned trial and an ensemble of it."""
    rows = [
        {"id": "old/r1", "kind": "trial", "state": "complete", "val_accuracy": 0.5,
         "params": '{"lr": 0.01}', "public_score": 0.7, "provenance": '{"metric": "accuracy"}'},
        {"id": "old/t0002", "kind": "trial", "state": "pruned", "trial_number": 2,
         "metric": "log_loss", "metric_value": 1.25, "folds": 5, "fold_mean": 1.3},
        {"id": "old/t0003-s1", "kind": "trial", "state": "complete", "trial_number": 3},
        {"id": "old/e1", "kind": "ensemble", "state": "complete", "val_accuracy": 0.6,
         "members": '[{"id": "old/t0002", "weight": 1.0}]'},
    ]  # fmt: skip
    columns = [c.split()[0] for c in OLD_COLUMNS[version].split(", ")]
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"CREATE TABLE entries ({OLD_COLUMNS[version]})")
        conn.execute("CREATE INDEX entries_run_dir ON entries (run_dir)")
        conn.execute("CREATE INDEX entries_recipe ON entries (recipe)")
        for row in rows:
            if version >= 4 and row["id"] == "old/r1":  # version 4 wrote plain runs as runs
                row = {**row, "kind": "run"}
            if version >= 5 and row["id"] == "old/t0003-s1":  # version 5 wrote seed copies
                row = {**row, "kind": "seed"}
            values = {"recipe": "old", "run_dir": str(run_dir), "params": "{}", "members": "[]"}
            values.update(row, created_at="2026-01-01T00:00:00+00:00")
            kept = [c for c in columns if c in values]
            conn.execute(
                f"INSERT INTO entries ({', '.join(kept)}) VALUES ({', '.join('?' for _ in kept)})",
                [values[c] for c in kept],
            )
        conn.execute(f"PRAGMA user_version = {version}")
        conn.commit()


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5, 6])
def test_every_earlier_schema_version_is_migrated_on_the_first_write(
    tmp_path: Path, version: int
) -> None:
    path = tmp_path / f"v{version}.db"
    old_database(path, version, tmp_path)
    board = Leaderboard(path)
    old = ["old/e1", "old/r1", "old/t0002", "old/t0003-s1"]
    assert sorted(r.id for r in board.rows()) == old  # read as is
    board.upsert(trial("new/t0001", tmp_path, trial_number=1, provenance={"metric": "accuracy"},
                       folds=3, fold_mean=0.8, fold_std=0.1))  # fmt: skip
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert [c[1] for c in conn.execute("PRAGMA table_info(entries)")] == list(COLUMNS)
    rows = {r.id: r for r in Leaderboard(path).rows()}
    assert set(rows) == {*old, "new/t0001"}
    run, pruned, ensemble_row = rows["old/r1"], rows["old/t0002"], rows["old/e1"]
    assert (run.kind, pruned.kind, ensemble_row.kind) == ("run", "trial", "ensemble")
    assert rows["old/t0003-s1"].kind == "seed" and rows["old/t0003-s1"].best_epoch is None
    assert (run.val_accuracy, run.params, run.public_score) == (0.5, {"lr": 0.01}, 0.7)
    assert run.created_at == "2026-01-01T00:00:00+00:00"
    assert run.provenance == ({} if version == 1 else {"metric": "accuracy"})
    assert (pruned.state, pruned.trial_number, pruned.metric_value) == ("pruned", 2, 1.25)
    assert (pruned.folds, pruned.fold_mean) == ((None, None) if version < 3 else (5, 1.3))
    assert ensemble_row.member_weights() == {"old/t0002": 1.0}
    new = rows["new/t0001"]
    assert (new.provenance, new.folds, new.fold_mean, new.fold_std) == (
        {"metric": "accuracy"}, 3, 0.8, 0.1
    )  # fmt: skip
    assert [r.id for r in Leaderboard(path).rows(kind="run")] == ["old/r1"]


OLD_WRITER = """
import sys, time
from pathlib import Path
from toolkit.leaderboard.store import Leaderboard, Row
path, worker, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
board = Leaderboard(path)
Path(f"{go}.{worker}").touch()
while not go.exists():
    time.sleep(0.001)
for i in range(20):
    board.upsert(Row(id=f"w{worker}/t{i:04d}", kind="trial", recipe="new", run_dir="/runs/new",
                     state="complete", trial_number=i, val_accuracy=i / 20))
"""


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5, 6])
def test_two_processes_migrate_an_old_database_at_once(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.db"
    old_database(path, version, tmp_path)
    go = tmp_path / "go"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", OLD_WRITER, str(path), str(w), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(2)
    ]
    while not all(Path(f"{go}.{w}").exists() for w in range(2)):  # both opened the old file
        assert all(w.poll() is None for w in writers), [w.communicate() for w in writers]
        time.sleep(0.005)
    go.touch()  # now both write (and so migrate) at once
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert [c[1] for c in conn.execute("PRAGMA table_info(entries)")] == list(COLUMNS)
    rows = {r.id: r for r in Leaderboard(path).rows()}
    written = {f"w{w}/t{i:04d}" for w in range(2) for i in range(20)}
    assert set(rows) == written | {"old/r1", "old/t0002", "old/e1", "old/t0003-s1"}
    assert rows["old/r1"].kind == "run" and rows["old/t0002"].kind == "trial"
    assert rows["old/t0003-s1"].kind == "seed"


def test_upsert_inserts_then_updates_running_trial(tmp_path: Path) -> None:
    board = Leaderboard(tmp_path / "lb.db")
    run = tmp_path / "runs" / "demo"
    board.upsert(trial("demo/t0000", run, state="running", params={"lr": 0.001}, trial_number=0))
    first = board.get("demo/t0000")
    assert first.state == "running"
    assert first.created_at  # set by the store
    assert first.run_dir == str(run.resolve())
    assert first.params == {"lr": 0.001}

    board.upsert(
        trial(
            "demo/t0000",
            run,
            params={"lr": 0.001, "mixup": {"alpha": 0.2}},
            val_accuracy=0.8,
            val_loss=0.55,
            metric="accuracy",
            metric_value=0.8,
            epochs=24,
            seconds=12.5,
            trial_number=0,
        )
    )
    rows = board.rows()
    assert len(rows) == 1
    updated = rows[0]
    assert updated.state == "complete"
    assert updated.val_accuracy == 0.8
    assert updated.epochs == 24
    assert updated.params == {"lr": 0.001, "mixup": {"alpha": 0.2}}
    assert updated.created_at == first.created_at  # kept when the update leaves it empty
    assert updated.members == []

    board.upsert(trial("demo/t0000", run, created_at="2020-01-01T00:00:00+00:00"))
    assert board.get("demo/t0000").created_at == "2020-01-01T00:00:00+00:00"


def test_upsert_rejects_bad_kind_and_state(tmp_path: Path) -> None:
    board = Leaderboard(tmp_path / "lb.db")
    with pytest.raises(ToolkitError, match="unknown state 'done'"):
        board.upsert(trial("x", tmp_path, state="done"))
    with pytest.raises(ToolkitError, match="unknown kind 'model'"):
        board.upsert(Row(id="x", kind="model", recipe="r", run_dir=str(tmp_path), state="running"))


def test_get_unknown_id_names_closest_ids(demo: tuple[Leaderboard, Path, Path]) -> None:
    board, _, _ = demo
    with pytest.raises(LeaderboardError) as info:
        board.get("demo/t003")
    message = str(info.value)
    assert isinstance(info.value, ToolkitError)
    assert "\n" not in message
    assert "'demo/t003'" in message
    assert "demo/t0003" in message.split("closest:")[1]


def test_default_order_best_first_by_each_rows_metric_ensemble_above_members(
    demo: tuple[Leaderboard, Path, Path],
) -> None:
    board, _, _ = demo
    assert ids(board.rows()) == [
        "demo/e0001",  # 0.79 but above its member demo/t0002 (0.80)
        "demo/t0002",
        "demo/t0003",
        "demo/t0000",
        "other/t0001",  # log loss 0.48: better than 0.62, though its val accuracy is lower
        "other/t0000",
        "demo/t0001",  # no metric value: last
    ]
    # without the ensemble, the order is purely by each row's metric
    assert ids(board.rows(kind="trial")) == [
        "demo/t0002",
        "demo/t0003",
        "demo/t0000",
        "other/t0001",
        "other/t0000",
        "demo/t0001",
    ]
    assert ids(board.rows(run_dir=demo[2])) == ["other/t0001", "other/t0000"]
    # sorting by val_accuracy is still there on request
    assert ids(board.rows(run_dir=demo[2], sort="val_accuracy")) == ["other/t0000", "other/t0001"]


def test_filters(demo: tuple[Leaderboard, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    board, demo_dir, other_dir = demo
    assert set(ids(board.rows(run_dir=other_dir))) == {"other/t0000", "other/t0001"}
    monkeypatch.chdir(demo_dir.parent.parent)  # the workspace: run dirs relative to it
    assert len(board.rows(run_dir="runs/demo")) == 5
    assert len(board.rows(run_dir=Path("runs") / "demo" / ".." / "demo")) == 5
    assert board.rows(run_dir="runs/nope") == []
    assert ids(board.rows(recipe="final")) == ["other/t0001", "other/t0000"]
    assert ids(board.rows(kind="ensemble")) == ["demo/e0001"]
    assert ids(board.rows(state="pruned")) == ["demo/t0003"]
    assert ids(board.rows(run_dir="runs/demo", state="failed")) == ["demo/t0001"]
    with pytest.raises(LeaderboardError, match="unknown state"):
        board.rows(state="done")


def test_sort_by_columns(demo: tuple[Leaderboard, Path, Path]) -> None:
    board, _, _ = demo
    trials = {"kind": "trial"}
    # seconds: ascending by default, NULLs last either way
    assert ids(board.rows(sort="seconds", **trials))[:3] == [
        "demo/t0001",
        "demo/t0000",
        "demo/t0002",
    ]
    desc = ids(board.rows(sort="seconds", descending=True, **trials))
    assert desc[:3] == ["demo/t0002", "demo/t0000", "demo/t0001"]
    assert set(desc[3:]) == {"demo/t0003", "other/t0000", "other/t0001"}
    # val_loss: best (lowest) first
    assert ids(board.rows(sort="val_loss", **trials))[:3] == [
        "demo/t0002",
        "demo/t0003",
        "demo/t0000",
    ]
    # val_accuracy ascending on request, NULL still last
    asc = ids(board.rows(sort="val_accuracy", descending=False, **trials))
    assert asc[0] == "demo/t0000" and asc[-1] == "demo/t0001"
    assert ids(board.rows(sort="id"))[0] == "demo/e0001"


def test_sort_metric_value_best_first_by_metric_direction(tmp_path: Path) -> None:
    board = Leaderboard(tmp_path / "lb.db")
    board.upsert(trial("a", tmp_path, metric="log_loss", metric_value=0.9))
    board.upsert(trial("b", tmp_path, metric="log_loss", metric_value=0.4))
    board.upsert(trial("c", tmp_path, metric="log_loss", metric_value=None))
    assert ids(board.rows(sort="metric_value")) == ["b", "a", "c"]
    assert ids(board.rows(sort="metric_value", descending=True)) == ["a", "b", "c"]
    board.upsert(trial("d", tmp_path / "acc", metric="accuracy", metric_value=0.9))
    board.upsert(trial("e", tmp_path / "acc", metric="accuracy", metric_value=0.4))
    assert ids(board.rows(run_dir=tmp_path / "acc", sort="metric_value")) == ["d", "e"]


def test_unknown_sort_column_lists_valid_columns(demo: tuple[Leaderboard, Path, Path]) -> None:
    board, _, _ = demo
    with pytest.raises(ToolkitError) as info:
        board.rows(sort="accuracy")
    message = str(info.value)
    assert "'accuracy'" in message
    for column in ("val_accuracy", "public_score", "seconds", "created_at"):
        assert column in message


def test_top_limits_trials_per_run_and_keeps_ensemble_above_members(
    demo: tuple[Leaderboard, Path, Path],
) -> None:
    board, demo_dir, _ = demo
    assert ids(board.rows(top=1)) == ["demo/e0001", "demo/t0002", "other/t0001"]
    assert ids(board.rows(run_dir=demo_dir, top=2)) == ["demo/e0001", "demo/t0002", "demo/t0003"]
    # an ensemble ranked below its members is still shown above them
    board.upsert(ensemble("demo/e0002", demo_dir, {"demo/t0000": 1.0}, val_accuracy=0.5))
    top3 = ids(board.rows(run_dir=demo_dir, top=3))
    assert top3 == ["demo/e0001", "demo/t0002", "demo/t0003", "demo/e0002", "demo/t0000"]
    assert len(board.rows(run_dir=demo_dir, kind="ensemble", top=1)) == 1


def test_record_score(demo: tuple[Leaderboard, Path, Path]) -> None:
    board, _, _ = demo
    row = board.record_score("demo/e0001", 0.7956)
    assert row.public_score == 0.7956
    assert board.get("demo/e0001").public_score == 0.7956
    assert board.get("demo/e0001").submission.endswith("submission.csv")  # type: ignore[union-attr]
    assert ids(board.rows(sort="public_score"))[0] == "demo/e0001"
    with pytest.raises(LeaderboardError, match="demo/e0001"):
        board.record_score("demo/e001", 0.5)


def test_mark_stale_running(tmp_path: Path) -> None:
    board = Leaderboard(tmp_path / "lb.db")
    board.upsert(trial("a/t0", tmp_path / "a", state="running"))
    board.upsert(trial("a/t1", tmp_path / "a", state="complete"))
    board.upsert(trial("b/t0", tmp_path / "b", state="running"))
    assert board.mark_stale_running(tmp_path / "a") == 1
    states = {r.id: r.state for r in board.rows()}
    assert states == {"a/t0": "interrupted", "a/t1": "complete", "b/t0": "running"}
    assert board.mark_stale_running(tmp_path / "b", state="pruned") == 1
    assert board.get("b/t0").state == "pruned"
    with pytest.raises(LeaderboardError):
        board.mark_stale_running(tmp_path / "b", state="running")


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lb.db"
    Leaderboard(path).upsert(trial("a", tmp_path))
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(LeaderboardError, match="schema version 99"):
        Leaderboard(path).rows()


def _writer(path: str, worker: int, count: int) -> None:
    """Upsert ``count`` trials (each first as running, then complete) from one process."""
    board = Leaderboard(path)
    for i in range(count):
        row = trial(f"w{worker}/t{i:04d}", f"/runs/w{worker}", state="running", trial_number=i)
        board.upsert(row)
        row.state = "complete"
        row.val_accuracy = i / count
        board.upsert(row)


def test_two_processes_write_concurrently(tmp_path: Path) -> None:
    path = str(tmp_path / "runs" / "leaderboard.db")  # neither process finds it existing
    # fork where available (fast: no re-import); the store opens a connection per operation
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    workers = [ctx.Process(target=_writer, args=(path, w, 50)) for w in range(2)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=120)
    assert [p.exitcode for p in workers] == [0, 0]
    rows = Leaderboard(path).rows()
    assert len(rows) == 100
    assert {r.id for r in rows} == {f"w{w}/t{i:04d}" for w in range(2) for i in range(50)}
    assert all(r.state == "complete" for r in rows)


# ---------------------------------------------------------------------- views
def test_json_export_parses_back(demo: tuple[Leaderboard, Path, Path]) -> None:
    board, _, _ = demo
    rows = board.rows()
    data = json.loads(to_json(rows))
    assert [d["id"] for d in data] == ids(rows)
    assert set(data[0]) == set(COLUMNS)
    assert [Row.from_dict(d) for d in data] == rows
    assert json.loads(to_json([])) == []


def test_csv_export_parses_back(demo: tuple[Leaderboard, Path, Path]) -> None:
    board, _, _ = demo
    rows = board.rows()
    records = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert [r["id"] for r in records] == ids(rows)
    assert list(records[0]) == list(COLUMNS)
    ens = records[0]
    assert ens["kind"] == "ensemble"
    assert float(ens["val_accuracy"]) == 0.79
    assert json.loads(ens["members"]) == [
        {"id": "demo/t0002", "weight": 0.625},
        {"id": "demo/t0000", "weight": 0.375},
    ]
    failed = next(r for r in records if r["id"] == "demo/t0001")
    assert failed["val_accuracy"] == ""


def test_render_table_shows_ids_members_under_ensemble(
    demo: tuple[Leaderboard, Path, Path],
) -> None:
    board, _, _ = demo
    console = Console(record=True, width=200)
    render_table(board.rows(), console, title="Leaderboard")
    text = console.export_text()
    for row_id in ids(board.rows()):
        assert row_id in text
    lines = text.splitlines()
    ens = next(i for i, line in enumerate(lines) if "demo/e0001" in line)
    # both members follow the ensemble directly, indented with their weights
    assert "demo/t0002 ×0.625" in lines[ens + 1]
    assert "demo/t0000 ×0.375" in lines[ens + 2]
    assert "79.00%" in lines[ens]
    assert "demo/submission.csv" in lines[ens]
    # pruned trial demo/t0003 appears after the ensemble block
    assert text.index("demo/t0003") > text.index("demo/t0000 ×0.375")

    empty = Console(record=True, width=200)
    render_table([], empty)
    assert "no rows" in empty.export_text()


def test_render_table_colours_by_state(demo: tuple[Leaderboard, Path, Path]) -> None:
    board, _, _ = demo
    console = Console(record=True, width=200, force_terminal=True, color_system="standard")
    render_table(board.rows(run_dir=demo[1], kind="trial"), console)
    styled = console.export_text(styles=True)
    assert "\x1b[32mcomplete" in styled  # green
    assert "\x1b[31mfailed" in styled  # red
    assert "\x1b[31mdemo/t0001" in styled  # the whole failed row is red


def settings(lr: float, batch_size: int, backbone: str) -> dict[str, Any]:
    """The key params of a search trial: the sampled values, then the recipe's main settings."""
    return {
        "train.optimizer.lr": lr,
        "train.batch_size": batch_size,
        "model.backbone.name": backbone,
        "separator": "spleeter_2stems",
        "features": "mel_db",
        "augmenters": ["oversample", "time_mask", "mixup"],
        "optimizer": "sgd",
        "lr": lr,
        "scheduler": "multistep",
        "batch_size": batch_size,
        "seed": 0,
    }


def search_trial(
    number: str, run: Path, backbone: str, accuracy: float | None, loss: float | None, **kw: Any
) -> Row:
    """A finished trial of run ``demo-search`` (metric accuracy) with realistic cells."""
    values: dict[str, Any] = {
        "recipe": "demo-search",
        "backbone": backbone,
        "params": settings(0.003, 32, backbone),
        "val_accuracy": accuracy,
        "val_loss": loss,
        "metric": "accuracy",
        "metric_value": accuracy,
        "epochs": 24,
        "seconds": 754.2,
        "submission": str(run / "trials" / number / "submission.csv"),
    }
    values.update(kw)
    return trial(f"demo-search/{number}", run, **values)


@pytest.fixture
def search(tmp_path: Path) -> tuple[Leaderboard, Path]:
    """A search run (accuracy) with an ensemble of 3 trials, and a log_loss run with a score."""
    run = tmp_path / "runs" / "demo-search"
    board = Leaderboard(tmp_path / "runs" / "leaderboard.db")
    board.upsert(search_trial("t0000", run, "resnet18", 0.80, 0.5123))
    board.upsert(search_trial("t0001", run, "resnet10", 0.7725, 0.6034, seconds=512.0))
    board.upsert(search_trial("t0001-s1", run, "resnet10", 0.78, 0.5876))
    pruned = {"state": "pruned", "epochs": 3, "seconds": 88.1, "submission": None}
    board.upsert(search_trial("t0002", run, "resnet18", 0.6512, 0.912, **pruned))
    failed_params = {**settings(0.03, 64, "resnet18"), "error": "RuntimeError: out of memory"}
    unfinished = {"epochs": None, "seconds": None, "submission": None, "metric_value": None}
    board.upsert(
        search_trial(
            "t0003", run, "resnet18", None, None, state="failed", params=failed_params, **unfinished
        )
    )
    board.upsert(search_trial("t0004", run, "resnet10", None, None, state="running", **unfinished))
    board.upsert(
        ensemble(
            "demo-search/e0001",
            run,
            {"demo-search/t0000": 0.55, "demo-search/t0001": 0.3, "demo-search/t0001-s1": 0.15},
            recipe="demo-search",
            backbone="resnet18+resnet10",
            params={"size": 20, "init_best": 0, "seeds": 2, "candidates": 6},
            val_accuracy=0.815,
            val_loss=0.4988,
            metric="accuracy",
            metric_value=0.815,
            estimate=0.7925,
            seconds=2.3,
            submission=str(run / "submission.csv"),
        )
    )
    board.upsert(
        trial(
            "baseline/t0000",
            tmp_path / "runs" / "baseline",
            recipe="baseline",
            val_accuracy=0.7431,
            val_loss=0.6617,
            metric="log_loss",
            metric_value=0.6502,
            public_score=0.73125,
            epochs=30,
            seconds=3725.0,
        )
    )
    return board, run


SEARCH_LINES = [
    # the id cell of each line, in order, and the metric strings it must show whole
    ("demo-search/e0001", ["81.50%", "0.4988", "0.8150"]),
    ("  ├ demo-search/t0000 ×0.55", ["80.00%", "0.5123", "0.8000"]),
    ("  ├ demo-search/t0001-s1 ×0.15", ["78.00%", "0.5876", "0.7800"]),
    ("  └ demo-search/t0001 ×0.3", ["77.25%", "0.6034", "0.7725"]),
    ("demo-search/t0002", ["65.12%", "0.9120", "0.6512"]),
    ("demo-search/t0003", []),
    ("demo-search/t0004", []),
]


SEARCH_HEADERS = [
    "id",
    "kind",
    "state",
    "recipe",
    "data",
    "backbone",
    "profile",
    "val acc",
    "val loss",
    "accuracy",
    "estimate",
    "epochs",
    "seconds",
    "public",
    "submission",
    "key params",
]
"""Every column's header for the search run, in display order."""


def table_lines(
    rows: list[Row], width: int, columns: list[str] | None = None
) -> tuple[list[str], list[str], list[str]]:
    """(header columns, row lines, caption lines) of the table printed ``width`` wide."""
    console = Console(width=width, file=io.StringIO(), record=True)
    render_table(rows, console, title="Leaderboard", caption="CAPTION", columns=columns)
    lines = console.export_text().splitlines()
    rule = next(i for i, line in enumerate(lines) if set(line.strip()) == {"─"})
    caption = next(i for i, line in enumerate(lines) if "CAPTION" in line)
    headers = re.split(r"\s{2,}", lines[rule - 1].strip())
    return headers, lines[rule + 1 : caption], lines[caption:]


@pytest.mark.parametrize("width", [80, 100, 140, 200])
def test_table_fits_the_width_one_line_per_row_metrics_whole(
    search: tuple[Leaderboard, Path], width: int
) -> None:
    board, run = search
    console = Console(width=width, file=io.StringIO(), record=True)
    render_table(board.rows(run_dir=run), console, title="Leaderboard", caption="CAPTION")
    assert max(cell_len(line) for line in console.export_text().splitlines()) <= width

    headers, body, caption = table_lines(board.rows(run_dir=run), width)
    # one line per row, ensemble members nested right under it; id, state, metrics whole
    assert len(body) == len(SEARCH_LINES)
    for line, (id_cell, metrics) in zip(body, SEARCH_LINES, strict=True):
        assert line.startswith(id_cell + " ")
        row = board.get(id_cell.split()[-2] if "×" in id_cell else id_cell)
        assert f" {row.state} " in line
        for value in metrics[:2]:  # val acc and val loss
            assert f" {value}" in line
    # the run's metric is accuracy: its column would repeat val acc, so it comes last
    assert {"id", "state", "val acc", "val loss", "backbone"} <= set(headers)
    display = [h for h in SEARCH_HEADERS if h != "accuracy"] + ["accuracy"]
    assert headers == [h for h in display if h in headers]
    assert "resnet18+resnet10" in body[0] and "resnet10" in body[2]  # the backbone whole
    if width == 200:  # there, with just the values under the metric's name
        assert headers[-1] == "accuracy"
        for line, (_, metrics) in zip(body, SEARCH_LINES, strict=True):
            assert all(f" {value}" in line for value in metrics)
    if width >= 140:  # the key params on one line, cut where they end
        assert "key params" in headers
        assert "lr=0.003 batch_size" in body[1]  # each key by its short name
        assert "…" in body[1]
    # the caption names what was left out, and --wide brings everything back
    left_out = " ".join(caption)
    if width < 200:
        assert "--wide adds" in left_out and "kind" in left_out
    assert all(h in " ".join(headers) or h in left_out for h in ("recipe", "params", "epochs"))


README_PRIORITY = [
    "id",
    "state",
    "val acc",
    "val loss",
    "backbone",
    "profile",
    "METRIC",
    "estimate",
    "public",
    "key params",
    "seconds",
    "epochs",
    "recipe",
    "data",
    "submission",
    "kind",
]
"""The README's order of importance of the table's columns (section Leaderboard)."""


def priority(metric: str, repeated: bool) -> list[str]:
    """The README's priority with the metric column's header; last when it repeats val acc/loss."""
    order = [metric if h == "METRIC" else h for h in README_PRIORITY]
    if repeated:
        order.remove(metric)
        order.append(metric)
    return order


SHOWN_BY_WIDTH = {
    # accuracy run: the metric repeats val acc; the public column is empty (so passed over)
    ("accuracy", 80): 5,
    ("accuracy", 100): 6,  # the key params, at least 20 columns wide
    ("accuracy", 140): 10,  # then seconds, epochs, recipe
    ("accuracy", 200): 13,
    # macro_f1 run with a public score: metric and public rank before the key params
    ("macro_f1", 80): 5,
    ("macro_f1", 100): 7,
    ("macro_f1", 140): 10,
    ("macro_f1", 200): 14,
}


@pytest.mark.parametrize("width", [80, 100, 140, 200])
@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_table_columns_follow_the_readme_priority(
    search: tuple[Leaderboard, Path], tmp_path: Path, metric: str, width: int
) -> None:
    board, run = search
    rows = board.rows(run_dir=run)
    if metric == "macro_f1":  # the same run ranked by macro F1, its ensemble with a public score
        for r in rows:
            r.metric = metric
            if r.metric_value is not None:
                r.metric_value -= 0.05
            if r.kind == "ensemble":
                r.public_score = 0.79125
    headers, body, caption = table_lines(rows, width)
    order = priority(metric, repeated=metric == "accuracy")
    empty = {"profile", "public", "data"} if metric == "accuracy" else {"profile", "data"}
    ranked = [h for h in order if h not in empty]
    # a prefix of the priority is shown: never a column while a more important one is hidden
    assert sorted(headers) == sorted(ranked[: SHOWN_BY_WIDTH[metric, width]])
    hidden = [h for h in order if h not in headers]
    note = " ".join(caption).split("--wide adds ")[-1] if hidden else ""
    assert [h.strip() for h in " ".join(note.split()).split(", ")] == hidden  # as headed
    # display order: the README's table order, with a repeating metric column at the end
    every = [h for h in SEARCH_HEADERS if h != "accuracy"]
    display = [*every, metric] if metric == "accuracy" else [*every[:9], metric, *every[9:]]
    assert headers == [h for h in display if h in headers]
    # the key params keep at least 30 columns and take what the later columns leave
    if "key params" in headers:  # (this trial's params are longer than any width: cut)
        start = body[1].index("lr=0.003")
        assert cell_len(body[1][start : body[1].index("…", start) + 1]) >= PARAMS_MIN_WIDTH
    assert max(cell_len(line) for line in body) <= width


@pytest.mark.parametrize("width", [80, 100, 140, 200])
def test_table_of_runs_with_different_metrics(search: tuple[Leaderboard, Path], width: int) -> None:
    board, _ = search
    headers, body, _ = table_lines(board.rows(), width)
    assert headers[0] == "id" and "state" in headers
    assert len(body) == len(SEARCH_LINES) + 1
    baseline = next(line for line in body if line.startswith("baseline/t0000 "))
    for value in ("74.31%", "0.6617"):  # its metric, log loss, is the val loss column
        assert value in baseline
    assert ("0.73125" in baseline) == (width >= 100)  # a recorded public score comes next
    # the metric column repeats val acc or val loss for these metrics: it ranks last
    assert "metric" not in headers or (width == 200 and headers[-1] == "metric")
    _, every, _ = table_lines(board.rows(), width, list(TABLE_COLUMNS))
    assert "accuracy 0.8150" in every[0]
    assert "log_loss 0.6502" in next(line for line in every if line.startswith("baseline/"))


def test_table_columns_picks_those_in_order(search: tuple[Leaderboard, Path]) -> None:
    board, run = search
    rows = board.rows(run_dir=run)
    headers, body, caption = table_lines(rows, 80, ["val_loss", "id", "backbone"])
    assert headers == ["val loss", "id", "backbone"]
    assert body[0].split() == ["0.4988", "demo-search/e0001", "resnet18+resnet10"]
    assert body[1].split() == ["0.5123", "├", "demo-search/t0000", "×0.55", "resnet18"]
    assert not any("--wide" in line for line in caption)

    with pytest.raises(LeaderboardError, match="did you mean 'val_accuracy'"):
        render_table(rows, Console(file=io.StringIO()), columns=["id", "val_acc"])


@pytest.mark.parametrize("width", [80, 100])
def test_table_every_column_runs_past_a_narrow_console(
    search: tuple[Leaderboard, Path], width: int
) -> None:
    board, run = search
    single_split = [c for c in TABLE_COLUMNS if c not in ("fold_mean", "folds")]
    headers, body, _ = table_lines(board.rows(run_dir=run), width, single_split)
    assert headers == SEARCH_HEADERS
    # every cell whole on one line per row, the lines longer than the console
    assert len(body) == len(SEARCH_LINES)
    assert body[0].split()[:8] == [
        "demo-search/e0001",
        "ensemble",
        "complete",
        "demo-search",
        "resnet18+resnet10",
        "81.50%",
        "0.4988",
        "0.8150",
    ]
    assert "demo-search/submission.csv" in body[0]
    assert min(cell_len(line) for line in body) > width


def test_table_id_never_cut_in_a_console_narrower_than_it(
    search: tuple[Leaderboard, Path],
) -> None:
    board, run = search
    headers, body, _ = table_lines(board.rows(run_dir=run), 20)
    assert headers == ["id"]
    assert [line.rstrip() for line in body] == [cell for cell, _ in SEARCH_LINES]


# ------------------------------------------------------------------------ CLI
APP_SCRIPT = textwrap.dedent(
    """
    import typer

    from toolkit.leaderboard.cli import register

    app = typer.Typer()


    @app.callback()
    def main() -> None:
        \"\"\"Stand-in for the toolkit CLI.\"\"\"


    register(app)
    app()
    """
)


def run_cli(
    tmp_path: Path, *args: str, columns: int | None = None
) -> subprocess.CompletedProcess[str]:
    """``toolkit leaderboard ARGS`` as a real subprocess in the workspace ``tmp_path``.

    ``columns`` sets ``$COLUMNS``, the width a terminal would give.
    """
    script = tmp_path / "toolkit_app.py"
    if not script.exists():
        script.write_text(APP_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("TOOLKIT_LEADERBOARD", "COLUMNS")}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run(
        [sys.executable, str(script), "leaderboard", *args],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,  # no terminal anywhere: the table is 80 columns wide
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cli_subprocess_shows_records_and_fails_cleanly(
    tmp_path: Path, demo: tuple[Leaderboard, Path, Path]
) -> None:
    board, _, _ = demo
    everything = run_cli(tmp_path)
    assert everything.returncode == 0, everything.stderr
    for row_id in ("demo/e0001", "demo/t0002", "other/t0000", "other/t0001"):
        assert row_id in everything.stdout
    assert max(cell_len(line) for line in everything.stdout.splitlines()) <= 80
    assert "79.00%" in everything.stdout and "0.6000" in everything.stdout

    one_run = run_cli(tmp_path, "runs/demo", "--top", "1")
    assert one_run.returncode == 0, one_run.stderr
    assert "demo/e0001" in one_run.stdout and "demo/t0002 ×0.625" in one_run.stdout
    assert "demo/t0003" not in one_run.stdout and "other/t0000" not in one_run.stdout

    recorded = run_cli(tmp_path, "record", "demo/e0001", "0.7956")
    assert recorded.returncode == 0, recorded.stderr
    assert "0.7956" in recorded.stdout and "demo/e0001" in recorded.stdout
    assert board.get("demo/e0001").public_score == 0.7956

    unknown = run_cli(tmp_path, "record", "demo/e001", "0.5")
    assert unknown.returncode == USAGE_ERROR
    assert unknown.stdout == ""
    assert unknown.stderr.count("\n") == 1 and "Traceback" not in unknown.stderr
    assert unknown.stderr.startswith("error: ") and "demo/e0001" in unknown.stderr

    empty = run_cli(tmp_path, "--recipe", "nothing")
    assert empty.returncode == 0
    assert "no rows" in empty.stdout


def test_cli_subprocess_table_at_terminal_widths(
    tmp_path: Path, search: tuple[Leaderboard, Path]
) -> None:
    expected = {
        80: ["id", "state", "backbone", "val acc", "val loss"],
        100: ["id", "state", "backbone", "val acc", "val loss", "estimate", "public"],
        140: [
            *("id", "state", "backbone", "val acc", "val loss", "estimate"),
            *("epochs", "seconds", "public", "key params"),  # the params at 20, then 2 more
        ],
    }
    for width, headers in expected.items():
        shown = run_cli(tmp_path, "runs/demo-search", "--top", "2", columns=width)
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert max(cell_len(line) for line in lines) <= width
        rule = next(i for i, line in enumerate(lines) if set(line.strip()) == {"─"})
        if width == 100:  # a public score recorded: the column ranks before the key params
            assert headers[-1] not in lines[rule - 1]
            run_cli(tmp_path, "record", "demo-search/e0001", "0.79125")
            shown = run_cli(tmp_path, "runs/demo-search", "--top", "2", columns=width)
            lines = shown.stdout.splitlines()
        assert re.split(r"\s{2,}", lines[rule - 1].strip()) == headers, lines[rule - 1]
    wide = run_cli(tmp_path, "runs/demo-search", "--wide", columns=80).stdout.splitlines()
    rule = next(i for i, line in enumerate(wide) if set(line.strip()) == {"─"})
    headers = re.split(r"\s{2,}", wide[rule - 1].strip())
    assert headers[-2:] == ["key params", "accuracy"]  # it repeats val acc: last


@pytest.fixture
def invoke(tmp_path: Path, demo: tuple[Leaderboard, Path, Path], monkeypatch: pytest.MonkeyPatch):
    """Invoke ``leaderboard ARGS`` in-process (typer's CliRunner) from the workspace."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TOOLKIT_LEADERBOARD", raising=False)
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Stand-in for the toolkit CLI."""

    register(app)
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app, ["leaderboard", *args], env=env)

    return run


def test_cli_filters_sort_and_exports(invoke, tmp_path: Path) -> None:
    complete = invoke("--state", "complete", "--json")
    assert complete.exit_code == 0, complete.output
    data = json.loads(complete.stdout)
    assert data and all(r["state"] == "complete" for r in data)
    assert {"id", "kind", "recipe", "val_accuracy", "state"} <= set(data[0])

    top = invoke("runs/demo", "--top", "1", "--json")
    assert [r["id"] for r in json.loads(top.stdout)] == ["demo/e0001", "demo/t0002"]

    by_seconds = json.loads(
        invoke("--sort", "seconds", "--desc", "--json", "--kind", "trial").stdout
    )
    assert [r["id"] for r in by_seconds][:2] == ["demo/t0002", "demo/t0000"]

    to_stdout = invoke("runs/other", "--csv")
    assert [r["id"] for r in csv.DictReader(io.StringIO(to_stdout.stdout))] == [
        "other/t0001",  # its log loss is the lower
        "other/t0000",
    ]
    written = invoke("--csv", "--out", "export/lb.csv")
    assert written.exit_code == 0, written.output
    assert len(list(csv.DictReader((tmp_path / "export" / "lb.csv").open()))) == 7
    assert invoke("--out", "lb.json").exit_code == 0  # format from the suffix
    assert len(json.loads((tmp_path / "lb.json").read_text())) == 7


def test_cli_record_negative_score_after_double_dash(
    invoke, demo: tuple[Leaderboard, Path, Path]
) -> None:
    board, _, _ = demo
    result = invoke("record", "demo/t0000", "--", "-0.25")
    assert result.exit_code == 0, result.output
    assert board.get("demo/t0000").public_score == -0.25
    assert "-0.25000" in invoke("runs/demo").stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("record", "demo/e0001", "high"), "must be a number"),
        (("record", "demo/e0001"), "RUN_ID SCORE"),
        (("--sort", "acc"), "val_accuracy"),
        (("--db", "missing.db"), "no leaderboard database at missing.db"),
        (("runs/dmeo",), "runs with rows"),
        (("--state", "done"), "unknown state"),
        (("--json", "--csv"), "one of --json and --csv"),
        (("runs/demo", "runs/other"), "at most one RUN_DIR"),
        (("--columns", "id,val_acc"), "unknown column 'val_acc'; did you mean 'val_accuracy'?"),
        (("--columns", " , "), "no column names"),
        (("--columns", "id", "--wide"), "one of --columns and --wide"),
        (("--wide", "--csv"), "not the csv export"),
    ],
)
def test_cli_errors_one_line_exit_2(invoke, args: tuple[str, ...], expected: str) -> None:
    result = invoke(*args)
    assert result.exit_code == USAGE_ERROR
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0]


def test_cli_table_columns_and_wide(invoke) -> None:
    narrow = {"COLUMNS": "80"}
    picked = invoke("runs/demo", "--columns", "val_loss,id", env=narrow)
    assert picked.exit_code == 0, picked.output
    lines = picked.stdout.splitlines()
    assert lines[1].split() == ["val", "loss", "id"]
    assert lines[3].split() == ["demo/e0001"]  # an ensemble has no loss of its own
    assert lines[4].split() == ["0.6000", "├", "demo/t0002", "×0.625"]

    wide = invoke("runs/demo", "--wide", env=narrow)
    assert wide.exit_code == 0, wide.output
    assert "submission" in wide.stdout and "demo/submission.csv" in wide.stdout
    assert max(cell_len(line) for line in wide.stdout.splitlines()) > 80

    fitted = invoke("runs/demo", env=narrow)
    assert "--wide adds" in fitted.stdout
    assert max(cell_len(line) for line in fitted.stdout.splitlines()) <= 80


def test_cli_empty_json_is_an_empty_list(invoke) -> None:
    result = invoke("--recipe", "nothing", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []
    assert "no rows" in result.stderr


def test_cli_db_from_env_and_run_own_db(invoke, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.db"
    Leaderboard(elsewhere).upsert(trial("x/t0000", tmp_path / "x", val_accuracy=0.5))
    result = invoke("--json", env={"TOOLKIT_LEADERBOARD": str(elsewhere)})
    assert [r["id"] for r in json.loads(result.stdout)] == ["x/t0000"]

    # a run folder with its own database (e.g. copied from another machine) is read whole
    moved = tmp_path / "runs" / "moved"
    moved.mkdir()
    Leaderboard(moved / "leaderboard.db").upsert(
        trial("moved/t0000", "/old/machine/runs/moved", val_accuracy=0.6)
    )
    own = invoke("runs/moved", "--json")
    assert [r["id"] for r in json.loads(own.stdout)] == ["moved/t0000"]

    # a symlink to the workspace database is filtered by run
    (tmp_path / "runs" / "other" / "leaderboard.db").symlink_to(
        tmp_path / "runs" / "leaderboard.db"
    )
    linked = invoke("runs/other", "--json")
    assert [r["id"] for r in json.loads(linked.stdout)] == ["other/t0001", "other/t0000"]


def test_cli_as_plain_command_registration(demo: tuple[Leaderboard, Path, Path]) -> None:
    board, _, _ = demo
    db = str(board.path)
    app = typer.Typer()
    app.command("leaderboard")(leaderboard_command)
    app.command("other")(lambda: None)  # a second command keeps 'leaderboard' a subcommand
    runner = CliRunner()
    shown = runner.invoke(app, ["leaderboard", "--db", db, "--kind", "ensemble", "--json"])
    assert shown.exit_code == 0, shown.output
    assert [r["id"] for r in json.loads(shown.stdout)] == ["demo/e0001"]
    recorded = runner.invoke(app, ["leaderboard", "record", "demo/t0002", "0.81", "--db", db])
    assert recorded.exit_code == 0, recorded.output
    assert board.get("demo/t0002").public_score == 0.81
    bad = runner.invoke(app, ["leaderboard", "--db", db, "--sort", "nope"])
    assert bad.exit_code == USAGE_ERROR
    assert "unknown column 'nope'" in bad.stderr


def test_cross_validated_rows_show_folds_and_their_spread(tmp_path: Path) -> None:
    board = Leaderboard(tmp_path / "lb.db")
    run = tmp_path / "runs" / "cv"
    board.upsert(trial("cv/t0000", run, val_accuracy=0.8, folds=5, fold_mean=0.79, fold_std=0.03))
    board.upsert(trial("cv/t0001", run, val_accuracy=0.7, folds=5, fold_mean=0.71, fold_std=0.05))
    console = Console(width=160, record=True, color_system=None)
    render_table(board.rows(run_dir=run), console)
    text = console.export_text()
    assert "fold mean ± std" in text and "folds" in text
    assert "0.7900 ± 0.0300" in text and "0.7100 ± 0.0500" in text
    assert "out-of-fold" in text  # the caption says what the validation columns are
    single = Console(width=160, record=True, color_system=None)
    render_table([trial("a/t0", run, val_accuracy=0.5)], single)
    assert "fold" not in single.export_text()  # no fold columns without folds


def test_key_params_go_by_short_names_unless_two_keys_share_one(tmp_path: Path) -> None:
    params = {
        "train.optimizer.lr": 0.003,
        "augmenters.0.copies.0": 3,
        "model.backbone.width": 8,
        "features.width": 16,  # another width: both keep their whole key
        "lr": 0.003,  # the settings' lr repeats the sampled one: shown once
        "seed": 0,
    }
    _, lines = plain_table([trial("a/t0", tmp_path, params=params)], ["id", "params"])
    assert lines[0].cells[1] == (
        "lr=0.003 copies.0=3 model.backbone.width=8 features.width=16 seed=0"
    )
