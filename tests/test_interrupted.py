"""A study killed (SIGKILL) while it builds its ensemble, while it refits, and ``toolkit report``
killed while it writes: the same command run again finishes with whole, consistent files.

Every kill happens at an event, never after a sleep: the ``pause`` plugin
(``tests/plugins/pause.py``) writes a marker file at the first training step
of the N-th model a process trains and then waits there for good; ``toolkit
report`` runs under an audit hook that waits at its first write into a given
file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from tests.conftest import (
    copy_workspace,
    kill_when_paused,
    run_cli,
    start_paused,
    with_pause,
    write_recipe,
)
from toolkit.demo import DemoCompetition
from toolkit.leaderboard import Leaderboard

pytestmark = pytest.mark.slow  # a study that trains, three times

ENSEMBLE = "ensemble: {size: 5, seeds: 2, refit: true}\n"
"""A one-trial study: trial 0, then (the ensemble) its seed copy 1, then its refit."""

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"


def run_until_paused(recipe: Path, run_dir: Path, marker: Path, point: int) -> None:
    """``toolkit run`` until the ``point``-th model it trains takes its first step, then
    SIGKILL it there."""
    proc = start_paused(["run", recipe, "--output", run_dir], marker, point)
    kill_when_paused(proc, marker)
    assert proc.returncode == -signal.SIGKILL


def states(work: Path) -> dict[str, str]:
    """Leaderboard row id -> state."""
    return {r.id: r.state for r in Leaderboard(work / "leaderboard.db").rows()}


@pytest.fixture(scope="module")
def killed_study(
    tiny_competition: DemoCompetition, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A study killed in its seed copy, run again and killed in its refit, then run again to
    the end (report included); returns its work folder (run directory ``run``)."""
    work = tmp_path_factory.mktemp("killed")
    recipe = with_pause(write_recipe(work, tiny_competition.root, extra=ENSEMBLE))
    run_dir = work / "run"
    trial, seed_copy = run_dir / "trials" / "t0000", run_dir / "trials" / "t0000" / "seed1"

    run_until_paused(recipe, run_dir, work / "in_seed_copy", 2)  # trial 0 is model 1
    assert states(work) == {"run/t0000": "complete", "run/t0000-s1": "running"}
    assert not (run_dir / "ensemble.json").exists()
    trial_weights = (trial / "best.pt").stat().st_mtime_ns

    run_until_paused(recipe, run_dir, work / "in_refit", 2)  # the seed copy again, the refit
    assert states(work) == {
        "run/t0000": "complete",
        "run/t0000-s1": "complete",
        "run/t0000-bag": "complete",
        "run/t0000-refit": "running",
    }
    assert not (run_dir / "ensemble.json").exists()
    copy_weights = (seed_copy / "best.pt").stat().st_mtime_ns

    result = run_cli("run", recipe, "--output", run_dir, cwd=work)
    assert result.returncode == 0, result.stderr
    assert "ensemble: run/e1" in result.stdout
    # neither the trial nor its finished seed copy trained again: only the refit
    assert (trial / "best.pt").stat().st_mtime_ns == trial_weights
    assert (seed_copy / "best.pt").stat().st_mtime_ns == copy_weights
    return work


def probabilities(path: Path) -> np.ndarray:
    """The ``p_*`` columns of a probability table."""
    table = pd.read_csv(path)
    return table[[c for c in table.columns if c.startswith("p_")]].to_numpy()


def test_a_study_killed_in_its_ensemble_and_in_its_refit_finishes_when_run_again(
    killed_study: Path, tiny_competition: DemoCompetition
) -> None:
    run_dir = killed_study / "run"
    rows = {r.id: r for r in Leaderboard(killed_study / "leaderboard.db").rows()}
    assert {i: (r.kind, r.state) for i, r in rows.items()} == {
        "run/t0000": ("trial", "complete"),
        "run/t0000-s1": ("seed", "complete"),
        "run/t0000-bag": ("bag", "complete"),
        "run/t0000-refit": ("refit", "complete"),
        "run/e1": ("ensemble", "complete"),
    }
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{run_dir / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"]
    assert rows["run/t0000-refit"].epochs == rows["run/t0000"].best_epoch

    summary = json.loads((run_dir / "ensemble.json").read_text())
    assert summary["id"] == "run/e1" and summary["refit"] == {"run/t0000": "run/t0000-refit"}
    weights = {m["id"]: m["weight"] for m in summary["members"]}
    assert set(weights) <= {"run/t0000", "run/t0000-s1"}
    assert sum(weights.values()) == pytest.approx(1.0)
    assert rows["run/e1"].member_weights() == weights
    folders = {"run/t0000": run_dir / "trials" / "t0000"}
    folders["run/t0000-s1"] = folders["run/t0000"] / "seed1"
    val = sum(w * np.load(folders[m] / "val_probs.npy") for m, w in weights.items())
    np.testing.assert_allclose(probabilities(run_dir / "val_probs.csv"), val, atol=1e-6)
    refit = np.load(folders["run/t0000"] / "refit" / "test_probs.npy")  # the test prediction
    test = probabilities(run_dir / "test_probs.csv")
    np.testing.assert_allclose(test, refit / refit.sum(axis=1, keepdims=True), atol=1e-6)

    sample = pd.read_csv(tiny_competition.sample_submission, dtype=str)
    submission = pd.read_csv(run_dir / "submission.csv", dtype=str)
    assert list(submission.columns) == list(sample.columns)
    assert list(submission["id"]) == list(sample["id"])
    classes = [c.removeprefix("p_") for c in pd.read_csv(run_dir / "test_probs.csv").columns[1:]]
    assert list(submission["category"]) == [classes[i] for i in test.argmax(axis=1)]


WRITE_PAUSER = r'''
"""Run ``toolkit ARGS`` (argv[3:]); at its first write into a file whose name contains
argv[1] (opened for writing by name), write the marker file argv[2] and wait there for good."""
import os
import sys
import threading

target, marker = sys.argv[1], sys.argv[2]
armed = []


def pause_at_write(frame, event, arg):
    if event == "c_call" and getattr(arg, "__name__", "") == "write":
        sys.setprofile(None)
        os.close(os.open(marker, os.O_CREAT | os.O_WRONLY))
        threading.Event().wait()


def audit(event, args):
    if event != "open" or armed or not isinstance(args[0], (str, os.PathLike)):
        return
    name = os.path.basename(os.fspath(args[0]))
    mode, flags = args[1], args[2]
    writing = any(c in mode for c in "wax+") if mode else flags & (os.O_WRONLY | os.O_RDWR)
    if target in name and writing:
        armed.append(name)
        sys.setprofile(pause_at_write)


sys.addaudithook(audit)
sys.argv = ["toolkit", *sys.argv[3:]]
from toolkit.cli.app import main

main()
'''


def report_killed_at_write(run_dir: Path, target: str, marker: Path) -> None:
    """``toolkit report RUN_DIR``, SIGKILLed at its first write into a file named ``*target*``."""
    killed_at_write(["report", run_dir], target, marker)


def killed_at_write(args: list[object], target: str, marker: Path) -> None:
    """``toolkit ARGS``, SIGKILLed at its first write into a file named ``*target*``."""
    env = {**os.environ, "TOOLKIT_NO_PROGRESS": "1", "TOOLKIT_LOAD_PLUGINS": ""}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITE_PAUSER, target, str(marker), *map(str, args)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    kill_when_paused(proc, marker)
    assert proc.returncode == -signal.SIGKILL


def assert_whole_report(run_dir: Path) -> None:
    """``report.html`` is a whole page and every figure a whole PNG file."""
    page = (run_dir / "report.html").read_text()
    assert page.lstrip().lower().startswith("<!doctype html") and page.rstrip().endswith("</html>")
    figures = sorted((run_dir / "figures").glob("*.png"))
    assert figures
    for figure in figures:
        data = figure.read_bytes()
        assert data.startswith(PNG_MAGIC) and data.endswith(PNG_END), figure.name


def test_report_killed_while_writing_leaves_whole_files_and_runs_again(
    killed_study: Path,
) -> None:
    run_dir = killed_study / "run"
    assert_whole_report(run_dir)  # written by the run
    page = (run_dir / "report.html").read_bytes()

    report_killed_at_write(run_dir, "learning_curves.png", killed_study / "at_figure")
    assert_whole_report(run_dir)
    report_killed_at_write(run_dir, "report.html", killed_study / "at_page")
    assert_whole_report(run_dir)
    assert (run_dir / "report.html").read_bytes() == page  # the earlier page, untouched

    again = run_cli("report", run_dir, cwd=killed_study)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == str((run_dir / "report.html").resolve())
    assert_whole_report(run_dir)


def top_files(run_dir: Path) -> dict[str, bytes]:
    """The files at the top of a study's folder (its own set, its report), by name, as bytes;
    its Optuna storage aside."""
    return {
        p.name: p.read_bytes()
        for p in run_dir.iterdir()
        if p.is_file() and not p.name.startswith("study.db")
    }


def test_a_study_run_again_and_killed_writing_its_ensemble_leaves_the_earlier_files_whole(
    killed_study: Path, tmp_path: Path
) -> None:
    work = copy_workspace(killed_study, tmp_path / "work")
    run_dir, recipe = work / "run", work / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace(ENSEMBLE, "ensemble: {size: 5, seeds: 2}\n"))
    before = top_files(run_dir)
    assert {"recipe.yaml", "ensemble.json", "submission.csv", "test_probs.csv"} <= set(before)

    # the new ensemble (no refit: its test probabilities are its models') killed as it writes
    # its last file: the earlier run's files are all there, every byte as it was
    killed_at_write(["run", recipe, "--output", run_dir], "ensemble.json", work / "at_write")
    assert top_files(run_dir) == before

    result = run_cli("run", recipe, "--output", run_dir, cwd=work)
    assert result.returncode == 0, result.stderr
    after = top_files(run_dir)
    assert not (run_dir / ".staged").exists()
    changed = {name for name in before if after.get(name) != before[name]}
    assert {"recipe.yaml", "ensemble.json", "test_probs.csv"} <= changed
    summary = json.loads(after["ensemble.json"])
    assert summary["refit"] == {}
    assert yaml.safe_load(after["recipe.yaml"])["ensemble"]["refit"] is False
    weights = {m["id"]: m["weight"] for m in summary["members"]}
    folders = {"run/t0000": run_dir / "trials" / "t0000"}
    folders["run/t0000-s1"] = folders["run/t0000"] / "seed1"
    test = sum(w * np.load(folders[m] / "test_probs.npy") for m, w in weights.items())
    np.testing.assert_allclose(probabilities(run_dir / "test_probs.csv"), test, atol=1e-6)
    row = Leaderboard(work / "leaderboard.db").get(summary["id"])
    assert row.state == "complete" and row.submission is not None
    assert Path(row.submission).resolve() == (run_dir / "submission.csv").resolve()


def test_a_set_of_files_half_moved_in_is_completed_by_the_next_run(tmp_path: Path) -> None:
    from toolkit.runs.data_identity import DataIdentity
    from toolkit.runs.run_dir import RunDir

    folder = RunDir(tmp_path / "run")
    folder.path.mkdir()
    for name in ("data.json", "sources.json", "stats.json"):
        (folder.path / name).write_text("old")
    staged = folder.staged()
    staged.write_data(DataIdentity("/new", "abc"))
    staged.write_stats({"run": "new"})
    new = {p.name: p.read_text() for p in staged.staging.iterdir()}  # type: ignore[union-attr]
    assert (folder.path / "data.json").read_text() == "old"  # nothing moved before commit
    # a process stopped after the set was complete and one file moved in
    (staged.staging / ".complete").write_text("data.json\nstats.json\n")  # type: ignore[operator]
    os.replace(staged.staging / "data.json", folder.path / "data.json")  # type: ignore[operator]
    folder.recover()
    # the new set whole; the old run's sources.json, not in it, gone
    assert {p.name: p.read_text() for p in folder.path.iterdir()} == new
    # a staging folder never completed is thrown away, the folder untouched
    unfinished = folder.staged()
    unfinished.write_stats({"run": "newer"})
    folder.staged()
    assert {p.name: p.read_text() for p in folder.path.iterdir() if p.is_file()} == new
