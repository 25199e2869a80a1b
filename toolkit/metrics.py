"""Classification metrics over probability tables.

Every metric takes ``probs`` of shape ``[N, K]`` (one row of class
probabilities per example) and integer ``labels`` of shape ``[N]`` with values
in ``[0, K)``, and returns a Python ``float``. :data:`METRICS` maps each metric
name to its function and its optimisation direction, so callers (ensemble
selection, model ranking) can optimise a metric named in a recipe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np

Direction = Literal["maximize", "minimize"]
MetricFn = Callable[[np.ndarray, np.ndarray], float]


class Metric(NamedTuple):
    """A metric function and whether larger (``maximize``) or smaller values are better."""

    fn: MetricFn
    direction: Direction


def _check_inputs(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``probs`` and ``labels`` as arrays after checking their shapes and label range."""
    p = np.asarray(probs)
    y = np.asarray(labels)
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D [N, K]; got shape {p.shape}")
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D [N]; got shape {y.shape}")
    if p.shape[0] != y.shape[0]:
        raise ValueError(f"probs has {p.shape[0]} rows but labels has {y.shape[0]} entries")
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


METRICS: dict[str, Metric] = {
    "accuracy": Metric(accuracy, "maximize"),
    "log_loss": Metric(log_loss, "minimize"),
}
"""Metric name -> ``(function, direction)``; each entry unpacks as a 2-tuple."""


def get_metric(name: str) -> Metric:
    """Return the :class:`Metric` registered under ``name``; ``ValueError`` if unknown."""
    try:
        return METRICS[name]
    except KeyError:
        known = ", ".join(sorted(METRICS))
        raise ValueError(f"unknown metric {name!r}; known metrics: {known}") from None


def metric_is_better(a: float, b: float, name: str) -> bool:
    """Return True if score ``a`` is strictly better than score ``b`` under metric ``name``."""
    if get_metric(name).direction == "maximize":
        return a > b
    return a < b
