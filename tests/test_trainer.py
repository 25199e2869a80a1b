"""Trainer corner cases on small feature arrays."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from toolkit.metrics import METRICS
from toolkit.plugins.backbones.resnet import resnet18
from toolkit.recipe.schema import Train
from toolkit.training.trainer import train

pytestmark = pytest.mark.slow  # these train


def test_a_last_batch_of_one_clip_does_not_break_batch_norm() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(17, 1, 16, 20)).astype(np.float16)
    y = np.arange(17) % 2
    cfg = Train(epochs=2, batch_size=16, optimizer={"name": "adamw", "lr": 1e-3})
    result = train(
        resnet18(num_classes=2, in_channels=1, width=4),
        x,
        y,
        x[:6],
        y[:6],
        cfg,
        2,
        select_by="accuracy",
    )
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert result.val_probs.shape == (6, 2)
    np.testing.assert_allclose(result.val_probs.sum(axis=1), 1.0, atol=1e-6)


CALIBRATIONS = ("temperature", "none")


def test_every_metric_of_the_table_is_in_the_history_and_selects_the_best_epoch() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(48, 1, 16, 20)).astype(np.float32)
    y = np.arange(48) % 3
    x[:, 0, :4, :] += y[:, None, None]  # a learnable signal in the lowest rows
    for (name, metric), calibration in itertools.product(METRICS.items(), CALIBRATIONS):
        cfg = Train(
            epochs=4,
            batch_size=16,
            optimizer={"name": "adamw", "lr": 3e-3},
            calibration=calibration,
        )
        net = resnet18(num_classes=3, in_channels=1, width=4)
        result = train(net, x, y, x[:24], y[:24], cfg, 3, select_by=name)
        # the column it reads: of the calibrated predictions for log loss, when calibrated
        column = [metric.of(r) for r in result.history]
        assert {m.history_key for m in METRICS.values()} <= set(result.history[0])
        calibrated = calibration == "temperature" and metric.reads == "probabilities"
        assert metric.column(result.history[0]).endswith("_calibrated") == calibrated
        best = metric.best(column)
        first_best = next(i for i, v in enumerate(column) if v == best)
        tied = [i for i, v in enumerate(column) if v == best]
        assert result.best_epoch - 1 in tied, (name, column)
        if len(tied) == 1:
            assert result.best_epoch == first_best + 1
        assert metric.fn(result.val_probs, y[:24]) == column[result.best_epoch - 1]


class TwoPartNet(nn.Module):
    """A body and a head using every optional trainer hook: parameter groups, a freezing
    schedule by epoch (the body frozen, its batch norm in eval mode, for two epochs) and
    raw input; it records what it was given."""

    standardize_input = False

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(40, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.head = nn.Linear(8, 2)
        self.first_batch: torch.Tensor | None = None
        self.norm_modes: list[tuple[int, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.first_batch is None:
            self.first_batch = x.detach().clone()
        return self.head(self.body(x))

    def parameter_groups(self, lr: float) -> list[dict[str, Any]]:
        return [
            {"params": list(self.head.parameters()), "lr": lr},
            {"params": list(self.body.parameters()), "lr": lr * 0.1},
        ]

    def on_epoch_start(self, epoch: int) -> None:
        frozen = epoch <= 2
        self.body.requires_grad_(not frozen)
        if frozen:
            self.body[2].eval()
        self.norm_modes.append((epoch, self.body[2].training))


def test_a_backbone_s_groups_freezing_hook_and_raw_input_are_used() -> None:
    rng = np.random.default_rng(2)
    x = (5.0 + 3.0 * rng.normal(size=(32, 1, 4, 10))).astype(np.float16)
    y = np.arange(32) % 2
    x[:, 0, 0, :] += 2.0 * y[:, None]
    net = TwoPartNet()
    snapshots: list[dict[str, torch.Tensor]] = []

    def keep(epoch: int, record: dict[str, float]) -> None:
        snapshots.append({k: v.detach().clone() for k, v in net.state_dict().items()})

    start = {k: v.detach().clone() for k, v in net.state_dict().items()}
    cfg = Train(epochs=4, batch_size=8, optimizer={"name": "adamw", "lr": 1e-2})
    result = train(net, x, y, x[:8], y[:8], cfg, 2, select_by="accuracy", on_epoch=keep)
    assert net.norm_modes == [(1, False), (2, False), (3, True), (4, True)]
    body = [k for k in start if k.startswith("body.")]  # weights and the norm's statistics
    for epoch in (1, 2):  # frozen: nothing of the body moves, the head learns
        assert all(torch.equal(snapshots[epoch - 1][k], start[k]) for k in body), epoch
        assert not torch.equal(snapshots[epoch - 1]["head.weight"], start["head.weight"])
    assert not torch.equal(snapshots[2]["body.1.weight"], start["body.1.weight"])
    assert not torch.equal(snapshots[2]["body.2.running_mean"], start["body.2.running_mean"])
    # the recorded learning rate is the first group's; the input came unstandardised
    assert [r["lr"] for r in result.history][0] == pytest.approx(1e-2)
    assert net.first_batch is not None
    rows = {tuple(r) for r in x.astype(np.float32).reshape(32, -1)}
    assert all(tuple(r) in rows for r in net.first_batch.numpy().reshape(len(net.first_batch), -1))
