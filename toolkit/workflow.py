"""What ``toolkit run`` and ``toolkit worker`` do: a plain run, or a study and its ensemble."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.ensemble.record import EnsembleOutcome
from toolkit.errors import SearchError
from toolkit.leaderboard.store import Leaderboard
from toolkit.recipe.loading import LoadedRecipe
from toolkit.runs.data_identity import DataIdentity, check_folder
from toolkit.runs.model_key import ModelKey
from toolkit.runs.staging import StagedFolder
from toolkit.study import StudyRun, WorkerReport
from toolkit.study.settings import search_settings
from toolkit.training.model_run import ModelRun
from toolkit.training.pipeline import prepare
from toolkit.validation.grouping import grouped_inputs


@dataclass
class RunResult:
    """The outcome of a plain run (a recipe without a study)."""

    run_dir: Path
    submission: Path
    val_accuracy: float
    val_loss: float
    best_epoch: int
    seconds: float
    leaderboard_id: str
    stats: dict[str, float] = field(default_factory=dict)


def run(
    loaded: LoadedRecipe,
    metric: str | None = None,
    *,
    key: ModelKey | None = None,
    params: dict[str, Any] | None = None,
) -> RunResult:
    """Run the recipe as one model end to end: features, training, submission, leaderboard row.

    ``metric`` chooses the best epoch and is the row's metric (default: the recipe's
    ``search.metric``, whose default the recipe knows); ``key`` names the
    model (default: a new plain run of the recipe; a reproduction names the model it
    reproduces), ``params`` adds to what its row shows. The run is written beside its
    folder and swapped in when complete (:mod:`toolkit.runs.staging`); a folder holding a run
    of other data is refused (:func:`toolkit.runs.data_identity.check_folder`).
    """
    recipe, registry = loaded.recipe, loaded.registry
    metric = metric or search_settings(recipe).metric
    inputs = grouped_inputs(recipe, registry)
    staged = StagedFolder(Path(recipe.run_dir))
    staged.recover()  # a swap a killed run cut short
    identity = DataIdentity.of(recipe.data)
    check_folder(staged.target, identity)  # before any clip is decoded
    # every clip is decoded before the run's folder or row exists: a bad clip leaves neither
    data = prepare(recipe, registry, inputs)
    out = staged.begin()
    out.write_data(identity)
    if data.sources is not None:
        out.write_sources(data.sources, data.competition.train_ids)
    board = Leaderboard(Path(recipe.output.leaderboard))
    board.mark_stale_running(staged.target)  # a row left "running" by a killed run
    key = key or ModelKey.plain_run(recipe.name)
    model = ModelRun(
        key=key,
        recipe=recipe,
        registry=registry,
        load_data=lambda: data,
        run_dir=staged.target,
        board=board,
        metric=metric,
        values=params or {},
        out=out,
        staged=staged,
    ).execute()
    return RunResult(
        run_dir=staged.target,
        submission=model.submission,
        val_accuracy=model.result.val_accuracy,
        val_loss=model.result.val_loss,
        best_epoch=model.result.best_epoch,
        seconds=model.seconds,
        leaderboard_id=key.id,
        stats=model.data.stats.as_dict(),
    )


@dataclass
class StudyResult:
    """The outcome of ``toolkit run`` on a recipe with a study: its trials and its ensemble."""

    run_dir: Path
    storage: str
    study_name: str
    worker: WorkerReport
    ensemble: EnsembleOutcome
    seconds: float
    timeout: float | None = None
    """The study's ``search.timeout`` (seconds; None without one)."""

    @property
    def submission(self) -> Path:
        """The run's submission: the ensemble's."""
        return Path(self.ensemble.submission)


def run_study(loaded: LoadedRecipe, storage: str | None = None) -> StudyResult:
    """Run (or continue, or join) the recipe's study to ``n_trials``, then build its ensemble."""
    started = time.perf_counter()
    study = StudyRun(loaded, storage)
    report = study.optimize(wait_for_others=True)
    inputs = study.views.inputs()
    # the study's own files are written aside and replace the earlier run's as one set
    files = study.folder.staged()
    files.write_recipe(study.recipe)
    files.write_data(DataIdentity.of(study.recipe.data))
    if inputs.sources is not None:
        files.write_sources(inputs.sources, inputs.competition.train_ids)
    files.write_stats(study.views.stats().as_dict())  # this process's audio work: all done
    outcome = study.ensemble(files=files)
    return StudyResult(
        run_dir=study.settings.run_dir,
        storage=study.settings.storage,
        study_name=study.settings.name,
        worker=report,
        ensemble=outcome,
        seconds=time.perf_counter() - started,
        timeout=study.recipe.search.timeout if study.recipe.search is not None else None,
    )


def run_recipe(loaded: LoadedRecipe, storage: str | None = None) -> RunResult | StudyResult:
    """What ``toolkit run`` does with a loaded recipe: its study and ensemble when it has a
    ``search:`` or ``ensemble:`` section (:func:`run_study`), else one model (:func:`run`)."""
    from toolkit.study.settings import has_study

    if has_study(loaded.recipe):
        return run_study(loaded, storage)
    if storage is not None:
        raise SearchError(f"--storage: {loaded.path} has no search: section to keep a study of")
    return run(loaded)


def run_worker(loaded: LoadedRecipe, storage: str | None = None) -> WorkerReport:
    """Join the recipe's study as one more worker: run trials until none is left to start."""
    if loaded.recipe.search is None:
        raise SearchError(f"{loaded.path}: a worker needs a recipe with a search: section")
    return StudyRun(loaded, storage).optimize(wait_for_others=False)
