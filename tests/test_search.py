"""The AutoML search: space validation, a tiny study end to end, and resuming a killed study."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from tests.conftest import (
    TINY_RECIPE,
    copy_workspace,
    kill_when_paused,
    run_cli,
    start_paused,
    with_pause,
    write_recipe,
)
from toolkit.demo import DemoCompetition
from toolkit.errors import RecipeError
from toolkit.leaderboard import Leaderboard
from toolkit.metrics import accuracy, log_loss
from toolkit.recipe.loading import load_recipe
from toolkit.recipe.schema import Ensemble
from toolkit.recipe.search import Search
from toolkit.recipe.validation import validate_recipe
from toolkit.registry.loader import load_plugins
from toolkit.study import StudyRun
from toolkit.study.baseline import enqueue_baseline
from toolkit.study.objective import TrialObjective, run_trial
from toolkit.study.samplers import TrialSeededSampler
from toolkit.study.space import apply_values, recipe_values, suggest, validate_space
from toolkit.study.workers import worker_alive, worker_identity

SEARCH = """
search:
  n_trials: {n_trials}
  sampler: {{name: {sampler}, seed: 0}}
  pruner: {pruner}
  space:
    train.optimizer.lr: {{low: 0.001, high: 0.01, log: true}}
    model.backbone.width: {{choices: [4, 8]}}
ensemble: {{size: 10}}
"""


def search_recipe(
    directory: Path,
    root: Path,
    n_trials: int = 4,
    sampler: str = "tpe",
    pruner: str = "{name: median, n_startup_trials: 2}",
    extra: str = "",
) -> Path:
    """The tiny recipe with a small search over lr and width."""
    text = SEARCH.format(n_trials=n_trials, sampler=sampler, pruner=pruner) + extra
    return write_recipe(directory, root, extra=text)


def load_study(run_dir: Path, name: str = "tiny") -> optuna.Study:
    """The study a run keeps in its default storage."""
    return optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir / 'study.db'}")


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Complete and pruned trials."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.get_trials(states=states)


def board_rows(work: Path, *args: str) -> list[dict[str, Any]]:
    """``toolkit leaderboard --json`` rows of the work directory's database."""
    result = run_cli("leaderboard", "--db", work / "leaderboard.db", "--json", *args, cwd=work)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# ------------------------------------------------------------------ the space
@pytest.fixture(scope="module")
def registry() -> Any:
    return load_plugins()


@pytest.fixture
def raw(tmp_path: Path) -> dict[str, Any]:
    text = TINY_RECIPE.format(root=tmp_path, cache=tmp_path / "c", board=tmp_path / "b.db")
    return yaml.safe_load(text)


def space(mapping: dict[str, Any]) -> Any:
    return Search.model_validate({"space": mapping}).space


def check_error(raw: dict[str, Any], registry: Any, mapping: dict[str, Any]) -> str:
    with pytest.raises(RecipeError) as info:
        validate_space(raw, registry, space(mapping))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_space_accepts_recipe_keys_plugin_params_and_plugin_choices(
    raw: dict[str, Any], registry: Any
) -> None:
    validate_space(
        raw,
        registry,
        space(
            {
                "train.optimizer.lr": {"low": 1e-4, "high": 0.1, "log": True},
                "train.batch_size": {"choices": [8, 16]},
                "augmenters.2.alpha": {"low": 0.1, "high": 0.4},
                "model.backbone.name": {"choices": ["resnet18", "timm"]},
                "model.backbone.width": {"choices": [4, 8]},
                "model.backbone.model": {"choices": ["resnet10t"]},
            }
        ),
    )


def test_space_typos_name_the_key_and_the_closest_name(raw: dict[str, Any], registry: Any) -> None:
    lr = check_error(raw, registry, {"train.optimizer.lrr": {"low": 0.001, "high": 0.1}})
    assert "train.optimizer.lrr" in lr and "'lr'" in lr
    width = check_error(raw, registry, {"model.backbone.widht": {"choices": [4, 8]}})
    assert "model.backbone.widht" in width and "'width'" in width
    name = check_error(raw, registry, {"model.backbone.name": {"choices": ["resnet18", "resnt"]}})
    assert "'resnt'" in name and "resnet18" in name
    bad_value = check_error(raw, registry, {"train.epochs": {"low": 0, "high": 3}})
    assert "train.epochs" in bad_value and "greater than or equal to 1" in bad_value
    missing = check_error(raw, registry, {"augmenters.7.alpha": {"low": 0.1, "high": 0.2}})
    assert "augmenters.7" in missing and "3" in missing


@pytest.mark.parametrize("key", ["data.duration", "split.test_size", "output.dir", "name"])
def test_space_refuses_keys_that_break_comparability(
    key: str, raw: dict[str, Any], registry: Any
) -> None:
    message = check_error(raw, registry, {key: {"low": 0.1, "high": 0.2}})
    assert key in message and "cannot be searched" in message


def test_distribution_schema_errors() -> None:
    for bad in (
        {"low": 3, "high": 1},
        {"low": 0, "high": 1, "log": True},
        {"choices": []},
        {"low": 1, "high": 2, "lo": 0},
    ):
        with pytest.raises(ValueError):
            Search.model_validate({"space": {"train.epochs": bad}})
    with pytest.raises(ValueError, match="train.epochs: unknown key 'lo'; did you mean 'low'"):
        Search.model_validate({"space": {"train.epochs": {"lo": 1, "high": 2}}})


def test_switching_plugin_keeps_only_accepted_params_and_conditions_the_space(
    raw: dict[str, Any], registry: Any
) -> None:
    switched = apply_values(raw, {"model.backbone.name": "timm"}, registry)
    assert switched["model"]["backbone"] == {"name": "timm"}  # resnet18's width is dropped
    values = {"model.backbone.name": "timm", "model.backbone.width": 4}
    assert apply_values(raw, values, registry)["model"]["backbone"] == {"name": "timm"}
    kept = apply_values(raw, {"model.backbone.width": 4}, registry)
    assert kept["model"]["backbone"] == {"name": "resnet18", "width": 4}

    conditional = space(
        {"model.backbone.name": {"choices": ["timm"]}, "model.backbone.width": {"choices": [4, 8]}}
    )
    study = optuna.create_study()
    drawn = suggest(study.ask(), conditional, raw, registry)
    assert drawn == {"model.backbone.name": "timm"}  # timm takes no width: not sampled


def test_sampler_draws_depend_on_the_trial_number_not_the_process() -> None:
    def draws(start: int) -> list[float]:
        sampler = TrialSeededSampler(lambda s: optuna.samplers.RandomSampler(seed=s), 7)
        study = optuna.create_study(sampler=sampler)
        for _ in range(start):  # trials other workers took
            study.tell(study.ask(), 0.0)
        return [study.ask().suggest_float("x", 0, 1) for _ in range(2)]

    first, resumed = draws(0), draws(2)
    again = draws(0)
    assert first == again
    assert not set(first) & set(resumed)


def test_worker_liveness_by_pid() -> None:
    me = worker_identity()
    assert worker_alive(me) is True
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert worker_alive({**me, "pid": child.pid}) is False
    assert worker_alive({**me, "host": me["host"] + "-elsewhere"}) is None


def test_heartbeat_grace_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from toolkit.errors import SearchError
    from toolkit.study.storage import heartbeat_timing

    monkeypatch.delenv("TOOLKIT_HEARTBEAT_GRACE", raising=False)
    assert heartbeat_timing() == (30, 120)
    for value, timing in (("4", (1, 4)), ("60", (15, 60)), (" 600 ", (30, 600))):
        monkeypatch.setenv("TOOLKIT_HEARTBEAT_GRACE", value)
        assert heartbeat_timing() == timing
    for bad in ("3", "2.5", "soon", "-10"):
        monkeypatch.setenv("TOOLKIT_HEARTBEAT_GRACE", bad)
        with pytest.raises(SearchError, match="TOOLKIT_HEARTBEAT_GRACE=.*at least 4"):
            heartbeat_timing()


def test_recipe_values_are_the_baseline_trial(raw: dict[str, Any], registry: Any) -> None:
    recipe = validate_recipe(raw, registry, "tiny")
    drawn = recipe_values(
        recipe,
        space(
            {
                "train.optimizer.lr": {"low": 0.001, "high": 0.01, "log": True},
                "model.backbone.width": {"choices": [4, 8]},
                "model.backbone.name": {"choices": ["resnet18", "timm"]},
                "train.optimizer.weight_decay": {"low": 1e-6, "high": 1e-3, "log": True},
                "train.batch_size": {"low": 8, "high": 32, "step": 8},
            }
        ),
    )
    # weight_decay 0 is outside its log range: the sampler draws it
    assert drawn == {
        "train.optimizer.lr": 0.003,
        "model.backbone.width": 8,
        "model.backbone.name": "resnet18",
        "train.batch_size": 16,
    }


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_failed_baseline_trial_is_queued_again(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    recipe = search_recipe(tmp_path, tiny_competition.root, n_trials=3)
    run = StudyRun(load_recipe(recipe, output=tmp_path / "run"))
    handle, study = run.handle, run.handle.study
    values = enqueue_baseline(handle, run.recipe)
    assert values is not None
    assert enqueue_baseline(handle, run.recipe) is None  # queued once

    def fixed(number: int) -> dict[str, Any]:  # the values an enqueued trial will suggest
        return dict(study.trials[number].system_attrs["fixed_params"])

    first = study.ask()
    assert fixed(0) == values and first.user_attrs["baseline"]
    assert enqueue_baseline(handle, run.recipe) is None  # running
    study.tell(first, state=optuna.trial.TrialState.FAIL)  # its worker was killed
    assert enqueue_baseline(handle, run.recipe) == values
    again = study.ask()
    assert again.number == 1 and fixed(1) == values and again.user_attrs["baseline"]
    study.tell(again, 0.5)
    study.tell(study.ask(), 0.4)
    assert enqueue_baseline(handle, run.recipe) is None  # the baseline finished


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_surplus_trials_and_dead_workers(tiny_competition: DemoCompetition, tmp_path: Path) -> None:
    recipe = search_recipe(tmp_path, tiny_competition.root, n_trials=2)
    run = StudyRun(load_recipe(recipe, output=tmp_path / "run"))
    handle = run.handle
    trials = [handle.study.ask() for _ in range(3)]  # three workers asked at once for two slots
    assert [handle.surplus(t.number) for t in trials] == [False, False, True]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trials[1].set_user_attr("worker", {**worker_identity(), "pid": dead.pid})
    trials[0].set_user_attr("worker", worker_identity())  # this process: alive
    assert run.dead.fail(handle) == [1]
    assert handle.surplus(2) is False  # the dead trial's slot is free again
    assert handle.counts()["running"] == 2 and handle.counts()["failed"] == 1


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_whose_worker_died_before_its_row_gets_a_failed_row(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    recipe = search_recipe(tmp_path, tiny_competition.root, n_trials=2)
    run = StudyRun(load_recipe(recipe, output=tmp_path / "run"))
    trial = run.handle.study.ask(
        {"train.optimizer.lr": optuna.distributions.FloatDistribution(0.001, 0.01)}
    )
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trial.set_user_attr("worker", {**worker_identity(), "pid": dead.pid})  # killed at once
    assert run.dead.fail(run.handle) == [0]
    row = run.board.get("run/t0000")
    assert (row.kind, row.state, row.trial_number) == ("trial", "failed", 0)
    assert row.params == {**trial.params, "error": "its worker process died"}


class Progress:
    """A trial's progress as a worker's live view would get it; ``fail`` breaks it."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.said: list[str] = []

    def doing(self, text: str) -> None:
        if self.fail:
            raise RuntimeError("the view is gone")
        self.said.append(text)

    def epoch(self, text: str) -> None:
        self.said.append(text)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_returns_what_it_did_and_optuna_records_the_same(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    """The objective is given the handle, the models and a progress, and returns the trial's
    outcome: failed (with its error), complete (its value is its row's) or surplus."""
    recipe = search_recipe(tmp_path, tiny_competition.root, n_trials=1, pruner="{name: none}")
    run = StudyRun(load_recipe(recipe, output=tmp_path / "run"))
    run.open_folder()
    study = run.handle.study

    failed = run_trial(study, TrialObjective(run.handle, run.models, Progress(fail=True)))
    assert failed is not None
    assert (failed.number, failed.state, failed.value) == (0, "failed", None)
    assert failed.error == "RuntimeError: the view is gone"
    assert study.trials[0].state == optuna.trial.TrialState.FAIL

    progress = Progress()
    done = run_trial(study, TrialObjective(run.handle, run.models, progress))
    assert done is not None and (done.number, done.state) == (1, "complete")
    assert done.value == study.trials[1].value == run.board.get("run/t0001").metric_value
    assert done.seconds > 0 and done.error == ""
    assert progress.said[0] == "trial 1: preparing and training"
    epochs = [text.split(",")[0] for text in progress.said[1:]]
    assert epochs == ["trial 1: epoch 1/2", "trial 1: epoch 2/2"]

    surplus = run_trial(study, TrialObjective(run.handle, run.models, Progress()))
    assert surplus is not None and (surplus.number, surplus.state) == (2, "surplus")
    assert study.trials[2].state == optuna.trial.TrialState.FAIL
    assert study.trials[2].user_attrs["surplus"] is True
    assert [r.id for r in run.board.rows(run_dir=tmp_path / "run")] == ["run/t0001"]


# ---------------------------------------------------------- a tiny study, CLI
@pytest.fixture(scope="module")
def study_work(tiny_competition: DemoCompetition, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``toolkit run`` of a 4-trial study (2 epochs each); returns the work directory."""
    work = tmp_path_factory.mktemp("study")
    recipe = search_recipe(work, tiny_competition.root)
    result = run_cli("run", recipe, "--output", work / "run", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "ensemble: run/e1" in result.stdout
    assert "estimate: accuracy " in result.stdout  # the number to expect, said too
    return work


@pytest.mark.slow
def test_study_ends_with_an_ensemble_at_least_as_good_as_its_best_trial(study_work: Path) -> None:
    run_dir = study_work / "run"
    study = load_study(run_dir)
    assert len(finished(study)) == 4
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert complete
    best = max(t.value for t in complete if t.value is not None)
    summary = json.loads((run_dir / "ensemble.json").read_text())
    assert summary["val_metric"] >= best
    assert summary["best_trial_metric"] == best
    weights = [m["weight"] for m in summary["members"]]
    assert sum(weights) == pytest.approx(1.0)
    ids = {f"run/t{t.number:04d}" for t in complete}
    assert {m["id"] for m in summary["members"]} <= ids
    for t in complete:  # every complete trial keeps its probabilities and best weights
        folder = run_dir / "trials" / f"t{t.number:04d}"
        for name in ("best.pt", "val_probs.npy", "test_probs.npy", "test_probs.csv"):
            assert (folder / name).is_file(), (t.number, name)
        assert np.load(folder / "val_probs.npy").shape == (8, 4)
        assert set(t.params) == {"train.optimizer.lr", "model.backbone.width"}
    # trial 0 is the recipe as written (search.baseline)
    assert study.trials[0].params == {"train.optimizer.lr": 0.003, "model.backbone.width": 8}
    # the selection cross-validated over parts of the 8 validation clips, on its row too
    estimate = summary["estimate"]
    assert estimate["metric"] == "accuracy" and len(estimate["parts"]) == 5
    assert 0.0 <= estimate["value"] <= 1.0 and estimate["accuracy"] == estimate["value"]
    row = Leaderboard(study_work / "leaderboard.db").get("run/e1")
    assert row is not None and row.estimate == estimate["value"]


@pytest.mark.slow
def test_study_submission_is_the_ensembles_in_sample_order(
    study_work: Path, tiny_competition: DemoCompetition
) -> None:
    sample = pd.read_csv(tiny_competition.sample_submission, dtype=str)
    submission = pd.read_csv(study_work / "run" / "submission.csv", dtype=str)
    assert list(submission.columns) == list(sample.columns)
    assert list(submission["id"]) == list(sample["id"])
    probs = pd.read_csv(study_work / "run" / "test_probs.csv")
    columns = [c for c in probs.columns if c.startswith("p_")]
    predicted = [columns[i].removeprefix("p_") for i in probs[columns].to_numpy().argmax(axis=1)]
    assert list(submission["category"]) == predicted


@pytest.mark.slow
def test_leaderboard_holds_every_trial_and_the_ensemble(study_work: Path) -> None:
    rows = board_rows(study_work)
    trials = [r for r in rows if r["kind"] == "trial"]
    ensembles = [r for r in rows if r["kind"] == "ensemble"]
    assert len(trials) == 4 and len(ensembles) == 1
    assert sorted(r["trial_number"] for r in trials) == [0, 1, 2, 3]
    assert {r["state"] for r in trials} <= {"complete", "pruned"}
    for r in trials:
        assert r["epochs"] >= 1 and r["seconds"] > 0
        assert "train.optimizer.lr" in r["params"] and "model.backbone.width" in r["params"]
    ensemble = ensembles[0]
    assert ensemble["id"] == "run/e1" and ensemble["metric"] == "accuracy"
    assert Path(ensemble["submission"]) == (study_work / "run" / "submission.csv").resolve()
    assert rows[0]["id"] == "run/e1"  # shown above its members
    members = {m["id"] for m in ensemble["members"]}
    assert members <= {r["id"] for r in trials if r["state"] == "complete"}

    top = board_rows(study_work, "--top", "1", "--kind", "trial")
    assert len(top) == 1
    csv = run_cli("leaderboard", "--db", study_work / "leaderboard.db", "--csv", cwd=study_work)
    assert csv.returncode == 0 and len(csv.stdout.strip().splitlines()) == 6


@pytest.mark.slow
def test_a_public_score_is_recorded_beside_its_row(study_work: Path, tmp_path: Path) -> None:
    work = copy_workspace(study_work, tmp_path / "work")  # this test writes to the leaderboard
    recorded = run_cli("leaderboard", "record", "run/e1", "0.7956", "--db", work / "leaderboard.db")
    assert recorded.returncode == 0, recorded.stderr
    assert [r["public_score"] for r in board_rows(work) if r["id"] == "run/e1"] == [0.7956]
    assert all(r["public_score"] is None for r in board_rows(study_work))


@pytest.mark.slow
def test_running_a_finished_study_again_trains_nothing(study_work: Path) -> None:
    stamps = {p: p.stat().st_mtime_ns for p in (study_work / "run" / "trials").rglob("best.pt")}
    result = run_cli(
        "run", study_work / "recipe.yaml", "--output", study_work / "run", cwd=study_work
    )
    assert result.returncode == 0, result.stderr
    assert "ensemble: run/e1" in result.stdout  # the same selection, the same row
    assert len(load_study(study_work / "run").trials) == 4
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


@pytest.mark.slow
def test_ensemble_seeds_retrain_the_chosen_trials_once(study_work: Path, tmp_path: Path) -> None:
    study_work = copy_workspace(study_work, tmp_path / "work")  # seed copies, new ensembles
    run = StudyRun(load_recipe(study_work / "recipe.yaml", output=study_work / "run"))
    spec = Ensemble(size=1, seeds=2, init_best=1)  # the best trial, then one more pick
    first = run.ensemble(Ensemble(size=1))
    outcome = run.ensemble(spec)
    best = outcome.best_trial
    assert list(first.members) == [best]
    copy = run.settings.run_dir / "trials" / best.split("/")[-1] / "seed1"
    stamp = (copy / "best.pt").stat().st_mtime_ns
    again = run.ensemble(spec)
    assert again.id == outcome.id and again.members == outcome.members
    assert (copy / "best.pt").stat().st_mtime_ns == stamp  # reused, not retrained
    rows = {r["id"]: r for r in board_rows(study_work)}
    assert rows[f"{best}-s1"]["state"] == "complete"
    assert rows[f"{best}-s1"]["params"]["seed"] == 1
    # seed copies and bags are kinds of their own on the leaderboard (--json shows it)
    assert (rows[best]["kind"], rows[f"{best}-s1"]["kind"]) == ("trial", "seed")
    bag = rows[f"{best}-bag"]
    assert bag["kind"] == "bag" and bag["state"] == "complete"
    assert {m["id"]: m["weight"] for m in bag["members"]} == {best: 0.5, f"{best}-s1": 0.5}
    # the copy and the bag (best + copy) were candidates; the ensemble beats every one
    complete = load_study(run.settings.run_dir).get_trials(
        states=(optuna.trial.TrialState.COMPLETE,)
    )
    assert outcome.candidates == len(complete) + 2
    data = run.check_split()
    trial_probs = np.load(copy.parent / "val_probs.npy")
    copy_probs = np.load(copy / "val_probs.npy")
    for probs in (trial_probs, copy_probs, (trial_probs + copy_probs) / 2):
        assert outcome.val_metric >= accuracy(probs, data.val_labels)
    weights = {m["id"]: m["weight"] for m in rows[outcome.id]["members"]}
    assert set(weights) <= {best, f"{best}-s1"} | set(rows)
    assert sum(weights.values()) == pytest.approx(1.0)


@pytest.mark.slow
def test_optuna_dashboard_opens_the_storage(study_work: Path) -> None:
    pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is not installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"sqlite:///{study_work / 'run' / 'study.db'}"
    script = f"import optuna_dashboard as d; d.run_server({url!r}, host='127.0.0.1', port={port})"
    server = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        body = None
        deadline = time.monotonic() + 60
        while body is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as r:
                    body = json.loads(r.read())
            except OSError:
                time.sleep(0.5)
        assert body is not None, "optuna-dashboard did not answer"
        assert [s["study_name"] for s in body["study_summaries"]] == ["tiny"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_run_search_recipe_errors_are_one_line(
    tiny_competition: DemoCompetition, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from toolkit.cli.app import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    recipe = search_recipe(tmp_path, tiny_competition.root)
    forbidden = "search.space={data.duration: {low: 1, high: 2}}"
    result = runner.invoke(app, ["run", str(recipe), "--set", forbidden])
    assert result.exit_code == 2, result.output
    assert "data.duration" in result.stderr and str(recipe) in result.stderr
    assert "Traceback" not in result.stderr
    plain = write_recipe(tmp_path / "plain", tiny_competition.root)
    storage = runner.invoke(app, ["run", str(plain), "--storage", "sqlite:///x.db"])
    assert storage.exit_code == 2 and "search" in storage.stderr
    worker = runner.invoke(app, ["worker", str(plain)])
    assert worker.exit_code == 2 and "search" in worker.stderr
    assert not (tmp_path / "runs").exists()  # refused before any work


# ------------------------------------------------------- killed and resumed
@pytest.mark.slow
def test_study_killed_mid_trial_resumes_without_losing_or_repeating_trials(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    recipe = search_recipe(
        tmp_path,
        tiny_competition.root,
        n_trials=3,
        sampler="random",
        pruner="{name: none}",
        extra="",
    )
    with_pause(recipe)
    run_dir = tmp_path / "run"
    marker = tmp_path / "paused"
    first = start_paused(["run", recipe, "--output", run_dir], marker, 2, cwd=tmp_path)
    kill_when_paused(first, marker)  # in trial 1's first step: trial 0 is complete
    killed = 1

    before = {t.number: t for t in load_study(run_dir).get_trials() if t.state.name == "COMPLETE"}
    assert set(before) == {0}
    stamps = {n: (run_dir / "trials" / f"t{n:04d}" / "best.pt").stat().st_mtime_ns for n in before}
    assert load_study(run_dir).trials[killed].state == optuna.trial.TrialState.RUNNING

    again = run_cli("run", recipe, "--output", run_dir, cwd=tmp_path)
    assert again.returncode == 0, again.stderr

    study = load_study(run_dir)
    states = {t.number: t.state for t in study.trials}
    assert len(finished(study)) == 3
    assert states[killed] == optuna.trial.TrialState.FAIL
    for n, trial in before.items():  # kept, not run again
        assert states[n] == optuna.trial.TrialState.COMPLETE
        assert study.trials[n].value == trial.value
        assert (run_dir / "trials" / f"t{n:04d}" / "best.pt").stat().st_mtime_ns == stamps[n]
    complete = [n for n, s in states.items() if s == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3 and killed not in complete
    for n in complete:
        assert (run_dir / "trials" / f"t{n:04d}" / "test_probs.npy").is_file()
    rows = {r["id"]: r for r in board_rows(tmp_path)}
    trial_rows = [r for r in rows.values() if r["kind"] == "trial"]
    assert sorted(r["trial_number"] for r in trial_rows if r["state"] == "complete") == complete
    assert rows[f"run/t{killed:04d}"]["state"] == "failed"
    assert any(r["kind"] == "ensemble" for r in rows.values())
    assert (run_dir / "submission.csv").is_file()


# ------------------------------------------- a minimising metric, and pruning
LOG_LOSS_SEARCH = """
search:
  n_trials: 3
  metric: log_loss
  sampler: {name: random, seed: 11}
  pruner: {name: median, n_startup_trials: 2, n_warmup_steps: 0}
  space:
    train.optimizer.lr: {choices: [0.003, 0.01, 0.3]}
    model.backbone.width: {choices: [4, 8]}
ensemble: {size: 10}
"""
"""Trial 0 (the recipe), trial 1 (lr 0.01, width 4), both complete (the pruner's startup
trials), and trial 2 (lr 0.3, which the pruner may stop: the tests read each trial's state;
:func:`test_median_pruner_stops_a_clearly_worse_trial` builds a pruned trial). Whether a trial's
lowest loss and best accuracy fall on different epochs is up to training too:
:func:`test_log_loss_keeps_the_lowest_loss_epoch_not_the_most_accurate` builds that case."""


@pytest.fixture(scope="module")
def features_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A ``--set`` of the cache the studies below share (features computed once)."""
    return f"cache.dir={tmp_path_factory.mktemp('search_cache')}"


@pytest.fixture(scope="module")
def log_loss_study(
    tiny_competition: DemoCompetition, tmp_path_factory: pytest.TempPathFactory, features_cache: str
) -> Path:
    """A 3-trial study minimising log loss with a median pruner, run in this process;
    returns its work directory (run directory ``run``)."""
    from toolkit.workflow import run_study

    work = tmp_path_factory.mktemp("log_loss")
    recipe = write_recipe(work, tiny_competition.root, extra=LOG_LOSS_SEARCH)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TOOLKIT_NO_PROGRESS", "1")
        result = run_study(load_recipe(recipe, [features_cache], work / "run"))
    assert result.worker.stopped_by == "n_trials"
    return work


def study_labels(work: Path) -> np.ndarray:
    """The validation labels of the study's trials, as class indices."""
    table = pd.read_csv(work / "run" / "val_probs.csv", dtype={"id": str, "label": str})
    classes = [c.removeprefix("p_") for c in table.columns if c.startswith("p_")]
    return np.array([classes.index(label) for label in table["label"]])


@pytest.mark.slow
def test_log_loss_study_minimises_from_best_epochs_to_the_leaderboard(
    log_loss_study: Path,
) -> None:
    from toolkit.metrics import log_loss

    run_dir = log_loss_study / "run"
    study = load_study(run_dir)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) >= 2
    for t in complete + study.get_trials(states=(optuna.trial.TrialState.PRUNED,)):
        history = pd.read_csv(run_dir / "trials" / f"t{t.number:04d}" / "metrics.csv")
        # train.calibration (default temperature): the loss of calibrated predictions
        lowest = history.loc[history["val_loss_calibrated"].idxmin()]
        assert min(t.intermediate_values.values()) == pytest.approx(lowest["val_loss_calibrated"])
        if t.state == optuna.trial.TrialState.COMPLETE:  # its best epoch: the lowest loss
            row = Leaderboard(log_loss_study / "leaderboard.db").get(f"run/t{t.number:04d}")
            assert row.best_epoch == lowest["epoch"]
            assert t.value == pytest.approx(lowest["val_loss_calibrated"])

    summary = json.loads((run_dir / "ensemble.json").read_text())
    best = min(t.value for t in complete if t.value is not None)
    assert summary["metric"] == "log_loss" and summary["best_trial_metric"] == best
    assert summary["val_metric"] <= best  # never worse than the best trial
    assert summary["val_metric"] == min(summary["trajectory"])  # the lowest prefix is kept
    ensemble_probs = pd.read_csv(run_dir / "val_probs.csv")
    p = ensemble_probs[[c for c in ensemble_probs.columns if c.startswith("p_")]].to_numpy()
    labels = study_labels(log_loss_study)
    assert log_loss(p, labels) == pytest.approx(summary["val_metric"], abs=1e-6)
    for t in complete:  # selected to minimise: no single trial does better
        trial_probs = np.load(run_dir / "trials" / f"t{t.number:04d}" / "val_probs.npy")
        assert summary["val_metric"] <= log_loss(trial_probs, labels) + 1e-12

    rows = board_rows(log_loss_study, "--sort", "metric_value")
    assert rows[0]["kind"] == "ensemble" and rows[0]["metric"] == "log_loss"
    values = [r["metric_value"] for r in rows if r["kind"] == "trial"]
    assert len(values) == 3 and values == sorted(values)  # lowest loss first
    top = board_rows(log_loss_study, "--sort", "metric_value", "--top", "1", "--kind", "trial")
    assert [r["trial_number"] for r in top] == [min(complete, key=lambda t: t.value).number]


PRUNED_SEARCH = """
search:
  n_trials: 4
  metric: log_loss
  sampler: {name: random, seed: 5}
  pruner: {name: median, n_startup_trials: 2, n_warmup_steps: 0}
  space:
    model.backbone.confidence: {choices: [1, 40]}
"""
"""Four trials of the ``scripted`` backbone (class 1 favoured at both epochs), their
``confidence`` drawn by the seeded sampler. A trial of confidence 40 is confidently wrong on
every clip not of class 1: its first epoch's loss is far above any trial's of confidence 1."""


@pytest.mark.slow
def test_median_pruner_stops_a_clearly_worse_trial(
    tiny_competition: DemoCompetition, tmp_path: Path, features_cache: str
) -> None:
    run_dir = scripted_study(
        tiny_competition.root, tmp_path, features_cache, PRUNED_SEARCH, [[1, 1], [1, 1]]
    )
    study = load_study(run_dir)
    confident = {t.number for t in study.trials if t.params["model.backbone.confidence"] == 40}
    # the seeded sampler's draws (not training) make the case: the pruner's startup trials 0
    # and 1 include a calm one, and a later trial is confidently wrong
    assert len(confident & {0, 1}) < 2 and confident - {0, 1}, confident
    diverging = [t for t in study.trials if t.number in confident - {0, 1}]
    pruned = study.get_trials(states=(optuna.trial.TrialState.PRUNED,))
    assert {t.number for t in diverging} <= {t.number for t in pruned}
    assert {t.number for t in pruned} <= confident  # never a calm trial
    rows = {r["trial_number"]: r for r in board_rows(tmp_path, "--kind", "trial")}
    for t in diverging:
        assert len(t.intermediate_values) < 2  # stopped before train.epochs (2)
        assert rows[t.number]["state"] == "pruned" and rows[t.number]["epochs"] < 2
        folder = run_dir / "trials" / f"t{t.number:04d}"
        assert len(pd.read_csv(folder / "metrics.csv")) == len(t.intermediate_values)
        assert not (folder / "test_probs.npy").exists()  # no predictions: not a candidate
        assert not (folder / "best.pt").exists()
    members = {m["id"] for m in json.loads((run_dir / "ensemble.json").read_text())["members"]}
    assert not members & {f"run/t{t.number:04d}" for t in pruned}


SCRIPTED_PLUGIN = Path(__file__).parent / "plugins" / "scripted.py"

SCRIPTED_SEARCH = """
search:
  n_trials: 1
  metric: {metric}
  sampler: {{name: random, seed: 0}}
  pruner: {{name: none}}
  space:
    train.optimizer.lr: {{choices: [0.003]}}
"""


def scripted_study(
    root: Path,
    work: Path,
    features_cache: str,
    search: str,
    script: list[list[float]],
    *sets: str,
) -> Path:
    """A study of the ``scripted`` backbone (tests/plugins/scripted.py), its logits per epoch
    set by ``script`` (and ``sets``: more ``--set`` overrides); returns its run directory."""
    from toolkit.workflow import run_study

    recipe = write_recipe(work, root, extra=search)
    text = recipe.read_text()
    resnet = "model: {backbone: {name: resnet18, width: 8}}"
    assert resnet in text
    scripted = f"{{name: scripted, script: {script}, confidence: 1}}"
    text = text.replace(resnet, f"model: {{backbone: {scripted}}}")
    recipe.write_text(f"plugins: [{SCRIPTED_PLUGIN}]\n" + text)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TOOLKIT_NO_PROGRESS", "1")
        run_study(load_recipe(recipe, [features_cache, *sets], work / "run"))
    return work / "run"


OVERCONFIDENT = [[1, 20], [0, 0.01]]
"""Epoch 1 sure of class 1 on every clip (the more accurate, but overconfident: a raw loss far
above ln K), epoch 2 nearly uniform with class 0 a shade ahead (a raw loss of about ln K, but it
favours the rarer class). Calibrated, epoch 1 is the lower loss: a temperature softens it to
the share of class 1, while no temperature makes a lean to the rarer class 0 as good."""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("metric", "calibration", "kept"),
    [("log_loss", "none", 2), ("log_loss", "temperature", 1), ("accuracy", "temperature", 1)],
)
def test_log_loss_keeps_the_epoch_its_calibrated_loss_picks(
    tiny_competition: DemoCompetition,
    tmp_path: Path,
    features_cache: str,
    metric: str,
    calibration: str,
    kept: int,
) -> None:
    search = SCRIPTED_SEARCH.format(metric=metric)
    run_dir = scripted_study(
        tiny_competition.root,
        tmp_path,
        features_cache,
        search,
        OVERCONFIDENT,
        f"train.calibration={calibration}",
    )
    trial = run_dir / "trials" / "t0000"
    labels = pd.read_csv(trial / "val_probs.csv", dtype={"label": str})["label"]
    assert (labels == "1").sum() > (labels == "0").sum(), "the case needs more 1s than 0s"
    history = pd.read_csv(trial / "metrics.csv").set_index("epoch")
    # the constructed case: epoch 1 is the more accurate, epoch 2 the lower raw loss
    assert history.loc[1, "val_accuracy"] > history.loc[2, "val_accuracy"]
    assert history.loc[2, "val_loss"] < history.loc[1, "val_loss"]
    if calibration == "temperature":  # ... and epoch 1 the lower calibrated loss
        assert history.loc[1, "val_loss_calibrated"] < history.loc[2, "val_loss_calibrated"]
        assert history.loc[1, "temperature"] > 1  # softened
        loss = "val_loss_calibrated"
    else:
        assert "val_loss_calibrated" not in history and "temperature" not in history
        loss = "val_loss"
    column = loss if metric == "log_loss" else "val_accuracy"
    row = Leaderboard(tmp_path / "leaderboard.db").get("run/t0000")
    assert row.best_epoch == kept
    assert torch_best_epoch(trial) == kept  # the weights kept are that epoch's
    (value,) = load_study(run_dir).best_trial.values
    assert value == pytest.approx(history.loc[kept, column])
    temperature = history.loc[kept, "temperature"] if calibration == "temperature" else 1.0
    record = json.loads((trial / "model.json").read_text())
    assert record["temperature"] == pytest.approx(temperature)
    if metric == "log_loss":  # the row's log loss: of the calibrated predictions
        assert row.metric_value == pytest.approx(history.loc[kept, column])
    assert row.val_loss == pytest.approx(history.loc[kept, loss])
    # the kept weights predict the test clips as that epoch, calibrated by its temperature
    test_probs = np.load(trial / "test_probs.npy")
    assert (test_probs.argmax(1) == (1 if kept == 1 else 0)).all()
    script_class, scale = OVERCONFIDENT[kept - 1]
    k = test_probs.shape[1]
    favoured = np.exp(scale / temperature) / (np.exp(scale / temperature) + k - 1)
    assert test_probs[:, script_class] == pytest.approx(favoured, rel=1e-5)
    val_probs = np.load(trial / "val_probs.npy")
    classes = [str(c) for c in range(val_probs.shape[1])]
    y = np.array([classes.index(label) for label in labels])
    assert log_loss(val_probs, y) == pytest.approx(row.val_loss)


def torch_best_epoch(model_folder: Path) -> int:
    """The epoch a model folder's ``best.pt`` holds."""
    import torch

    return int(torch.load(model_folder / "best.pt", weights_only=True)["best_epoch"])


# ------------------------------------------------------------------- timeout
@pytest.mark.slow
def test_timeout_stops_starting_trials_and_the_ensemble_uses_what_finished(
    tiny_competition: DemoCompetition,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    features_cache: str,
) -> None:
    from typer.testing import CliRunner

    from toolkit.cli.app import app

    extra = SEARCH.format(n_trials=3, sampler="random", pruner="{name: none}")
    recipe = with_pause(write_recipe(tmp_path, tiny_competition.root, extra=extra))
    # the first trial's first step waits 3 s: the timeout has passed when that trial ends
    monkeypatch.setenv("TOOLKIT_TEST_PAUSE", f"{tmp_path / 'paused'}:1")
    monkeypatch.setenv("TOOLKIT_TEST_PAUSE_SECONDS", "3")
    monkeypatch.setenv("TOOLKIT_NO_PROGRESS", "1")
    args = ["run", str(recipe), "--output", str(tmp_path / "run"), "--no-report"]
    args += ["--set", "search.timeout=3", "--set", features_cache]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output

    assert (tmp_path / "paused").is_file()
    assert "study tiny: 1 trial (1 complete, 0 pruned, 0 failed)" in result.stdout
    assert "stopped at search.timeout (3 s): no trial started after it" in result.stdout
    study = load_study(tmp_path / "run")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]
    summary = json.loads((tmp_path / "run" / "ensemble.json").read_text())
    assert [m["id"] for m in summary["members"]] == ["run/t0000"]
    assert summary["val_metric"] == study.trials[0].value
    submission = pd.read_csv(tmp_path / "run" / "submission.csv", dtype=str)
    assert len(submission) == tiny_competition.n_test
