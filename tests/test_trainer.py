"""Trainer corner cases on small feature arrays."""

from __future__ import annotations

import numpy as np

from toolkit.plugins.backbones.resnet import resnet18
from toolkit.recipe import Train
from toolkit.trainer import train


def test_a_last_batch_of_one_clip_does_not_break_batch_norm() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(17, 1, 16, 20)).astype(np.float16)
    y = np.arange(17) % 2
    cfg = Train(epochs=2, batch_size=16, optimizer={"name": "adamw", "lr": 1e-3})
    result = train(resnet18(num_classes=2, in_channels=1, width=4), x, y, x[:6], y[:6], cfg, 2)
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert result.val_probs.shape == (6, 2)
    np.testing.assert_allclose(result.val_probs.sum(axis=1), 1.0, atol=1e-6)
