"""Training a backbone on feature arrays: optimizer, schedule, best epoch, probabilities."""

from __future__ import annotations

import copy
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from toolkit.devices import resolve_device
from toolkit.kinds import BatchAugmenter, TestTimeAugmenter
from toolkit.metrics import Metric, get_metric, validation_scores
from toolkit.progress import progress_bar
from toolkit.recipe import Train

EPOCH_SHOWN = {
    "train_loss": "train_loss",
    "train_accuracy": "train_acc",
    "val_loss": "val_loss",
    "val_accuracy": "val_acc",
}
"""Record keys shown once per epoch (and their short names), when the record has them."""

EpochCallback = Callable[[int, dict[str, float]], None]
"""Called after each epoch with (epoch, record); may raise to stop (e.g. a pruned trial)."""


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, numpy and torch (every device); with ``deterministic``, only
    deterministic kernels may run, so the same seed gives the same numbers."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; read when CUDA starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(deterministic)


class Standardized(nn.Module):
    """A backbone behind a fixed standardisation of its input (training-set mean and std)."""

    def __init__(self, backbone: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the standardised input."""
        return self.backbone((x - self.mean) / self.std)


def feature_stats(x: np.ndarray, max_items: int = 512) -> tuple[float, float]:
    """Mean and std of a feature array, from an evenly spaced subset of items."""
    step = max(1, len(x) // max_items)
    sample = np.asarray(x[::step], dtype=np.float32)
    std = float(sample.std())
    return float(sample.mean()), std if std > 1e-6 else 1.0


def build_optimizer(params: Any, cfg: Train) -> torch.optim.Optimizer:
    """The recipe's optimizer."""
    opt = cfg.optimizer
    if opt.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=opt.lr,
            momentum=opt.momentum,
            nesterov=opt.nesterov,
            weight_decay=opt.weight_decay,
        )
    return torch.optim.AdamW(params, lr=opt.lr, betas=opt.betas, weight_decay=opt.weight_decay)


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


@torch.inference_mode()
def predict_proba(
    model: nn.Module,
    x: np.ndarray,
    device: torch.device,
    batch_size: int = 128,
    *,
    test_time_augmenters: Sequence[TestTimeAugmenter] = (),
) -> np.ndarray:
    """Class probabilities ``[N, K]`` of a feature array (averaged over the features and
    every view of the test-time augmenters, if any)."""
    model.eval()
    out = []
    for start in range(0, len(x), batch_size):
        batch = torch.from_numpy(np.asarray(x[start : start + batch_size], dtype=np.float32))
        batch = batch.to(device)
        views = [batch, *(v for tta in test_time_augmenters for v in tta.views(batch))]
        probs = torch.stack([torch.softmax(model(v), dim=1).float() for v in views]).mean(0)
        out.append(probs.cpu().numpy())
    return np.concatenate(out).astype(np.float64)


@dataclass
class TrainResult:
    """What training produced: history, best epoch, its weights and probabilities."""

    history: list[dict[str, float]]
    best_epoch: int
    state_dict: dict[str, torch.Tensor]
    val_probs: np.ndarray
    test_probs: np.ndarray | None
    val_accuracy: float
    val_loss: float
    seconds: float


def _better(record: dict[str, float], best: dict[str, float] | None, metric: Metric) -> bool:
    """Whether an epoch's record beats the best so far on ``metric`` (ties: lower loss)."""
    if best is None:
        return True
    key = metric.history_key
    if record[key] != best[key]:
        return metric.better(record[key], best[key])
    return record["val_loss"] < best["val_loss"]


def train(
    backbone: nn.Module,
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    cfg: Train,
    num_classes: int,
    *,
    test_x: np.ndarray | None = None,
    batch_augmenters: Sequence[BatchAugmenter] = (),
    test_time_augmenters: Sequence[TestTimeAugmenter] = (),
    select_by: str = "accuracy",
    on_epoch: EpochCallback | None = None,
    description: str = "training",
) -> TrainResult:
    """Train ``backbone`` on the training arrays, keep the best epoch on validation
    (the last epoch when ``val_x`` is empty: nothing is held out).

    The best epoch is chosen on plain predictions; the final validation and test
    probabilities of that epoch average ``test_time_augmenters``' views too.
    """
    metric = get_metric(select_by)
    validating = len(val_x) > 0
    started = time.perf_counter()
    seed_everything(cfg.seed, cfg.deterministic)
    device = resolve_device(cfg.device)
    mean, std = feature_stats(train_x)
    model = Standardized(backbone, mean, std).to(device)
    optimizer = build_optimizer(model.parameters(), cfg)
    scheduler = build_scheduler(optimizer, cfg)
    rng = np.random.default_rng(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = math.ceil(len(train_x) / cfg.batch_size)
    history: list[dict[str, float]] = []
    best: dict[str, float] | None = None
    best_state: dict[str, torch.Tensor] = {}
    with progress_bar(description, cfg.epochs * steps_per_epoch) as advance:
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            order = rng.permutation(len(train_x))
            loss_sum, correct, seen = 0.0, 0, 0
            for start in range(0, len(order), cfg.batch_size):
                idx = np.sort(order[start : start + cfg.batch_size])
                if len(idx) < 2 < len(order):
                    advance(1)
                    continue  # a batch of one breaks batch norm; its clip is seen next epoch
                x = torch.from_numpy(np.asarray(train_x[idx], dtype=np.float32))
                hard = torch.from_numpy(np.asarray(train_y[idx], dtype=np.int64))
                y = torch.nn.functional.one_hot(hard, num_classes).float()
                for augment in batch_augmenters:
                    x, y = augment(x, y, generator)
                x, y, hard = x.to(device), y.to(device), hard.to(device)
                logits = model(x)
                loss = soft_cross_entropy(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item() * len(idx)
                correct += int((logits.argmax(1) == hard).sum())
                seen += len(idx)
                advance(1, epoch=f"{epoch}/{cfg.epochs}", loss=f"{loss_sum / seen:.3f}")
            lr = optimizer.param_groups[0]["lr"]
            if scheduler is not None:
                scheduler.step()
            record = {
                "epoch": epoch,
                "lr": lr,
                "train_loss": loss_sum / seen,
                "train_accuracy": correct / seen,
            }
            if validating:
                probs = predict_proba(model, val_x, device, cfg.eval_batch_size)
                record.update(validation_scores(probs, val_y))
            history.append(record)
            if not validating or _better(record, best, metric):
                best = record
                best_state = copy.deepcopy(model.state_dict())
            shown = {v: f"{record[k]:.3f}" for k, v in EPOCH_SHOWN.items() if k in record}
            advance(0, milestone=True, epoch=f"{epoch}/{cfg.epochs}", **shown)
            if on_epoch is not None:
                on_epoch(epoch, record)
    assert best is not None
    model.load_state_dict(best_state)
    tta = tuple(test_time_augmenters)
    val_probs = (
        predict_proba(model, val_x, device, cfg.eval_batch_size, test_time_augmenters=tta)
        if validating
        else np.zeros((0, num_classes))
    )
    test_probs = (
        predict_proba(model, test_x, device, cfg.eval_batch_size, test_time_augmenters=tta)
        if test_x is not None
        else None
    )
    return TrainResult(
        history=history,
        best_epoch=int(best["epoch"]),
        state_dict={k: v.detach().cpu() for k, v in best_state.items()},
        val_probs=val_probs,
        test_probs=test_probs,
        val_accuracy=best.get("val_accuracy", math.nan),
        val_loss=best.get("val_loss", math.nan),
        seconds=time.perf_counter() - started,
    )
