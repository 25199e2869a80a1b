"""One model run: one model trained on one data view with one seed, written once.

A plain run, a study's trial and a trial's seed copy are each a :class:`ModelRun`:
its data view is prepared, its leaderboard row starts as ``running``, its
model is trained and its files written to its folder; the row ends ``complete``,
``pruned`` (an epoch callback stopped it) or ``failed``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError, error_line
from toolkit.leaderboard.store import Leaderboard, Row
from toolkit.metrics import best_epoch, get_metric
from toolkit.recipe.schema import Recipe, stream_label
from toolkit.registry.table import Registry
from toolkit.runs.data_identity import DataIdentity
from toolkit.runs.model_key import ModelKey
from toolkit.runs.provenance import library_versions, model_provenance
from toolkit.runs.records import ModelRecord, complete_row, write_model, write_predictions
from toolkit.runs.run_dir import SUBMISSION, RunDir
from toolkit.runs.staging import StagedFolder
from toolkit.training.calibration import apply_temperature
from toolkit.training.cross_validation import (
    CrossValidated,
    combine_folds,
    running_estimate,
    saved_fold,
)
from toolkit.training.pipeline import PreparedData, train_recipe
from toolkit.training.pseudo_labels import PseudoLabelRound, PseudoLabelSet
from toolkit.training.trainer import EpochCallback, TrainResult


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


def save_model(
    out: RunDir,
    recipe: Recipe,
    data: PreparedData,
    result: TrainResult,
    val_idx: np.ndarray | None = None,
) -> Path:
    """Write a trained model's files (see :mod:`toolkit.runs.run_dir`); returns its submission.

    ``val_idx`` are the clips its validation probabilities cover (default: the
    data's, i.e. the held-out part or, cross-validated, every clip out-of-fold).
    A combined cross-validated result has no weights of its own.
    """
    comp = data.competition
    assert result.test_probs is not None
    out.write_history(result.history)
    if result.state_dict:
        out.write_weights(
            {
                "state_dict": result.state_dict,
                "backbone": recipe.model.backbone,
                "classes": comp.classes,
                "best_epoch": result.best_epoch,
                "temperature": result.temperature,  # what predict divides its logits by
                "versions": library_versions(),  # what predict compares with its own
            }
        )
    val_idx = data.val_idx if val_idx is None else val_idx
    return write_predictions(
        out,
        comp,
        result.test_probs,
        val_ids=[comp.train_ids[i] for i in val_idx],
        val_probs=result.val_probs,
        labels=data.labels[val_idx],
    )


def with_temperature(result: TrainResult, temperature: float) -> TrainResult:
    """``result`` (of a model that held nothing out) with its probabilities calibrated by a
    temperature fitted elsewhere (a refit: its trial's)."""
    test = None if result.test_probs is None else apply_temperature(result.test_probs, temperature)
    return replace(result, test_probs=test, temperature=temperature)


def ending(exc: BaseException, stopped_by: tuple[type[BaseException], ...]) -> tuple[str, str]:
    """The state a model's row ends in when ``exc`` stopped it, and the error it shows:
    ``pruned`` (one of ``stopped_by``), ``interrupted`` (Ctrl-C or SIGTERM) or ``failed``."""
    if isinstance(exc, stopped_by):
        return "pruned", ""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", ""
    return "failed", error_line(exc, typed=True)


@dataclass
class ModelOutcome:
    """A finished model run: its row, its training, its data view and its submission."""

    row: Row
    result: TrainResult
    data: PreparedData
    submission: Path
    seconds: float
    fold_values: list[float] = field(default_factory=list)
    """Each fold's metric on its held-out clips (empty for a single split)."""


@dataclass
class ModelRun:
    """One model's life, from its starting leaderboard row to a complete or failed one."""

    key: ModelKey
    """Which model it is: its row's id and kind, its folder (unless ``out`` says)."""
    recipe: Recipe
    registry: Registry
    load_data: Callable[[], PreparedData]
    """Its data view (features and split), prepared before its row starts."""
    run_dir: Path
    """The run it belongs to."""
    board: Leaderboard
    metric: str
    """What chooses its best epoch, and its row's metric."""
    values: dict[str, Any] = field(default_factory=dict)
    """The search values that made its recipe (and what else its row shows of it)."""
    description: str = "training"
    on_epoch: EpochCallback | None = None
    stopped_by: tuple[type[BaseException], ...] = ()
    """Exceptions (raised by ``on_epoch``) that end the run as pruned rather than failed."""
    out: RunDir | None = None
    """Where its files go, when not its key's folder in ``run_dir`` (a reproduction's
    ``--output``)."""
    pseudo: PseudoLabelSet | None = None
    """Pseudo-labelled test clips each fold's training part gets (a study's second round,
    see :mod:`toolkit.training.pseudo_labels`)."""
    staged: StagedFolder | None = None
    """The run folder ``out`` (its staging folder) is swapped in for once the model is
    saved (a plain run); None: its files are written where they stay."""
    temperature: float | None = None
    """A refit's temperature (its trial's): it holds nothing out to fit its own."""
    history: list[dict[str, float]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.out is None:
            self.out = RunDir(self.run_dir).model(self.key)

    @property
    def folder(self) -> RunDir:
        """Where its files go."""
        assert self.out is not None
        return self.out

    @property
    def home(self) -> Path:
        """Where its files stay: its run folder when staged, else its folder."""
        return self.staged.target if self.staged is not None else self.folder.path

    @property
    def refit(self) -> bool:
        """Whether it trains on every train clip, nothing held out (no validation numbers)."""
        return self.key.kind == "refit"

    def start_row(self) -> Row:
        """Its leaderboard row as it starts, with what reproduces it."""
        return Row(
            id=self.key.id,
            kind=self.key.kind,
            recipe=self.recipe.name,
            run_dir=str(Path(self.run_dir).resolve()),
            state="running",
            backbone=self.recipe.model.backbone["name"],
            params={**self.values, **main_settings(self.recipe)},
            metric=self.metric,
            trial_number=self.key.trial,
            profile=self.values.get("profile"),
            provenance=model_provenance(self.recipe, self.registry, self.metric, self.home),
            data=DataIdentity.of(self.recipe.data).as_dict(),
        )

    def execute(self) -> ModelOutcome:
        """Prepare, train and save the model, keeping its row up to date; re-raises a failure.

        The data comes first: an input error found while preparing it (a clip
        that cannot be decoded) leaves neither a row nor a folder.
        """
        started = time.perf_counter()
        data = self.load_data()
        self.folder.write_recipe(self.recipe)
        if self.pseudo is not None:  # first: a resumed fold checks what it trained with
            self.folder.write_pseudo_labels(self.pseudo.as_dict())
        row = self.start_row()
        self.board.upsert(row)
        self.history = []
        fold_values: list[float] = []
        fold_temperatures: list[float] = []
        try:
            self.folder.write_stats(data.stats.as_dict())
            if self.refit:
                result = train_recipe(
                    self.recipe,
                    self.registry,
                    data,
                    fold=data.all_clips(),
                    on_epoch=self._record,
                    select_by=self.metric,  # nothing held out: its last epoch is kept
                    description=self.description,
                )
                if self.temperature is not None and self.recipe.train.calibration != "none":
                    result = with_temperature(result, self.temperature)
            elif data.cross_validated:
                combined = self._cross_validate(data)
                result, fold_values = combined.result, combined.fold_values
                fold_temperatures = combined.fold_temperatures
            else:
                result = train_recipe(
                    self.recipe,
                    self.registry,
                    data,
                    on_epoch=self._record,
                    select_by=self.metric,
                    description=self.description,
                    extra=self._extra(data, 0),
                )
                if self.own_pseudo_label_round:
                    result = self._pseudo_label_round(data, result, row)
            held_out = data.all_clips().val_idx if self.refit else None
            save_model(self.folder, self.recipe, data, result, held_out)
            finished = self._finished(result, data, fold_values, fold_temperatures, started)
            record = write_model(self.folder, finished)
            if self.staged is not None:
                self.out = self.staged.commit()
        except BaseException as exc:
            self._close(row, *ending(exc, self.stopped_by), started)
            raise
        submission = self.folder.file(SUBMISSION)
        complete_row(row, record, self.folder)
        self.board.supersede(submission, by=row.id)  # earlier rows' file is now this one's
        self.board.upsert(row)
        seconds = float(record.seconds or 0.0)
        return ModelOutcome(row, result, data, submission, seconds, fold_values)

    def _finished(
        self,
        result: TrainResult,
        data: PreparedData,
        fold_values: list[float],
        fold_temperatures: list[float],
        started: float,
    ) -> ModelRecord:
        """The record of the model just trained (its files are added as it is written)."""
        validated = not self.refit
        return ModelRecord(
            id=self.key.id,
            kind=self.key.kind,
            metric=self.metric,
            metric_value=get_metric(self.metric).fn(result.val_probs, data.val_labels)
            if validated
            else None,
            val_accuracy=result.val_accuracy if validated else None,
            val_loss=result.val_loss if validated else None,
            best_epoch=result.best_epoch,
            epochs=len(result.history),
            seconds=time.perf_counter() - started,
            folds=len(fold_values) or None,
            fold_values=fold_values,
            temperature=result.temperature,
            fold_temperatures=fold_temperatures,
        )

    def _cross_validate(self, data: PreparedData) -> CrossValidated:
        """Train (or, resumed, reuse) the model of every fold; combine them out-of-fold."""
        metric = get_metric(self.metric)
        results: list[TrainResult] = []
        done: list[float] = []  # finished folds' metric, for the running estimate
        k_folds = len(data.folds)
        for k, fold in enumerate(data.folds, 1):
            out = self.folder.fold(k)
            result = saved_fold(out, self.recipe, self.metric)
            if result is None:
                out.clear()  # a fold cut short, or of another recipe
                result = train_recipe(
                    self.recipe,
                    self.registry,
                    data,
                    fold=fold,
                    on_epoch=self._fold_epoch(k, done),
                    select_by=self.metric,
                    description=f"{self.description} fold {k}/{k_folds}",
                    extra=self._extra(data, k - 1),
                )
                out.write_recipe(self.recipe)  # what a resumed run checks it against
                save_model(out, self.recipe, data, result, fold.val_idx)
                write_model(out, self._fold_record(k, result, data.labels[fold.val_idx]))
                out.write_stats(data.reused().stats.as_dict())
            else:
                self.history.extend({"fold": k, **r} for r in result.history)
            results.append(result)
            done.append(metric.fn(result.val_probs, data.labels[fold.val_idx]))
        return combine_folds(results, data.folds, data.labels, self.metric)

    def _fold_record(self, k: int, result: TrainResult, labels: np.ndarray) -> ModelRecord:
        """The record of fold ``k``'s model (``labels``: its held-out clips')."""
        return ModelRecord(
            id=self.key.id,
            kind=self.key.kind,
            fold=k,
            metric=self.metric,
            metric_value=get_metric(self.metric).fn(result.val_probs, labels),
            val_accuracy=result.val_accuracy,
            val_loss=result.val_loss,
            best_epoch=result.best_epoch,
            epochs=len(result.history),
            seconds=result.seconds,
            temperature=result.temperature,
        )

    @property
    def own_pseudo_label_round(self) -> bool:
        """Whether it trains a second round on the test clips it is itself sure of: a plain
        run (or its reproduction) with ``semi_supervised`` (a study's trials have none: the
        study's round follows its ensemble)."""
        return self.recipe.semi_supervised is not None and self.pseudo is None

    def _extra(self, data: PreparedData, fold: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Fold ``fold``'s (0-based) pseudo-labelled test clips, if it trains with some."""
        return None if self.pseudo is None else self.pseudo.extra(fold, data.test_x)

    def _pseudo_label_round(self, data: PreparedData, first: TrainResult, row: Row) -> TrainResult:
        """Train again with the test clips ``first`` is sure of
        (:mod:`toolkit.training.pseudo_labels`); the better of the two rounds on validation,
        recorded in ``pseudo_labels.json`` and the row's ``pseudo_labels`` (test clips trained
        on; 0: the first round kept)."""
        assert self.recipe.semi_supervised is not None and first.test_probs is not None
        settings = self.recipe.semi_supervised.pseudo_labels
        metric = get_metric(self.metric)
        labels = PseudoLabelSet.of([first.test_probs], settings)
        extra = labels.extra(0, data.test_x)
        first_value = metric.fn(first.val_probs, data.val_labels)
        second, second_value = None, None
        if extra is not None:
            second = train_recipe(
                self.recipe,
                self.registry,
                data,
                select_by=self.metric,
                description=f"{self.description} (pseudo-labels)",
                extra=extra,
            )
            second_value = metric.fn(second.val_probs, data.val_labels)
        kept = second_value is not None and metric.better(second_value, first_value)
        (clips,) = labels.clips
        record = PseudoLabelRound(
            test_clips=clips,
            of=len(first.test_probs),
            threshold=settings.threshold,
            power=settings.power,
            metric=self.metric,
            first_round=first_value,
            second_round=second_value,
            kept=kept,
        )
        self.folder.write_pseudo_labels(record.as_dict())
        row.params = {**row.params, "pseudo_labels": clips if kept else 0}
        return second if kept and second is not None else first

    def _fold_epoch(self, k: int, done: list[float]) -> EpochCallback:
        """The epoch callback of fold ``k``: its records keep their fold; the callback of the
        run sees one step per fold-epoch and the running out-of-fold estimate."""
        metric = get_metric(self.metric)
        epochs = self.recipe.train.epochs

        def on_epoch(epoch: int, record: dict[str, float]) -> None:
            self.history.append({"fold": k, **record})
            if self.on_epoch is not None:
                key = metric.column(record)  # the calibrated value, when calibrated
                estimate = {**record, "fold": k, key: running_estimate(done, metric.of(record))}
                self.on_epoch((k - 1) * epochs + epoch, estimate)

        return on_epoch

    def _record(self, epoch: int, record: dict[str, float]) -> None:
        self.history.append(record)
        if self.on_epoch is not None:
            self.on_epoch(epoch, record)

    def _close(self, row: Row, state: str, error: str, started: float) -> None:
        """End the row as pruned, interrupted or failed, with its best epoch so far; keep its
        history."""
        row.state = state
        row.seconds = time.perf_counter() - started
        row.epochs = len(self.history)
        metric = get_metric(self.metric)
        if self.history:
            with contextlib.suppress(ToolkitError):  # e.g. the full disk that ended the run
                self.folder.write_history(self.history)
        if self.history and metric.history_key in self.history[0]:  # a refit validates nothing
            best = best_epoch(self.history, self.metric)
            row.val_accuracy, row.val_loss = best["val_accuracy"], get_metric("log_loss").of(best)
            row.metric_value = metric.of(best)
            row.best_epoch = int(best["epoch"])
        if error:
            row.params = {**row.params, "error": error}
        with contextlib.suppress(ToolkitError):  # the failure being raised matters more
            self.board.upsert(row)
