"""The AutoML search: an Optuna study whose trials are variations of the recipe.

Every trial applies its values (see :mod:`toolkit.search_space`) to the raw
recipe, validates it, reuses the cached features, trains on the recipe's fixed
train/validation split, reports the validation metric after each epoch to the
pruner and keeps its files in ``RUN_DIR/trials/tNNNN/``: weights, metrics,
validation and test probabilities (``.npy`` and ``.csv``) and a submission.

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
  (``HEARTBEAT_INTERVAL``) is older than ``GRACE_PERIOD``. Failed trials do not
  count, so their slots are tried again.
* Sampling is seeded per trial (``sampler.seed + trial number``): a trial's
  random draws do not depend on which worker runs it, and a resumed or second
  worker does not repeat the first one's draws.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import socket
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from toolkit.checks import CheckedInputs, check_inputs
from toolkit.errors import ToolkitError
from toolkit.leaderboard.store import Leaderboard, Row
from toolkit.live import LiveView, StudyStatus, format_seconds
from toolkit.metrics import get_metric
from toolkit.pipeline import (
    LoadedRecipe,
    PreparedData,
    complete_row,
    prepare,
    save_outputs,
    train_recipe,
    trial_row,
)
from toolkit.recipe import Pruner, Recipe, Sampler, Search, dump_recipe, validate_recipe
from toolkit.registry import Registry
from toolkit.search_space import apply_values, recipe_values, suggest, validate_space

STUDY_FILE = "study.db"
"""The default storage: ``sqlite:///RUN_DIR/study.db``."""

HEARTBEAT_INTERVAL = 30
"""Seconds between a running trial's heartbeats in the storage."""

GRACE_PERIOD = 120
"""Seconds without a heartbeat after which another worker fails a running trial."""

WAIT_POLL = 2.0
"""Seconds between looks at the storage while waiting for other workers' trials."""

MAX_CONSECUTIVE_FAILURES = 3
"""A worker stops after this many of its trials fail in a row."""

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
"""Trial states that count toward ``n_trials``."""


class SearchError(ToolkitError):
    """A search problem the user can act on (storage, study mismatch, no trial completed)."""


# ----------------------------------------------------------------- settings
def search_settings(recipe: Recipe) -> Search:
    """The recipe's search, or a one-trial study without pruning when it only has an ensemble."""
    if recipe.search is not None:
        return recipe.search
    return Search(n_trials=1, pruner=Pruner(name="none"))


def has_study(recipe: Recipe) -> bool:
    """Whether ``toolkit run`` runs a study: the recipe has a ``search`` or ``ensemble``."""
    return recipe.search is not None or recipe.ensemble is not None


def default_storage(run_dir: Path) -> str:
    """The SQLite URL of ``RUN_DIR/study.db`` (absolute, so workers elsewhere find it)."""
    return f"sqlite:///{(Path(run_dir) / STUDY_FILE).resolve()}"


def storage_url(recipe: Recipe, override: str | None = None) -> str:
    """The study's storage URL: ``--storage``, else ``search.storage``, else the default."""
    url = override or search_settings(recipe).storage
    return url if url else default_storage(recipe.run_dir)


def study_name(recipe: Recipe) -> str:
    """The study's name in its storage: ``search.study_name``, else the recipe name."""
    return search_settings(recipe).study_name or recipe.name


def direction(metric: str) -> str:
    """``maximize`` or ``minimize`` for a metric name."""
    return get_metric(metric).direction


def open_storage(
    url: str, on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None
) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage with heartbeats; SQLite files and folders are created."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    last: Exception | None = None
    for attempt in range(4):  # workers starting together may race to create the tables
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=HEARTBEAT_INTERVAL,
                    grace_period=GRACE_PERIOD,
                    heartbeat_stale_trial_callback=on_stale,
                    **kwargs,
                )
        except (ImportError, ModuleNotFoundError) as exc:
            raise SearchError(f"storage {url}: missing database driver: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - sqlalchemy raises many kinds
            last = exc
            time.sleep(0.5 + random.random() * (attempt + 1))
    message = str(last).splitlines()[0] if last else "unknown error"
    raise SearchError(f"cannot open study storage {url}: {message}")


class TrialSeededSampler(BaseSampler):
    """A sampler rebuilt for every trial with ``seed + trial number``.

    Each worker process holds its own sampler; seeding per trial keeps a
    trial's random draws the same whichever worker runs it and makes workers
    (and a resumed run) draw differently from each other. The model-based part
    of TPE reads the finished trials from the storage as usual.
    """

    def __init__(self, make: Callable[[int], BaseSampler], seed: int) -> None:
        self._make = make
        self._seed = seed
        self._inner = make(seed)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Reseed for this trial, then let the inner sampler prepare."""
        self._inner = self._make(self._seed + trial.number)
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, optuna.distributions.BaseDistribution]:
        """Delegated to the inner sampler."""
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        search_space: dict[str, optuna.distributions.BaseDistribution],
    ) -> dict[str, Any]:
        """Delegated to the inner sampler."""
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: optuna.distributions.BaseDistribution,
    ) -> Any:
        """Delegated to the inner sampler."""
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        """Delegated to the inner sampler."""
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        """Delegated to the inner sampler."""
        self._inner.reseed_rng()


def build_sampler(spec: Sampler) -> BaseSampler:
    """The recipe's sampler (TPE or random), seeded per trial."""
    if spec.name == "random":
        return TrialSeededSampler(lambda seed: optuna.samplers.RandomSampler(seed=seed), spec.seed)

    def tpe(seed: int) -> BaseSampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.n_startup_trials)

    return TrialSeededSampler(tpe, spec.seed)


def build_pruner(spec: Pruner, max_epochs: int) -> optuna.pruners.BasePruner:
    """The recipe's pruner; Hyperband's largest budget is the most epochs a trial can run."""
    if spec.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=spec.n_startup_trials, n_warmup_steps=spec.n_warmup_steps
        )
    if spec.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=spec.min_resource,
            max_resource=max(max_epochs, spec.min_resource),
            reduction_factor=spec.reduction_factor,
        )
    return optuna.pruners.NopPruner()


# ------------------------------------------------------------------ workers
def worker_identity() -> dict[str, Any]:
    """This process as recorded on its trials: host, boot id, pid, process start time."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "boot": _boot_id(),
        "pid": pid,
        "start": _start_ticks(pid),
    }


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def worker_alive(worker: dict[str, Any]) -> bool | None:
    """Whether a recorded worker process still runs; ``None`` when it is on another machine."""
    me = worker_identity()
    if worker.get("host") != me["host"] or worker.get("boot", "") != me["boot"]:
        return None
    pid = int(worker.get("pid", 0))
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    recorded, now = worker.get("start"), _start_ticks(pid)
    return not (recorded is not None and now is not None and recorded != now)


# --------------------------------------------------------------------- study
@dataclass
class TrialOutcome:
    """What one call of the objective did in this worker."""

    number: int
    state: str  # complete, pruned, failed, surplus
    value: float | None = None
    error: str = ""
    seconds: float = 0.0


@dataclass
class WorkerReport:
    """What a worker did: its trials, and the study's counts when it stopped."""

    study_name: str
    storage: str
    trials: list[TrialOutcome] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    stopped_by: str = ""

    def numbers(self, state: str | None = None) -> list[int]:
        """Trial numbers this worker ran (optionally of one state), surplus ones excluded."""
        return [
            t.number
            for t in self.trials
            if t.state != "surplus" and (state is None or t.state == state)
        ]


def trial_counts(trials: Sequence[FrozenTrial]) -> dict[str, int]:
    """Trials by state: complete, pruned, running, failed, waiting."""
    counts = {"complete": 0, "pruned": 0, "running": 0, "failed": 0, "waiting": 0}
    names = {
        TrialState.COMPLETE: "complete",
        TrialState.PRUNED: "pruned",
        TrialState.RUNNING: "running",
        TrialState.FAIL: "failed",
        TrialState.WAITING: "waiting",
    }
    for t in trials:
        counts[names[t.state]] += 1
    return counts


class StudyRun:
    """A recipe's study: its storage, its trials' files and leaderboard rows.

    Build it from a loaded recipe; :meth:`optimize` runs trials in this process
    (a worker), :mod:`toolkit.ensembling` builds the ensemble of its trials.
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
        self.prefix = self.run_dir.resolve().name
        try:
            validate_space(self.raw, self.registry, self.search.space)
        except ToolkitError as exc:
            raise type(exc)(f"{loaded.path}: {exc}") from None
        self._prepared: dict[str, PreparedData] = {}
        self._inputs: CheckedInputs | None = None
        self._study: optuna.Study | None = None

    # ---------------------------------------------------------------- naming
    def trial_id(self, number: int, seed_index: int = 0) -> str:
        """Leaderboard id of a trial (``RUN/t0003``) or of one of its seed copies (``-s1``)."""
        suffix = f"-s{seed_index}" if seed_index else ""
        return f"{self.prefix}/t{number:04d}{suffix}"

    def trial_dir(self, number: int) -> Path:
        """Where trial ``number`` keeps its files."""
        return self.run_dir / "trials" / f"t{number:04d}"

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
        wanted = direction(self.metric)
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
        dist = self.search.space.get("train.epochs")
        high = getattr(dist, "high", None)
        if high is None and dist is not None:
            high = max(int(c) for c in getattr(dist, "choices", [self.recipe.train.epochs]))
        return int(high) if high is not None else self.recipe.train.epochs

    def trials(self, states: Sequence[TrialState] | None = None) -> list[FrozenTrial]:
        """The study's trials (fresh from the storage), optionally of some states."""
        return self.study.get_trials(deepcopy=False, states=tuple(states) if states else None)

    def counts(self) -> dict[str, int]:
        """The study's trials by state."""
        return trial_counts(self.trials())

    # ------------------------------------------------------------ stale trials
    def fail_dead_trials(self) -> list[int]:
        """Fail running trials whose worker is dead: on this machine at once, else by heartbeat."""
        failed: list[int] = []
        storage = self.study._storage
        for t in self.trials((TrialState.RUNNING,)):
            worker = t.user_attrs.get("worker")
            if isinstance(worker, dict) and worker_alive(worker) is False:
                with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                    if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                        failed.append(t.number)
                        self._mark_row_failed(t.number, "its worker process died")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)
        return failed

    def _on_stale(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._mark_row_failed(trial.number, "no heartbeat from its worker")

    def _mark_row_failed(self, number: int, reason: str) -> None:
        row_id = self.trial_id(number)
        try:
            row = self.board.get(row_id)
        except ToolkitError:
            return
        if row.state == "running":
            row.state = "failed"
            row.params = {**row.params, "error": reason}
            self.board.upsert(row)

    # ------------------------------------------------------------- data
    def prepared(self, recipe: Recipe) -> PreparedData:
        """The recipe's features and split, computed once per process and feature settings."""
        key = json.dumps(
            recipe.model_dump(mode="json", include={"data", "separator", "features", "cache"}),
            sort_keys=True,
        )
        if key not in self._prepared:
            self._prepared[key] = prepare(recipe, self.registry, self.checked_inputs())
        return self._prepared[key]

    def checked_inputs(self) -> CheckedInputs:
        """The competition and split, checked once (trials cannot change either)."""
        if self._inputs is None:
            self._inputs = check_inputs(self.recipe)
        return self._inputs

    def validation_digest(self, data: PreparedData) -> str:
        """A digest of the validation clips and labels, the same for every comparable trial."""
        comp = data.competition
        ids = [comp.train_ids[i] for i in data.val_idx]
        payload = json.dumps([ids, data.labels[data.val_idx].tolist(), comp.classes])
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

    def enqueue_baseline(self) -> dict[str, Any] | None:
        """Queue the recipe's own values as the first trial of a new study (``search.baseline``).

        So the study starts from the hand-tuned recipe and its best trial is
        never worse than it. Returns the queued values, or ``None``.
        """
        if not self.search.baseline or not self.search.space or self.trials():
            return None
        values = recipe_values(self.recipe, self.search.space)
        if not values:
            return None
        self.study.enqueue_trial(values, user_attrs={"baseline": True}, skip_if_exists=True)
        return values

    # ------------------------------------------------------------ running
    def optimize(self, *, wait_for_others: bool = False) -> WorkerReport:
        """Run trials in this process until the study has ``n_trials`` finished ones.

        Stops early at ``search.timeout`` (no new trial after it) or when every
        missing trial is running in another worker; with ``wait_for_others``
        it then waits for those trials to end (and retries failed ones).
        """
        self.checked_inputs()  # every input checked before the study starts any work
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "recipe.yaml").write_text(dump_recipe(self.recipe))
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
                self.fail_dead_trials()
                counts = self._refresh(status)
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

    def _refresh(self, status: StudyStatus) -> dict[str, int]:
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

        def objective(trial: optuna.Trial) -> float:
            return self._objective(trial, status, view, holder)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
        if not holder:  # the storage failed before the objective ran
            raise SearchError(f"study {self.study_name}: could not start a trial")
        return holder[0]

    def _objective(
        self,
        trial: optuna.Trial,
        status: StudyStatus,
        view: LiveView,
        holder: list[TrialOutcome],
    ) -> float:
        started = time.perf_counter()
        outcome = TrialOutcome(trial.number, "failed")
        holder.append(outcome)
        trial.set_user_attr("worker", worker_identity())
        if self._surplus(trial.number):
            outcome.state = "surplus"
            trial.set_user_attr("surplus", True)
            raise _Surplus(f"trial {trial.number}: the study already has its trials")
        row: Row | None = None
        history: list[dict[str, float]] = []
        try:
            values = suggest(trial, self.search.space, self.raw, self.registry)
            recipe = self.trial_recipe(values)
            out_dir = self.trial_dir(trial.number)
            if out_dir.exists():
                shutil.rmtree(out_dir)  # left by an older study of the same run directory
            out_dir.mkdir(parents=True)
            (out_dir / "recipe.yaml").write_text(dump_recipe(recipe))
            trial.set_user_attr("dir", str(out_dir.resolve()))
            row = self._row(trial.number, recipe, values)
            self.board.upsert(row)
            status.current = f"trial {trial.number}: preparing"
            data = self.prepared(recipe)
            key = get_metric(self.metric).history_key
            epochs = recipe.train.epochs

            def on_epoch(epoch: int, record: dict[str, float]) -> None:
                history.append(record)
                trial.report(float(record[key]), epoch)
                status.current = (
                    f"trial {trial.number}: epoch {epoch}/{epochs}, {self.metric} {record[key]:.4f}"
                )
                self._refresh(status)
                view.refresh()
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {epoch}")

            status.current = f"trial {trial.number}: training"
            result = train_recipe(
                recipe,
                self.registry,
                data,
                on_epoch=on_epoch,
                select_by=self.metric,
                description=f"trial {trial.number}",
            )
            files = save_outputs(recipe, data, result, out_dir)
            seconds = time.perf_counter() - started
            for name, item in (
                ("val_accuracy", result.val_accuracy),
                ("val_loss", result.val_loss),
                ("epochs", len(result.history)),
                ("best_epoch", result.best_epoch),
                ("seconds", seconds),
            ):
                trial.set_user_attr(name, item)
            complete_row(row, result, files["submission"], seconds, data.labels[data.val_idx])
            self.board.upsert(row)
            value = float(row.metric_value)  # type: ignore[arg-type]
            outcome.state, outcome.value, outcome.seconds = "complete", value, seconds
            return value
        except optuna.TrialPruned:
            outcome.state = "pruned"
            self._close_row(row, "pruned", history, started)
            if history:
                pd.DataFrame(history).to_csv(
                    self.trial_dir(trial.number) / "metrics.csv", index=False
                )
            raise
        except BaseException as exc:
            outcome.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self._close_row(row, "failed", history, started, outcome.error)
            raise
        finally:
            outcome.seconds = time.perf_counter() - started

    def _surplus(self, number: int) -> bool:
        """Whether ``n_trials`` trials numbered below ``number`` are finished or running."""
        ahead = [
            t
            for t in self.trials((TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
            if t.number < number and not t.user_attrs.get("surplus")
        ]
        return len(ahead) >= self.search.n_trials

    def _row(self, number: int, recipe: Recipe, values: dict[str, Any]) -> Row:
        return trial_row(
            self.trial_id(number),
            recipe,
            self.registry,
            self.run_dir,
            self.trial_dir(number),
            metric=self.metric,
            values=values,
            trial_number=number,
        )

    def _close_row(
        self,
        row: Row | None,
        state: str,
        history: list[dict[str, float]],
        started: float,
        error: str = "",
    ) -> None:
        if row is None:
            return
        row.state = state
        row.seconds = time.perf_counter() - started
        row.epochs = len(history)
        if history:
            metric = get_metric(self.metric)
            best = max(history, key=lambda r: metric.goodness(r[metric.history_key]))
            key = metric.history_key
            row.val_accuracy, row.val_loss = best["val_accuracy"], best["val_loss"]
            row.metric_value = best[key]
        if error:
            row.params = {**row.params, "error": error}
        with contextlib.suppress(ToolkitError):
            self.board.upsert(row)


class _Surplus(Exception):
    """Raised inside a trial asked after the study already had its trials."""


@dataclass
class StudyResult:
    """The outcome of ``toolkit run`` on a recipe with a study: its trials and its ensemble."""

    run_dir: Path
    storage: str
    study_name: str
    worker: WorkerReport
    ensemble: Any  # toolkit.ensembling.EnsembleOutcome
    seconds: float

    @property
    def submission(self) -> Path:
        """The run's submission: the ensemble's."""
        return Path(self.ensemble.submission)


def run_study(loaded: LoadedRecipe, storage: str | None = None) -> StudyResult:
    """Run (or continue, or join) the recipe's study to ``n_trials``, then build its ensemble."""
    from toolkit.ensembling import build_ensemble

    started = time.perf_counter()
    run = StudyRun(loaded, storage)
    report = run.optimize(wait_for_others=True)
    outcome = build_ensemble(run)
    return StudyResult(
        run_dir=run.run_dir,
        storage=run.storage_url,
        study_name=run.study_name,
        worker=report,
        ensemble=outcome,
        seconds=time.perf_counter() - started,
    )


def run_worker(loaded: LoadedRecipe, storage: str | None = None) -> WorkerReport:
    """Join the recipe's study as one more worker: run trials until none is left to start."""
    if loaded.recipe.search is None:
        raise SearchError(f"{loaded.path}: a worker needs a recipe with a search: section")
    return StudyRun(loaded, storage).optimize(wait_for_others=False)
