"""Pseudo-labels: the test clips a trained model is sure of, as extra training targets.

With ``semi_supervised: {pseudo_labels: {threshold, power}}`` a model trained on a
single split is trained once more, from scratch, with the test clips whose highest
predicted probability reaches ``threshold`` added to its training part. Their
targets are the first round's probabilities sharpened (each raised to ``power``,
the row renormalised). The validation clips are the split's, train clips only: a
test clip never validates, and the first round's predictions come from a model
that never saw a validation clip's label through them. The second round is kept
only if its validation metric is better than the first's; ``pseudo_labels.json``
in the model's folder says what happened.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from toolkit.recipe import PseudoLabels


def pseudo_targets(test_probs: np.ndarray, settings: PseudoLabels) -> tuple[np.ndarray, np.ndarray]:
    """The test clips sure enough (their row numbers) and their sharpened soft targets
    ``[M, K]`` (float32, rows summing to one)."""
    probs = np.asarray(test_probs, dtype=np.float64)
    chosen = np.flatnonzero(probs.max(axis=1) >= settings.threshold)
    sharpened = probs[chosen] ** settings.power
    sharpened /= sharpened.sum(axis=1, keepdims=True)
    return chosen, sharpened.astype(np.float32)


@dataclass(frozen=True)
class PseudoLabelRound:
    """What a pseudo-label round did: how many test clips it trained on and whether it was
    kept (its validation metric against the first round's)."""

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
