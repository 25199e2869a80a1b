"""Pseudo-labels: the test clips trained models are sure of, as extra training targets.

With ``semi_supervised: {pseudo_labels: {threshold, power}}``, the test clips
whose highest predicted probability reaches ``threshold`` join a second round's
training part. Their targets are the predicted probabilities sharpened (each
raised to ``power``, the row renormalised). A test clip never validates: the
validation clips are always the split's (or the folds') train clips.

Who predicts the test clips, and who trains the second round:

* a **study** (``toolkit.ensemble.pseudo_round``): after its ensemble is chosen, the
  chosen trials are trained again. The targets of fold ``k``'s second round are
  the ensemble's blend of its models' **fold-k** test predictions, made by models
  that never trained on fold ``k``'s held-out clips, so the out-of-fold
  validation of the second round stays out-of-fold. The round is kept only if
  the ensemble's grouped estimate improves;
* a **plain run** on a single split: its own model, trained again, kept only if its
  validation metric improves.

:class:`PseudoLabelSet` holds the pseudo-labelled clips of each fold's second
round; a model trained with one records its :meth:`~PseudoLabelSet.digest`, so a
folder trained on other pseudo-labels is never taken as done.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from toolkit.recipe.schema import PseudoLabels


def pseudo_targets(test_probs: np.ndarray, settings: PseudoLabels) -> tuple[np.ndarray, np.ndarray]:
    """The test clips sure enough (their row numbers) and their sharpened soft targets
    ``[M, K]`` (float32, rows summing to one)."""
    probs = np.asarray(test_probs, dtype=np.float64)
    chosen = np.flatnonzero(probs.max(axis=1) >= settings.threshold)
    sharpened = probs[chosen] ** settings.power
    sharpened /= sharpened.sum(axis=1, keepdims=True)
    return chosen, sharpened.astype(np.float32)


@dataclass(frozen=True)
class FoldPseudoLabels:
    """The pseudo-labelled test clips of one fold's second round."""

    rows: np.ndarray
    """Row numbers of the test clips (in the competition's test order)."""
    targets: np.ndarray
    """Their soft targets ``[M, K]``."""


@dataclass(frozen=True)
class PseudoLabelSet:
    """The pseudo-labelled test clips each fold's second round trains on."""

    folds: tuple[FoldPseudoLabels, ...]

    @classmethod
    def of(cls, fold_test_probs: Sequence[np.ndarray], settings: PseudoLabels) -> PseudoLabelSet:
        """The set made of each fold's test predictions (one array per fold, in fold order)."""
        return cls(tuple(FoldPseudoLabels(*pseudo_targets(p, settings)) for p in fold_test_probs))

    def extra(self, fold: int, test_x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Fold ``fold``'s (0-based) extra training examples: the test clips' features and
        targets, or None when no test clip is sure enough."""
        labels = self.folds[fold]
        if not len(labels.rows):
            return None
        return np.asarray(test_x[labels.rows]), labels.targets

    @property
    def clips(self) -> list[int]:
        """How many test clips each fold's second round trains on."""
        return [len(f.rows) for f in self.folds]

    def digest(self) -> str:
        """A short hash of every fold's clips and targets: what a model trained with the set
        records, to tell it from one trained on other pseudo-labels."""
        hasher = hashlib.sha256()
        for fold in self.folds:
            hasher.update(np.ascontiguousarray(fold.rows, dtype=np.int64).tobytes())
            hasher.update(np.ascontiguousarray(fold.targets, dtype=np.float32).tobytes())
        return hasher.hexdigest()[:16]

    def as_dict(self) -> dict[str, object]:
        """What a model's ``pseudo_labels.json`` records of the set it trained with."""
        return {"digest": self.digest(), "test_clips": self.clips}


@dataclass(frozen=True)
class PseudoLabelRound:
    """What a plain run's pseudo-label round did: how many test clips it trained on and
    whether it was kept (its validation metric against the first round's)."""

    test_clips: int
    of: int
    threshold: float
    power: float
    metric: str
    first_round: float
    second_round: float | None
    """None when no test clip was sure enough: no second round was trained."""
    kept: bool

    def as_dict(self) -> dict[str, object]:
        """Its fields, for ``pseudo_labels.json``."""
        return asdict(self)
