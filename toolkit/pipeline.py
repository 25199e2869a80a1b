"""One recipe run: prepare the data once, train, predict, write the submission, record it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from toolkit.checks import CheckedInputs, check_inputs
from toolkit.dataset import Competition
from toolkit.errors import DataError
from toolkit.kinds import BatchAugmenter, DatasetAugmenter
from toolkit.leaderboard.store import Leaderboard, Row
from toolkit.metrics import get_metric
from toolkit.preprocess import Preprocessor, StageStats
from toolkit.provenance import model_provenance
from toolkit.recipe import (
    Recipe,
    apply_override,
    dump_recipe,
    parse_override,
    plugin_files,
    read_recipe_file,
    validate_recipe,
)
from toolkit.registry import Registry, load_plugins
from toolkit.submission import probability_frame, write_submission
from toolkit.trainer import EpochCallback, TrainResult, seed_everything, train


@dataclass
class LoadedRecipe:
    """A validated recipe with the plugin registry it was checked against."""

    recipe: Recipe
    registry: Registry
    path: Path
    raw: dict[str, Any]


def load_recipe(
    path: Path | str, overrides: Sequence[str] = (), output: Path | None = None
) -> LoadedRecipe:
    """Read, override (``a.b=c``), load the recipe's plugins and validate everything."""
    path = Path(path)
    raw = read_recipe_file(path)
    for text in overrides:
        keys, value = parse_override(text)
        apply_override(raw, keys, value)
    if output is not None:
        apply_override(raw, ["output", "dir"], str(output))
    files = plugin_files(raw, path)
    if files:  # stored as found, so the resolved recipe loads them from any folder
        raw["plugins"] = [str(f.resolve()) for f in files]
    registry = load_plugins(files)
    return LoadedRecipe(validate_recipe(raw, registry, path), registry, path, raw)


@dataclass
class PreparedData:
    """Features of the whole competition and the fixed train/validation split."""

    competition: Competition
    train_x: np.ndarray
    test_x: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    stats: StageStats

    @property
    def labels(self) -> np.ndarray:
        """Class index of every train clip."""
        return self.competition.train_labels


def prepare(
    recipe: Recipe, registry: Registry, inputs: CheckedInputs | None = None
) -> PreparedData:
    """Check the inputs (unless given checked) and compute (or reuse) every clip's features."""
    inputs = inputs or check_inputs(recipe)
    competition = inputs.competition
    pre = Preprocessor(recipe, registry)
    train_x = pre.features(competition.train_files, competition.train_ids, "train")
    test_x = pre.features(competition.test_files, competition.test_ids, "test")
    return PreparedData(competition, train_x, test_x, inputs.train_idx, inputs.val_idx, pre.stats)


def separate_all(recipe: Recipe, registry: Registry) -> StageStats:
    """Precompute the separated stems of every train and test clip (resumable)."""
    competition = check_inputs(recipe).competition
    pre = Preprocessor(recipe, registry)
    pre.separate(competition.train_files, "train: separating")
    pre.separate(competition.test_files, "test: separating")
    return pre.stats


def build_augmenters(
    recipe: Recipe, registry: Registry
) -> tuple[list[DatasetAugmenter], list[BatchAugmenter]]:
    """The recipe's augmenters, split by stage, in recipe order."""
    dataset: list[DatasetAugmenter] = []
    batch: list[BatchAugmenter] = []
    for i, spec in enumerate(recipe.augmenters):
        augmenter = registry.create("augmenters", spec, f"augmenters[{i}]")
        if isinstance(augmenter, DatasetAugmenter):
            dataset.append(augmenter)
        elif isinstance(augmenter, BatchAugmenter):
            batch.append(augmenter)
        else:
            raise DataError(
                f"augmenters[{i}]: plugin {spec['name']!r} is neither a DatasetAugmenter "
                "nor a BatchAugmenter"
            )
    return dataset, batch


def expand_training_set(
    x: np.ndarray, y: np.ndarray, augmenters: Iterable[DatasetAugmenter], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The training part with every dataset augmenter's copies appended, in order.

    Each augmenter sees the set as expanded by the ones before it (the report
    oversamples, then masks a copy of the whole oversampled set).
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(x)
    for augmenter in augmenters:
        extra_x, extra_y = augmenter.expand(x, y, rng)
        if len(extra_x):
            x = np.concatenate([x, np.asarray(extra_x, dtype=x.dtype)])
            y = np.concatenate([y, np.asarray(extra_y, dtype=y.dtype)])
    return x, y


def train_recipe(
    recipe: Recipe,
    registry: Registry,
    data: PreparedData,
    *,
    on_epoch: EpochCallback | None = None,
    select_by: str = "accuracy",
    description: str = "training",
) -> TrainResult:
    """Train the recipe's backbone on the training part; validation never sees a copy.

    Everything random (initial weights, augmenter draws, batch order, dropout)
    is seeded from ``train.seed`` first, whatever ran before in the process.
    """
    seed_everything(recipe.train.seed, recipe.train.deterministic)
    labels = data.labels
    train_x = np.asarray(data.train_x[data.train_idx])
    train_y = labels[data.train_idx]
    dataset_augs, batch_augs = build_augmenters(recipe, registry)
    train_x, train_y = expand_training_set(train_x, train_y, dataset_augs, recipe.train.seed)
    backbone = registry.create(
        "backbones",
        recipe.model.backbone,
        "model.backbone",
        num_classes=data.competition.num_classes,
        in_channels=int(data.train_x.shape[1]),
    )
    return train(
        backbone,
        train_x,
        train_y,
        data.train_x[data.val_idx],
        labels[data.val_idx],
        recipe.train,
        data.competition.num_classes,
        test_x=data.test_x,
        batch_augmenters=batch_augs,
        select_by=select_by,
        on_epoch=on_epoch,
        description=description,
    )


def save_outputs(
    recipe: Recipe, data: PreparedData, result: TrainResult, out_dir: Path
) -> dict[str, Path]:
    """Write a trained model's files: metrics, weights, probabilities (csv, npy), submission."""
    out_dir.mkdir(parents=True, exist_ok=True)
    comp = data.competition
    pd.DataFrame(result.history).to_csv(out_dir / "metrics.csv", index=False)
    torch.save(
        {
            "state_dict": result.state_dict,
            "backbone": recipe.model.backbone,
            "classes": comp.classes,
            "best_epoch": result.best_epoch,
        },
        out_dir / "best.pt",
    )
    val_ids = [comp.train_ids[i] for i in data.val_idx]
    probability_frame(val_ids, result.val_probs, comp.classes, data.labels[data.val_idx]).to_csv(
        out_dir / "val_probs.csv", index=False
    )
    assert result.test_probs is not None
    probability_frame(comp.test_ids, result.test_probs, comp.classes).to_csv(
        out_dir / "test_probs.csv", index=False
    )
    np.save(out_dir / "val_probs.npy", result.val_probs)
    np.save(out_dir / "test_probs.npy", result.test_probs)
    submission = write_submission(comp, result.test_probs, out_dir / "submission.csv")
    return {"submission": submission, "metrics": out_dir / "metrics.csv"}


def main_settings(recipe: Recipe) -> dict[str, Any]:
    """The settings shown beside a run on the leaderboard."""
    opt, sched = recipe.train.optimizer, recipe.train.scheduler
    return {
        "separator": recipe.separator["name"],
        "features": recipe.features["name"],
        "augmenters": [a["name"] for a in recipe.augmenters],
        "optimizer": opt.name,
        "lr": opt.lr,
        "scheduler": sched.name,
        "batch_size": recipe.train.batch_size,
        "seed": recipe.train.seed,
    }


def trial_row(
    row_id: str,
    recipe: Recipe,
    registry: Registry,
    run_dir: Path,
    model_dir: Path,
    *,
    metric: str = "accuracy",
    values: dict[str, Any] | None = None,
    trial_number: int | None = None,
) -> Row:
    """The leaderboard row of a training run that is starting, with what reproduces it."""
    return Row(
        id=row_id,
        kind="trial",
        recipe=recipe.name,
        run_dir=str(Path(run_dir).resolve()),
        state="running",
        backbone=recipe.model.backbone["name"],
        params={**(values or {}), **main_settings(recipe)},
        metric=metric,
        trial_number=trial_number,
        provenance=model_provenance(recipe, registry, metric, model_dir),
    )


def complete_row(
    row: Row, result: TrainResult, submission: Path, seconds: float, val_labels: np.ndarray
) -> None:
    """Fill a trial's leaderboard row from its finished training."""
    row.state = "complete"
    row.val_accuracy, row.val_loss = result.val_accuracy, result.val_loss
    row.metric_value = get_metric(row.metric or "accuracy").fn(result.val_probs, val_labels)
    row.epochs, row.seconds = len(result.history), seconds
    row.submission = str(Path(submission).resolve())


@dataclass
class RunResult:
    """The outcome of ``toolkit run`` for one recipe."""

    run_dir: Path
    submission: Path
    val_accuracy: float
    val_loss: float
    best_epoch: int
    seconds: float
    leaderboard_id: str
    stats: dict[str, int] = field(default_factory=dict)


def run(loaded: LoadedRecipe, metric: str = "accuracy") -> RunResult:
    """Run the recipe end to end: features, training, submission, leaderboard row.

    ``metric`` chooses the best epoch and is the row's metric.
    """
    started = time.perf_counter()
    recipe, registry = loaded.recipe, loaded.registry
    inputs = check_inputs(recipe)
    run_dir = Path(recipe.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.yaml").write_text(dump_recipe(recipe))
    board = Leaderboard(Path(recipe.output.leaderboard))
    board.mark_stale_running(run_dir)  # a row left "running" by a killed run of this directory
    row_id = f"{recipe.name}/r{datetime.now():%Y%m%d-%H%M%S}-{time.time_ns() % 1000:03d}"
    row = trial_row(row_id, recipe, registry, run_dir, run_dir, metric=metric)
    board.upsert(row)
    try:
        data = prepare(recipe, registry, inputs)
        (run_dir / "stats.json").write_text(json.dumps(data.stats.as_dict(), indent=2))
        result = train_recipe(recipe, registry, data, select_by=metric)
        files = save_outputs(recipe, data, result, run_dir)
    except BaseException:
        row.state = "failed"
        row.seconds = time.perf_counter() - started
        board.upsert(row)
        raise
    seconds = time.perf_counter() - started
    complete_row(row, result, files["submission"], seconds, data.labels[data.val_idx])
    board.upsert(row)
    return RunResult(
        run_dir=run_dir,
        submission=files["submission"],
        val_accuracy=result.val_accuracy,
        val_loss=result.val_loss,
        best_epoch=result.best_epoch,
        seconds=seconds,
        leaderboard_id=row_id,
        stats=data.stats.as_dict(),
    )
