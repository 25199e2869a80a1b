"""Folds of the train clips (no audio): hygiene, groups, seeding and one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toolkit.data.dataset import Competition
from toolkit.errors import DataError
from toolkit.recipe.schema import Split
from toolkit.validation.split import split_folds


def competition(labels: np.ndarray, groups: np.ndarray | None = None) -> Competition:
    """A competition of ``len(labels)`` clips (ids only; folds need no audio)."""
    n = len(labels)
    return Competition(
        root=Path("."),
        train_ids=[f"c{i:03d}" for i in range(n)],
        train_files=[],
        train_labels=np.asarray(labels, dtype=np.int64),
        classes=["a", "b", "c", "d"][: int(max(labels)) + 1],
        test_ids=[],
        test_files=[],
        sample_submission=pd.DataFrame(),
        id_column="id",
        label_column="category",
        train_csv=Path("train.csv"),
        groups=groups,
    )


LABELS = np.random.default_rng(0).choice(4, size=90, p=[0.1, 0.3, 0.3, 0.3])
SONGS = np.array([f"song{i // 3}" for i in range(90)], dtype=object)  # 30 songs of 3 clips


@pytest.mark.parametrize("stratify", [True, False])
@pytest.mark.parametrize("groups", [None, SONGS], ids=["clips", "songs"])
def test_every_clip_is_held_out_by_exactly_one_fold(
    stratify: bool, groups: np.ndarray | None
) -> None:
    folds = split_folds(competition(LABELS, groups), Split(folds=5, stratify=stratify))
    assert len(folds) == 5
    held = np.concatenate([f.val_idx for f in folds])
    assert sorted(held.tolist()) == list(range(90))  # each clip once: no clip in two folds
    for fold in folds:
        assert not set(fold.train_idx) & set(fold.val_idx)
        assert len(fold.train_idx) + len(fold.val_idx) == 90
        if groups is not None:  # no song straddles training and held-out clips
            assert not set(groups[fold.train_idx]) & set(groups[fold.val_idx])


def test_stratified_folds_keep_the_class_shares() -> None:
    folds = split_folds(competition(LABELS), Split(folds=5))
    expected = np.bincount(LABELS) / 5
    for fold in folds:
        assert np.all(np.abs(np.bincount(LABELS[fold.val_idx], minlength=4) - expected) <= 1)


def test_folds_are_seeded_by_random_state() -> None:
    comp = competition(LABELS)
    first = split_folds(comp, Split(folds=4, random_state=1))
    again = split_folds(comp, Split(folds=4, random_state=1))
    other = split_folds(comp, Split(folds=4, random_state=2))
    assert all(np.array_equal(a.val_idx, b.val_idx) for a, b in zip(first, again, strict=True))
    assert any(not np.array_equal(a.val_idx, b.val_idx) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize("stratify", [True, False])
def test_grouped_single_split_keeps_songs_together(stratify: bool) -> None:
    (fold,) = split_folds(competition(LABELS, SONGS), Split(test_size=0.2, stratify=stratify))
    assert not set(SONGS[fold.train_idx]) & set(SONGS[fold.val_idx])
    assert 0.1 < len(fold.val_idx) / 90 < 0.3


def test_single_split_is_the_one_it_always_was() -> None:
    from sklearn.model_selection import train_test_split

    (fold,) = split_folds(competition(LABELS), Split(test_size=0.25, random_state=42))
    train, val = train_test_split(np.arange(90), test_size=0.25, random_state=42, stratify=LABELS)
    assert np.array_equal(fold.val_idx, np.sort(val))
    assert np.array_equal(fold.train_idx, np.sort(train))


@pytest.mark.parametrize(
    ("labels", "groups", "split", "message"),
    [
        (LABELS[:6], None, Split(folds=7, stratify=False), "split.folds: 7 folds of 6 clips"),
        (LABELS, np.array(["x", "y"] * 45, dtype=object),
         Split(folds=3), "data.group_column: 2 group(s) cannot make 3 parts"),
        (np.array([0, 1, 1, 1]), None, Split(folds=2), "label 'a' has a single clip"),
    ],
)  # fmt: skip
def test_impossible_folds_are_one_line_errors(
    labels: np.ndarray, groups: np.ndarray | None, split: Split, message: str
) -> None:
    with pytest.raises(DataError, match=re.escape(message)) as caught:
        split_folds(competition(labels, groups), split)
    assert "\n" not in str(caught.value)
