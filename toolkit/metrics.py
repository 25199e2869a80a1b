"""Classification metrics over probability tables, and the one table of them.

Every metric takes ``probs`` of shape ``[N, K]`` (one row of class
probabilities per example) and integer ``labels`` of shape ``[N]`` with values
in ``[0, K)``, and returns a Python ``float``. :data:`METRICS` names each one
with its function, its direction, what of a prediction it reads and the column
of a training history that holds it; the trainer's best epoch, the study's
direction, the ensemble's selection and the leaderboard's order all read it,
so a new metric is one entry.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np

from toolkit.wording import count

Direction = Literal["maximize", "minimize"]
MetricFn = Callable[[np.ndarray, np.ndarray], float]
K = TypeVar("K", bound=Any)


def _check_inputs(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``probs`` and ``labels`` as arrays after checking their shapes and label range."""
    p = np.asarray(probs)
    y = np.asarray(labels)
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D [N, K]; got shape {p.shape}")
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D [N]; got shape {y.shape}")
    if p.shape[0] != y.shape[0]:
        raise ValueError(
            f"probs has {count(p.shape[0], 'row')} but labels has "
            f"{count(y.shape[0], 'entry', 'entries')}"
        )
    if p.shape[0] == 0:
        raise ValueError("cannot score an empty set of examples (N == 0)")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers; got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(
            f"labels must lie in [0, {p.shape[1]}) for {p.shape[1]} classes; "
            f"found values in [{y.min()}, {y.max()}]"
        )
    return p, y


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose arg-max class equals the label.

    A row whose maximum is shared by several classes predicts the lowest such
    class index (``numpy.argmax`` semantics).
    """
    p, y = _check_inputs(probs, labels)
    return float(np.mean(np.argmax(p, axis=1) == y))


def log_loss(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-15) -> float:
    """Mean negative log-probability of the true class (natural log).

    Probabilities are clipped to ``[eps, 1 - eps]`` and each row is then
    renormalised to sum to 1, so a zero probability on the true class costs a
    large but finite penalty and unnormalised rows are scored as distributions.
    """
    p, y = _check_inputs(probs, labels)
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must lie in (0, 0.5); got {eps}")
    clipped = np.clip(p.astype(np.float64, copy=False), eps, 1.0 - eps)
    clipped /= clipped.sum(axis=1, keepdims=True)
    true_class = clipped[np.arange(y.shape[0]), y]
    return float(-np.mean(np.log(true_class)))


def macro_f1(probs: np.ndarray, labels: np.ndarray) -> float:
    """Unweighted mean of the F1 scores of the classes present (in truth or prediction)."""
    from sklearn import metrics as sk_metrics  # lazily: the leaderboard imports this module

    p, y = _check_inputs(probs, labels)
    return float(sk_metrics.f1_score(y, p.argmax(axis=1), average="macro", zero_division=0))


def balanced_accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes present in ``labels`` of the fraction of them predicted right."""
    from sklearn import metrics as sk_metrics

    p, y = _check_inputs(probs, labels)
    with warnings.catch_warnings():  # a predicted class absent from the labels is no error
        warnings.simplefilter("ignore", UserWarning)
        return float(sk_metrics.balanced_accuracy_score(y, p.argmax(axis=1)))


@dataclass(frozen=True)
class Metric:
    """A metric: its function, whether larger or smaller is better, and what it reads."""

    name: str
    fn: MetricFn
    direction: Direction
    reads: Literal["probabilities", "labels"]
    """What of a prediction it depends on: the probabilities, or only the arg-max label."""
    history_key: str
    """Its column in a training history and ``metrics.csv`` (validation split)."""

    def better(self, a: float, b: float) -> bool:
        """Whether score ``a`` is strictly better than score ``b``."""
        return a > b if self.direction == "maximize" else a < b

    def best(self, values: Iterable[float]) -> float:
        """The best of ``values``."""
        return max(values) if self.direction == "maximize" else min(values)

    def goodness(self, value: float) -> float:
        """``value`` signed so that larger is better, for sorting best first."""
        return value if self.direction == "maximize" else -value

    @property
    def calibrated_key(self) -> str:
        """Its column of the calibrated validation predictions (``train.calibration``)."""
        return f"{self.history_key}{CALIBRATED}"

    def column(self, record: Mapping[str, float]) -> str:
        """The column of an epoch's ``record`` it is read from: the calibrated one when the
        record has it (a metric of probabilities, a calibrated run), else its own."""
        if self.reads == "probabilities" and self.calibrated_key in record:
            return self.calibrated_key
        return self.history_key

    def of(self, record: Mapping[str, float]) -> float:
        """Its value in an epoch's ``record`` (:meth:`column`)."""
        return float(record[self.column(record)])


CALIBRATED = "_calibrated"
"""The suffix of a history column holding a metric of the calibrated validation predictions."""

METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", accuracy, "maximize", "labels", "val_accuracy"),
        Metric("log_loss", log_loss, "minimize", "probabilities", "val_loss"),
        Metric("macro_f1", macro_f1, "maximize", "labels", "val_macro_f1"),
        Metric(
            "balanced_accuracy", balanced_accuracy, "maximize", "labels", "val_balanced_accuracy"
        ),
    )
}
"""Every metric by name: what recipes, the trainer, the study, ensembles and the leaderboard use."""


DEFAULT_METRIC = "accuracy"
"""The metric of a recipe that names none (``search.metric``), and of a plain run."""


def best_key(scores: Iterable[tuple[K, float]], metric: str) -> K | None:
    """The key with the best score on ``metric``; ties go to the smallest key (the lowest
    trial number or id). ``None`` when there is none.

    The one rule for "the best trial" and "the best single model".
    """
    rule = get_metric(metric)
    ranked = sorted(scores, key=lambda item: (-rule.goodness(item[1]), item[0]))
    return ranked[0][0] if ranked else None


def epoch_rank(record: Mapping[str, float], metric: str) -> tuple[float, float]:
    """How good an epoch's record is, larger better: its validation ``metric`` (calibrated,
    when the record has it: :meth:`Metric.of`), then (for a tie) its lower validation loss."""
    rule = get_metric(metric)
    return rule.goodness(rule.of(record)), -record["val_loss"]


def best_epoch(history: Sequence[Mapping[str, float]], metric: str) -> Mapping[str, float]:
    """The record of the best epoch of a training history: best validation ``metric``
    (calibrated, when the history has it), ties to the lower validation loss, then to the
    earlier epoch.

    The one rule for "the best epoch": the trainer keeps that epoch's weights, and a
    stopped model's row shows its numbers.
    """
    if not history:
        raise ValueError("an empty history has no best epoch")
    return max(history, key=lambda record: epoch_rank(record, metric))  # first max: earlier


def get_metric(name: str) -> Metric:
    """The :class:`Metric` called ``name``; ``ValueError`` naming the closest ones if unknown."""
    try:
        return METRICS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(METRICS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"unknown metric {name!r}; {hint}known: {', '.join(METRICS)}") from None


def validation_scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Every metric of the table on these predictions, by its history column."""
    return {m.history_key: m.fn(probs, labels) for m in METRICS.values()}


def calibrated_scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Every metric of probabilities on calibrated predictions, by its calibrated column (the
    others read only the arg-max, which a temperature keeps)."""
    return {
        m.calibrated_key: m.fn(probs, labels)
        for m in METRICS.values()
        if m.reads == "probabilities"
    }
