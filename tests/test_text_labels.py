"""A competitor's own folder: ids that are file names, text labels, every setting that names a
class taking the label as the train CSV writes it (issue 27, items 1 and 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import (
    TEXT_LABEL_SETS,
    TEXT_LABELS,
    one_error_line,
    run_cli,
    write_recipe,
)
from toolkit.recipe.loading import load_recipe
from toolkit.training.pipeline import build_augmenters, expand_training_set, prepare

DEMO_RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "demo.yaml"


def sets(*keys: str) -> list[str]:
    """``--set KEY`` for each key."""
    return [arg for key in keys for arg in ("--set", key)]


@pytest.mark.slow
def test_the_demo_recipe_runs_on_a_folder_with_text_labels(
    text_label_competition: Path, tmp_path: Path
) -> None:
    root = text_label_competition
    small = (
        "data.duration=1.5",
        "separator={name: none}",
        "model.backbone.width=8",
        "train.epochs=1",
        f"cache.dir={tmp_path / 'cache'}",
        f"output.leaderboard={tmp_path / 'board.db'}",
    )
    args = sets(f"data.root={root}", *TEXT_LABEL_SETS, *small)
    done = run_cli("run", DEMO_RECIPE, *args, "--output", tmp_path / "run", "--no-report")
    assert done.returncode == 0, done.stderr
    submission = pd.read_csv(tmp_path / "run" / "submission.csv", dtype=str)
    sample = pd.read_csv(root / "sample_submission.csv", dtype=str)
    assert list(submission.columns) == ["file", "label"]
    assert list(submission["file"]) == list(sample["file"])  # test_003.wav, ... as written
    assert set(submission["label"]) <= set(TEXT_LABELS)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("augmenters", "copied"),
    [
        ("[{name: oversample, copies: {none: 3}}]", {"none": 3}),
        ("[{name: oversample, rarest: 3}]", {"none": 3}),  # none is the folder's rarest class
        ("[{name: oversample, copies: {male: 1}, rarest: 2}]", {"male": 1, "none": 2}),
    ],
)
def test_oversample_copies_the_classes_it_names_by_label(
    text_label_competition: Path, tmp_path: Path, augmenters: str, copied: dict[str, int]
) -> None:
    recipe = write_recipe(tmp_path, text_label_competition)
    loaded = load_recipe(recipe, (*TEXT_LABEL_SETS, f"augmenters={augmenters}"))
    data = prepare(loaded.recipe, loaded.registry)
    classes = data.competition.classes
    assert classes == sorted(TEXT_LABELS)  # none is class 2, not class 0
    train_idx = data.folds[0].train_idx
    labels = data.labels[train_idx]
    originals = np.asarray(data.train_x[train_idx])
    augmenters_, _ = build_augmenters(loaded.recipe, loaded.registry, classes)
    x, y = expand_training_set(originals, labels, augmenters_, seed=0)
    before = np.bincount(labels, minlength=len(classes))
    assert before[classes.index("none")] == before.min() < np.sort(before)[1]  # the rarest
    expected = [n * (1 + copied.get(c, 0)) for c, n in zip(classes, before, strict=True)]
    assert np.bincount(y, minlength=len(classes)).tolist() == expected
    for label, count in copied.items():  # each copy is one of that class's own clips
        own = originals[labels == classes.index(label)]
        extra = x[len(originals) :][y[len(originals) :] == classes.index(label)]
        assert len(extra) == count * len(own)
        assert all(any(np.array_equal(row, clip) for clip in own) for row in extra)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["augmenters=[{name: oversample, copies: {0: 3}}]"], "augmenters[0].copies"),
        (["data.class_names={0: no voice, none: silence}"], "data.class_names"),
        (
            [
                "augmenters=[]",
                "search={n_trials: 1, profiles: {p: {augmenters: [{name: oversample, "
                "copies: {male: 1, 0: 1}}]}}}",
            ],
            "search.profiles.p.augmenters[0].copies",
        ),
    ],
)
def test_a_class_key_that_is_not_a_label_is_one_line(
    text_label_competition: Path, tmp_path: Path, overrides: list[str], key: str
) -> None:
    recipe = write_recipe(tmp_path, text_label_competition)
    args = sets(*TEXT_LABEL_SETS, *overrides)
    done = run_cli("run", recipe, *args, "--output", tmp_path / "run", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    train_csv = text_label_competition / "train.csv"
    assert one_error_line(done.stderr) == (
        f"error: {key}: '0' is not a label of {train_csv} (its labels: female, male, none, "
        "several); remove it or name a label"
    )
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "cache").exists()  # no audio work
