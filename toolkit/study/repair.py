"""Trials whose worker died: failed in the study and on the leaderboard, so their slots run again.

A trial records its worker (see :mod:`toolkit.study.workers`). A running trial
of a dead process on this machine is failed at once; one of another machine
when its heartbeat is older than the grace period (the storage calls
:meth:`DeadTrials.on_stale`). Each gets a failed leaderboard row, written when
its worker died before writing one, since every trial of a study is a row.
"""

from __future__ import annotations

import contextlib
import warnings

import optuna
from optuna.trial import FrozenTrial, TrialState

from toolkit.errors import ToolkitError
from toolkit.leaderboard.row import Row
from toolkit.leaderboard.store import Leaderboard
from toolkit.runs.model_key import ModelKey
from toolkit.study.handle import StudyHandle
from toolkit.study.profiles import profile_of, values_of
from toolkit.study.settings import StudySettings
from toolkit.study.workers import worker_alive


class DeadTrials:
    """Finds the study's trials whose worker is dead and fails them, row included."""

    def __init__(self, settings: StudySettings, board: Leaderboard) -> None:
        self.settings = settings
        self.board = board
        self._stale: list[int] = []
        """Trials the storage failed for want of a heartbeat, not yet told by :meth:`fail`
        (Optuna also fails them when a trial starts)."""

    def fail(self, handle: StudyHandle) -> list[int]:
        """Fail running trials whose worker is dead: on this machine at once, else by heartbeat.

        Returns the numbers of the trials this process failed (since the last call, for
        those failed by heartbeat).
        """
        failed: list[int] = []
        storage = handle.study._storage
        for t in handle.trials((TrialState.RUNNING,)):
            worker = t.user_attrs.get("worker")
            if isinstance(worker, dict) and worker_alive(worker) is False:
                with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                    if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                        failed.append(t.number)
                        self.mark_row_failed(t, "its worker process died")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(handle.study)
        failed += self._stale
        self._stale = []
        return failed

    def on_stale(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """What the storage calls for a trial it failed for want of a heartbeat."""
        self._stale.append(trial.number)
        self.mark_row_failed(trial, "no heartbeat from its worker")

    def mark_row_failed(self, trial: FrozenTrial, reason: str) -> None:
        """Mark a dead trial's running leaderboard row failed; write one when its worker died
        before the row was written."""
        key = ModelKey.of_trial(self.settings.run, trial.number)
        try:
            row = self.board.get(key.id)
        except ToolkitError:
            row = Row(
                id=key.id,
                kind=key.kind,
                recipe=self.settings.recipe_name,
                run_dir=str(self.settings.run_dir.resolve()),
                state="running",
                params=values_of(trial.params),
                metric=self.settings.metric,
                trial_number=trial.number,
                profile=profile_of(trial.params),
            )
        if row.state == "running":
            row.state = "failed"
            row.params = {**row.params, "error": reason}
            self.board.upsert(row)
