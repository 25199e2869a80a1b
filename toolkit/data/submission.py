"""Kaggle submission files and per-clip probability tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.data.cache import atomic_write
from toolkit.data.dataset import Competition, submission_layout


def submission_frame(competition: Competition, test_probs: np.ndarray) -> pd.DataFrame:
    """The sample submission filled in: same columns, same id order.

    A sample with one column besides the id gets the predicted label; one with
    a column per class gets the class probabilities.
    """
    # load_competition has checked that the layout is one of the two
    return fill_submission(
        list(competition.sample_submission.columns),
        competition.id_column,
        competition.test_ids,
        competition.classes,
        test_probs,
    )


def fill_submission(
    columns: Sequence[str],
    id_column: str,
    ids: Sequence[str],
    classes: Sequence[str],
    probs: np.ndarray,
) -> pd.DataFrame:
    """A submission with ``columns`` for these ids: the id and the predicted label, or the id
    and one probability column per class (the layout must be one of the two)."""
    columns = list(columns)
    others = [c for c in columns if c != id_column]
    frame = pd.DataFrame({id_column: list(ids)})
    if submission_layout(columns, id_column, list(classes)) == "label":
        predicted = np.asarray(probs).argmax(axis=1)
        frame[others[0]] = [classes[i] for i in predicted]
    else:
        for column in others:
            frame[column] = probs[:, list(classes).index(column)]
    return frame[columns]


def write_submission(competition: Competition, test_probs: np.ndarray, path: Path) -> Path:
    """Write the submission CSV for these test probabilities (whole, or not at all)."""
    frame = submission_frame(competition, test_probs)
    atomic_write(path, lambda handle: frame.to_csv(handle, index=False))
    return path


def probability_frame(
    ids: Sequence[str], probs: np.ndarray, classes: Sequence[str], labels: np.ndarray | None = None
) -> pd.DataFrame:
    """A table of class probabilities per id, with the true label when known."""
    frame = pd.DataFrame({"id": list(ids)})
    if labels is not None:
        frame["label"] = [classes[i] for i in labels]
    for k, name in enumerate(classes):
        frame[f"p_{name}"] = probs[:, k]
    return frame
