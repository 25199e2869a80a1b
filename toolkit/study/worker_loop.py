"""A worker of a study: it runs trials in this process until the study has its trials.

It is given the study's parts it uses (the handle, the factory of models, the
dead workers' trials, the recipe and its profiles); the study
(:class:`toolkit.study.run.StudyRun`) has prepared the run folder and the data first.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from toolkit.errors import SearchError
from toolkit.progress import format_seconds
from toolkit.recipe.schema import Recipe
from toolkit.study.baseline import enqueue_baseline
from toolkit.study.handle import StudyHandle
from toolkit.study.live import LiveView, StudyStatus
from toolkit.study.models import StudyModels
from toolkit.study.objective import TrialObjective, run_trial
from toolkit.study.overrun import NextTrial, next_trial
from toolkit.study.profiles import PROFILE
from toolkit.study.repair import DeadTrials
from toolkit.study.workers import TrialOutcome, WorkerReport, trial_counts
from toolkit.wording import count

WAIT_POLL = 2.0
"""Seconds between looks at the storage while waiting for other workers' trials."""

MAX_CONSECUTIVE_FAILURES = 3
"""A worker stops after this many of its trials fail in a row."""


@dataclass(frozen=True)
class Worker:
    """Runs a study's trials in this process (see :meth:`optimize`)."""

    handle: StudyHandle
    """The Optuna study: its trials, settings and sampler."""
    models: StudyModels
    """Each trial's recipe and model run."""
    dead: DeadTrials
    """Dead workers' trials, failed so their slots run again."""
    recipe: Recipe
    """The study's recipe: its values are the baseline trial's."""
    profiles: Mapping[str, Recipe] = field(default_factory=dict)
    """Each profile's recipe as written (empty: a study without profiles)."""

    def optimize(self, *, wait_for_others: bool = False) -> WorkerReport:
        """Run trials until the study has ``n_trials`` finished ones.

        Stops early at ``search.timeout`` (no new trial after it) or when every
        missing trial is running in another worker; with ``wait_for_others``
        it then waits for those trials to end (and retries failed ones).
        """
        handle = self.handle
        settings = handle.settings
        search = settings.search
        report = WorkerReport(settings.name, settings.storage)
        status = StudyStatus(
            study=settings.name, metric=settings.metric, n_trials=search.n_trials,
            timeout=search.timeout,
        )  # fmt: skip
        enqueue_baseline(handle, self.recipe, self.profiles)
        failures = 0
        said: set[str | None] = set()  # profiles whose trials were said not to fit
        with LiveView(status) as view:
            while True:
                if self.dead.fail(handle):  # a baseline whose worker died is queued again
                    enqueue_baseline(handle, self.recipe, self.profiles)
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
                turn = self._steer(status)
                for skipped, line in zip(turn.skipped, turn.describe(), strict=True):
                    if turn.stop or skipped.profile not in said:
                        view.log(line)
                        said.add(skipped.profile)
                if turn.stop:
                    report.stopped_by = "overrun"
                    break
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
        trials = self.handle.trials()
        counts = trial_counts(trials)
        status.complete, status.pruned = counts["complete"], counts["pruned"]
        status.running, status.failed = counts["running"], counts["failed"]
        best = self.handle.best_trial(trials)
        status.best_value = None if best is None else best.value
        status.best_trial = None if best is None else best.number
        return counts

    def _steer(self, status: StudyStatus) -> NextTrial:
        """The study's next trial (see :func:`toolkit.study.overrun.next_trial`): with
        ``search.budget`` shares or improvement, a trial of the profile whose turn it is is
        queued (unless a queued trial, such as a baseline, goes first); none when it would end
        well past ``search.timeout``."""
        handle = self.handle
        search = handle.settings.search
        left = None if search.timeout is None else search.timeout - status.elapsed()
        trials = handle.trials()
        turn = next_trial(trials, search, handle.settings.metric, datetime.now(), left)
        if turn.profile is not None and not turn.stop:
            handle.study.enqueue_trial({PROFILE: turn.profile}, user_attrs={"budget": turn.profile})
        return turn

    def _describe(self, outcome: TrialOutcome) -> str:
        head = f"{outcome.name} {outcome.state}"
        took = f"in {format_seconds(outcome.seconds)}"
        if outcome.state == "complete":
            return f"{head}: {self.handle.settings.metric} {outcome.value:.4f} {took}"
        if outcome.state == "pruned":
            return f"{head} {took}"
        return f"{head}: {outcome.error}"

    def _one_trial(self, status: StudyStatus, view: LiveView) -> TrialOutcome:
        """Run one trial the study gives this worker; what it did."""
        objective = TrialObjective(self.handle, self.models, LiveProgress(self, status, view))
        outcome = run_trial(self.handle.study, objective)
        if outcome is None:  # the storage failed before the objective ran
            raise SearchError(f"study {self.handle.settings.name}: could not start a trial")
        return outcome


@dataclass(frozen=True)
class LiveProgress:
    """A trial's progress, shown on its worker's live view."""

    worker: Worker
    status: StudyStatus
    view: LiveView

    def doing(self, text: str) -> None:
        """What the trial does now (shown at the view's next redraw)."""
        self.status.current = text

    def epoch(self, text: str) -> None:
        """An epoch ended: the view now, with the study's counts read again."""
        self.status.current = text
        self.worker.refresh(self.status)
        self.view.refresh()
