"""A cross-validated model: its K fold models made into one set of out-of-fold numbers.

Each fold's model predicts the clips its fold held out; together they give one
out-of-fold (OOF) prediction of every train clip, which is the model's
validation prediction (its metric, the study's objective and the ensemble's
selection data). The test prediction is the fold models' mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from toolkit.metrics import accuracy, best_epoch, get_metric, log_loss
from toolkit.recipe.schema import Recipe
from toolkit.runs.run_dir import RunDir
from toolkit.training.trainer import TrainResult
from toolkit.validation.split import Fold


@dataclass
class CrossValidated:
    """The folds' results combined, and each fold's own metric on its held-out clips."""

    result: TrainResult
    fold_values: list[float]
    fold_temperatures: list[float]
    """Each fold's temperature, fitted on its own held-out clips only (1: not calibrated)."""

    @property
    def fold_mean(self) -> float:
        """Mean of the per-fold metric."""
        return float(np.mean(self.fold_values))

    @property
    def fold_std(self) -> float:
        """Standard deviation (population) of the per-fold metric."""
        return float(np.std(self.fold_values))


def combine_folds(
    results: Sequence[TrainResult],
    folds: Sequence[Fold],
    labels: np.ndarray,
    metric: str,
) -> CrossValidated:
    """One result of K fold results: OOF probabilities, mean test probabilities (each fold's
    calibrated by its own temperature), all epochs (with their fold), the mean best epoch and
    every fold's metric and temperature."""
    n_classes = results[0].val_probs.shape[1]
    oof = np.full((len(labels), n_classes), np.nan)
    for fold, result in zip(folds, results, strict=True):
        oof[fold.val_idx] = result.val_probs
    if np.isnan(oof).any():
        raise ValueError("the folds' held-out parts do not cover every train clip")
    tests = [r.test_probs for r in results]
    test = None if any(t is None for t in tests) else fold_mean(tests)  # type: ignore[arg-type]
    scorer = get_metric(metric)
    combined = TrainResult(
        history=[{"fold": k, **rec} for k, r in enumerate(results, 1) for rec in r.history],
        best_epoch=mean_best_epoch([r.best_epoch for r in results]),
        state_dict={},
        val_probs=oof,
        test_probs=test,
        val_accuracy=accuracy(oof, labels),
        val_loss=log_loss(oof, labels),
        seconds=sum(r.seconds for r in results),
    )
    values = [
        scorer.fn(r.val_probs, labels[f.val_idx]) for f, r in zip(folds, results, strict=True)
    ]
    return CrossValidated(combined, values, [r.temperature for r in results])


def fold_mean(probs: Sequence[np.ndarray]) -> np.ndarray:
    """A cross-validated model's probabilities of clips no fold held out (the test clips, new
    clips): its fold models' mean."""
    return np.mean(probs, axis=0)


def mean_best_epoch(best_epochs: Sequence[int]) -> int:
    """A cross-validated model's best epoch: its folds' best epochs' mean, rounded (at least 1).

    A refit trains for this many epochs.
    """
    return max(1, round(float(np.mean(best_epochs))))


def running_estimate(done: Sequence[float], current: float) -> float:
    """The OOF metric as far as known: the finished folds' values and the current epoch's."""
    return (math.fsum(done) + current) / (len(done) + 1)


def saved_fold(out: RunDir, recipe: Recipe, metric: str) -> TrainResult | None:
    """A fold model already trained into ``out`` by the same recipe (a resumed run), if any
    (:meth:`~toolkit.runs.run_dir.RunDir.holds` says whether it is there)."""
    if not out.holds(recipe):
        return None
    history = out.read_history().to_dict("records")
    best = best_epoch(history, metric)  # the epoch the trainer kept, by the same rule
    return TrainResult(
        history=history,
        best_epoch=int(best["epoch"]),
        state_dict={},
        val_probs=out.read_probabilities("val"),
        test_probs=out.read_probabilities("test"),
        val_accuracy=float(best["val_accuracy"]),
        val_loss=get_metric("log_loss").of(best),
        seconds=0.0,
        temperature=float(best.get("temperature", 1.0)),
    )
