"""Training a backbone on feature arrays: optimizer, schedule, best epoch, probabilities."""

from __future__ import annotations

import contextlib
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

from toolkit.device_data import Features
from toolkit.devices import (
    Precision,
    accumulator_dtype,
    autocast,
    compile_errors,
    compile_model,
    grad_scaler,
    keep_on_device,
    resolve_device,
    resolve_precision,
    use_channels_last,
    with_layout,
)
from toolkit.kinds import BatchAugmenter, TestTimeAugmenter
from toolkit.metrics import Metric, get_metric, validation_scores
from toolkit.progress import progress_bar, progress_enabled
from toolkit.recipe import Train

EPOCH_SHOWN = {
    "train_loss": "loss",
    "train_accuracy": "acc",
    "val_loss": "val_loss",
    "val_accuracy": "val_acc",
}
"""Record keys shown once per epoch (and their short names), when the record has them: the
training loss is ``loss``, as in the bar's running value, so the line fits 80 columns."""

EpochCallback = Callable[[int, dict[str, float]], None]
"""Called after each epoch with (epoch, record); may raise to stop (e.g. a pruned trial)."""

LOSS_REFRESH_SECONDS = 1.0
"""The progress bar's running loss is read from the device at most this often: each
read waits for the device, so an epoch's steps otherwise never wait for it."""


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, numpy and torch (every device); with ``deterministic``, only
    deterministic kernels may run, so the same seed gives the same numbers.

    Without it, cuDNN's autotuner picks the fastest convolution kernels (CUDA only).
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; read when CUDA starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = not deterministic
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


def build_optimizer(params: Any, cfg: Train, *, loss_scaled: bool = False) -> torch.optim.Optimizer:
    """The recipe's optimizer.

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


@torch.inference_mode()
def probabilities(
    model: nn.Module,
    features: Features,
    batch_size: int,
    *,
    precision: Precision = "fp32",
    channels_last: bool = False,
    test_time_augmenters: Sequence[TestTimeAugmenter] = (),
) -> np.ndarray:
    """Class probabilities ``[N, K]`` of ``features`` (averaged over the features and every
    view of the test-time augmenters, if any), read back from the device once."""
    model.eval()
    out = []
    for batch in features.chunks(batch_size):
        views = [batch, *(v for tta in test_time_augmenters for v in tta.views(batch))]
        probs = []
        for view in views:
            with autocast(precision, features.device):
                logits = model(with_layout(view, channels_last))
            probs.append(torch.softmax(logits.float(), dim=1))
        out.append(torch.stack(probs).mean(0))
    return torch.cat(out).cpu().numpy().astype(np.float64)


def predict_proba(
    model: nn.Module,
    x: np.ndarray,
    device: torch.device,
    batch_size: int = 128,
    *,
    test_time_augmenters: Sequence[TestTimeAugmenter] = (),
    precision: Precision = "fp32",
    data_on_device: bool = False,
    channels_last: bool = False,
) -> np.ndarray:
    """Class probabilities ``[N, K]`` of a feature array (averaged over the features and
    every view of the test-time augmenters, if any).

    ``precision`` is the autocast of the forward pass; ``data_on_device`` places
    ``x`` on the device once (and reuses it for the same array), instead of a
    batch at a time.
    """
    features = Features(x, device, resident=data_on_device)
    return probabilities(
        model,
        features,
        batch_size,
        precision=precision,
        channels_last=channels_last,
        test_time_augmenters=test_time_augmenters,
    )


def epoch_batches(
    rng: np.random.Generator, n: int, batch_size: int
) -> tuple[list[np.ndarray], int]:
    """An epoch's batches of row numbers (each sorted) and the number of batches dropped.

    A last batch of one clip is dropped when there are more (it breaks batch
    norm); its clip is seen in another epoch.
    """
    order = rng.permutation(n)
    parts = [np.sort(order[start : start + batch_size]) for start in range(0, n, batch_size)]
    kept = [part for part in parts if not len(part) < 2 < n]
    return kept, len(parts) - len(kept)


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

    def step(self, x: torch.Tensor, hard: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step on a batch and its labels; its loss and logits, on the device."""
        y = torch.nn.functional.one_hot(hard, self.num_classes).float()
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
        for x, hard in data.batches(index):
            loss, logits = self.step(x, hard)
            loss_sum += loss.detach().to(loss_sum.dtype) * len(hard)
            correct += (logits.argmax(1) == hard).sum()
            seen += len(hard)
            if show_loss and time.monotonic() >= next_read:
                fields = {"epoch": label, "loss": f"{loss_sum.item() / seen:.3f}"}
                next_read = time.monotonic() + LOSS_REFRESH_SECONDS
            advance(1, **fields)
        return loss_sum.item() / seen, correct.item() / seen


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
    ``cfg`` chooses the device, the precision, where the features live, the
    memory layout and whether the model is compiled (see :class:`Train`).
    """
    metric = get_metric(select_by)
    validating = len(val_x) > 0
    started = time.perf_counter()
    seed_everything(cfg.seed, cfg.deterministic)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    mean, std = feature_stats(train_x)
    model = Standardized(backbone, mean, std).to(device)
    channels_last = use_channels_last(cfg.channels_last, model, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model.parameters(), cfg, loss_scaled=precision == "fp16")
    scheduler = build_scheduler(optimizer, cfg)
    rng = np.random.default_rng(cfg.seed)
    steps = Steps(
        net=compile_model(model) if cfg.compile else model,
        optimizer=optimizer,
        scaler=grad_scaler(precision, device),
        precision=precision,
        channels_last=channels_last,
        num_classes=num_classes,
        augmenters=batch_augmenters,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    resident = keep_on_device(cfg.data_on_device, device, train_x, train_y, val_x, test_x)
    train_data = Features(train_x, device, resident=resident, labels=train_y)
    val_data = Features(val_x, device, resident=resident)

    def predict(features: Features, tta: Sequence[TestTimeAugmenter] = ()) -> np.ndarray:
        return probabilities(
            steps.net,
            features,
            cfg.eval_batch_size,
            precision=precision,
            channels_last=channels_last,
            test_time_augmenters=tta,
        )

    steps_per_epoch = math.ceil(len(train_x) / cfg.batch_size)
    history: list[dict[str, float]] = []
    best: dict[str, float] | None = None
    best_state: dict[str, torch.Tensor] = {}
    best_probs = np.zeros((0, num_classes))
    with (
        compile_errors() if cfg.compile else contextlib.nullcontext(),
        progress_bar(description, cfg.epochs * steps_per_epoch) as advance,
    ):
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            index, dropped = epoch_batches(rng, len(train_x), cfg.batch_size)
            train_loss, train_accuracy = steps.epoch(
                train_data, index, advance, f"{epoch}/{cfg.epochs}"
            )
            lr = optimizer.param_groups[0]["lr"]
            if scheduler is not None:
                scheduler.step()
            record = {
                "epoch": epoch,
                "lr": lr,
                "train_loss": train_loss,
                "train_accuracy": train_accuracy,
            }
            if validating:
                probs = predict(val_data)
                record.update(validation_scores(probs, val_y))
            history.append(record)
            if validating and _better(record, best, metric):
                best, best_probs = record, probs
                best_state = copy.deepcopy(model.state_dict())
            shown = {v: f"{record[k]:.3f}" for k, v in EPOCH_SHOWN.items() if k in record}
            # the dropped batches are counted with the epoch's line
            advance(dropped, milestone=True, epoch=f"{epoch}/{cfg.epochs}", **shown)
            if on_epoch is not None:
                on_epoch(epoch, record)
        if not validating:  # nothing held out: the last epoch is the model
            best, best_probs = history[-1], np.zeros((0, num_classes))
            best_state = model.state_dict()
        assert best is not None
        model.load_state_dict(best_state)
        tta = tuple(test_time_augmenters)
        # the best epoch's own validation pass is the answer unless views are added
        val_probs = predict(val_data, tta) if tta and validating else best_probs
        test_probs = (
            predict(Features(test_x, device, resident=resident), tta)
            if test_x is not None
            else None
        )
    return TrainResult(
        history=history,
        best_epoch=int(best["epoch"]),
        state_dict={k: v.detach().cpu().contiguous() for k, v in best_state.items()},
        val_probs=val_probs,
        test_probs=test_probs,
        val_accuracy=best.get("val_accuracy", math.nan),
        val_loss=best.get("val_loss", math.nan),
        seconds=time.perf_counter() - started,
    )
