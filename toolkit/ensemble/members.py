"""An ensemble's members as trials: the weight each chosen trial carries (its own and its
seed copies' together), which its refit on every clip takes over; a bag's probabilities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from toolkit.runs.model_key import ModelKey


def trial_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Trial id -> the summed weight of its models among ``weights`` (model id -> weight),
    the trials in the order their first model comes."""
    by_trial: dict[str, float] = {}
    for model_id, weight in weights.items():
        trial = ModelKey.parse(model_id).trial_key().id
        by_trial[trial] = by_trial.get(trial, 0.0) + weight
    return by_trial


def bag_mean(probs: Sequence[np.ndarray]) -> np.ndarray:
    """A bag's probabilities: its models' (the trial's, then its seed copies') mean."""
    return np.mean(probs, axis=0)
