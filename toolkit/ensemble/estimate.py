"""What to expect of an ensemble: its selection procedure, cross-validated.

The greedy ensemble's own score is optimistic: it is measured on the very
predictions it was chosen on. The estimate repeats the choice without each part
of the selection clips in turn: select on the other parts' predictions, blend
the chosen weights on the part held out; the held-out blends of every part
together are scored once, as one out-of-fold prediction of the procedure. The
parts are the study's folds when its models are cross-validated (their
predictions are out-of-fold already), else a split of the validation clips
(grouped like the split itself, when it is).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

from toolkit.ensemble.selection import blend, select_ensemble
from toolkit.metrics import accuracy, get_metric
from toolkit.training.pipeline import PreparedData

ESTIMATE_PARTS = 5
"""Parts of the validation clips when the models are not cross-validated."""


@dataclass(frozen=True)
class SelectionEstimate:
    """The cross-validated score of the selection procedure, and each part's."""

    metric: str
    value: float
    """The metric of every held-out blend together: the number to expect."""
    parts: list[float]
    """The metric on each part alone (spread, not the estimate)."""
    accuracy: float
    """The accuracy of every held-out blend together."""
    procedure: str = "selection"
    """What was cross-validated: greedy ``selection``, or the ``stack``'s level-2 model."""

    def describe(self) -> str:
        """The estimate in words, e.g. ``log_loss 0.5123 (accuracy 0.8125) on 5 parts held
        out from the selection``."""
        also = "" if self.metric == "accuracy" else f" (accuracy {self.accuracy:.4f})"
        return (
            f"{self.metric} {self.value:.4f}{also}, the {self.procedure} cross-validated over "
            f"{len(self.parts)} parts: what to expect on new clips"
        )

    def as_dict(self) -> dict[str, object]:
        """The estimate as ``ensemble.json`` holds it."""
        return {
            "metric": self.metric,
            "value": self.value,
            "accuracy": self.accuracy,
            "parts": self.parts,
            "procedure": self.procedure,
        }


def estimate_parts(data: PreparedData, random_state: int = 0) -> list[np.ndarray]:
    """The parts of the selection clips (rows of ``data.val_idx``) the estimate holds out
    in turn: the folds when cross-validated, else ``ESTIMATE_PARTS`` of the validation
    clips, keeping the competition's groups (given or found) together."""
    if data.cross_validated:
        return [fold.val_idx for fold in data.folds]
    labels = data.val_labels
    rows = np.arange(len(labels))
    groups = data.competition.groups
    n = min(ESTIMATE_PARTS, len(rows))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a class rarer than the parts
        if groups is not None:
            held = np.asarray(groups)[data.val_idx]
            n = min(n, len(set(held.tolist())))
            if n >= 2 and np.bincount(labels).max(initial=0) >= n:  # else sklearn refuses
                split = StratifiedGroupKFold(n, shuffle=True, random_state=random_state)
                return [v for _, v in split.split(rows, labels, held)]
            if n >= 2:  # every class rarer than the parts: the groups kept, not the shares
                return [v for _, v in GroupKFold(n).split(rows, labels, held)]
        elif n >= 2 and np.bincount(labels).max(initial=0) >= n:  # else sklearn refuses
            split = StratifiedKFold(n, shuffle=True, random_state=random_state)
            return [v for _, v in split.split(rows, labels)]
    if n < 2:
        return [rows]
    return [v for _, v in KFold(n, shuffle=True, random_state=random_state).split(rows)]


def estimate_selection(
    probs: Mapping[str, np.ndarray],
    labels: np.ndarray,
    parts: Sequence[np.ndarray],
    *,
    metric: str,
    size: int,
    init_best: int = 0,
) -> SelectionEstimate:
    """Cross-validate greedy selection over ``probs`` (candidate id -> ``[N, K]`` on the
    selection clips), the clips split into ``parts`` (row numbers, together every row once).
    """
    rule = get_metric(metric)
    if len(parts) < 2:  # nothing to hold out: the selection's own score
        chosen = select_ensemble(probs, labels, metric=metric, size=size, init_best=init_best)
        blended = blend({cid: probs[cid] for cid in chosen.members}, chosen.members)
        value = chosen.val_metric
        return SelectionEstimate(metric, value, [value], accuracy(blended, labels))
    held = np.full(next(iter(probs.values())).shape, np.nan)
    values = []
    every = np.arange(len(labels))
    for part in parts:
        rest = np.setdiff1d(every, part)
        chosen = select_ensemble(
            {cid: p[rest] for cid, p in probs.items()},
            labels[rest],
            metric=metric,
            size=size,
            init_best=init_best,
        )
        held[part] = blend({cid: probs[cid][part] for cid in chosen.members}, chosen.members)
        values.append(rule.fn(held[part], labels[part]))
    if np.isnan(held).any():
        raise ValueError("the estimate's parts do not cover every selection clip")
    return SelectionEstimate(metric, rule.fn(held, labels), values, accuracy(held, labels))
