"""Trainer corner cases on small feature arrays."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.metrics import METRICS
from toolkit.plugins.backbones.resnet import resnet18
from toolkit.recipe import Train
from toolkit.trainer import train

pytestmark = pytest.mark.slow  # these train


def test_a_last_batch_of_one_clip_does_not_break_batch_norm() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(17, 1, 16, 20)).astype(np.float16)
    y = np.arange(17) % 2
    cfg = Train(epochs=2, batch_size=16, optimizer={"name": "adamw", "lr": 1e-3})
    result = train(resnet18(num_classes=2, in_channels=1, width=4), x, y, x[:6], y[:6], cfg, 2)
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert result.val_probs.shape == (6, 2)
    np.testing.assert_allclose(result.val_probs.sum(axis=1), 1.0, atol=1e-6)


def test_every_metric_of_the_table_is_in_the_history_and_selects_the_best_epoch() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(48, 1, 16, 20)).astype(np.float32)
    y = np.arange(48) % 3
    x[:, 0, :4, :] += y[:, None, None]  # a learnable signal in the lowest rows
    cfg = Train(epochs=4, batch_size=16, optimizer={"name": "adamw", "lr": 3e-3})
    for name, metric in METRICS.items():
        net = resnet18(num_classes=3, in_channels=1, width=4)
        result = train(net, x, y, x[:24], y[:24], cfg, 3, select_by=name)
        column = [r[metric.history_key] for r in result.history]
        assert {m.history_key for m in METRICS.values()} <= set(result.history[0])
        best = metric.best(column)
        first_best = next(i for i, v in enumerate(column) if v == best)
        tied = [i for i, v in enumerate(column) if v == best]
        assert result.best_epoch - 1 in tied, (name, column)
        if len(tied) == 1:
            assert result.best_epoch == first_best + 1
        assert metric.fn(result.val_probs, y[:24]) == column[result.best_epoch - 1]
