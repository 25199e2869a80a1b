"""A recipe's study: an Optuna study whose trials are variations of the recipe.

Every trial applies its values (see :mod:`toolkit.study.space`) to the raw
recipe, validates it, reuses the cached features, trains on the recipe's fixed
train/validation split (or each of its K folds, one after the other), reports
the validation metric after each epoch (cross-validated: after each fold-epoch,
the running out-of-fold estimate) to the pruner and keeps its files in
``RUN_DIR/trials/tNNNN/`` (see
:mod:`toolkit.run_dir`; the trial itself is :mod:`toolkit.study.objective`).

The study lives in an Optuna RDB storage (SQLite beside the run by default, any
SQLAlchemy URL such as PostgreSQL otherwise), so a run can be stopped and
started again, and several workers (processes or machines) can share one study:

* ``n_trials`` counts complete and pruned trials of the whole study. A worker
  asks Optuna for a trial, then checks that fewer than ``n_trials`` trials with
  a lower number are complete, pruned or running; otherwise the trial is
  surplus (another worker got there first) and is closed as failed without
  training. So workers together stop at exactly ``n_trials``.
* A trial records its worker (host, boot id, pid, process start time). A new
  worker marks the running trials of dead processes on its own machine as
  failed at once; trials of other machines fail when their heartbeat
  (``HEARTBEAT_INTERVAL``) is older than ``GRACE_PERIOD`` (both set by
  ``TOOLKIT_HEARTBEAT_GRACE``, see :mod:`toolkit.study.storage`). Failed trials do
  not count, so their slots are tried again; a failed baseline trial is queued again.
* Sampling is seeded per trial (``sampler.seed + trial number``): a trial's
  random draws do not depend on which worker runs it, and a resumed or second
  worker does not repeat the first one's draws.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from toolkit.checks import CheckedInputs, check_inputs
from toolkit.errors import SearchError, ToolkitError
from toolkit.leaderboard.store import Leaderboard, Row
from toolkit.loading import LoadedRecipe
from toolkit.metrics import get_metric
from toolkit.model_run import ModelRun
from toolkit.pipeline import PreparedData, prepare
from toolkit.preprocess import StageStats
from toolkit.recipe import Recipe, Search, validate_recipe
from toolkit.registry import Registry
from toolkit.run_dir import RunDir
from toolkit.study.live import LiveView, StudyStatus, format_seconds
from toolkit.study.objective import TrialObjective
from toolkit.study.samplers import build_pruner, build_sampler
from toolkit.study.settings import search_settings, storage_url, study_name
from toolkit.study.space import apply_values, recipe_values, validate_space
from toolkit.study.storage import open_storage
from toolkit.study.workers import TrialOutcome, WorkerReport, trial_counts, worker_alive

WAIT_POLL = 2.0
"""Seconds between looks at the storage while waiting for other workers' trials."""

MAX_CONSECUTIVE_FAILURES = 3
"""A worker stops after this many of its trials fail in a row."""


class StudyRun:
    """A recipe's study: its storage, its trials' files and leaderboard rows.

    Build it from a loaded recipe; :meth:`optimize` runs trials in this process
    (a worker), :mod:`toolkit.ensemble.study` builds the ensemble of its trials.
    """

    def __init__(self, loaded: LoadedRecipe, storage: str | None = None) -> None:
        self.loaded = loaded
        self.recipe: Recipe = loaded.recipe
        self.registry: Registry = loaded.registry
        self.raw: dict[str, Any] = loaded.raw
        self.search: Search = search_settings(self.recipe)
        self.metric: str = self.search.metric
        self.run_dir = Path(self.recipe.run_dir)
        self.storage_url = storage_url(self.recipe, storage)
        self.study_name = study_name(self.recipe)
        self.board = Leaderboard(Path(self.recipe.output.leaderboard))
        self.layout = RunDir(self.run_dir)
        self.prefix = self.run_dir.resolve().name
        try:
            validate_space(self.raw, self.registry, self.search.space)
        except ToolkitError as exc:
            raise type(exc)(f"{loaded.path}: {exc}") from None
        self._prepared: dict[str, PreparedData] = {}
        self._inputs: CheckedInputs | None = None
        self._study: optuna.Study | None = None
        self._stale: list[int] = []
        """Trials this process failed for want of a heartbeat, not yet told by
        :meth:`fail_dead_trials` (Optuna also fails them when a trial starts)."""

    # ---------------------------------------------------------------- naming
    def trial_id(self, number: int, seed_index: int = 0) -> str:
        """Leaderboard id of a trial (``RUN/t0003``) or of one of its seed copies (``-s1``)."""
        suffix = f"-s{seed_index}" if seed_index else ""
        return f"{self.prefix}/t{number:04d}{suffix}"

    # ----------------------------------------------------------------- study
    @property
    def study(self) -> optuna.Study:
        """The study, created in its storage on first use, or loaded when it exists."""
        if self._study is None:
            self._study = self._open_study()
        return self._study

    def _open_study(self) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        storage = open_storage(self.storage_url, self._on_stale)
        wanted = get_metric(self.metric).direction
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=self.study_name,
                direction=wanted,  # type: ignore[arg-type]
                sampler=build_sampler(self.search.sampler),
                pruner=build_pruner(self.search.pruner, self._max_epochs()),
                load_if_exists=True,
            )
        except Exception as exc:  # noqa: BLE001
            message = str(exc).splitlines()[0]
            raise SearchError(f"study {self.study_name} in {self.storage_url}: {message}") from None
        have = "maximize" if study.direction == optuna.study.StudyDirection.MAXIMIZE else "minimize"
        if have != wanted:
            raise SearchError(
                f"study {self.study_name} in {self.storage_url} was made to {have}; this recipe's "
                f"metric {self.metric} would {wanted}: set search.study_name to start a new study"
            )
        metric = study.user_attrs.get("metric")
        if metric is None:
            study.set_user_attr("metric", self.metric)
            study.set_user_attr("recipe", self.recipe.name)
        elif metric != self.metric:
            raise SearchError(
                f"study {self.study_name} in {self.storage_url} measures {metric}, this recipe "
                f"{self.metric}: set search.study_name to start a new study"
            )
        return study

    def _max_epochs(self) -> int:
        """The most steps a trial reports: its epochs, times its folds when cross-validated."""
        dist = self.search.space.get("train.epochs")
        high = getattr(dist, "high", None)
        if high is None and dist is not None:
            high = max(int(c) for c in getattr(dist, "choices", [self.recipe.train.epochs]))
        epochs = int(high) if high is not None else self.recipe.train.epochs
        return epochs * self.recipe.split.folds

    def trials(self, states: Sequence[TrialState] | None = None) -> list[FrozenTrial]:
        """The study's trials (fresh from the storage), optionally of some states."""
        return self.study.get_trials(deepcopy=False, states=tuple(states) if states else None)

    def counts(self) -> dict[str, int]:
        """The study's trials by state."""
        return trial_counts(self.trials())

    # ------------------------------------------------------------ stale trials
    def fail_dead_trials(self) -> list[int]:
        """Fail running trials whose worker is dead: on this machine at once, else by heartbeat.

        Returns the numbers of the trials this process failed (since the last call, for
        those failed by heartbeat).
        """
        failed: list[int] = []
        storage = self.study._storage
        for t in self.trials((TrialState.RUNNING,)):
            worker = t.user_attrs.get("worker")
            if isinstance(worker, dict) and worker_alive(worker) is False:
                with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                    if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                        failed.append(t.number)
                        self._mark_row_failed(t, "its worker process died")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)
        failed += self._stale
        self._stale = []
        return failed

    def _on_stale(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._stale.append(trial.number)
        self._mark_row_failed(trial, "no heartbeat from its worker")

    def _mark_row_failed(self, trial: FrozenTrial, reason: str) -> None:
        """Mark a dead trial's running leaderboard row failed; write one when its worker died
        before the row was written (every trial of the study is a row)."""
        row_id = self.trial_id(trial.number)
        try:
            row = self.board.get(row_id)
        except ToolkitError:
            row = Row(
                id=row_id,
                kind="trial",
                recipe=self.recipe.name,
                run_dir=str(self.run_dir.resolve()),
                state="running",
                params=dict(trial.params),
                metric=self.metric,
                trial_number=trial.number,
            )
        if row.state == "running":
            row.state = "failed"
            row.params = {**row.params, "error": reason}
            self.board.upsert(row)

    # ------------------------------------------------------------- data
    def prepared(self, recipe: Recipe) -> PreparedData:
        """The recipe's features and split, computed once per process and feature settings
        (later calls: the same arrays, with stats saying no stage ran)."""
        key = json.dumps(
            recipe.model_dump(mode="json", include={"data", "separator", "features", "cache"}),
            sort_keys=True,
        )
        if key not in self._prepared:
            self._prepared[key] = prepare(recipe, self.registry, self.checked_inputs())
            return self._prepared[key]
        return self._prepared[key].reused()

    def stage_stats(self) -> StageStats:
        """What the cached stages did for every data view this process prepared."""
        total = StageStats()
        for data in self._prepared.values():
            total.add(data.stats)
        return total

    def checked_inputs(self) -> CheckedInputs:
        """The competition and split, checked once (trials cannot change either)."""
        if self._inputs is None:
            self._inputs = check_inputs(self.recipe)
        return self._inputs

    def validation_digest(self, data: PreparedData) -> str:
        """A digest of the validation clips and labels, the same for every comparable trial."""
        comp = data.competition
        ids = [comp.train_ids[i] for i in data.val_idx]
        parts: list[Any] = [ids, data.labels[data.val_idx].tolist(), comp.classes]
        if data.cross_validated:  # which fold holds out each clip matters too
            parts.append([[comp.train_ids[i] for i in f.val_idx] for f in data.folds])
        payload = json.dumps(parts)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def check_split(self) -> PreparedData:
        """Prepare the recipe's data and check the study was made on the same validation set."""
        data = self.prepared(self.recipe)
        digest = self.validation_digest(data)
        known = self.study.user_attrs.get("validation")
        if known is None:
            self.study.set_user_attr("validation", digest)
        elif known != digest:
            raise SearchError(
                f"study {self.study_name} in {self.storage_url} was run on another validation "
                "set (data or split changed): set search.study_name to start a new study"
            )
        return data

    def trial_recipe(self, values: dict[str, Any]) -> Recipe:
        """The validated recipe of a trial's values."""
        raw = apply_values(self.raw, values, self.registry)
        return validate_recipe(raw, self.registry, f"{self.loaded.path} (trial values {values})")

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
        """The model run of trial ``number`` (or of its seed copy ``seed_index``) into ``out``.

        ``options`` are :class:`~toolkit.model_run.ModelRun`'s (description, on_epoch, ...).
        """
        return ModelRun(
            row_id=row_id or self.trial_id(number, seed_index),
            recipe=recipe,
            registry=self.registry,
            load_data=lambda: self.prepared(recipe),
            out=out,
            run_dir=self.run_dir,
            board=self.board,
            metric=self.metric,
            values=values,
            trial_number=number,
            **options,
        )

    def enqueue_baseline(self) -> dict[str, Any] | None:
        """Queue the recipe's own values as the first trial of a new study (``search.baseline``).

        So the study starts from the hand-tuned recipe and its best trial is
        never worse than it. A baseline trial that failed (its worker killed) is
        queued again. Returns the queued values, or ``None``.
        """
        if not self.search.baseline or not self.search.space:
            return None
        trials = self.trials()
        baselines = [t for t in trials if t.user_attrs.get("baseline")]
        if trials and not baselines:
            return None  # a study begun without its baseline stays so
        if any(t.state != TrialState.FAIL for t in baselines):
            return None  # queued, running or finished
        values = recipe_values(self.recipe, self.search.space)
        if not values:
            return None
        self.study.enqueue_trial(values, user_attrs={"baseline": True})
        return values

    # ------------------------------------------------------------ running
    def optimize(self, *, wait_for_others: bool = False) -> WorkerReport:
        """Run trials in this process until the study has ``n_trials`` finished ones.

        Stops early at ``search.timeout`` (no new trial after it) or when every
        missing trial is running in another worker; with ``wait_for_others``
        it then waits for those trials to end (and retries failed ones).
        """
        self.checked_inputs()  # every input checked before the study starts any work
        self.prepared(self.recipe)  # every clip decoded before the run's folder exists
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.layout.write_recipe(self.recipe)
        report = WorkerReport(self.study_name, self.storage_url)
        status = StudyStatus(
            study=self.study_name,
            metric=self.metric,
            n_trials=self.search.n_trials,
            timeout=self.search.timeout,
        )
        self.fail_dead_trials()
        self.check_split()
        self.enqueue_baseline()
        failures = 0
        with LiveView(status) as view:
            while True:
                if self.fail_dead_trials():
                    self.enqueue_baseline()  # a baseline whose worker died is queued again
                counts = self.refresh(status)
                finished = counts["complete"] + counts["pruned"]
                if finished >= self.search.n_trials:
                    report.stopped_by = "n_trials"
                    break
                if self.search.timeout is not None and status.elapsed() >= self.search.timeout:
                    report.stopped_by = "timeout"
                    break
                if finished + counts["running"] >= self.search.n_trials:
                    if not wait_for_others:
                        report.stopped_by = "others running"
                        break
                    status.current = f"waiting for {counts['running']} trial(s) of other workers"
                    time.sleep(WAIT_POLL)
                    continue
                outcome = self._one_trial(status, view)
                if outcome.state != "surplus":
                    report.trials.append(outcome)
                    status.trial_seconds.append(outcome.seconds)
                    view.log(self._describe(outcome))
                if outcome.state == "failed":
                    failures += 1
                    if failures >= MAX_CONSECUTIVE_FAILURES:
                        raise SearchError(
                            f"{failures} trials in a row failed; last (trial {outcome.number}): "
                            f"{outcome.error}"
                        )
                elif outcome.state != "surplus":
                    failures = 0
        report.counts = self.counts()
        return report

    def refresh(self, status: StudyStatus) -> dict[str, int]:
        """Update the live view's status from the storage; returns the trial counts."""
        trials = self.trials()
        counts = trial_counts(trials)
        status.complete, status.pruned = counts["complete"], counts["pruned"]
        status.running, status.failed = counts["running"], counts["failed"]
        best = self.best_trial(trials)
        status.best_value = None if best is None else best.value
        status.best_trial = None if best is None else best.number
        return counts

    def best_trial(self, trials: Sequence[FrozenTrial] | None = None) -> FrozenTrial | None:
        """The complete trial with the best value (ties: lowest number), if any."""
        done = [t for t in (trials or self.trials()) if t.state == TrialState.COMPLETE]
        if not done:
            return None
        metric = get_metric(self.metric)
        return min(done, key=lambda t: (-metric.goodness(float(t.value or 0.0)), t.number))

    def _describe(self, outcome: TrialOutcome) -> str:
        head = f"trial {outcome.number} {outcome.state}"
        took = f"in {format_seconds(outcome.seconds)}"
        if outcome.state == "complete":
            return f"{head}: {self.metric} {outcome.value:.4f} {took}"
        if outcome.state == "pruned":
            return f"{head} {took}"
        return f"{head}: {outcome.error}"

    def _one_trial(self, status: StudyStatus, view: LiveView) -> TrialOutcome:
        holder: list[TrialOutcome] = []
        objective = TrialObjective(self, status, view, holder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
        if not holder:  # the storage failed before the objective ran
            raise SearchError(f"study {self.study_name}: could not start a trial")
        return holder[0]

    def surplus(self, number: int) -> bool:
        """Whether ``n_trials`` trials numbered below ``number`` are finished or running."""
        ahead = [
            t
            for t in self.trials((TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
            if t.number < number and not t.user_attrs.get("surplus")
        ]
        return len(ahead) >= self.search.n_trials
