"""What a run directory holds, read into plain dataclasses: the report's only input.

A plain run is one model folder; a study has its trials under ``trials/``, its
Optuna storage and, once selected, its ensemble at the top (see
:mod:`toolkit.runs.run_dir`). Whatever is missing (a study still running, an
ensemble not built yet, a leaderboard kept elsewhere) is left empty and noted,
so a run can be reported at any time.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pydantic
from optuna.trial import FrozenTrial, TrialState

from toolkit.data.dataset import load_competition
from toolkit.errors import ModelError, ToolkitError, error_line
from toolkit.leaderboard.location import choose_db
from toolkit.leaderboard.row import Row
from toolkit.leaderboard.store import Leaderboard
from toolkit.metrics import best_key
from toolkit.recipe.keypaths import get_path
from toolkit.recipe.schema import Recipe
from toolkit.registry.table import format_validation_error
from toolkit.runs.data_identity import DataIdentity, folder_data
from toolkit.runs.model_key import TRIALS, ModelKey
from toolkit.runs.records import EnsembleRecord, ModelRecord, read_ensemble, read_model
from toolkit.runs.run_dir import (
    METRICS,
    RECIPE,
    SOURCES,
    STATS,
    STUDY,
    SUBMISSION,
    RunDir,
)
from toolkit.study.profiles import PROFILE, param_name
from toolkit.study.settings import has_study, search_settings, study_name
from toolkit.study.workers import state_name


@dataclass(frozen=True)
class ModelHistory:
    """One model's ``metrics.csv``: a plain run, or a trial of a study."""

    name: str
    trial: int | None
    state: str
    """complete, pruned, failed or running; empty when nothing records it."""
    history: pd.DataFrame
    best_epoch: int | None = None
    """The epoch whose weights the model kept (the trainer's choice, as recorded: ``best.pt``,
    the trial's ``best_epoch``; with folds their mean); None for a model that did not finish."""


@dataclass(frozen=True)
class Predictions:
    """Validation (or out-of-fold) probabilities of one model, with the true labels."""

    name: str
    classes: list[str]
    labels: np.ndarray
    """Class index of each clip, into ``classes``."""
    probs: np.ndarray


@dataclass(frozen=True)
class DataCounts:
    """How many clips the run had: per class in the train CSV and in validation; test clips."""

    classes: list[str]
    train: dict[str, int] | None
    """Clips per class in the whole train CSV (``None`` when the data is no longer there)."""
    validation: dict[str, int]
    test: int | None
    folds: int


@dataclass(frozen=True)
class StudyData:
    """The study in the run's Optuna storage, as read when the report was made."""

    name: str
    storage: str
    study: optuna.Study
    metric: str
    space: list[str]
    """The searched recipe keys (with profiles: ``profile``; a profile's view: its keys as
    Optuna names them, ``NAME:KEY``)."""
    trials: list[FrozenTrial]
    profiles: dict[str, list[str]] = field(default_factory=dict)
    """Each profile's searched keys as Optuna names them, by profile (none: no profiles)."""
    profile: str | None = None
    """The profile this is a view of (its trials alone), if any."""

    def counts(self) -> dict[str, int]:
        """Trials by state name (complete, pruned, running, failed, waiting)."""
        counts = {"complete": 0, "pruned": 0, "running": 0, "failed": 0, "waiting": 0}
        for t in self.trials:
            counts[state_name(t.state)] += 1
        return counts

    def of_profile(self, name: str) -> StudyData:
        """The study as profile ``name`` sees it: its trials and its keys alone."""
        trials = [t for t in self.trials if t.params.get(PROFILE) == name]
        keys = self.profiles.get(name, [])
        return StudyData(self.name, self.storage, self.study, self.metric, keys, trials, {}, name)

    def seconds(self) -> float:
        """The wall time of its finished trials, added up."""
        return sum(
            (t.datetime_complete - t.datetime_start).total_seconds()
            for t in self.trials
            if t.datetime_start is not None and t.datetime_complete is not None
        )


@dataclass
class RunContents:
    """Everything the report shows, read from one run directory."""

    run_dir: Path
    recipe: Recipe
    is_study: bool
    metric: str
    folds: int
    """``split.folds``: above 1, validation predictions are out of fold."""
    stats: dict[str, float] | None = None
    sources: dict[str, Any] | None = None
    """``sources.json``: the groups ``split.groups: auto`` found."""
    histories: list[ModelHistory] = field(default_factory=list)
    study: StudyData | None = None
    best: Predictions | None = None
    best_row: Row | None = None
    ensemble: EnsembleRecord | None = None
    """``ensemble.json``, once the study has built its ensemble."""
    ensemble_predictions: Predictions | None = None
    rows: list[Row] = field(default_factory=list)
    leaderboard: Path | None = None
    data: DataCounts | None = None
    trained_on: DataIdentity | None = None
    """The data the run read (``data.json``; a run of an earlier version: its folder)."""
    class_names: dict[str, str] = field(default_factory=dict)
    """The name shown for each label that has one (``data.class_names``, the demo's own)."""
    notes: dict[str, list[str]] = field(default_factory=dict)
    """What is missing or could not be read, one line each, by page section."""

    def note(self, section: str, text: str) -> None:
        """Add a one-line remark to a section of the page."""
        self.notes.setdefault(section, []).append(text)

    def class_name(self, label: str) -> str:
        """How a label is shown: ``name (label)`` when ``data.class_names`` names it."""
        name = self.class_names.get(label)
        return f"{name} ({label})" if name else label

    def lone_member(self) -> str | None:
        """The best single model's name when the ensemble is that model alone (its
        predictions and figures are then the best model's); else None."""
        if self.ensemble is None or self.best is None or len(self.ensemble.members) != 1:
            return None
        member = self.ensemble.members[0].id
        alone = member == self.ensemble.best_trial and member.endswith(f"/{self.best.name}")
        return self.best.name if alone else None


def collect(run_dir: Path | str, storage: str | None = None, db: Path | None = None) -> RunContents:
    """Read a run directory (and its study storage and leaderboard rows) for the report.

    ``storage`` is the study's Optuna URL when it is not the recipe's nor
    ``RUN_DIR/study.db``; ``db`` the leaderboard database when it is not the
    recipe's ``output.leaderboard`` nor the one ``toolkit leaderboard RUN_DIR`` reads.
    """
    recipe, raw = read_run_recipe(RunDir(Path(run_dir)))
    run_folder = RunDir(Path(run_dir).resolve())
    is_study = has_study(recipe)
    own = None if is_study else read_model(run_folder)
    # the metric its models were chosen on: the plain run's own, else the recipe's
    metric = (own.metric if own is not None else None) or search_settings(recipe).metric
    contents = RunContents(
        run_dir=run_folder.path,
        recipe=recipe,
        is_study=is_study,
        metric=metric,
        folds=int(get_path(raw, ["split", "folds"], 1) or 1),
        class_names=recipe.data.label_names,
    )
    contents.stats = _read_json(run_folder.file(STATS))
    contents.sources = _read_json(run_folder.file(SOURCES))
    contents.trained_on = folder_data(run_folder.path)
    contents.leaderboard, contents.rows = leaderboard_rows(run_folder.path, recipe, db)
    if is_study:
        _collect_study(contents, run_folder, storage)
    else:
        _collect_plain_run(contents, run_folder)
    contents.data = _data_counts(contents)
    return contents


def read_run_recipe(run_folder: RunDir) -> tuple[Recipe, dict[str, Any]]:
    """The run's resolved ``recipe.yaml``, typed and raw; a folder without one is an error."""
    if not run_folder.path.exists():
        raise ToolkitError(f"{run_folder.path}: no such run directory")
    if not run_folder.path.is_dir():
        raise ToolkitError(f"{run_folder.path}: a file, not a run directory; pass the run's folder")
    path = run_folder.file(RECIPE)
    if not path.is_file():
        raise ToolkitError(
            f"{run_folder.path}: not a run directory (no {RECIPE}); "
            "pass a folder written by toolkit run"
        )
    raw = run_folder.read_recipe()
    try:
        return Recipe.model_validate(raw), raw
    except pydantic.ValidationError as exc:
        raise ToolkitError(f"{path}: {format_validation_error(exc, '', Recipe)}") from None


# ------------------------------------------------------------------ a plain run
def _collect_plain_run(contents: RunContents, run_folder: RunDir) -> None:
    rows = [r for r in contents.rows if r.kind in ("run", "trial")]  # "trial": older rows
    own = str(run_folder.file(SUBMISSION).resolve())
    # the row whose files the folder holds (a later run may have been interrupted), else the latest
    row = max(rows, key=lambda r: (r.submission == own, r.created_at)) if rows else None
    contents.best_row = row
    record = read_model(run_folder)
    state = row.state if row else ("complete" if record is not None else "")
    history = _read_history(run_folder)
    if history is not None:
        best_epoch = _best_epoch(row, record)
        contents.histories.append(
            ModelHistory(contents.recipe.name, None, state, history, best_epoch)
        )
    contents.best = read_predictions(run_folder, contents.recipe.name)
    if contents.best is None:
        contents.note("summary", "No validation predictions yet: the run has not finished.")


# ---------------------------------------------------------------------- a study
def _collect_study(contents: RunContents, run_folder: RunDir, storage: str | None) -> None:
    try:
        summary = read_ensemble(run_folder)
    except ModelError as exc:
        contents.note("ensemble", str(exc))
        summary = None
    contents.study = _read_study(contents, run_folder, storage, summary)
    rows = _trial_rows(contents)
    for key, folder in _trial_folders(run_folder):
        history = _read_history(folder)
        if history is None:
            continue
        row = rows.get(key.trial)
        state = row.state if row is not None else _study_state(contents, key.trial)
        best_epoch = _best_epoch(row, read_model(folder, key) if state == "complete" else None)
        contents.histories.append(ModelHistory(key.name, key.trial, state, history, best_epoch))
    best = _best_trial(contents, rows)
    if best is not None:
        key = ModelKey.of_trial(run_folder.path.name, best)
        contents.best = read_predictions(run_folder.model(key), key.name)
        contents.best_row = rows.get(best)
    if summary is None:
        contents.note(
            "ensemble",
            "The ensemble is not built yet: the study is still running, or stopped before it.",
        )
        return
    contents.ensemble = summary
    contents.ensemble_predictions = read_predictions(run_folder, contents.ensemble.id)


def _read_study(
    contents: RunContents, run_folder: RunDir, storage: str | None, summary: EnsembleRecord | None
) -> StudyData | None:
    """The study from ``storage``, else the recipe's, else ``RUN_DIR/study.db``, else the
    storage ``ensemble.json`` names."""
    search = search_settings(contents.recipe)
    name = study_name(contents.recipe)
    default = run_folder.file(STUDY)
    url = storage or search.storage
    if url is None and default.is_file():
        url = run_folder.study_storage()
    if url is None and summary is not None:
        url = summary.storage
    if url is None:  # a missing SQLite file must not be created by reading it
        contents.note("search", f"No study storage found ({default} is missing; pass --storage).")
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.logging.set_verbosity(optuna.logging.ERROR)
            study = optuna.load_study(study_name=name, storage=url)
            trials = study.get_trials(deepcopy=False)
    except Exception as exc:  # noqa: BLE001 - any storage failure: report the rest
        message = error_line(exc)
        contents.note("search", f"Could not read study {name} in {url}: {message}")
        return None
    trials = [t for t in trials if not t.user_attrs.get("surplus")]
    profiles = {
        profile: [param_name(profile, key) for key in spec.space]
        for profile, spec in search.profiles.items()
    }
    space = [PROFILE] if profiles else list(search.space)
    return StudyData(name, url, study, contents.metric, space, trials, profiles)


def _trial_folders(run_folder: RunDir) -> list[tuple[ModelKey, RunDir]]:
    """The trial folders present (a running study has only some), by trial number."""
    root = run_folder.path / TRIALS
    found = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        key = _key(f"{run_folder.path.name}/{path.name}")
        if key is not None and key.kind == "trial" and path.is_dir():
            found.append((key, RunDir(path)))
    return found


def _trial_rows(contents: RunContents) -> dict[int, Row]:
    """Each trial's leaderboard row (what the run recorded of the trial), by number."""
    return {
        key.trial: r
        for r in contents.rows
        if (key := _key(r.id)) is not None and key.kind == "trial" and key.trial is not None
    }


def _study_state(contents: RunContents, number: int | None) -> str:
    """A trial's state in the study, for a trial without a row (its leaderboard is elsewhere)."""
    if contents.study is None:
        return ""
    found = [t for t in contents.study.trials if t.number == number]
    return state_name(found[0].state) if found else ""


def _best_epoch(row: Row | None, record: ModelRecord | None) -> int | None:
    """The epoch whose weights a model kept, as recorded: its row's, else its record's (a
    cross-validated model: its folds' mean); None when neither says."""
    if row is not None and row.best_epoch is not None:
        return row.best_epoch
    return record.best_epoch if record is not None else None


def _best_trial(contents: RunContents, rows: dict[int, Row]) -> int | None:
    """The complete trial with the best metric (:func:`toolkit.metrics.best_key`: ties to the
    lowest number), from the trials' rows, else (no rows) from the study."""
    scores = [
        (number, float(r.metric_value))
        for number, r in rows.items()
        if r.state == "complete" and r.metric_value is not None
    ]
    if not scores and contents.study is not None:
        scores = [
            (t.number, float(t.value))
            for t in contents.study.trials
            if t.state == TrialState.COMPLETE and t.value is not None
        ]
    return best_key(scores, contents.metric)


def model_kind(row: Row) -> str | None:
    """A row's kind, from its id (a row of an older leaderboard may say only ``trial``)."""
    key = _key(row.id)
    return key.kind if key is not None else row.kind


def _key(id: str) -> ModelKey | None:
    try:
        return ModelKey.parse(id)
    except ValueError:
        return None


# ---------------------------------------------------------------------- readers
def read_predictions(folder: RunDir, name: str) -> Predictions | None:
    """A model folder's validation probabilities and true labels (``val_probs.csv``), if saved."""
    if not folder.probabilities_file("val", ".csv").is_file():
        return None
    table = folder.read_probability_table("val")
    if "label" not in table.columns:
        return None
    columns = [c for c in table.columns if c.startswith("p_")]
    classes = [c.removeprefix("p_") for c in columns]
    lookup = {c: i for i, c in enumerate(classes)}
    labels = np.array([lookup[str(label)] for label in table["label"]], dtype=np.int64)
    return Predictions(name, classes, labels, table[columns].to_numpy(dtype=np.float64))


def _read_history(folder: RunDir) -> pd.DataFrame | None:
    path = folder.file(METRICS)
    if not path.is_file():
        return None
    history = folder.read_history()
    return history if len(history) else None


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def leaderboard_rows(
    run_dir: Path, recipe: Recipe | None, db: Path | None
) -> tuple[Path | None, list[Row]]:
    """The run's rows: from ``db``, else the recipe's leaderboard (given the run's recipe),
    else the one ``toolkit leaderboard RUN_DIR`` reads; ``(None, [])`` when none has any."""
    if db is not None:
        candidates = [(db, True)]
    else:
        own = [(Path(recipe.output.leaderboard), True)] if recipe is not None else []
        candidates = [*own, choose_db(run_dir, None)]
    for path, by_run in candidates:
        board = Leaderboard(path)
        if board.exists():
            rows = board.rows(run_dir=run_dir if by_run else None)
            if rows:
                return path, rows
    return None, []


def _data_counts(contents: RunContents) -> DataCounts | None:
    """Clips per class (train CSV, validation) and test clips, from the data and predictions."""
    predictions = contents.ensemble_predictions or contents.best
    try:
        competition = load_competition(contents.recipe.data)
    except ToolkitError:
        competition = None
    if predictions is None and competition is None:
        return None
    train: dict[str, int] | None = None
    test: int | None = None
    if competition is not None:
        classes = competition.classes
        train = _per_class(competition.train_labels, classes)
        test = len(competition.test_ids)
    if predictions is not None:
        classes = predictions.classes
        validation = _per_class(predictions.labels, classes)
    else:
        validation = dict.fromkeys(classes, 0)
    return DataCounts(classes, train, validation, test, contents.folds)


def _per_class(labels: np.ndarray, classes: list[str]) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(classes))
    return {c: int(n) for c, n in zip(classes, counts, strict=True)}
