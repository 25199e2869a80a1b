"""What a finished model and a finished ensemble leave behind, as typed records.

A :class:`ModelRecord` is ``model.json`` in a model's folder: which model it is
(its :class:`~toolkit.runs.model_key.ModelKey` id and kind; a cross-validated
model's fold also says its ``fold``), how it ended, its best epoch, its metric
values, epochs and seconds, and the files it left (probabilities, weights,
submission). :func:`write_model` is its one writer (with the probabilities and
submission: :func:`write_predictions`), :func:`read_model` its one reader; a
folder written before ``model.json`` existed reads as a record of the files it
holds, with the numbers it never recorded left empty.

An :class:`EnsembleRecord` is ``ensemble.json``, the schema of the file:
:func:`write_ensemble` writes version :data:`ENSEMBLE_VERSION`,
:func:`read_ensemble` reads every version (a file without ``version`` is
version 1, the same fields). Its members are always a list of
:class:`Member` (``id``, ``weight``); :attr:`EnsembleRecord.weights` is the
id -> weight mapping. Nothing else parses ``ensemble.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
from pydantic import BaseModel, ConfigDict, Field

from toolkit.data.dataset import Competition
from toolkit.errors import ModelError, error_line
from toolkit.leaderboard.row import Row
from toolkit.runs.model_key import ModelKey
from toolkit.runs.run_dir import ENSEMBLE, METRICS, SPLITS, SUBMISSION, WEIGHTS, RunDir

MODEL_RECORD = "model.json"
"""A model folder's :class:`ModelRecord`."""

MODEL_VERSION = 1
ENSEMBLE_VERSION = 2
"""The ``version`` of the ``ensemble.json`` this toolkit writes (1: files without one)."""


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Member(_Record):
    """One member of an ensemble or a bag, and its weight."""

    id: str
    weight: float


def weights_of(members: Sequence[Member]) -> dict[str, float]:
    """Member id -> weight, in the members' order."""
    return {m.id: m.weight for m in members}


def members_of(weights: dict[str, float]) -> list[Member]:
    """The members of an id -> weight mapping, in its order."""
    return [Member(id=k, weight=w) for k, w in weights.items()]


# ------------------------------------------------------------------------- a model
class ModelFiles(_Record):
    """The files a model left in its folder, by name."""

    probabilities: list[str] = Field(default_factory=list)
    weights: list[str] = Field(default_factory=list)
    """``best.pt``, or a cross-validated model's folds' (``fold1/best.pt`` ...)."""
    history: str | None = None
    submission: str | None = None

    def names(self) -> list[str]:
        """Every file, by its name in the folder."""
        extra = [n for n in (self.history, self.submission) if n is not None]
        return [*self.probabilities, *self.weights, *extra]


class ModelRecord(_Record):
    """A finished model: ``model.json`` in its folder."""

    version: int = MODEL_VERSION
    id: str
    kind: str
    fold: int | None = None
    """A cross-validated model's fold (1-based; its id and kind are the model's)."""
    state: str = "complete"
    metric: str | None = None
    metric_value: float | None = None
    val_accuracy: float | None = None
    val_loss: float | None = None
    best_epoch: int | None = None
    """The epoch whose weights it kept (cross-validated: its folds' mean); the one place a
    finished model's best epoch is recorded."""
    epochs: int | None = None
    seconds: float | None = None
    folds: int | None = None
    fold_values: list[float] = Field(default_factory=list)
    """Each fold's metric on its held-out clips (empty for a single split)."""
    members: list[Member] = Field(default_factory=list)
    """A bag's models, averaged with these weights (empty for a model of its own)."""
    temperature: float = 1.0
    """What its kept epoch's logits are divided by (``train.calibration``), fitted on its
    validation predictions; its saved probabilities are calibrated by it. 1: not calibrated
    (a record written before calibration existed, ``train.calibration: none``, a refit).
    Cross-validated: each fold's record holds its own, listed in ``fold_temperatures``."""
    fold_temperatures: list[float] = Field(default_factory=list)
    """Each fold's temperature, fitted on that fold's held-out clips only."""
    files: ModelFiles = Field(default_factory=ModelFiles)

    @property
    def key(self) -> ModelKey:
        """Its model key (a ValueError for an id no kind makes)."""
        return ModelKey.parse(self.id)

    def keeps(self, folder: RunDir, names: Sequence[str]) -> bool:
        """Whether it recorded each of the files ``names`` and ``folder`` still holds them."""
        recorded = set(self.files.names())
        return all(name in recorded and folder.file(name).is_file() for name in names)

    @property
    def held_out_temperature(self) -> float:
        """The temperature its held-out clips gave it: its own, or (cross-validated) its
        folds' geometric mean; what a refit of it on every clip, holding nothing out, takes."""
        if self.fold_temperatures:
            return float(np.exp(np.mean(np.log(self.fold_temperatures))))
        return self.temperature

    @property
    def validated(self) -> bool:
        """Whether it saved validation probabilities (a refit has none)."""
        return any(name.startswith("val_probs") for name in self.files.probabilities)


def model_files(folder: RunDir) -> ModelFiles:
    """The files of a model present in ``folder`` (its folds' weights included)."""
    present = [
        folder.probabilities_file(split, suffix).name
        for split in SPLITS
        for suffix in (".npy", ".csv")
        if folder.probabilities_file(split, suffix).is_file()
    ]
    weights = [WEIGHTS] if folder.file(WEIGHTS).is_file() else []
    weights += sorted(
        str(p.relative_to(folder.path)) for p in folder.path.glob(f"fold*/{WEIGHTS}")
    )
    return ModelFiles(
        probabilities=present,
        weights=weights,
        history=METRICS if folder.file(METRICS).is_file() else None,
        submission=SUBMISSION if folder.file(SUBMISSION).is_file() else None,
    )


def write_predictions(
    folder: RunDir,
    competition: Competition,
    test_probs: np.ndarray,
    *,
    val_ids: Sequence[str] = (),
    val_probs: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    npy: bool = True,
) -> Path:
    """A model's (or ensemble's) validation probabilities (when given), test probabilities
    and submission; returns the submission's path."""
    classes = competition.classes
    if val_probs is not None and len(val_ids):
        folder.write_probabilities("val", val_ids, val_probs, classes, labels, npy=npy)
    folder.write_probabilities("test", competition.test_ids, test_probs, classes, npy=npy)
    return folder.write_submission(competition, test_probs)


def write_model(folder: RunDir, record: ModelRecord) -> ModelRecord:
    """``model.json``: the record of a finished model, its files as ``folder`` holds them
    (written after them); returns the record written."""
    record = record.model_copy(update={"files": model_files(folder)})
    folder.write_json(MODEL_RECORD, record.model_dump(mode="json"))
    return record


def read_model(folder: RunDir, key: ModelKey | None = None) -> ModelRecord | None:
    """The record of the finished model in ``folder``; None when it holds none.

    A folder of an earlier toolkit (no ``model.json``) with test probabilities reads as a
    complete model of ``key`` with its files and nothing else recorded; a damaged
    ``model.json`` is a one-line ModelError.
    """
    path = folder.file(MODEL_RECORD)
    if path.is_file():
        try:
            return ModelRecord.model_validate_json(path.read_text())
        except (OSError, pydantic.ValidationError) as exc:
            raise ModelError(f"{path}: damaged model record ({error_line(exc)})") from None
    if not folder.probabilities_file("test").is_file():
        return None
    return ModelRecord(
        id=key.id if key is not None else folder.path.name,
        kind=key.kind if key is not None else "run",
        files=model_files(folder),
    )


def complete_row(row: Row, record: ModelRecord, folder: RunDir) -> Row:
    """``row`` (a model's leaderboard row) completed from its record: its state, numbers,
    best epoch and the submission in ``folder``."""
    row.state = record.state
    if record.validated:
        row.val_accuracy, row.val_loss = record.val_accuracy, record.val_loss
        row.metric_value = record.metric_value
    row.epochs, row.seconds = record.epochs, record.seconds
    row.best_epoch = record.best_epoch
    if record.files.submission is not None:
        row.submission = str(folder.file(record.files.submission).resolve())
    if record.fold_values:
        row.folds = len(record.fold_values)
        row.fold_mean = float(np.mean(record.fold_values))
        row.fold_std = float(np.std(record.fold_values))
    return row


# ---------------------------------------------------------------------- an ensemble
class Estimate(_Record):
    """A cross-validated estimate (:class:`toolkit.ensemble.estimate.SelectionEstimate`)."""

    metric: str
    value: float
    accuracy: float
    parts: list[float]
    procedure: str = "selection"


class StackRecord(_Record):
    """A stacked ensemble's level-2 model: its inputs, strength, weights and what predict
    applies to new clips."""

    kept: bool
    inputs: list[str]
    C: float
    weights: dict[str, float]
    parts_C: list[float]
    bags: dict[str, list[str]] = Field(default_factory=dict)
    model: dict[str, Any] | None = None
    """:meth:`toolkit.ensemble.stacking.StackModel.as_dict` (None: an older toolkit's)."""


class PseudoLabelsRecord(_Record):
    """A study's pseudo-label round (:class:`toolkit.ensemble.pseudo_round.PseudoRound`)."""

    threshold: float
    power: float
    test_clips: list[int]
    of: int
    models: list[str]
    labelled_by: dict[str, float]
    metric: str
    estimate_before: float
    estimate_after: float | None
    kept: bool


class EnsembleRecord(_Record):
    """A finished ensemble: ``ensemble.json``."""

    version: int = ENSEMBLE_VERSION
    id: str
    study: str | None = None
    storage: str | None = None
    metric: str
    val_metric: float
    val_accuracy: float | None = None
    val_loss: float | None = None
    estimate: Estimate | None = None
    method: str = "greedy"
    """How the members combine: ``greedy`` (weighted average) or ``stack``."""
    estimates: dict[str, Estimate] = Field(default_factory=dict)
    stack: StackRecord | None = None
    best_trial: str
    best_trial_metric: float
    candidates: int
    size: int | None = None
    init_best: int | None = None
    seeds: int | None = None
    members: list[Member]
    folds: int = 1
    refit: dict[str, str] = Field(default_factory=dict)
    """Trial id -> id of its refit on every clip, when those made the test prediction."""
    picks: list[str] = Field(default_factory=list)
    trajectory: list[float] = Field(default_factory=list)
    """The metric after every greedy pick, before the best-prefix cut."""
    pseudo_labels: PseudoLabelsRecord | None = None

    @property
    def weights(self) -> dict[str, float]:
        """Member id -> weight, in the members' order."""
        return weights_of(self.members)


def write_ensemble(folder: RunDir, record: EnsembleRecord) -> Path:
    """``ensemble.json``: ``record`` as version :data:`ENSEMBLE_VERSION`."""
    record = record.model_copy(update={"version": ENSEMBLE_VERSION})
    return folder.write_json(ENSEMBLE, record.model_dump(mode="json"))


def read_ensemble(folder: RunDir) -> EnsembleRecord | None:
    """The ensemble ``folder`` holds (any version of ``ensemble.json``); None without one;
    a damaged file is a one-line ModelError naming it."""
    path = folder.file(ENSEMBLE)
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: damaged ensemble file ({exc}); run the study again") from None
    if not isinstance(raw, dict):
        raise ModelError(f"{path}: damaged ensemble file (not a mapping)")
    raw.setdefault("version", 1)
    if not isinstance(raw["version"], int) or raw["version"] > ENSEMBLE_VERSION:
        raise ModelError(
            f"{path}: ensemble file version {raw['version']}, newer than this toolkit reads "
            f"({ENSEMBLE_VERSION}); upgrade the toolkit"
        )
    try:
        record = EnsembleRecord.model_validate(raw)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise ModelError(f"{path}: damaged ensemble file ({where}: {error['msg']})") from None
    if not record.members:
        raise ModelError(f"{path}: the ensemble has no members")
    return record
