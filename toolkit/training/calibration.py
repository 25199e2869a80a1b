"""Temperature scaling: one number that makes a model's probabilities as sure as it is right.

A network that grows confident as it trains can rank clips better and still lose on
log loss. Dividing its logits by a temperature ``T > 0`` (``softmax(z / T)``; from
probabilities, ``p ** (1 / T)`` renormalised, the same thing) keeps every clip's
arg-max and changes only how sure it is. :func:`fit_temperature` finds the ``T`` that
minimises the log loss of held-out predictions (a bounded 1-D search, deterministic,
milliseconds); :func:`apply_temperature` applies it to any predictions of that model.
"""

from __future__ import annotations

import math

import numpy as np

from toolkit.metrics import log_loss

TEMPERATURE_BOUNDS = (1e-3, 1e3)
"""The temperatures :func:`fit_temperature` searches (a bounded search on ``log T``)."""

_TINY = 1e-300
"""Probabilities below it (an underflow to 0) are read as it: a finite logit to soften."""


def _logits(probs: np.ndarray) -> np.ndarray:
    """Log-probabilities: logits up to a per-row constant (0 read as :data:`_TINY`)."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), _TINY, None))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``probs`` ``[N, K]`` as the model would give them with its logits divided by
    ``temperature``: each row ``p ** (1 / T)`` renormalised (``T == 1``: ``probs`` itself)."""
    if not temperature > 0:
        raise ValueError(f"a temperature must be positive; got {temperature}")
    if temperature == 1.0:
        return probs
    logits = _logits(probs) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature whose :func:`apply_temperature` of ``probs`` has the lowest log loss on
    ``labels`` (integer classes ``[N]``), within :data:`TEMPERATURE_BOUNDS`; 1.0 when no
    temperature does better than none (:func:`toolkit.metrics.log_loss`), so it never
    worsens the loss."""
    from scipy.optimize import minimize_scalar  # lazily: scipy is slow to import
    from scipy.special import logsumexp

    logits = _logits(probs)
    true_class = logits[np.arange(len(logits)), np.asarray(labels)]

    def loss(log_t: float) -> float:  # the mean negative log-likelihood at T = exp(log_t)
        scale = math.exp(-log_t)
        return float(np.mean(logsumexp(logits * scale, axis=1) - true_class * scale))

    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    found = minimize_scalar(loss, bounds=(low, high), method="bounded", options={"xatol": 1e-5})
    temperature = float(math.exp(found.x))
    calibrated = log_loss(apply_temperature(probs, temperature), labels)
    return temperature if calibrated < log_loss(probs, labels) else 1.0
