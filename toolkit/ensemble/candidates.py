"""The models an ensemble chooses among: a study's complete trials, their seed copies and bags.

Every candidate is a model with its validation probabilities (on the study's
common validation clips, out-of-fold when cross-validated) and its test
probabilities, read from its folder. A trial's seed copies are variants asked
of :class:`~toolkit.study.models.StudyModels`; a trial's *bag* averages the
trial and its seed copies, and is written as a model of its own (its folder
holds its probabilities and submission, its leaderboard row is kind ``bag``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from optuna.trial import TrialState

from toolkit.ensemble.inputs import EnsembleInputs
from toolkit.ensemble.members import bag_mean
from toolkit.errors import SearchError, ToolkitError
from toolkit.leaderboard.row import Row
from toolkit.metrics import accuracy, get_metric, log_loss
from toolkit.recipe.schema import Ensemble
from toolkit.runs.model_key import ModelKey
from toolkit.runs.records import (
    Member,
    ModelRecord,
    complete_row,
    read_model,
    write_model,
    write_predictions,
)
from toolkit.runs.run_dir import RunDir
from toolkit.study.profiles import profile_of, values_of
from toolkit.training.pipeline import PreparedData


@dataclass
class Candidate:
    """A model the ensemble may pick: its key and its validation and test probabilities."""

    key: ModelKey
    val_probs: np.ndarray
    test_probs: np.ndarray
    models: tuple[ModelKey, ...] = ()
    """A bag's models, averaged with equal weights (empty for a model of its own)."""

    @property
    def id(self) -> str:
        """Its leaderboard id."""
        return self.key.id

    @classmethod
    def read(cls, key: ModelKey, folder: RunDir) -> Candidate:
        """The candidate whose probabilities are saved in ``folder``."""
        return cls(key, folder.read_probabilities("val"), folder.read_probabilities("test"))


@dataclass(frozen=True)
class TrialRecord:
    """A complete trial as the ensemble knows it: its key, its values and its row."""

    key: ModelKey
    values: dict[str, Any]
    row: Row | None

    @property
    def best_epoch(self) -> int | None:
        """The epoch its model kept (a cross-validated one: its folds' mean), from its row."""
        return None if self.row is None else self.row.best_epoch


@dataclass
class Pool:
    """The candidates of one selection, and the trials they come from."""

    trials: dict[str, TrialRecord]
    """Complete trials by id."""
    candidates: dict[str, Candidate] = field(default_factory=dict)

    def probs(self, split: str) -> dict[str, np.ndarray]:
        """Every candidate's probabilities of ``split`` (``val`` or ``test``) by id."""
        return {
            cid: c.val_probs if split == "val" else c.test_probs
            for cid, c in self.candidates.items()
        }

    def model_weights(self, members: dict[str, float]) -> dict[str, float]:
        """The weight of every model: a bag's weight is shared equally by its models."""
        weights: dict[str, float] = {}
        for mid, weight in members.items():
            models = [m.id for m in self.candidates[mid].models] or [mid]
            for model in models:
                weights[model] = weights.get(model, 0.0) + weight / len(models)
        return dict(sorted(weights.items(), key=lambda kv: (-kv[1], kv[0])))


def trial_pool(run: EnsembleInputs, data: PreparedData) -> Pool:
    """The study's complete trials as candidates; a trial made on other data is refused."""
    complete = run.handle.trials((TrialState.COMPLETE,))
    if not complete:
        counts = run.handle.counts()
        raise SearchError(
            f"study {run.settings.name}: no complete trial to ensemble ({counts['pruned']} "
            f"pruned, {counts['failed']} failed); run more trials or loosen the pruner"
        )
    pool = Pool({})
    shape = (len(data.val_labels), len(data.competition.classes))
    for trial in complete:
        key = run.models.trial_key(trial.number)
        folder = run.folder.model(key)
        record = read_model(folder, key)
        if record is None or not record.validated:
            raise SearchError(
                f"trial {trial.number}: no probabilities in {folder.path}; workers on other "
                "machines must write to a run directory this machine can read (--output)"
            )
        candidate = Candidate.read(key, folder)
        if candidate.val_probs.shape != shape:
            raise SearchError(
                f"{key.id}: validation probabilities of shape {candidate.val_probs.shape}, "
                f"expected {shape}: the trial was made on other data"
            )
        row = _row(run, key)
        if row is not None and row.best_epoch is None:  # a row of a study begun before rows
            row.best_epoch = trial.user_attrs.get("best_epoch")  # kept it: Optuna's record
        pool.trials[key.id] = TrialRecord(key, values_of(trial.params), row)
        pool.candidates[key.id] = candidate
    return pool


def seeds_wanted(run: EnsembleInputs, spec: Ensemble) -> bool:
    """Whether some chosen trial gets seed copies: ``ensemble.seeds``, or a profile's."""
    profiles = run.settings.search.profiles.values()
    return spec.seeds > 1 or any((p.seeds or 0) > 1 for p in profiles)


def seeds_of(run: EnsembleInputs, trial: TrialRecord, n: int) -> int:
    """How many models a chosen trial is bagged over: its profile's ``seeds``, else ``n``."""
    profile = profile_of(trial.values)
    if profile is None or profile not in run.settings.search.profiles:
        return n
    own = run.settings.search.profiles[profile].seeds
    return n if own is None else own


def add_seed_bags(
    run: EnsembleInputs, pool: Pool, chosen: list[str], n: int, data: PreparedData
) -> None:
    """More candidates: each chosen trial's ``n - 1`` seed copies (trained, or found done)
    and its bag of all ``n``, written as a model of its own (``n``: its profile's ``seeds``
    when it says; a trial of one seed gets neither)."""
    for tid in chosen:
        trial = pool.trials[tid]
        count = seeds_of(run, trial, n)
        if count <= 1:
            continue
        group = [pool.candidates[tid]]
        for index in range(1, count):
            variant = run.models.variant(trial.key.seed_copy(index), trial.values)
            group.append(Candidate.read(variant.key, run.models.ensure(variant)))
        pool.candidates.update((c.id, c) for c in group)
        bag = Candidate(
            trial.key.bag(),
            bag_mean([c.val_probs for c in group]),
            bag_mean([c.test_probs for c in group]),
            models=tuple(c.key for c in group),
        )
        pool.candidates[bag.id] = bag
        write_bag(run, bag, trial, data)


def write_bag(run: EnsembleInputs, bag: Candidate, trial: TrialRecord, data: PreparedData) -> None:
    """A bag's folder (probabilities, submission, record) and its leaderboard row."""
    comp = data.competition
    folder = run.folder.model(bag.key)
    write_predictions(
        folder,
        comp,
        bag.test_probs,
        val_ids=[comp.train_ids[i] for i in data.val_idx],
        val_probs=bag.val_probs,
        labels=data.val_labels,
    )
    metric = run.settings.metric
    record = write_model(
        folder,
        ModelRecord(
            id=bag.id,
            kind=bag.key.kind,
            metric=metric,
            metric_value=get_metric(metric).fn(bag.val_probs, data.val_labels),
            val_accuracy=accuracy(bag.val_probs, data.val_labels),
            val_loss=log_loss(bag.val_probs, data.val_labels),
            folds=len(data.folds) if data.cross_validated else None,
            members=[Member(id=m.id, weight=1 / len(bag.models)) for m in bag.models],
        ),
    )
    base = trial.row
    row = Row(
        id=bag.id,
        kind=bag.key.kind,
        recipe=run.recipe.name,
        run_dir=str(run.settings.run_dir.resolve()),
        state=record.state,
        backbone=base.backbone if base is not None else None,
        params={**trial.values, "seeds": len(bag.models)},
        metric=metric,
        members=[m.model_dump() for m in record.members],
        trial_number=bag.key.trial,
        profile=profile_of(trial.values),
        folds=record.folds,
    )
    run.board.upsert(complete_row(row, record, folder))


def _row(run: EnsembleInputs, key: ModelKey) -> Row | None:
    """The leaderboard row of ``key``, if the board has one."""
    try:
        return run.board.get(key.id)
    except ToolkitError:
        return None
