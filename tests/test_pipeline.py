"""The engine in-process: split hygiene, caching, and learning on generated clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import held_out_accuracy, write_recipe
from toolkit.demo import DemoCompetition, make_demo_competition
from toolkit.recipe.loading import load_recipe
from toolkit.training.pipeline import build_augmenters, expand_training_set, prepare, train_recipe

pytestmark = pytest.mark.slow  # these train and prepare features


def test_augmented_copies_never_reach_validation(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    loaded = load_recipe(write_recipe(tmp_path, tiny_competition.root))
    data = prepare(loaded.recipe, loaded.registry)
    assert not set(data.folds[0].train_idx) & set(data.val_idx)
    assert len(data.folds[0].train_idx) + len(data.val_idx) == len(tiny_competition_ids(data))
    classes = data.competition.classes
    dataset_augs, batch_augs = build_augmenters(loaded.recipe, loaded.registry, classes)
    assert [type(a).__name__ for a in batch_augs] == ["Mixup"]
    originals = np.asarray(data.train_x[data.folds[0].train_idx], dtype=np.float32)
    labels = data.labels[data.folds[0].train_idx]
    x, y = expand_training_set(originals, labels, dataset_augs, seed=0)
    n_zero = int((labels == 0).sum())
    # oversample adds one copy of class 0, then time_mask one copy of everything so far
    assert len(x) == 2 * (len(originals) + n_zero)
    assert np.bincount(y)[0] == 4 * n_zero
    val = np.asarray(data.train_x[data.val_idx], dtype=np.float32)
    train_flat = originals.reshape(len(originals), -1)
    for row in x.reshape(len(x), -1):
        # every row is an original training clip, exactly or up to a masked band
        same_train = (np.isclose(train_flat, row, atol=1e-3).mean(axis=1)).max()
        same_val = (np.isclose(val.reshape(len(val), -1), row, atol=1e-3).mean(axis=1)).max()
        assert same_train > 0.7
        assert same_val < 0.5


def tiny_competition_ids(data: object) -> list[str]:
    return data.competition.train_ids  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def learnable(tmp_path_factory: pytest.TempPathFactory) -> DemoCompetition:
    root = tmp_path_factory.mktemp("learn") / "competition"
    return make_demo_competition(root, n_train=320, n_test=60, seed=11, duration=2.0)


def test_small_network_beats_chance_on_held_out_clips(
    learnable: DemoCompetition, tmp_path: Path
) -> None:
    recipe = write_recipe(tmp_path, learnable.root)
    loaded = load_recipe(
        recipe,
        (
            "data.duration=2.0",
            "features.n_mels=48",
            "train.epochs=10",
            "train.optimizer={name: adamw, lr: 0.003, weight_decay: 0.0001}",
            "model.backbone.width=16",
            "augmenters=[{name: mixup, alpha: 0.2}]",
        ),
    )
    data = prepare(loaded.recipe, loaded.registry)
    result = train_recipe(loaded.recipe, loaded.registry, data, select_by="accuracy")
    held_out, majority = held_out_accuracy(learnable.root, data.competition, result.test_probs)
    # chance is 0.25 over four classes; the majority class is about 0.3
    assert held_out > max(0.45, majority + 0.1), (held_out, result.history)
