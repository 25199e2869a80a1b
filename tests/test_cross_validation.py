"""K-fold cross-validation end to end: out-of-fold predictions, resume, ensembles, refit, TTA."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from torch import nn

from tests.conftest import kill_when_paused, run_cli, start_paused, with_pause, write_recipe
from tests.test_search import board_rows, load_study, search_recipe
from toolkit.demo import DemoCompetition
from toolkit.metrics import accuracy
from toolkit.plugins.augmenters.shift import TimeShift
from toolkit.recipe.loading import load_recipe
from toolkit.training.pipeline import prepare
from toolkit.training.trainer import predict_proba
from toolkit.workflow import run

pytestmark = pytest.mark.slow  # these train on generated clips

EPOCHS = 4
CV = ("split.folds=3", f"train.epochs={EPOCHS}")
"""Overrides making the tiny recipe a 3-fold one."""


def cv_args(*overrides: str) -> list[str]:
    """``--set`` arguments for ``overrides``."""
    return [arg for text in overrides for arg in ("--set", text)]


def fold_files(run_dir: Path, k: int, name: str) -> Path:
    return run_dir / f"fold{k}" / name


@pytest.fixture(scope="module")
def cv_run(tiny_competition: DemoCompetition, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``toolkit run`` of the 3-fold recipe, uninterrupted; returns its run directory."""
    work = tmp_path_factory.mktemp("cv")
    recipe = write_recipe(work, tiny_competition.root)
    result = run_cli("run", recipe, "--output", work / "run", *cv_args(*CV))
    assert result.returncode == 0, result.stderr
    return work / "run"


def test_out_of_fold_predictions_cover_every_clip_once(
    cv_run: Path, tiny_competition: DemoCompetition
) -> None:
    train = pd.read_csv(tiny_competition.root / "train.csv", dtype=str)
    oof = pd.read_csv(cv_run / "val_probs.csv", dtype={"id": str})
    assert sorted(oof["id"]) == sorted(train["id"])  # every train clip, exactly once
    held = [
        pd.read_csv(fold_files(cv_run, k, "val_probs.csv"), dtype={"id": str}) for k in (1, 2, 3)
    ]
    assert sorted(i for part in held for i in part["id"]) == sorted(train["id"])
    by_id = oof.set_index("id")
    for part in held:  # the OOF row of a clip is its own fold model's prediction
        cols = [c for c in part.columns if c.startswith("p_")]
        assert np.allclose(by_id.loc[part["id"], cols].to_numpy(), part[cols].to_numpy())
    labels = dict(zip(train["id"], train["category"], strict=True))
    assert all(labels[i] == str(lab) for i, lab in zip(oof["id"], oof["label"], strict=True))


def test_test_prediction_is_the_mean_of_the_fold_models(cv_run: Path) -> None:
    folds = [np.load(fold_files(cv_run, k, "test_probs.npy")) for k in (1, 2, 3)]
    assert np.allclose(np.load(cv_run / "test_probs.npy"), np.mean(folds, axis=0))
    assert not (cv_run / "best.pt").exists()  # the folds hold the weights
    assert all(fold_files(cv_run, k, "best.pt").is_file() for k in (1, 2, 3))


def test_row_holds_the_oof_metric_and_the_fold_spread(cv_run: Path) -> None:
    (row,) = board_rows(cv_run.parent)
    oof = pd.read_csv(cv_run / "val_probs.csv", dtype={"id": str})
    classes = [c.removeprefix("p_") for c in oof.columns if c.startswith("p_")]
    labels = np.array([classes.index(c) for c in oof["label"].astype(str)])
    assert row["folds"] == 3
    assert row["metric_value"] == pytest.approx(accuracy(np.load(cv_run / "val_probs.npy"), labels))
    per_fold = []
    for k in (1, 2, 3):
        part = pd.read_csv(fold_files(cv_run, k, "val_probs.csv"), dtype={"id": str})
        truth = np.array([classes.index(c) for c in part["label"].astype(str)])
        per_fold.append(accuracy(part[[f"p_{c}" for c in classes]].to_numpy(), truth))
    assert row["fold_mean"] == pytest.approx(np.mean(per_fold))
    assert row["fold_std"] == pytest.approx(np.std(per_fold))
    history = pd.read_csv(cv_run / "metrics.csv")
    assert history["fold"].tolist() == [1] * EPOCHS + [2] * EPOCHS + [3] * EPOCHS
    table = run_cli("leaderboard", "--db", cv_run.parent / "leaderboard.db", "--wide")
    assert "± " in table.stdout and "out-of-fold" in table.stdout


def test_folds_do_no_audio_work(cv_run: Path) -> None:
    stats = json.loads((cv_run / "stats.json").read_text())
    assert stats["features_computed"] == 42  # 32 train and 10 test clips, once
    for k in (1, 2, 3):
        fold = json.loads(fold_files(cv_run, k, "stats.json").read_text())
        assert fold["views_reused"] == 1
        assert fold["features_computed"] == fold["stems_computed"] == 0


def test_killed_in_fold_3_resumes_keeping_folds_1_and_2(
    cv_run: Path, tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    recipe = with_pause(write_recipe(tmp_path, tiny_competition.root))  # an identity augmenter
    run_dir = tmp_path / "run"
    marker = tmp_path / "paused"
    first = start_paused(
        ["run", recipe, "--output", run_dir, *cv_args(*CV)],
        marker,
        point=3,  # fold 3's model
    )
    kill_when_paused(first, marker)
    assert not run_dir.exists()  # the run is written beside its folder until it is whole
    staging = tmp_path / ".run.partial"
    assert fold_files(staging, 2, "submission.csv").is_file()  # folds 1 and 2 are whole
    assert not fold_files(staging, 3, "test_probs.npy").exists()
    stamps = {k: fold_files(staging, k, "best.pt").stat().st_mtime_ns for k in (1, 2)}

    again = run_cli("run", recipe, "--output", run_dir, *cv_args(*CV))
    assert again.returncode == 0, again.stderr
    assert {k: fold_files(run_dir, k, "best.pt").stat().st_mtime_ns for k in (1, 2)} == stamps
    assert fold_files(run_dir, 3, "test_probs.npy").is_file()
    # the resumed run's numbers are the uninterrupted run's
    for name in ("val_probs.npy", "test_probs.npy"):
        assert np.array_equal(np.load(run_dir / name), np.load(cv_run / name))
    history = pd.read_csv(run_dir / "metrics.csv")
    assert history["fold"].tolist() == [1] * EPOCHS + [2] * EPOCHS + [3] * EPOCHS
    states = {r["id"]: r["state"] for r in board_rows(tmp_path)}
    assert sorted(states.values()) == ["complete", "interrupted"]  # the killed row, the rerun
    # run again once finished: a new run, its folds the finished run's (same recipe), reused
    stamps = {k: fold_files(run_dir, k, "best.pt").stat().st_mtime_ns for k in (1, 2, 3)}
    third = run_cli("run", recipe, "--output", run_dir, *cv_args(*CV))
    assert third.returncode == 0, third.stderr
    assert {k: fold_files(run_dir, k, "best.pt").stat().st_mtime_ns for k in (1, 2, 3)} == stamps
    assert len(board_rows(tmp_path)) == 3 and not staging.exists()


SPY = '''
import numpy as np
from toolkit import DatasetAugmenter, hookimpl

SEEN = []


class Spy(DatasetAugmenter):
    """Records the training part it is given; adds one exact copy of it."""

    def __init__(self, **settings):
        pass

    def expand(self, features, labels, rng):
        SEEN.append(np.array(features))
        return np.array(features), np.array(labels)


@hookimpl
def register_augmenters(register):
    register("spy", Spy)
'''


def test_augmented_copies_never_reach_their_sources_held_out_fold(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    (tmp_path / "spy.py").write_text(SPY)
    loaded = load_recipe(
        write_recipe(tmp_path, tiny_competition.root),
        (
            "split.folds=3",
            "train.epochs=1",
            f"plugins=[{tmp_path / 'spy.py'}]",
            "augmenters=[{name: spy}]",
        ),
        output=tmp_path / "run",
    )
    run(loaded)
    spy = next(m for name, m in sys.modules.items() if name.startswith("toolkit_local_plugin_spy"))
    seen = spy.SEEN
    data = prepare(loaded.recipe, loaded.registry)
    assert len(seen) == 3
    flat = data.train_x.reshape(len(data.train_x), -1)
    for fold, given in zip(data.folds, seen, strict=True):
        assert np.array_equal(given, data.train_x[fold.train_idx])
        held = {flat[i].tobytes() for i in fold.val_idx}
        assert not any(row.tobytes() in held for row in given.reshape(len(given), -1))


# ------------------------------------------------------------ a cross-validated study
STUDY = ("split.folds=2", "ensemble.seeds=2", "ensemble.refit=true")


@pytest.fixture(scope="module")
def cv_study(tiny_competition: DemoCompetition, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``toolkit run`` of a 3-trial study with 2 folds, 2 seeds per chosen trial and refit."""
    work = tmp_path_factory.mktemp("cvstudy")
    recipe = search_recipe(work, tiny_competition.root, n_trials=3, pruner="{name: none}")
    result = run_cli("run", recipe, "--output", work / "run", *cv_args(*STUDY), cwd=work)
    assert result.returncode == 0, result.stderr
    return work


def test_trials_report_every_fold_epoch_to_the_pruner(cv_study: Path) -> None:
    study = load_study(cv_study / "run")
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 3
    rows = {r["id"]: r for r in board_rows(cv_study)}
    for trial in complete:
        assert sorted(trial.intermediate_values) == [1, 2, 3, 4]  # 2 folds x 2 epochs
        row = rows[f"run/t{trial.number:04d}"]  # the trial's outcome, recorded on its row
        assert row["folds"] == 2 and row["fold_mean"] is not None
        oof = np.load(cv_study / "run" / "trials" / f"t{trial.number:04d}" / "val_probs.npy")
        assert oof.shape == (32, 4)


def labels_of(run_dir: Path) -> np.ndarray:
    oof = pd.read_csv(run_dir / "val_probs.csv", dtype={"id": str})
    classes = [c.removeprefix("p_") for c in oof.columns if c.startswith("p_")]
    return np.array([classes.index(c) for c in oof["label"].astype(str)])


def test_oof_ensemble_is_never_worse_than_any_candidate(cv_study: Path) -> None:
    run_dir = cv_study / "run"
    summary = json.loads((run_dir / "ensemble.json").read_text())
    labels = labels_of(run_dir)
    assert len(labels) == 32 and summary["folds"] == 2  # selected on every train clip
    candidates = {}
    for trial in sorted((run_dir / "trials").glob("t*")):
        candidates[trial.name] = np.load(trial / "val_probs.npy")
        copy = trial / "seed1" / "val_probs.npy"
        if copy.is_file():  # the chosen trials' seed copies and bags competed too
            candidates[f"{trial.name}-s1"] = np.load(copy)
            candidates[f"{trial.name}-bag"] = (candidates[trial.name] + np.load(copy)) / 2
    assert any(k.endswith("-s1") for k in candidates)
    assert summary["candidates"] == len(candidates)
    best = max(accuracy(p, labels) for p in candidates.values())
    assert summary["val_metric"] >= best
    weights = {m["id"].split("/")[-1]: m["weight"] for m in summary["members"]}
    blended = sum(w * candidates[k] for k, w in weights.items())
    assert accuracy(blended, labels) == pytest.approx(summary["val_metric"])


def test_refit_models_make_the_test_prediction(cv_study: Path) -> None:
    run_dir = cv_study / "run"
    summary = json.loads((run_dir / "ensemble.json").read_text())
    rows = {r["id"]: r for r in board_rows(cv_study)}
    by_trial: dict[str, float] = {}
    for member in summary["members"]:
        trial = member["id"].split("-")[0]
        by_trial[trial] = by_trial.get(trial, 0.0) + member["weight"]
    assert set(summary["refit"]) == set(by_trial)
    test = 0.0
    for trial_id, weight in by_trial.items():
        refit = rows[f"{trial_id}-refit"]
        assert refit["kind"] == "refit" and refit["state"] == "complete"
        assert refit["val_accuracy"] is None  # nothing held out
        number = int(trial_id.rsplit("t", 1)[-1])
        assert refit["params"]["refit_epochs"] == rows[trial_id]["best_epoch"]  # the folds' mean
        folder = run_dir / "trials" / f"t{number:04d}" / "refit"
        assert not (folder / "val_probs.npy").exists()
        test = test + weight * np.load(folder / "test_probs.npy")
    submission = pd.read_csv(run_dir / "submission.csv", dtype=str)
    expected = pd.read_csv(run_dir / "test_probs.csv", dtype={"id": str})
    probs = expected[[c for c in expected.columns if c.startswith("p_")]].to_numpy()
    assert np.allclose(probs, test)
    classes = [c.removeprefix("p_") for c in expected.columns if c.startswith("p_")]
    assert list(submission["category"]) == [classes[i] for i in probs.argmax(1)]
    ensemble = next(r for r in rows.values() if r["kind"] == "ensemble")
    assert ensemble["params"]["refit"] is True and ensemble["folds"] == 2
    reproduce = run_cli(
        "reproduce", next(iter(summary["refit"].values())), "--db", cv_study / "leaderboard.db"
    )
    assert reproduce.returncode == 2 and "refit on every train clip" in reproduce.stderr


def test_trials_take_their_data_from_memory(cv_study: Path) -> None:
    for trial in sorted((cv_study / "run" / "trials").glob("t*")):
        stats = json.loads((trial / "stats.json").read_text())
        assert stats["views_reused"] == 1 and stats["features_computed"] == 0


# -------------------------------------------------------------- test-time augmentation
def test_time_shift_views_roll_along_time() -> None:
    x = torch.arange(2 * 1 * 3 * 20, dtype=torch.float32).reshape(2, 1, 3, 20)
    shift = TimeShift(views=4, max_fraction=0.1)
    assert shift.offsets(20) == [1, -1, 2, -2]
    views = shift.views(x)
    assert len(views) == 4
    assert torch.equal(views[0], torch.roll(x, 1, dims=-1))
    assert torch.equal(views[3], torch.roll(x, -2, dims=-1))


def test_predictions_average_the_test_time_views() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 20, 4))
    x = np.random.default_rng(0).normal(size=(10, 1, 3, 20)).astype(np.float32)
    shift = TimeShift(views=2, max_fraction=0.1)
    plain = predict_proba(model, x, torch.device("cpu"), batch_size=4)
    tta = predict_proba(model, x, torch.device("cpu"), batch_size=4, test_time_augmenters=[shift])
    expected = np.mean(
        [predict_proba(model, np.roll(x, s, axis=-1), torch.device("cpu")) for s in (0, 2, -2)],
        axis=0,
    )
    assert np.allclose(tta, expected, atol=1e-6)
    assert not np.allclose(tta, plain)


def test_recipe_tta_changes_validation_and_test_predictions(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    recipe = write_recipe(tmp_path, tiny_competition.root)
    plain = run(load_recipe(recipe, output=tmp_path / "a"))
    tta_set = ("predict.tta=[{name: time_shift, views: 2}]",)
    tta = run(load_recipe(recipe, tta_set, output=tmp_path / "b"))
    a, b = Path(plain.run_dir), Path(tta.run_dir)
    # the same training (same seed, best epoch chosen on plain predictions) ...
    assert pd.read_csv(a / "metrics.csv").equals(pd.read_csv(b / "metrics.csv"))
    # ... predicted through more views
    for name in ("val_probs.npy", "test_probs.npy"):
        assert not np.allclose(np.load(a / name), np.load(b / name))


def test_seed_copies_and_folds_share_each_held_out_array(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    from toolkit.training.device_data import DeviceArrays

    loaded = load_recipe(write_recipe(tmp_path, tiny_competition.root), ("split.folds=3",))
    data = prepare(loaded.recipe, loaded.registry)
    copy = data.reused()  # what a seed copy or a later trial of the process gets
    cache, meta = DeviceArrays(), torch.device("meta")
    for fold in data.folds:
        held = data.held_out_x(fold)
        assert np.array_equal(held, data.train_x[fold.val_idx])
        assert copy.held_out_x(fold) is held
        cache.get(held, meta)
        cache.get(copy.held_out_x(fold), meta)
    assert cache.placed == 3  # one device copy per fold, whatever asks for it
