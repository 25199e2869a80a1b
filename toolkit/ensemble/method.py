"""Which ensemble a study keeps (``ensemble.method``): greedy selection's weighted average,
the stacked model (:mod:`.stacking`), or (``auto``) whichever has the better estimate.

Both estimates are cross-validated over the same parts of the validation clips
(:func:`toolkit.ensemble.estimate.estimate_parts`), so they compare: each is the
score of its procedure on clips it did not see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from toolkit.ensemble.candidates import Pool
from toolkit.ensemble.estimate import SelectionEstimate
from toolkit.ensemble.stacking import StackedEnsemble, stack_ensemble
from toolkit.metrics import get_metric
from toolkit.recipe.schema import Ensemble


@dataclass
class Combination:
    """An ensemble's way of combining its models: its method, each model's weight, its
    validation and test probabilities and its estimate."""

    method: str
    """``greedy`` or ``stack``."""
    weights: dict[str, float]
    """Model id -> weight (a stack's: each model's share of its level-2 coefficients)."""
    val: np.ndarray
    test: np.ndarray
    estimate: SelectionEstimate
    estimates: dict[str, SelectionEstimate] = field(default_factory=dict)
    """Every method's estimate that was computed (``auto``: both), by method."""
    stack: StackedEnsemble | None = None
    """The stacked model, when one was fitted (kept or not)."""


def stack_inputs(pool: Pool) -> list[str]:
    """The level-1 models of a stack: each complete trial, or its bag when it has one (its
    seed copies averaged: one input per trial)."""
    return sorted(
        trial.key.bag().id if trial.key.bag().id in pool.candidates else tid
        for tid, trial in pool.trials.items()
    )


def choose_method(
    spec: Ensemble,
    pool: Pool,
    labels: np.ndarray,
    parts: Sequence[np.ndarray],
    metric: str,
    greedy: Combination,
) -> Combination:
    """The combination ``spec.method`` asks for: ``greedy`` as selected, the stack of the
    pool's trials (``labels`` of the validation clips; ``parts``: the estimate's, see
    :func:`toolkit.ensemble.estimate.estimate_parts`), or (``auto``) the one whose estimate
    is better (ties: greedy)."""
    greedy.estimates = {"greedy": greedy.estimate}
    if spec.method == "greedy":
        return greedy
    inputs = stack_inputs(pool)
    stacked = stack_ensemble(
        {cid: pool.candidates[cid].val_probs for cid in inputs},
        {cid: pool.candidates[cid].test_probs for cid in inputs},
        labels,
        parts,
        metric=metric,
    )
    stacked.bags = {
        cid: [m.id for m in pool.candidates[cid].models]
        for cid in inputs
        if pool.candidates[cid].models
    }
    estimates = {"greedy": greedy.estimate, "stack": stacked.estimate}
    stack = Combination(
        "stack",
        pool.model_weights(stacked.weights),
        stacked.val,
        stacked.test,
        stacked.estimate,
        estimates,
        stacked,
    )
    if spec.method == "stack":
        return stack
    if get_metric(metric).better(stacked.estimate.value, greedy.estimate.value):
        return stack
    greedy.estimates, greedy.stack = estimates, stacked
    return greedy
