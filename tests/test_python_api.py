"""The toolkit from Python (issue 30): ``toolkit.run`` is what ``toolkit run`` does, its
results read back as DataFrames with ``toolkit.load_run`` and ``toolkit.leaderboard``, its
problems raised as the exceptions ``toolkit`` exports (the command's one line), and Ctrl-C
inside it keeps the finished work and raises :class:`toolkit.RunInterrupted`.

Every run is real: the tiny generated competition through real features and training.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pandas as pd
import pytest

import toolkit
from tests.conftest import TINY_STUDY, one_error_line, run_cli, with_pause, write_recipe
from toolkit.demo import DemoCompetition
from toolkit.leaderboard import COLUMNS, Leaderboard

pytestmark = pytest.mark.slow  # real runs of the tiny recipe

CHANGING = {"model.json", "stats.json", "ensemble.json", "recipe.yaml", "data.json"}
"""The files of a run folder two runs of the same recipe write differently, compared with
what differs taken out: ``model.json`` holds the seconds the model took and its id (a plain
run's is the time it started: ``tiny/r20261206-200849-021``), ``stats.json`` the seconds
each cached stage took, ``ensemble.json`` the seconds it took and the path of its study's
storage, ``recipe.yaml`` and ``data.json`` the paths of the run's own cache, leaderboard and
output folder (each run has its own work folder)."""

UNCOMPARED = {"report.html", "study.db"}
"""Left out altogether: the report page says when it was made and how many seconds each
stage took (its figures are compared); the study's Optuna database holds each trial's
start and end times (the trials' own files are compared)."""

STACKED_PROFILES = """
search:
  n_trials: 2
  sampler: {name: random, seed: 0}
  pruner: {name: none}
  profiles:
    cnn:
      space:
        train.optimizer.lr: {low: 0.001, high: 0.01, log: true}
    head:
      model: {backbone: {name: head, hidden: 32}}
      space:
        train.optimizer.lr: {low: 0.001, high: 0.01, log: true}
ensemble: {size: 3, method: stack}
"""
"""A study of two profiles (the tiny ResNet and an MLP head), its ensemble stacked."""


@pytest.fixture(autouse=True)
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """As :func:`tests.conftest.run_cli` runs a command: no progress, no installed plugins."""
    monkeypatch.setenv("TOOLKIT_NO_PROGRESS", "1")
    monkeypatch.setenv("TOOLKIT_LOAD_PLUGINS", "")


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by its relative path, with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def without(text: bytes, *values: object) -> str:
    """``text`` with each of ``values`` replaced by a placeholder."""
    decoded = text.decode()
    for value in values:
        decoded = decoded.replace(str(value), "<...>")
    return decoded


def timeless(value: object, drop: tuple[str, ...] = ()) -> object:
    """A JSON value without its ``seconds`` (any key naming them, at any depth) and the
    top-level keys ``drop``."""
    if isinstance(value, dict):
        return {k: timeless(v) for k, v in value.items() if "seconds" not in k and k not in drop}
    if isinstance(value, list):
        return [timeless(v) for v in value]
    return value


def assert_same_run_files(cli_run: Path, api_run: Path) -> None:
    """The two run folders hold the same files; each is the same bit for bit, except the
    :data:`CHANGING` ones, the same once their seconds, plain-run ids and own paths are taken
    out, and the :data:`UNCOMPARED` ones."""
    made_by_cli, made_by_api = files_of(cli_run), files_of(api_run)
    assert sorted(made_by_cli) == sorted(made_by_api)
    assert any(name.endswith("best.pt") for name in made_by_cli)
    for name, data in made_by_cli.items():
        other, base = made_by_api[name], Path(name).name
        if base in UNCOMPARED:
            continue
        if base not in CHANGING:
            assert data == other, name
            continue
        a, b = without(data, cli_run.parent), without(other, api_run.parent)
        if base.endswith(".json"):
            drop = ("id",) if base == "model.json" else ()
            assert timeless(json.loads(a), drop) == timeless(json.loads(b), drop), name
        else:
            assert a == b, name


@pytest.fixture(scope="module")
def plain_runs(
    tiny_competition: DemoCompetition, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, toolkit.Run]:
    """The tiny recipe (one epoch) run by ``toolkit run`` and by ``toolkit.run``, each in a
    work folder of its own: the command's run folder, and the run object."""
    cli_work = tmp_path_factory.mktemp("cli")
    api_work = tmp_path_factory.mktemp("api")
    recipe = write_recipe(cli_work, tiny_competition.root)
    done = run_cli("run", recipe, "--output", cli_work / "run", "--set", "train.epochs=1")
    assert done.returncode == 0, done.stderr
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TOOLKIT_NO_PROGRESS", "1")
        env.setenv("TOOLKIT_LOAD_PLUGINS", "")
        run = toolkit.run(
            write_recipe(api_work, tiny_competition.root),
            overrides={"train.epochs": 1},
            output=api_work / "run",
        )
    return cli_work / "run", run


def test_toolkit_run_writes_the_files_toolkit_run_writes(plain_runs: tuple[Path, toolkit.Run]):
    cli_run, run = plain_runs
    assert run.path == run.path.absolute() and run.kind == "plain"
    assert run.written_report == run.report_path == run.path / "report.html"
    assert_same_run_files(cli_run, run.path)


def test_the_run_object_of_a_plain_run(plain_runs: tuple[Path, toolkit.Run]) -> None:
    _, run = plain_runs
    loaded = toolkit.load_run(run.path)
    assert (loaded.path, loaded.kind) == (run.path, "plain")
    board = loaded.leaderboard
    assert list(board.columns) == list(COLUMNS)
    rows = Leaderboard(run.path.parent / "leaderboard.db").rows()
    assert list(board["id"]) == [row.id for row in rows]
    assert len(board) == 1 and board.loc[0, "state"] == "complete"
    assert board.loc[0, "val_accuracy"] == run.outcome.val_accuracy  # type: ignore[union-attr]
    expected = pd.read_csv(run.path / "submission.csv", dtype={"id": str})
    pd.testing.assert_frame_equal(loaded.submission, expected)
    assert loaded.submission_path == run.path / "submission.csv"
    assert loaded.estimate is None  # a plain run has no ensemble to estimate
    cli_board = run_cli("leaderboard", run.path, "--json")
    assert cli_board.returncode == 0, cli_board.stderr
    from_cli = pd.DataFrame(json.loads(cli_board.stdout), columns=list(COLUMNS))
    pd.testing.assert_frame_equal(toolkit.leaderboard(run.path), from_cli)
    db = toolkit.leaderboard(run.path.parent / "leaderboard.db")
    pd.testing.assert_frame_equal(db, from_cli)  # the database holds this run's row alone


def test_toolkit_run_of_a_study_writes_the_files_toolkit_run_writes(
    tiny_competition: DemoCompetition, tiny_study: Path, tmp_path: Path
) -> None:
    """The tiny study (its trials, seed copies, refits and ensemble), run by ``toolkit
    run`` (the fixture) and by ``toolkit.run`` with the same recipe and overrides."""
    recipe = write_recipe(tmp_path, tiny_competition.root, TINY_STUDY)
    run = toolkit.run(recipe, overrides=["train.epochs=3"], output=tmp_path / "run", report=False)
    assert run.kind == "study" and run.written_report is None
    assert any((run.path / "trials").glob("*/refit/best.pt"))  # a refit of a chosen trial
    assert_same_run_files(tiny_study, run.path)


def test_load_run_of_a_finished_study(tiny_study: Path) -> None:
    run = toolkit.load_run(tiny_study)
    assert run.kind == "study" and run.report_path is None  # it ran with --no-report
    ensemble = json.loads((tiny_study / "ensemble.json").read_text())
    board = run.leaderboard
    assert board.loc[0, "kind"] == "ensemble" and board.loc[0, "id"] == ensemble["id"]
    assert set(board["id"]) >= {"run/t0000", "run/t0001", "run/t0002"}
    estimate = run.estimate
    assert estimate is not None
    assert (estimate.metric, estimate.value) == (
        ensemble["estimate"]["metric"],
        ensemble["estimate"]["value"],
    )
    assert estimate.validation == ensemble["val_metric"]
    assert estimate.best_trial == ensemble["best_trial"]
    assert estimate.describe().startswith(f"{estimate.metric} {estimate.value:.4f}")
    assert list(run.submission["id"]) == list(
        pd.read_csv(tiny_study / "submission.csv", dtype=str)["id"]
    )


def test_toolkit_run_of_a_stacked_profile_study_and_load_run(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    recipe = write_recipe(tmp_path, tiny_competition.root, STACKED_PROFILES)
    run = toolkit.run(recipe, overrides=["train.epochs=2"], output=tmp_path / "run")
    loaded = toolkit.load_run(tmp_path / "run")
    assert (run.kind, loaded.kind) == ("study", "study")
    assert loaded.report_path == tmp_path / "run" / "report.html" == run.written_report
    record = json.loads((tmp_path / "run" / "ensemble.json").read_text())
    assert record["method"] == "stack"
    estimate = loaded.estimate
    assert estimate is not None and estimate.method == "stack" and estimate.procedure == "stack"
    assert estimate == run.estimate and "stack" in estimate.methods
    board = loaded.leaderboard
    assert board.loc[0, "id"] == record["id"] and board.loc[0, "kind"] == "ensemble"
    assert {"cnn", "head"} <= set(board["profile"].dropna())  # a row per profile's trial
    # predict on the run's own test clips gives its submission
    test_clips = tiny_competition.root / "test"
    predicted = loaded.predict(test_clips, output=tmp_path / "again.csv")
    submission = loaded.submission.set_index("id").loc[predicted["id"]].reset_index()
    assert list(predicted.columns) == list(submission.columns)
    assert list(predicted["category"]) == [str(c) for c in submission["category"]]  # text
    written = pd.read_csv(tmp_path / "again.csv", dtype={"id": str})  # as the CSV reads back
    pd.testing.assert_frame_equal(written, submission)
    probabilities = loaded.predict(test_clips, probabilities=True)
    assert list(probabilities.columns)[0] == "id" and len(probabilities) == len(predicted)


# ------------------------------------------------------------------- errors are exceptions
def error_cases(work: Path, root: Path) -> dict[str, tuple[dict[str, object], list[object], type]]:
    """Each documented problem of ``toolkit.run``: its keyword arguments, the same for
    ``toolkit run`` (its arguments after the recipe), and the exception it raises."""
    missing = work / "no-such-competition"
    return {
        "a misspelt recipe key": (
            {"overrides": {"train.epoch": 3}},
            ["--set", "train.epoch=3"],
            toolkit.RecipeError,
        ),
        "an unknown plugin": (
            {"overrides": ["features.name=melody"]},
            ["--set", "features.name=melody"],
            toolkit.RecipeError,
        ),
        "a missing data folder": (
            {"data_root": missing},
            ["--set", f"data.root={missing}"],
            toolkit.DataError,
        ),
        "a plugin file that does not import": (
            {"overrides": {"plugins": [str(work / "broken.py")]}},
            ["--set", f"plugins=[{work / 'broken.py'}]"],
            toolkit.PluginLoadError,
        ),
        "a study storage for a recipe without a study": (
            {"storage": f"sqlite:///{work / 'study.db'}"},
            ["--storage", f"sqlite:///{work / 'study.db'}"],
            toolkit.SearchError,
        ),
    }


def test_each_problem_is_its_exception_with_the_command_s_line(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    recipe = write_recipe(tmp_path, tiny_competition.root)
    (tmp_path / "broken.py").write_text("import no_such_module_anywhere\n")
    for case, (kwargs, args, kind) in error_cases(tmp_path, tiny_competition.root).items():
        with pytest.raises(kind) as caught:
            toolkit.run(recipe, output=tmp_path / "run", **kwargs)  # type: ignore[arg-type]
        assert isinstance(caught.value, toolkit.ToolkitError), case
        done = run_cli("run", recipe, "--output", tmp_path / "run", *args, cwd=tmp_path)
        assert done.returncode == 2, (case, done.stderr)
        assert one_error_line(done.stderr) == f"error: {caught.value}", case
    assert not (tmp_path / "run").exists()  # nothing ran


def test_load_run_and_leaderboard_of_what_is_no_run(tmp_path: Path) -> None:
    with pytest.raises(toolkit.ModelError) as caught:
        toolkit.load_run(tmp_path / "nothing")
    done = run_cli("report", tmp_path / "nothing")  # the command that reads a run folder
    assert one_error_line(done.stderr) == f"error: {caught.value}"
    with pytest.raises(toolkit.ToolkitError, match="nothing: neither a run directory nor"):
        toolkit.leaderboard(tmp_path / "nothing")


# ------------------------------------------------------------ Ctrl-C inside toolkit.run
ONE_TRIAL_AT_A_TIME = """
model: {backbone: {name: head, hidden: 32}}
search:
  n_trials: 2
  sampler: {name: random, seed: 0}
  pruner: {name: none}
  space:
    train.optimizer.lr: {low: 0.001, high: 0.01, log: true}
ensemble: {size: 3}
"""


def interrupt_when(marker: Path, stop: threading.Event) -> threading.Thread:
    """A thread that sends this process SIGINT (Ctrl-C) once ``marker`` is written (never
    once ``stop`` is set)."""

    def wait_then_interrupt() -> None:
        while not marker.is_file():
            if stop.wait(0.05):
                return
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=wait_then_interrupt, daemon=True)
    thread.start()
    return thread


def test_ctrl_c_inside_toolkit_run_keeps_finished_trials_and_raises_run_interrupted(
    tiny_competition: DemoCompetition, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = with_pause(write_recipe(tmp_path, tiny_competition.root, ONE_TRIAL_AT_A_TIME))
    run_dir, marker = tmp_path / "run", tmp_path / "paused"
    monkeypatch.setenv("TOOLKIT_TEST_PAUSE", f"{marker}:2")  # trial 1's first step
    stop = threading.Event()
    thread = interrupt_when(marker, stop)
    try:
        with pytest.raises(toolkit.RunInterrupted) as caught:
            toolkit.run(recipe, output=run_dir)
    finally:
        stop.set()
        thread.join()
    assert isinstance(caught.value, KeyboardInterrupt)
    assert str(caught.value) == (
        "interrupted: finished clips and trials are kept; run again to resume"
    )
    board = Leaderboard(tmp_path / "leaderboard.db")
    assert {r.id: r.state for r in board.rows()} == {
        "run/t0000": "complete",
        "run/t0001": "interrupted",
    }
    trial = run_dir / "trials" / "t0000"
    assert (trial / "model.json").is_file() and (trial / "best.pt").is_file()
    weights = (trial / "best.pt").stat().st_mtime_ns
    assert not (run_dir / "ensemble.json").exists() and not (run_dir / "submission.csv").exists()
    hidden = [p for folder in (tmp_path, run_dir) for p in folder.iterdir() if p.name[0] == "."]
    assert hidden == []  # no half-written run (.run.partial) nor study files (.staged)
    # the folder is whole: the same call finishes it, trial 0 kept as it was
    monkeypatch.delenv("TOOLKIT_TEST_PAUSE")
    run = toolkit.run(recipe, output=run_dir, report=False)
    assert (trial / "best.pt").stat().st_mtime_ns == weights
    states = {r.id: r.state for r in board.rows()}
    # trial 1 stays interrupted; the study's second finished trial is a new one
    assert states == {
        "run/t0000": "complete",
        "run/t0001": "interrupted",
        "run/t0002": "complete",
        **{r.id: "complete" for r in board.rows(kind="ensemble")},
    }
    assert run.leaderboard.loc[0, "kind"] == "ensemble"
    assert run.submission_path.is_file()


def test_importing_toolkit_and_its_exceptions_stays_light() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, toolkit\n"
        "assert issubclass(toolkit.RunInterrupted, KeyboardInterrupt)\n"
        "assert issubclass(toolkit.RecipeError, toolkit.ToolkitError)\n"
        "print(sorted(m for m in ('torch', 'pandas', 'optuna') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
