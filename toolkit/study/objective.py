"""One trial of a study: its values, its model run, its report to the pruner.

The trial's outcome is recorded once, on its leaderboard row (state, metrics,
epochs, best epoch, seconds) and in its folder's files; Optuna keeps what it
needs itself (the value, the parameters) and the worker that ran it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import optuna

from toolkit.errors import error_line
from toolkit.metrics import get_metric
from toolkit.study.handle import StudyHandle
from toolkit.study.live import LiveView, StudyStatus
from toolkit.study.models import StudyModels
from toolkit.study.profiles import draw_values, profile_of
from toolkit.study.workers import TrialOutcome, worker_identity


class Surplus(Exception):
    """Raised inside a trial asked after the study already had its trials."""


class TrialObjective:
    """Optuna's objective for one trial: train the trial's model, return its metric.

    What happened is appended to ``holder`` (complete, pruned, failed or surplus),
    whatever Optuna makes of the exception that ends a trial. ``refresh`` updates
    ``status`` from the storage after each epoch.
    """

    def __init__(
        self,
        handle: StudyHandle,
        models: StudyModels,
        refresh: Callable[[StudyStatus], object],
        status: StudyStatus,
        view: LiveView,
        holder: list[TrialOutcome],
    ) -> None:
        self.handle = handle
        self.models = models
        self.refresh = refresh
        self.status = status
        self.view = view
        self.holder = holder

    def __call__(self, trial: optuna.Trial) -> float:
        """Run the trial; its value is the recipe's metric on validation."""
        started = time.perf_counter()
        outcome = TrialOutcome(trial.number, "failed")
        self.holder.append(outcome)
        trial.set_user_attr("worker", worker_identity())
        if self.handle.surplus(trial.number):
            outcome.state = "surplus"
            trial.set_user_attr("surplus", True)
            raise Surplus(f"trial {trial.number}: the study already has its trials")
        try:
            value = self._train(trial)
            outcome.state, outcome.value = "complete", value
            return value
        except optuna.TrialPruned:
            outcome.state = "pruned"
            raise
        except BaseException as exc:
            outcome.error = error_line(exc, typed=True)
            raise
        finally:
            outcome.seconds = time.perf_counter() - started

    def _train(self, trial: optuna.Trial) -> float:
        """Suggest the trial's values, train its model (pruned per epoch), return its metric."""
        loaded = self.models.loaded
        values = draw_values(trial, self.handle.settings.search, loaded.raw, loaded.registry)
        outcome = self.holder[-1]
        outcome.profile = profile_of(values)
        recipe = self.models.trial_recipe(values)
        key = self.models.trial_key(trial.number)
        self.models.layout.model(key).clear()  # a trial trains anew; a folder there is older
        self.status.current = f"{outcome.name}: preparing and training"
        model = self.models.run(
            key,
            recipe,
            values,
            description=outcome.name,
            on_epoch=self._reporter(trial, recipe.train.epochs, recipe.split.folds),
            stopped_by=(optuna.TrialPruned,),
        ).execute()
        return float(model.row.metric_value)  # type: ignore[arg-type]

    def _reporter(
        self, trial: optuna.Trial, epochs: int, folds: int
    ) -> Callable[[int, dict[str, float]], None]:
        """The epoch callback that reports to the pruner and updates the live view."""
        metric = get_metric(self.handle.settings.metric)

        def on_epoch(step: int, record: dict[str, float]) -> None:
            # cross-validated: one step per fold-epoch, the running out-of-fold value
            value = float(record[metric.history_key])
            trial.report(value, step)
            where = f"epoch {record['epoch']:.0f}/{epochs}"
            if folds > 1:
                where = f"fold {record['fold']:.0f}/{folds} {where}"
            name = self.holder[-1].name
            self.status.current = f"{name}: {where}, {metric.name} {value:.4f}"
            self.refresh(self.status)
            self.view.refresh()
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after {where}")

        return on_epoch
