"""Which train clips train a model and which it predicts: one held-out part, or K folds.

With ``split.folds: 1`` (the default) one part of ``split.test_size`` validates
(sklearn's ``train_test_split``). With ``split.folds: K`` every clip is held out
by exactly one of K folds (``StratifiedKFold``, or ``KFold`` without
``split.stratify``), so each clip gets one out-of-fold prediction. With
``data.group_column`` clips sharing a group value never straddle train and
held-out parts (``StratifiedGroupKFold`` / ``GroupKFold``; for one split,
``GroupShuffleSplit``, or the first of ``round(1 / test_size)`` stratified
group folds). Everything is seeded by ``split.random_state``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import (
    GroupKFold,
    GroupShuffleSplit,
    KFold,
    StratifiedGroupKFold,
    StratifiedKFold,
    train_test_split,
)

from toolkit.data.dataset import Competition
from toolkit.errors import DataError, error_at
from toolkit.recipe.schema import Split
from toolkit.wording import count


@dataclass(frozen=True)
class Fold:
    """One train/held-out division of the train clips (indices into the train CSV, sorted)."""

    train_idx: np.ndarray
    val_idx: np.ndarray


def _check_stratifiable(competition: Competition) -> None:
    """Each label has at least two clips (a one-clip label cannot be stratified)."""
    labels = competition.train_labels
    counts = np.bincount(labels, minlength=competition.num_classes)
    single = next((k for k, n in enumerate(counts) if n < 2), None)
    if single is not None:
        label = competition.classes[single]
        clip = competition.train_ids[int(np.flatnonzero(labels == single)[0])]
        raise DataError(
            f"{competition.train_csv}: label {label!r} has a single clip "
            f"({clip!r}); fix the label, add clips, or set split.stratify=false"
        )


def _folds(competition: Competition, split: Split) -> list[tuple[np.ndarray, np.ndarray]]:
    labels, groups = competition.train_labels, competition.groups
    indices = np.arange(len(labels))
    rs = split.random_state
    if split.folds == 1 and groups is None:
        train_idx, val_idx = train_test_split(
            indices,
            test_size=split.test_size,
            random_state=rs,
            stratify=labels if split.stratify else None,
        )
        return [(train_idx, val_idx)]
    if split.folds == 1:  # grouped single split
        if split.stratify:
            n = max(2, round(1 / split.test_size))
            folds = StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=rs)
            return [next(folds.split(indices, labels, groups))]
        shuffle = GroupShuffleSplit(n_splits=1, test_size=split.test_size, random_state=rs)
        return [next(shuffle.split(indices, labels, groups))]
    k = split.folds
    if groups is not None:
        if split.stratify:
            grouped = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=rs)
            return list(grouped.split(indices, labels, groups))
        return list(GroupKFold(n_splits=k).split(indices, labels, groups))
    if split.stratify:
        return list(StratifiedKFold(k, shuffle=True, random_state=rs).split(indices, labels))
    return list(KFold(k, shuffle=True, random_state=rs).split(indices))


def split_folds(competition: Competition, split: Split) -> tuple[Fold, ...]:
    """The recipe's folds of the train clips: one for a single split, else ``split.folds``."""
    if split.stratify:
        _check_stratifiable(competition)
    n_clips = len(competition.train_labels)
    if split.folds > n_clips:
        raise DataError(
            f"split.folds: {split.folds} folds of {count(n_clips, 'clip')}; use fewer folds"
        )
    if competition.groups is not None:
        n_groups = len(set(competition.groups))
        if n_groups < max(2, split.folds):
            raise DataError(
                f"data.group_column: {n_groups} group(s) cannot make {max(2, split.folds)} "
                "parts; use fewer split.folds or another column"
            )
    try:
        with warnings.catch_warnings():
            # a class with fewer clips than folds: some folds hold none of it (sklearn warns)
            warnings.simplefilter("ignore", UserWarning)
            pairs = _folds(competition, split)
    except ValueError as exc:
        raise DataError(error_at("split", exc)) from None
    folds = tuple(Fold(np.sort(t), np.sort(v)) for t, v in pairs)
    sizes = [min(len(f.train_idx), len(f.val_idx)) for f in folds]
    if 0 in sizes:
        empty = sizes.index(0)
        raise DataError(f"split: part {empty + 1} is empty; use fewer split.folds or more clips")
    return folds
