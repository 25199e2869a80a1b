"""Which train clips train a model and which validate it."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from toolkit.dataset import Competition
from toolkit.errors import DataError
from toolkit.recipe import Split


def split_indices(competition: Competition, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices into the train CSV, as the recipe's split says."""
    labels = competition.train_labels
    indices = np.arange(len(labels))
    if split.stratify:
        counts = np.bincount(labels, minlength=competition.num_classes)
        single = next((k for k, n in enumerate(counts) if n < 2), None)
        if single is not None:
            label = competition.classes[single]
            clip = competition.train_ids[int(np.flatnonzero(labels == single)[0])]
            raise DataError(
                f"{competition.train_csv}: label {label!r} has a single clip "
                f"({clip!r}); fix the label, add clips, or set split.stratify=false"
            )
    try:
        train_idx, val_idx = train_test_split(
            indices,
            test_size=split.test_size,
            random_state=split.random_state,
            stratify=labels if split.stratify else None,
        )
    except ValueError as exc:
        raise DataError(f"split: {exc}") from None
    return np.sort(train_idx), np.sort(val_idx)
