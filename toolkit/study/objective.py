"""One trial of a study: its values, its model run, its report to the pruner."""

from __future__ import annotations

import shutil
import time
from typing import Any, Protocol

import optuna

from toolkit.metrics import get_metric
from toolkit.model_run import ModelRun
from toolkit.recipe import Recipe, Search
from toolkit.registry import Registry
from toolkit.run_dir import RunDir
from toolkit.study.live import LiveView, StudyStatus
from toolkit.study.space import suggest
from toolkit.study.workers import TrialOutcome, worker_identity


class TrialHost(Protocol):
    """What a trial needs of its study (:class:`toolkit.study.run.StudyRun` provides it)."""

    search: Search
    raw: dict[str, Any]
    registry: Registry
    metric: str
    layout: RunDir

    def surplus(self, number: int) -> bool:
        """Whether the study already has its trials without trial ``number``."""
        ...

    def trial_recipe(self, values: dict[str, Any]) -> Recipe:
        """The validated recipe of a trial's values."""
        ...

    def trial_id(self, number: int, seed_index: int = 0) -> str:
        """The leaderboard id of a trial."""
        ...

    def trial_model(
        self,
        number: int,
        values: dict[str, Any],
        recipe: Recipe,
        out: RunDir,
        *,
        seed_index: int = 0,
        row_id: str | None = None,
        **options: Any,
    ) -> ModelRun:
        """The model run of a trial."""
        ...

    def refresh(self, status: StudyStatus) -> dict[str, int]:
        """Update the live status from the storage."""
        ...


class Surplus(Exception):
    """Raised inside a trial asked after the study already had its trials."""


class TrialObjective:
    """Optuna's objective for one trial of ``run``: train the trial's model, return its metric.

    What happened is appended to ``holder`` (complete, pruned, failed or surplus),
    whatever Optuna makes of the exception that ends a trial.
    """

    def __init__(
        self, run: TrialHost, status: StudyStatus, view: LiveView, holder: list[TrialOutcome]
    ) -> None:
        self.run = run
        self.status = status
        self.view = view
        self.holder = holder

    def __call__(self, trial: optuna.Trial) -> float:
        """Run the trial; its value is the recipe's metric on validation."""
        run, status = self.run, self.status
        started = time.perf_counter()
        outcome = TrialOutcome(trial.number, "failed")
        self.holder.append(outcome)
        trial.set_user_attr("worker", worker_identity())
        if run.surplus(trial.number):
            outcome.state = "surplus"
            trial.set_user_attr("surplus", True)
            raise Surplus(f"trial {trial.number}: the study already has its trials")
        try:
            values = suggest(trial, run.search.space, run.raw, run.registry)
            recipe = run.trial_recipe(values)
            out = run.layout.trial(trial.number)
            if out.path.exists():
                shutil.rmtree(out.path)  # left by an older study of the same run directory
            trial.set_user_attr("dir", str(out.path.resolve()))
            metric = get_metric(run.metric)
            epochs = recipe.train.epochs

            folds = recipe.split.folds

            def on_epoch(step: int, record: dict[str, float]) -> None:
                # cross-validated: one step per fold-epoch, the running out-of-fold value
                value = float(record[metric.history_key])
                trial.report(value, step)
                where = f"epoch {record['epoch']:.0f}/{epochs}"
                if folds > 1:
                    where = f"fold {record['fold']:.0f}/{folds} {where}"
                status.current = f"trial {trial.number}: {where}, {metric.name} {value:.4f}"
                run.refresh(status)
                self.view.refresh()
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after {where}")

            status.current = f"trial {trial.number}: preparing and training"
            model = run.trial_model(
                trial.number,
                values,
                recipe,
                out,
                description=f"trial {trial.number}",
                on_epoch=on_epoch,
                stopped_by=(optuna.TrialPruned,),
            ).execute()
            result = model.result
            for name, item in (
                ("val_accuracy", result.val_accuracy),
                ("val_loss", result.val_loss),
                ("epochs", len(result.history)),
                ("best_epoch", result.best_epoch),
                ("seconds", model.seconds),
            ):
                trial.set_user_attr(name, item)
            if model.fold_values:
                trial.set_user_attr("fold_values", model.fold_values)
            value = float(model.row.metric_value)  # type: ignore[arg-type]
            outcome.state, outcome.value = "complete", value
            return value
        except optuna.TrialPruned:
            outcome.state = "pruned"
            raise
        except BaseException as exc:
            outcome.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            raise
        finally:
            outcome.seconds = time.perf_counter() - started
