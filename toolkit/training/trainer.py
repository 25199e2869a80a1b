"""Training a backbone on feature arrays: optimizer, schedule, best epoch, probabilities."""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from toolkit.devices import (
    Precision,
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
from toolkit.metrics import (
    Metric,
    calibrated_scores,
    epoch_rank,
    get_metric,
    validation_scores,
)
from toolkit.progress import progress_bar
from toolkit.recipe.schema import Train
from toolkit.registry.kinds import BatchAugmenter, TestTimeAugmenter
from toolkit.training.calibration import apply_temperature, fit_temperature
from toolkit.training.device_data import Features
from toolkit.training.optimisation import Steps, build_optimizer, build_scheduler, parameter_groups

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
    """A backbone behind a fixed standardisation of its input (training-set mean and std;
    0 and 1 for a backbone whose ``standardize_input`` is false)."""

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


def placed_model(
    model: nn.Module, cfg: Train, device: torch.device
) -> tuple[nn.Module, Precision, bool]:
    """``model`` on ``device`` in the memory layout ``cfg`` asks for there, the precision its
    forward passes run in and whether that layout is channels-last: how training and
    prediction alike run a model."""
    precision = resolve_precision(cfg.precision, device)
    model = model.to(device)
    channels_last = use_channels_last(cfg.channels_last, model, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, precision, channels_last


def trained_probabilities(
    model: nn.Module,
    x: np.ndarray,
    cfg: Train,
    device: torch.device,
    test_time_augmenters: Sequence[TestTimeAugmenter] = (),
) -> np.ndarray:
    """Class probabilities ``[N, K]`` of the features ``x`` by a trained model (a
    :class:`Standardized` backbone with its kept weights), computed as :func:`train` computes
    its test probabilities: ``cfg``'s determinism, precision, layout, compilation, feature
    placement and evaluation batch size, averaged over the test-time augmenters' views."""
    seed_everything(cfg.seed, cfg.deterministic)
    model, precision, channels_last = placed_model(model, cfg, device)
    net = compile_model(model) if cfg.compile else model
    with compile_errors() if cfg.compile else contextlib.nullcontext():
        return predict_proba(
            net,
            x,
            device,
            cfg.eval_batch_size,
            test_time_augmenters=test_time_augmenters,
            precision=precision,
            data_on_device=keep_on_device(cfg.data_on_device, device, x),
            channels_last=channels_last,
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
    """The kept epoch's validation log loss (of its calibrated predictions, when calibrated)."""
    seconds: float
    temperature: float = 1.0
    """What the kept epoch's logits are divided by (``train.calibration``; 1: none), fitted on
    its validation predictions; ``val_probs`` and ``test_probs`` are calibrated by it."""


def _better(record: dict[str, float], best: dict[str, float] | None, metric: Metric) -> bool:
    """Whether an epoch's record beats the best so far (the rule of
    :func:`toolkit.metrics.best_epoch`: the metric, ties to the lower loss, then the
    earlier epoch)."""
    return best is None or epoch_rank(record, metric.name) > epoch_rank(best, metric.name)


@dataclass
class Session:
    """Everything one training run works with, set up once: the device, the model behind its
    standardisation, the optimisation steps, the data on the device and the batch order."""

    cfg: Train
    device: torch.device
    precision: Precision
    channels_last: bool
    model: nn.Module
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    steps: Steps
    rng: np.random.Generator
    """Draws each epoch's batch order."""
    resident: bool
    train_data: Features
    val_data: Features

    @classmethod
    def start(
        cls,
        backbone: nn.Module,
        train_x: np.ndarray,
        train_y: np.ndarray,
        val_x: np.ndarray,
        test_x: np.ndarray | None,
        cfg: Train,
        num_classes: int,
        batch_augmenters: Sequence[BatchAugmenter],
    ) -> Session:
        """Seed everything, place the model and the data, build the optimiser and schedule."""
        seed_everything(cfg.seed, cfg.deterministic)
        device = resolve_device(cfg.device)
        raw = not getattr(backbone, "standardize_input", True)
        mean, std = (0.0, 1.0) if raw else feature_stats(train_x)
        model, precision, channels_last = placed_model(
            Standardized(backbone, mean, std), cfg, device
        )
        groups = parameter_groups(backbone, cfg.optimizer.lr)
        optimizer = build_optimizer(groups, cfg, loss_scaled=precision == "fp16")
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
        return cls(
            cfg=cfg,
            device=device,
            precision=precision,
            channels_last=channels_last,
            model=model,
            scheduler=scheduler,
            steps=steps,
            rng=rng,
            resident=resident,
            train_data=Features(train_x, device, resident=resident, labels=train_y),
            val_data=Features(val_x, device, resident=resident),
        )

    @property
    def steps_per_epoch(self) -> int:
        """Optimisation steps in one epoch."""
        return math.ceil(len(self.train_data) / self.cfg.batch_size)

    def predict(self, features: Features, tta: Sequence[TestTimeAugmenter] = ()) -> np.ndarray:
        """Class probabilities of ``features`` by the model as it is now."""
        return probabilities(
            self.steps.net,
            features,
            self.cfg.eval_batch_size,
            precision=self.precision,
            channels_last=self.channels_last,
            test_time_augmenters=tta,
        )

    def epoch(self, epoch: int, advance: Callable[..., None]) -> tuple[dict[str, float], int]:
        """Train one epoch; its record (learning rate, train loss and accuracy) and how many
        batches of one clip it dropped."""
        cfg = self.cfg
        self.model.train()
        on_epoch_start = getattr(self.model.backbone, "on_epoch_start", None)
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        index, dropped = epoch_batches(self.rng, len(self.train_data), cfg.batch_size)
        train_loss, train_accuracy = self.steps.epoch(
            self.train_data, index, advance, f"{epoch}/{cfg.epochs}"
        )
        lr = self.steps.optimizer.param_groups[0]["lr"]
        if self.scheduler is not None:
            self.scheduler.step()
        record = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": train_loss,
            "train_accuracy": train_accuracy,
        }
        return record, dropped


@dataclass
class BestEpoch:
    """The epoch kept so far: its record, its weights and its validation probabilities."""

    record: dict[str, float] | None = None
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    val_probs: np.ndarray | None = None

    @property
    def temperature(self) -> float:
        """The temperature fitted at this epoch (1: not calibrated)."""
        return float((self.record or {}).get("temperature", 1.0))


def calibration_record(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """An epoch's calibration: the temperature fitted on its validation predictions
    (:func:`~toolkit.training.calibration.fit_temperature`) and the metrics of probabilities
    on the calibrated ones (their ``_calibrated`` columns)."""
    temperature = fit_temperature(probs, labels)
    return {
        "temperature": temperature,
        **calibrated_scores(apply_temperature(probs, temperature), labels),
    }


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
    select_by: str,
    on_epoch: EpochCallback | None = None,
    description: str = "training",
) -> TrainResult:
    """Train ``backbone`` on the training arrays, keep the best epoch on validation
    (the last epoch when ``val_x`` is empty: nothing is held out). ``train_y`` holds
    integer classes ``[N]`` or soft targets ``[N, K]`` (rows summing to one).

    The best epoch is chosen on plain predictions (:func:`toolkit.metrics.best_epoch`; with
    ``cfg.calibration``, a metric of probabilities reads them calibrated by the temperature
    fitted at that epoch); the final validation and test probabilities of that epoch average
    ``test_time_augmenters``' views too, and are calibrated by the kept epoch's temperature.
    ``cfg`` chooses the device, the precision, where the features live, the memory layout
    and whether the model is compiled (see :class:`Train`).
    """
    started = time.perf_counter()
    session = Session.start(
        backbone, train_x, train_y, val_x, test_x, cfg, num_classes, batch_augmenters
    )
    with (
        compile_errors() if cfg.compile else contextlib.nullcontext(),
        progress_bar(description, cfg.epochs * session.steps_per_epoch) as advance,
    ):
        history, best = _fit(session, val_y, get_metric(select_by), on_epoch, advance)
        val_probs, test_probs = _final_predictions(session, best, test_x, test_time_augmenters)
    assert best.record is not None
    return TrainResult(
        history=history,
        best_epoch=int(best.record["epoch"]),
        state_dict={k: v.detach().cpu().contiguous() for k, v in best.state.items()},
        val_probs=val_probs,
        test_probs=test_probs,
        val_accuracy=best.record.get("val_accuracy", math.nan),
        val_loss=get_metric("log_loss").of(best.record) if "val_loss" in best.record else math.nan,
        seconds=time.perf_counter() - started,
        temperature=best.temperature,
    )


def _fit(
    session: Session,
    val_y: np.ndarray,
    metric: Metric,
    on_epoch: EpochCallback | None,
    advance: Callable[..., None],
) -> tuple[list[dict[str, float]], BestEpoch]:
    """Every epoch: train, validate, keep the best epoch, tell ``on_epoch``; the history and
    the kept epoch (the last one when nothing is held out)."""
    cfg = session.cfg
    validating = len(session.val_data) > 0
    history: list[dict[str, float]] = []
    best = BestEpoch()
    for epoch in range(1, cfg.epochs + 1):
        record, dropped = session.epoch(epoch, advance)
        if validating:
            probs = session.predict(session.val_data)
            record.update(validation_scores(probs, val_y))
            if cfg.calibration == "temperature":
                record.update(calibration_record(probs, val_y))
        history.append(record)
        if validating and _better(record, best.record, metric):
            best = BestEpoch(record, copy.deepcopy(session.model.state_dict()), probs)
        shown = {v: f"{record[k]:.3f}" for k, v in EPOCH_SHOWN.items() if k in record}
        # the dropped batches are counted with the epoch's line
        advance(dropped, milestone=True, epoch=f"{epoch}/{cfg.epochs}", **shown)
        if on_epoch is not None:
            on_epoch(epoch, record)
    if not validating:  # nothing held out: the last epoch is the model
        best = BestEpoch(history[-1], session.model.state_dict(), None)
    return history, best


def _final_predictions(
    session: Session,
    best: BestEpoch,
    test_x: np.ndarray | None,
    test_time_augmenters: Sequence[TestTimeAugmenter],
) -> tuple[np.ndarray, np.ndarray | None]:
    """The kept epoch's validation and test probabilities (with the test-time views),
    calibrated by its temperature."""
    session.model.load_state_dict(best.state)
    tta = tuple(test_time_augmenters)
    num_classes = session.steps.num_classes
    if best.val_probs is None:  # nothing held out
        val_probs = np.zeros((0, num_classes))
    elif tta:  # the best epoch's own validation pass is the answer unless views are added
        val_probs = session.predict(session.val_data, tta)
    else:
        val_probs = best.val_probs
    test_probs = (
        session.predict(Features(test_x, session.device, resident=session.resident), tta)
        if test_x is not None
        else None
    )
    if test_probs is not None:
        test_probs = apply_temperature(test_probs, best.temperature)
    return apply_temperature(val_probs, best.temperature), test_probs
