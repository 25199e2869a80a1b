"""One model run: one model trained on one data view with one seed, written once.

A plain run, a study's trial and a trial's seed copy are each a :class:`ModelRun`:
its leaderboard row starts as ``running``, its data view is prepared, its
model trained and its files written to its folder; the row ends ``complete``,
``pruned`` (an epoch callback stopped it) or ``failed``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError
from toolkit.leaderboard.store import Leaderboard, Row
from toolkit.metrics import get_metric
from toolkit.pipeline import PreparedData, train_recipe
from toolkit.provenance import model_provenance
from toolkit.recipe import Recipe, stream_label
from toolkit.registry import Registry
from toolkit.run_dir import RunDir
from toolkit.trainer import EpochCallback, TrainResult


def main_settings(recipe: Recipe) -> dict[str, Any]:
    """The settings shown beside a model on the leaderboard."""
    opt, sched = recipe.train.optimizer, recipe.train.scheduler
    return {
        "separator": recipe.separator["name"],
        "features": "+".join(stream_label(b) for b in recipe.feature_streams),
        "augmenters": [a["name"] for a in recipe.augmenters],
        "optimizer": opt.name,
        "lr": opt.lr,
        "scheduler": sched.name,
        "batch_size": recipe.train.batch_size,
        "seed": recipe.train.seed,
    }


def save_model(out: RunDir, recipe: Recipe, data: PreparedData, result: TrainResult) -> Path:
    """Write a trained model's files (see :mod:`toolkit.run_dir`); returns its submission."""
    comp = data.competition
    assert result.test_probs is not None
    out.write_history(result.history)
    out.write_weights(
        {
            "state_dict": result.state_dict,
            "backbone": recipe.model.backbone,
            "classes": comp.classes,
            "best_epoch": result.best_epoch,
        }
    )
    val_ids = [comp.train_ids[i] for i in data.val_idx]
    out.write_probabilities("val", val_ids, result.val_probs, comp.classes, data.val_labels)
    out.write_probabilities("test", comp.test_ids, result.test_probs, comp.classes)
    return out.write_submission(comp, result.test_probs)


@dataclass
class ModelOutcome:
    """A finished model run: its row, its training, its data view and its submission."""

    row: Row
    result: TrainResult
    data: PreparedData
    submission: Path
    seconds: float


@dataclass
class ModelRun:
    """One model's life, from its starting leaderboard row to a complete or failed one."""

    row_id: str
    recipe: Recipe
    registry: Registry
    load_data: Callable[[], PreparedData]
    """Its data view (features and split), prepared once the row has started."""
    out: RunDir
    """Where its files go."""
    run_dir: Path
    """The run it belongs to (a plain run's folder is ``out`` itself)."""
    board: Leaderboard
    metric: str = "accuracy"
    """What chooses its best epoch, and its row's metric."""
    values: dict[str, Any] = field(default_factory=dict)
    """The search values that made its recipe, shown on its row."""
    trial_number: int | None = None
    description: str = "training"
    on_epoch: EpochCallback | None = None
    stopped_by: tuple[type[BaseException], ...] = ()
    """Exceptions (raised by ``on_epoch``) that end the run as pruned rather than failed."""
    history: list[dict[str, float]] = field(default_factory=list, init=False)

    def start_row(self) -> Row:
        """Its leaderboard row as it starts, with what reproduces it."""
        return Row(
            id=self.row_id,
            kind="trial",
            recipe=self.recipe.name,
            run_dir=str(Path(self.run_dir).resolve()),
            state="running",
            backbone=self.recipe.model.backbone["name"],
            params={**self.values, **main_settings(self.recipe)},
            metric=self.metric,
            trial_number=self.trial_number,
            provenance=model_provenance(self.recipe, self.registry, self.metric, self.out.path),
        )

    def execute(self) -> ModelOutcome:
        """Prepare, train and save the model, keeping its row up to date; re-raises a failure."""
        started = time.perf_counter()
        self.out.write_recipe(self.recipe)
        row = self.start_row()
        self.board.upsert(row)
        self.history = []
        try:
            data = self.load_data()
            result = train_recipe(
                self.recipe,
                self.registry,
                data,
                on_epoch=self._record,
                select_by=self.metric,
                description=self.description,
            )
            submission = save_model(self.out, self.recipe, data, result)
        except BaseException as exc:
            pruned = isinstance(exc, self.stopped_by)
            error = "" if pruned else f"{type(exc).__name__}: {exc}".splitlines()[0]
            self._close(row, "pruned" if pruned else "failed", started, error)
            raise
        seconds = time.perf_counter() - started
        row.state = "complete"
        row.val_accuracy, row.val_loss = result.val_accuracy, result.val_loss
        row.metric_value = get_metric(self.metric).fn(result.val_probs, data.val_labels)
        row.epochs, row.seconds = len(result.history), seconds
        row.submission = str(submission.resolve())
        self.board.upsert(row)
        return ModelOutcome(row, result, data, submission, seconds)

    def _record(self, epoch: int, record: dict[str, float]) -> None:
        self.history.append(record)
        if self.on_epoch is not None:
            self.on_epoch(epoch, record)

    def _close(self, row: Row, state: str, started: float, error: str) -> None:
        """End the row as pruned or failed, with its best epoch so far; keep its history."""
        row.state = state
        row.seconds = time.perf_counter() - started
        row.epochs = len(self.history)
        if self.history:
            metric = get_metric(self.metric)
            best = max(self.history, key=lambda r: metric.goodness(r[metric.history_key]))
            row.val_accuracy, row.val_loss = best["val_accuracy"], best["val_loss"]
            row.metric_value = best[metric.history_key]
            self.out.write_history(self.history)
        if error:
            row.params = {**row.params, "error": error}
        with contextlib.suppress(ToolkitError):  # the failure being raised matters more
            self.board.upsert(row)
