"""Optimisation: the recipe's optimizer and schedule, the loss, and each step and epoch."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from toolkit.devices import Precision, accumulator_dtype, autocast, with_layout
from toolkit.progress import progress_enabled
from toolkit.recipe.schema import Train
from toolkit.registry.kinds import BatchAugmenter
from toolkit.training.device_data import Features

LOSS_REFRESH_SECONDS = 1.0
"""The progress bar's running loss is read from the device at most this often: each
read waits for the device, so an epoch's steps otherwise never wait for it."""


def parameter_groups(backbone: nn.Module, lr: float) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: the backbone's own (``parameter_groups(lr)``, see
    :class:`toolkit.registry.kinds.FineTunable`), else one group of all its parameters."""
    own = getattr(backbone, "parameter_groups", None)
    if own is None:
        return [{"params": list(backbone.parameters())}]
    groups = list(own(lr))
    if not groups or not all(isinstance(g, dict) and "params" in g for g in groups):
        raise TypeError(
            f"{type(backbone).__name__}.parameter_groups must return a non-empty list of "
            "dicts with 'params'"
        )
    return groups


def build_optimizer(params: Any, cfg: Train, *, loss_scaled: bool = False) -> torch.optim.Optimizer:
    """The recipe's optimizer over ``params`` (parameters, or groups of them as
    ``torch.optim`` takes them; a group's own ``lr`` overrides the recipe's).

    With a loss scaler (fp16), AdamW is PyTorch's fused kernel: the scaler's
    overflow check then stays on the device, where otherwise it is read back
    every step. SGD is never fused: fused SGD advances its momentum on the steps
    the scaler skips, so with SGD and fp16 that flag is read every step.
    """
    opt = cfg.optimizer
    if opt.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=opt.lr,
            momentum=opt.momentum,
            nesterov=opt.nesterov,
            weight_decay=opt.weight_decay,
        )
    return torch.optim.AdamW(
        params,
        lr=opt.lr,
        betas=opt.betas,
        weight_decay=opt.weight_decay,
        **({"fused": True} if loss_scaled else {}),
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: Train
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The recipe's per-epoch learning-rate schedule (``None`` for a constant rate)."""
    sched = cfg.scheduler
    if sched.name == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=sched.milestones, gamma=sched.gamma
        )
    if sched.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=cfg.epochs, eta_min=sched.eta_min
        )
    return None


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against soft targets (rows summing to one)."""
    return -(targets * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()


def soft_targets(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Float targets ``[B, K]`` of integer classes ``[B]`` (one-hot), or soft targets as given."""
    if labels.ndim == 2:
        return labels.float()
    return torch.nn.functional.one_hot(labels, num_classes).float()


@dataclass
class Steps:
    """What every optimisation step of one training run uses."""

    net: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    precision: Precision
    channels_last: bool
    num_classes: int
    augmenters: Sequence[BatchAugmenter]
    generator: torch.Generator

    def step(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step on a batch and its labels (classes ``[B]`` or soft targets
        ``[B, K]``); its loss and logits, on the device."""
        y = soft_targets(labels, self.num_classes)
        for augment in self.augmenters:
            x, y = augment(x, y, self.generator)
        with autocast(self.precision, x.device):
            logits = self.net(with_layout(x, self.channels_last))
        loss = soft_cross_entropy(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return loss, logits

    def epoch(
        self, data: Features, index: Sequence[np.ndarray], advance: Callable[..., None], label: str
    ) -> tuple[float, float]:
        """Train on the batches ``index`` of ``data``; the mean loss and the accuracy.

        The sums stay on the device until the epoch ends: no step waits for it,
        except that the progress bar's running loss is read every
        ``LOSS_REFRESH_SECONDS`` while progress is shown.
        """
        device = data.device
        loss_sum = torch.zeros((), dtype=accumulator_dtype(device), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        show_loss = progress_enabled()
        next_read = time.monotonic() + LOSS_REFRESH_SECONDS
        fields = {"epoch": label}
        for x, labels in data.batches(index):
            loss, logits = self.step(x, labels)
            loss_sum += loss.detach().to(loss_sum.dtype) * len(labels)
            hard = labels if labels.ndim == 1 else labels.argmax(1)
            correct += (logits.argmax(1) == hard).sum()
            seen += len(labels)
            if show_loss and time.monotonic() >= next_read:
                fields = {"epoch": label, "loss": f"{loss_sum.item() / seen:.3f}"}
                next_read = time.monotonic() + LOSS_REFRESH_SECONDS
            advance(1, **fields)
        return loss_sum.item() / seen, correct.item() / seen
