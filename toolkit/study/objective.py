"""One trial of a study: its values, its model run, its report to the pruner.

The trial's outcome is recorded once, on its leaderboard row (state, metrics,
epochs, best epoch, seconds) and in its folder's files; Optuna keeps what it
needs itself (the value, the parameters) and the worker that ran it.
:meth:`TrialObjective.run` returns what the trial did; :func:`run_trial` asks
Optuna for one trial and runs it.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Protocol

import optuna

from toolkit.errors import error_line
from toolkit.metrics import get_metric
from toolkit.study.handle import StudyHandle
from toolkit.study.models import StudyModels
from toolkit.study.profiles import draw_values, profile_of
from toolkit.study.workers import TrialOutcome, worker_identity


class Surplus(Exception):
    """Raised inside a trial asked after the study already had its trials."""


class TrialProgress(Protocol):
    """Where a trial says what it is doing (the worker's live view)."""

    def doing(self, text: str) -> None:
        """What the trial does now."""

    def epoch(self, text: str) -> None:
        """An epoch ended (``text`` says where the trial is): the study's counts may have
        changed too."""


TrialEnd = tuple[TrialOutcome, BaseException | None]
"""What a trial did, and the exception that ended it (None: it completed)."""


class TrialObjective:
    """One trial of the study: train the trial's model, return what happened (complete,
    pruned, failed or surplus) and its metric."""

    def __init__(self, handle: StudyHandle, models: StudyModels, progress: TrialProgress) -> None:
        self.handle = handle
        self.models = models
        self.progress = progress

    def run(self, trial: optuna.Trial) -> TrialEnd:
        """Run the trial; its value is the recipe's metric on validation. The exception that
        ended it is returned, not raised, for Optuna to be told (see :func:`run_trial`)."""
        started = time.perf_counter()
        outcome = TrialOutcome(trial.number, "failed")
        ended: BaseException | None = None
        try:
            trial.set_user_attr("worker", worker_identity())
            if self.handle.surplus(trial.number):
                outcome.state = "surplus"
                trial.set_user_attr("surplus", True)
                raise Surplus(f"trial {trial.number}: the study already has its trials")
            outcome.value = self._train(trial, outcome)
            outcome.state = "complete"
        except optuna.TrialPruned as exc:
            outcome.state, ended = "pruned", exc
        except Surplus as exc:
            ended = exc
        except BaseException as exc:
            outcome.error, ended = error_line(exc, typed=True), exc
        outcome.seconds = time.perf_counter() - started
        return outcome, ended

    def _train(self, trial: optuna.Trial, outcome: TrialOutcome) -> float:
        """Suggest the trial's values, train its model (pruned per epoch), return its metric."""
        loaded = self.models.loaded
        values = draw_values(trial, self.handle.settings.search, loaded.raw, loaded.registry)
        outcome.profile = profile_of(values)
        recipe = self.models.trial_recipe(values)
        key = self.models.trial_key(trial.number)
        self.models.folder.model(key).clear()  # a trial trains anew; a folder there is older
        self.progress.doing(f"{outcome.name}: preparing and training")
        model = self.models.run(
            key,
            recipe,
            values,
            description=outcome.name,
            on_epoch=self._reporter(trial, outcome.name, recipe.train.epochs, recipe.split.folds),
            stopped_by=(optuna.TrialPruned,),
        ).execute()
        return float(model.row.metric_value)  # type: ignore[arg-type]

    def _reporter(
        self, trial: optuna.Trial, name: str, epochs: int, folds: int
    ) -> Callable[[int, dict[str, float]], None]:
        """The epoch callback that reports to the pruner and to the trial's progress."""
        metric = get_metric(self.handle.settings.metric)

        def on_epoch(step: int, record: dict[str, float]) -> None:
            # cross-validated: one step per fold-epoch, the running out-of-fold value
            value = metric.of(record)  # calibrated, when the run calibrates
            trial.report(value, step)
            where = f"epoch {record['epoch']:.0f}/{epochs}"
            if folds > 1:
                where = f"fold {record['fold']:.0f}/{folds} {where}"
            self.progress.epoch(f"{name}: {where}, {metric.name} {value:.4f}")
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after {where}")

        return on_epoch


def run_trial(study: optuna.Study, objective: TrialObjective) -> TrialOutcome | None:
    """Ask ``study`` for one trial and run it: what it did, or None when the storage failed
    before the trial began. Optuna records the trial's end (its value, or pruned or failed
    by the exception that ended it) and keeps its heartbeat while it runs."""
    ends: list[TrialOutcome] = []  # Optuna calls the objective and keeps no result of ours

    def call(trial: optuna.Trial) -> float:
        outcome, ended = objective.run(trial)
        ends.append(outcome)
        if ended is not None:
            raise ended
        return float(outcome.value)  # type: ignore[arg-type]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.optimize(call, n_trials=1, catch=(Exception,), gc_after_trial=True)
    return ends[0] if ends else None
