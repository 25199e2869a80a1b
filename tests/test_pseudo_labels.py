"""Pseudo-labels: sure test clips as sharpened soft targets of a second round, kept only if
validation improves, never validated on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tests.conftest import assert_predicts_own_test_probs, copy_workspace, run_cli, write_recipe
from tests.test_search import search_recipe
from toolkit.demo import DemoCompetition
from toolkit.ensemble.selection import blend
from toolkit.errors import RecipeError
from toolkit.leaderboard.store import Leaderboard
from toolkit.metrics import get_metric
from toolkit.recipe.loading import load_recipe
from toolkit.recipe.schema import PseudoLabels, Train
from toolkit.runs.model_key import ModelKey
from toolkit.runs.run_dir import RunDir
from toolkit.training.pipeline import with_extra
from toolkit.training.pseudo_labels import PseudoLabelSet, pseudo_targets
from toolkit.training.trainer import train

PSEUDO = "semi_supervised: {pseudo_labels: {threshold: 0.0, power: 2.0}}\n"
"""Every test clip pseudo-labelled (threshold 0)."""


def test_sure_test_clips_become_sharpened_soft_targets() -> None:
    probs = np.array([[0.95, 0.05, 0.0], [0.4, 0.35, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    chosen, targets = pseudo_targets(probs, PseudoLabels(threshold=0.6, power=2.0))
    assert chosen.tolist() == [0, 2, 3]
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
    assert targets.argmax(axis=1).tolist() == [0, 1, 2]
    assert (targets.max(axis=1) > probs[chosen].max(axis=1)).all()  # sharper than predicted
    np.testing.assert_allclose(targets[1], np.array([1, 64, 1]) / 66, rtol=1e-6)
    same, as_given = pseudo_targets(probs, PseudoLabels(threshold=0.0, power=1.0))
    assert same.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(as_given, probs, rtol=1e-6)


def test_extra_examples_join_the_training_set_after_its_own() -> None:
    x = np.arange(6, dtype=np.float16).reshape(3, 1, 2, 1)
    extra_x = np.full((2, 1, 2, 1), 9, np.float32)
    extra_y = np.array([[0.5, 0.5, 0.0], [0.0, 0.1, 0.9]], np.float32)
    joined_x, joined_y = with_extra(x, np.array([2, 0, 1]), (extra_x, extra_y), 3)
    assert joined_x.dtype == np.float16 and joined_x.shape == (5, 1, 2, 1)
    np.testing.assert_array_equal(joined_x[3:], 9)
    np.testing.assert_array_equal(joined_y, [[0, 0, 1], [1, 0, 0], [0, 1, 0], *extra_y])


@pytest.mark.parametrize("data_on_device", [True, False])
def test_one_hot_soft_targets_train_exactly_as_their_classes(data_on_device: bool) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 40)
    x = (rng.normal(size=(40, 1, 6, 2)) + labels[:, None, None, None]).astype(np.float32)
    cfg = Train.model_validate(
        {"epochs": 4, "batch_size": 8, "data_on_device": data_on_device,
         "optimizer": {"name": "adamw", "lr": 0.05}}
    )  # fmt: skip

    def fit(targets: np.ndarray) -> list[dict[str, float]]:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
        return train(
            net, x[:32], targets, x[32:], labels[32:], cfg, 3, select_by="accuracy"
        ).history

    hard = fit(labels[:32])
    soft = fit(np.eye(3, dtype=np.float32)[labels[:32]])
    assert hard == soft
    assert hard[-1]["train_accuracy"] > 0.5


def test_a_plain_runs_round_needs_a_single_split(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    recipe = write_recipe(tmp_path, tiny_competition.root, "semi_supervised: {pseudo_labels: {}}\n")
    with pytest.raises(RecipeError, match="a plain run's pseudo-label round needs a single"):
        load_recipe(recipe, ["split.folds=2"])
    with pytest.raises(RecipeError, match="threshold"):
        load_recipe(recipe, ["semi_supervised.pseudo_labels.threshold=1.5"])


@pytest.mark.slow
def test_a_pseudo_label_round_never_validates_on_test_clips(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    recipe = write_recipe(tmp_path, tiny_competition.root, PSEUDO)
    done = run_cli("run", recipe, "--output", tmp_path / "run", "--set", "train.epochs=1")
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "run" / "pseudo_labels.json").read_text())
    assert record["test_clips"] == record["of"] == 10  # threshold 0: every test clip
    metric = get_metric(record["metric"])
    assert record["kept"] == metric.better(record["second_round"], record["first_round"])
    # validation is the split's train clips in both rounds; no test clip among them
    val = pd.read_csv(tmp_path / "run" / "val_probs.csv", dtype={"id": str})
    train_ids = set(pd.read_csv(tiny_competition.root / "train.csv", dtype={"id": str})["id"])
    test_ids = set(pd.read_csv(tiny_competition.root / "test_labels.csv", dtype={"id": str})["id"])
    assert set(val["id"]) <= train_ids and not set(val["id"]) & test_ids
    assert len(val) == 8  # 25% of the 32 train clips
    # the model kept is the better round: its row says so
    (row,) = Leaderboard(tmp_path / "leaderboard.db").rows()
    kept_value = record["second_round"] if record["kept"] else record["first_round"]
    assert row.metric_value == pytest.approx(kept_value)
    assert row.params["pseudo_labels"] == (10 if record["kept"] else 0)


def test_a_plain_run_round_needs_a_single_split_a_study_round_no_refit(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    study = search_recipe(tmp_path, tiny_competition.root, extra=PSEUDO)
    assert load_recipe(study, ["split.folds=2"]).recipe.split.folds == 2  # a study's round
    with pytest.raises(RecipeError, match="ensemble.refit: false or remove semi_supervised"):
        load_recipe(study, ["ensemble.refit=true"])


@pytest.fixture(scope="module")
def pseudo_study(
    tiny_competition: DemoCompetition, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A 2-trial, 2-fold study whose ensemble is followed by a pseudo-label round on every
    test clip (threshold 0); returns its run directory."""
    work = tmp_path_factory.mktemp("pseudo-study")
    recipe = search_recipe(work, tiny_competition.root, n_trials=2, pruner="{name: none}",
                           extra=PSEUDO)  # fmt: skip
    done = run_cli("run", recipe, "--output", work / "run", "--set", "split.folds=2", cwd=work)
    assert done.returncode == 0, done.stderr
    assert "pseudo-labels: " in done.stdout
    return work / "run"


@pytest.mark.slow
def test_a_study_round_labels_each_fold_by_that_fold_models_alone(
    pseudo_study: Path, tiny_competition: DemoCompetition
) -> None:
    record = json.loads((pseudo_study / "ensemble.json").read_text())["pseudo_labels"]
    assert record["test_clips"] == [10, 10] and record["of"] == 10
    trials = sorted({m.split("/")[-1].split("-")[0] for m in record["labelled_by"]})
    assert [m.split("/")[-1] for m in record["models"]] == [f"{t}-pseudo" for t in trials]
    # fold k's targets: the first ensemble's blend of its models' fold-k test predictions,
    # made by models that never trained on fold k's held-out clips
    folds = []
    for k in (1, 2):
        probs = {
            mid: RunDir(ModelKey.parse(mid).folder(pseudo_study)).fold(k).read_probabilities("test")
            for mid in record["labelled_by"]
        }
        folds.append(blend(probs, record["labelled_by"]))
    expected = PseudoLabelSet.of(folds, PseudoLabels(threshold=0.0, power=2.0))
    train_ids = set(pd.read_csv(tiny_competition.root / "train.csv", dtype={"id": str})["id"])
    for model in record["models"]:
        folder = RunDir(ModelKey.parse(model).folder(pseudo_study))
        assert folder.pseudo_labels_digest() == expected.digest()
        # validation: out-of-fold over the train clips only, each fold's its own clips
        val = folder.read_probability_table("val")
        assert sorted(val["id"]) == sorted(train_ids)
        held = [set(folder.fold(k).read_probability_table("val")["id"]) for k in (1, 2)]
        assert held[0] | held[1] == train_ids and not held[0] & held[1]
    rule = get_metric(record["metric"])
    assert record["kept"] == rule.better(record["estimate_after"], record["estimate_before"])
    members = json.loads((pseudo_study / "ensemble.json").read_text())["members"]
    chose_copies = any(m["id"].endswith("-pseudo") for m in members)
    assert chose_copies <= record["kept"]  # the copies make the ensemble only when kept
    rows = Leaderboard(pseudo_study.parent / "leaderboard.db").rows(kind="pseudo")
    assert sorted(r.id for r in rows) == sorted(record["models"])
    assert all(r.params["pseudo_labels"] == 20 and r.state == "complete" for r in rows)


@pytest.mark.slow
def test_the_round_is_found_done_when_the_ensemble_is_built_again(
    pseudo_study: Path, tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    work = copy_workspace(pseudo_study.parent, tmp_path / "copy")
    stamps = {p: p.stat().st_mtime_ns for p in (work / "run" / "trials").glob("*/pseudo/*.npy")}
    assert stamps
    again = run_cli("run", work / "recipe.yaml", "--output", work / "run",
                    "--set", "split.folds=2", cwd=work)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # not trained again


@pytest.mark.slow
def test_pseudo_labelled_copies_and_their_study_predict_their_test_probs_bit_for_bit(
    pseudo_study: Path, tiny_competition: DemoCompetition
) -> None:
    sample = tiny_competition.root / "sample_submission.csv"
    record = json.loads((pseudo_study / "ensemble.json").read_text())["pseudo_labels"]
    copy = ModelKey.parse(record["models"][0]).folder(pseudo_study)
    assert (copy / "fold2" / "best.pt").is_file()  # trained on train and test clips
    assert assert_predicts_own_test_probs(copy, sample) == [copy.name]
    assert_predicts_own_test_probs(pseudo_study, sample)
