"""Temperature scaling (toolkit/training/calibration.py) and calibrated selection."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.metrics import accuracy, log_loss
from toolkit.training.calibration import apply_temperature, fit_temperature


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def sampled(temperature: float, n: int = 4000, k: int = 4, seed: int = 0):
    """Logits of ``n`` clips and labels drawn from ``softmax(logits / temperature)``: a model
    whose logits are ``temperature`` times too large (or small) for its accuracy."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, size=(n, k))
    truth = softmax(logits / temperature)
    labels = np.array([rng.choice(k, p=row) for row in truth])
    return softmax(logits), labels


@pytest.mark.parametrize("true_t", [0.5, 2.5, 6.0])
def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_with(
    true_t: float,
) -> None:
    probs, labels = sampled(true_t)
    fitted = fit_temperature(probs, labels)
    assert fitted == pytest.approx(true_t, rel=0.1)
    # the calibrated loss is lower than the raw one, and as low as the truth's
    calibrated = log_loss(apply_temperature(probs, fitted), labels)
    assert calibrated < log_loss(probs, labels)
    assert calibrated <= log_loss(apply_temperature(probs, true_t), labels) + 1e-9


def test_calibrated_predictions_keep_a_temperature_near_one() -> None:
    probs, labels = sampled(1.0)
    assert fit_temperature(probs, labels) == pytest.approx(1.0, abs=0.08)


@pytest.mark.parametrize("seed", range(6))
def test_fit_temperature_never_worsens_log_loss(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(2, 40)), int(rng.integers(2, 6))
    probs = softmax(rng.normal(0.0, rng.uniform(0.1, 8.0), size=(n, k)))
    labels = rng.integers(0, k, size=n)
    fitted = fit_temperature(probs, labels)
    assert fitted > 0
    assert log_loss(apply_temperature(probs, fitted), labels) <= log_loss(probs, labels)
    assert fit_temperature(probs, labels) == fitted  # deterministic


def test_apply_temperature_keeps_every_arg_max_and_the_identity_at_one() -> None:
    probs, labels = sampled(2.0, n=200)
    assert apply_temperature(probs, 1.0) is probs
    for t in (0.01, 0.3, 3.0, 500.0):
        scaled = apply_temperature(probs, t)
        assert np.allclose(scaled.sum(axis=1), 1.0)
        assert accuracy(scaled, labels) == accuracy(probs, labels)
    logits = np.log(probs)
    assert np.allclose(apply_temperature(probs, 4.0), softmax(logits / 4.0))
    with pytest.raises(ValueError, match="positive"):
        apply_temperature(probs, 0.0)
