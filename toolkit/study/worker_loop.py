"""A worker of a study: it runs trials in this process until the study has its trials."""

from __future__ import annotations

import time
import warnings
from datetime import datetime
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from toolkit.errors import SearchError
from toolkit.progress import format_seconds
from toolkit.runs.data_identity import DataIdentity, check_folder
from toolkit.runs.run_dir import RECIPE
from toolkit.study.baseline import enqueue_baseline
from toolkit.study.live import LiveView, StudyStatus
from toolkit.study.objective import TrialObjective
from toolkit.study.profile_budget import next_profile
from toolkit.study.profiles import PROFILE
from toolkit.study.workers import TrialOutcome, WorkerReport, trial_counts
from toolkit.wording import count

if TYPE_CHECKING:
    from toolkit.study.run import StudyRun

WAIT_POLL = 2.0
"""Seconds between looks at the storage while waiting for other workers' trials."""

MAX_CONSECUTIVE_FAILURES = 3
"""A worker stops after this many of its trials fail in a row."""


class Worker:
    """Runs a study's trials in this process (see :meth:`optimize`)."""

    def __init__(self, run: StudyRun) -> None:
        self.run = run

    def optimize(self, *, wait_for_others: bool = False) -> WorkerReport:
        """Run trials until the study has ``n_trials`` finished ones.

        Stops early at ``search.timeout`` (no new trial after it) or when every
        missing trial is running in another worker; with ``wait_for_others``
        it then waits for those trials to end (and retries failed ones).
        """
        run = self.run
        settings, handle = run.settings, run.handle
        search = settings.search
        run.views.inputs()  # every input checked before the study starts any work
        identity = DataIdentity.of(run.recipe.data)
        run.layout.recover()  # a set of files a stopped run left half moved in
        check_folder(settings.run_dir, identity)  # never a study of other data's folder
        run.prepare_views()  # every clip decoded before the run's folder exists
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        if not run.layout.file(RECIPE).exists():  # a new study: what it runs, known now;
            run.layout.write_data(identity)  # an earlier run's files change only as a set,
            run.layout.write_recipe(run.recipe)  # with the ensemble's (workflow.run_study)
        report = WorkerReport(settings.name, settings.storage)
        status = StudyStatus(
            study=settings.name, metric=settings.metric, n_trials=search.n_trials,
            timeout=search.timeout,
        )  # fmt: skip
        run.dead.fail(handle)
        run.check_split()
        enqueue_baseline(handle, run.recipe, run.profiles)
        failures = 0
        with LiveView(status) as view:
            while True:
                if run.dead.fail(handle):  # a baseline whose worker died is queued again
                    enqueue_baseline(handle, run.recipe, run.profiles)
                counts = self.refresh(status)
                finished = counts["complete"] + counts["pruned"]
                if finished >= search.n_trials:
                    report.stopped_by = "n_trials"
                    break
                if search.timeout is not None and status.elapsed() >= search.timeout:
                    report.stopped_by = "timeout"
                    break
                if finished + counts["running"] >= search.n_trials:
                    if not wait_for_others:
                        report.stopped_by = "others running"
                        break
                    status.current = f"waiting for {counts['running']} trial(s) of other workers"
                    time.sleep(WAIT_POLL)
                    continue
                self._steer()
                outcome = self._one_trial(status, view)
                if outcome.state != "surplus":
                    report.trials.append(outcome)
                    status.trial_seconds.append(outcome.seconds)
                    view.log(self._describe(outcome))
                if outcome.state == "failed":
                    failures += 1
                    if failures >= MAX_CONSECUTIVE_FAILURES:
                        raise SearchError(
                            f"{count(failures, 'trial')} in a row failed; last "
                            f"(trial {outcome.number}): {outcome.error}"
                        )
                elif outcome.state != "surplus":
                    failures = 0
        report.counts = handle.counts()
        return report

    def refresh(self, status: StudyStatus) -> dict[str, int]:
        """Update the live view's status from the storage; returns the trial counts."""
        trials = self.run.handle.trials()
        counts = trial_counts(trials)
        status.complete, status.pruned = counts["complete"], counts["pruned"]
        status.running, status.failed = counts["running"], counts["failed"]
        best = self.run.handle.best_trial(trials)
        status.best_value = None if best is None else best.value
        status.best_trial = None if best is None else best.number
        return counts

    def _steer(self) -> None:
        """With ``search.budget`` shares or improvement, queue a trial of the profile whose
        turn it is (unless a queued trial, such as a baseline, goes first)."""
        handle = self.run.handle
        search = handle.settings.search
        if search.budget == "sampler":
            return
        trials = handle.trials()
        if any(t.state == TrialState.WAITING for t in trials):
            return
        profile = next_profile(trials, search, handle.settings.metric, datetime.now())
        if profile is not None:
            handle.study.enqueue_trial({PROFILE: profile}, user_attrs={"budget": profile})

    def _describe(self, outcome: TrialOutcome) -> str:
        head = f"{outcome.name} {outcome.state}"
        took = f"in {format_seconds(outcome.seconds)}"
        if outcome.state == "complete":
            return f"{head}: {self.run.settings.metric} {outcome.value:.4f} {took}"
        if outcome.state == "pruned":
            return f"{head} {took}"
        return f"{head}: {outcome.error}"

    def _one_trial(self, status: StudyStatus, view: LiveView) -> TrialOutcome:
        holder: list[TrialOutcome] = []
        run = self.run
        objective = TrialObjective(run.handle, run.models, self.refresh, status, view, holder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            run.handle.study.optimize(
                objective, n_trials=1, catch=(Exception,), gc_after_trial=True
            )
        if not holder:  # the storage failed before the objective ran
            raise SearchError(f"study {run.settings.name}: could not start a trial")
        return holder[0]
