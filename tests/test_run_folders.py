"""Run folders that never mix or half-change (issue 27, items 3 and 4).

- One recipe on two competitions: the second run lands in a folder of its own and
  leaves the first one's files as they were; each row's submission is its own file
  of its own data's predictions; the leaderboard says which data each row read; a
  folder holding a run of other data is refused in one line.
- A plain run stopped by Ctrl-C (SIGINT) or killed (SIGKILL) at its first training
  step leaves the earlier run's files byte for byte; its row says ``interrupted``; the
  next run replaces the folder as a whole.
- A leaderboard database written before rows recorded their data still opens.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import (
    kill_when_paused,
    one_error_line,
    run_cli,
    start_paused,
    with_pause,
    write_recipe,
)
from toolkit.demo import DemoCompetition, make_demo_competition
from toolkit.leaderboard import Leaderboard
from toolkit.leaderboard.row import Row
from toolkit.leaderboard.schema import MIGRATIONS

pytestmark = pytest.mark.slow  # plain runs that train


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``: relative path -> bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def rows(work: Path) -> dict[str, Row]:
    """The work folder's leaderboard rows by id."""
    return {r.id: r for r in Leaderboard(work / "leaderboard.db").rows()}


def board_json(work: Path, *options: str) -> list[dict[str, object]]:
    """``toolkit leaderboard --json`` of the work folder's database."""
    shown = run_cli("leaderboard", "--db", work / "leaderboard.db", "--json", *options, cwd=work)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def run(recipe: Path, work: Path, *options: object) -> None:
    done = run_cli("run", recipe, "--no-report", *options, cwd=work)
    assert done.returncode == 0, done.stderr


def test_one_recipe_on_two_competitions_keeps_each_run_its_own(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    other = make_demo_competition(tmp_path / "other", n_train=32, n_test=8, seed=11, duration=1.5)
    work = tmp_path / "work"
    recipe = write_recipe(work, tiny_competition.root)
    run(recipe, work)  # the recipe's own data: runs/tiny
    first_dir = work / "runs" / "tiny"
    first = snapshot(first_dir)
    (first_id,) = rows(work)

    run(recipe, work, "--set", f"data.root={other.root}")  # README: --set data.root=~/comp
    second_dir = work / "runs" / "tiny-other"
    assert snapshot(first_dir) == first  # not a byte of the first run changed
    board = rows(work)
    (second_id,) = set(board) - {first_id}
    for row_id, folder, data in (
        (first_id, first_dir, tiny_competition),
        (second_id, second_dir, other),
    ):
        row = board[row_id]
        assert row.submission == str((folder / "submission.csv").resolve())
        submission = pd.read_csv(row.submission, dtype=str)
        assert list(submission["id"]) == list(pd.read_csv(data.sample_submission, dtype=str)["id"])
        recorded = json.loads((folder / "data.json").read_text())
        assert recorded["root"] == str(data.root.resolve()) and row.data == recorded
    shown = {r["id"]: r["data"]["root"] for r in board_json(work)}  # type: ignore[index]
    assert shown == {
        first_id: str(tiny_competition.root.resolve()),
        second_id: str(other.root.resolve()),
    }
    assert board[first_id].data["digest"] != board[second_id].data["digest"]

    # an explicit --output holding a finished run of other data is refused, untouched
    refused = run_cli(
        "run", recipe, "--no-report", "--output", first_dir, "--set", f"data.root={other.root}"
    )
    assert refused.returncode == 2
    line = one_error_line(refused.stderr)
    assert str(first_dir) in line and str(tiny_competition.root.resolve()) in line
    assert "--output" in line
    assert snapshot(first_dir) == first and len(rows(work)) == 2

    # the same recipe on the same data again: the earlier row no longer claims the file
    run(recipe, work)
    board = rows(work)
    (third_id,) = set(board) - {first_id, second_id}
    assert board[third_id].submission == str((first_dir / "submission.csv").resolve())
    assert board[first_id].submission is None and board[first_id].replaced_by == third_id
    assert board[second_id].submission is not None and board[second_id].replaced_by is None


def stop_when_paused(proc: object, marker: Path, how: signal.Signals) -> int:
    """Wait until the run is blocked at its pause point, send it ``how``, return its exit."""
    import subprocess

    assert isinstance(proc, subprocess.Popen)
    if how == signal.SIGKILL:
        kill_when_paused(proc, marker)
        return proc.returncode
    deadline = time.monotonic() + 300
    while not marker.is_file():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    os.kill(proc.pid, how)
    _, stderr = proc.communicate(timeout=120)
    assert "Traceback" not in stderr, stderr
    return proc.returncode


def test_a_plain_run_stopped_half_way_leaves_the_earlier_run_whole(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    work = tmp_path
    recipe = with_pause(write_recipe(work, tiny_competition.root))
    run_dir = work / "run"
    run(recipe, work, "--output", run_dir)
    before = snapshot(run_dir)
    (finished,) = rows(work)

    for how, code in ((signal.SIGINT, 130), (signal.SIGTERM, 130), (signal.SIGKILL, -9)):
        marker = work / f"paused-{how.name}"
        proc = start_paused(["run", recipe, "--output", run_dir, "--no-report"], marker, 1)
        assert stop_when_paused(proc, marker, how) == code
        assert snapshot(run_dir) == before, how.name  # the earlier run, byte for byte
    board = rows(work)
    stopped = sorted(set(board) - {finished})  # ids start with the time the run started
    assert [board[i].state for i in stopped] == ["interrupted", "interrupted", "running"]
    assert board[finished].state == "complete"

    started = time.time_ns()
    run(recipe, work, "--output", run_dir)
    after = {p: (run_dir / p).stat().st_mtime_ns for p in snapshot(run_dir)}
    assert set(after) == set(before)  # the same files, whole...
    assert all(stamp >= started for stamp in after.values())  # ...and every one of them new
    assert not list(work.glob(".run.*"))  # no staging folder left beside it
    board = rows(work)
    (rerun,) = set(board) - {finished, *stopped}
    # the killed run's row, found still running by the next run of its folder
    assert [board[i].state for i in stopped] == ["interrupted"] * 3
    assert board[rerun].state == "complete"
    assert board[finished].replaced_by == rerun and board[finished].submission is None
    listed = {r["id"] for r in board_json(work, "--state", "interrupted")}
    assert listed == set(stopped)


def test_a_database_of_schema_7_opens_and_gains_the_data_column(tmp_path: Path) -> None:
    path = tmp_path / "leaderboard.db"
    with sqlite3.connect(path, isolation_level=None) as conn:  # as the toolkit before wrote it
        for version in range(1, 8):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
        conn.execute(
            "INSERT INTO entries (id, kind, recipe, run_dir, state, params, members, created_at,"
            " submission) VALUES ('old/r20260101-000000-000', 'run', 'old', ?, 'complete', '{}',"
            " '[]', '2026-01-01T00:00:00+00:00', ?)",
            (str(tmp_path / "old"), str(tmp_path / "old" / "submission.csv")),
        )
        conn.execute("PRAGMA user_version = 7")
    board = Leaderboard(path)
    (old,) = board.rows()
    assert old.data == {} and old.replaced_by is None  # read before any write migrates it
    assert board.mark_stale_running(tmp_path / "old") == 0
    board.upsert(Row(id="new/r1", kind="run", recipe="new", run_dir=str(tmp_path), state="running"))
    assert board.mark_stale_running(tmp_path) == 1
    assert [r.id for r in board.rows(state="interrupted")] == ["new/r1"]
    assert board.get("old/r20260101-000000-000").data == {}
