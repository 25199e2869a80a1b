"""A recipe's study: an Optuna study whose trials are variations of the recipe.

Every trial applies its values (see :mod:`toolkit.study.space`) to the raw
recipe, validates it, reuses the cached features, trains on the recipe's fixed
train/validation split (or each of its K folds, one after the other), reports
the validation metric after each epoch (cross-validated: after each fold-epoch,
the running out-of-fold estimate) to the pruner and keeps its files in
``RUN_DIR/trials/tNNNN/`` (see
:mod:`toolkit.runs.run_dir`; the trial itself is :mod:`toolkit.study.objective`).

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

:class:`StudyRun` is a thin facade: it makes the parts, each with one job, and
wires them, giving each user only the parts it needs: ``settings`` (which
study, :mod:`.settings`), ``handle`` (the Optuna study, :mod:`.handle`),
``views`` (the data, :mod:`toolkit.training.data_views`), ``models`` (trials and their
variants, :mod:`.models`), ``dead`` (dead workers' trials, :mod:`.repair`), ``board``
(the leaderboard) and ``folder`` (the run directory). A worker's loop is
:mod:`.worker_loop` (:class:`~toolkit.study.worker_loop.Worker`), a trial
:mod:`.objective`, the baseline trial :mod:`.baseline`; the ensemble
(:mod:`toolkit.ensemble.study`) gets :class:`~toolkit.ensemble.inputs.EnsembleInputs`.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.ensemble.inputs import EnsembleInputs
from toolkit.ensemble.record import EnsembleOutcome
from toolkit.ensemble.study import build_ensemble
from toolkit.errors import ToolkitError, error_at
from toolkit.leaderboard.store import Leaderboard
from toolkit.recipe.loading import LoadedRecipe
from toolkit.recipe.schema import Ensemble
from toolkit.runs.data_identity import DataIdentity, check_folder
from toolkit.runs.run_dir import RECIPE, RunDir
from toolkit.study.handle import StudyHandle
from toolkit.study.models import StudyModels
from toolkit.study.profiles import validate_profiles
from toolkit.study.repair import DeadTrials
from toolkit.study.settings import StudySettings, search_settings
from toolkit.study.space import validate_space
from toolkit.study.worker_loop import Worker
from toolkit.study.workers import WorkerReport
from toolkit.training.data_views import DataViews, validation_digest
from toolkit.training.pipeline import PreparedData


class StudyRun:
    """A recipe's study and its parts (see the module docstring).

    Build it from a loaded recipe; :meth:`optimize` runs trials in this process
    (a worker), :meth:`ensemble` builds the ensemble of its trials.
    """

    def __init__(self, loaded: LoadedRecipe, storage: str | None = None) -> None:
        self.loaded = loaded
        self.recipe = loaded.recipe
        search = search_settings(self.recipe)
        try:
            validate_space(loaded.raw, loaded.registry, search.space)
            # each profile's recipe as written, by name (empty: a study without profiles)
            self.profiles = validate_profiles(loaded.raw, loaded.registry, search)
        except ToolkitError as exc:
            raise type(exc)(error_at(loaded.path, exc)) from None
        self.settings = StudySettings.of(self.recipe, storage)
        self.board = Leaderboard(Path(self.recipe.output.leaderboard))
        self.views = DataViews(self.recipe, loaded.registry)
        self.dead = DeadTrials(self.settings, self.board)
        self.handle = StudyHandle(self.settings, self.dead.on_stale)
        self.models = StudyModels(loaded, self.settings, self.views, self.board)

    @property
    def folder(self) -> RunDir:
        """The run directory."""
        return RunDir(self.settings.run_dir)

    def check_split(self) -> PreparedData:
        """The recipe's data (with profiles, the first profile's: every profile validates on
        the same clips), checked to be what the study was made on (its validation set)."""
        data = self.views.view(next(iter(self.profiles.values()), None))
        self.handle.check_validation(validation_digest(data))
        return data

    def prepare_views(self) -> None:
        """The features of the recipe (of every profile), computed or read from the cache
        once, so that no trial does audio work; every clip decoded before any trial."""
        for recipe in self.profiles.values() or [self.recipe]:
            self.views.view(recipe)

    def open_folder(self) -> None:
        """Check the inputs, make the run folder ready for trials (a set of files a stopped
        run left half moved in, recovered; never a folder of other data's run) and decode
        every clip; a new study's folder gets its recipe and data identity now."""
        self.views.inputs()  # every input checked before the study starts any work
        identity = DataIdentity.of(self.recipe.data)
        folder = self.folder
        folder.recover()  # a set of files a stopped run left half moved in
        check_folder(self.settings.run_dir, identity)  # never a study of other data's folder
        self.prepare_views()  # every clip decoded before the run's folder exists
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        if not folder.file(RECIPE).exists():  # a new study: what it runs, known now;
            folder.write_data(identity)  # an earlier run's files change only as a set,
            folder.write_recipe(self.recipe)  # with the ensemble's (workflow.run_study)

    def optimize(self, *, wait_for_others: bool = False) -> WorkerReport:
        """Run trials in this process until the study has ``n_trials`` finished ones (see
        :meth:`toolkit.study.worker_loop.Worker.optimize`), once the folder is ready, dead
        workers' trials failed and the split checked."""
        self.open_folder()
        self.dead.fail(self.handle)
        self.check_split()
        worker = Worker(self.handle, self.models, self.dead, self.recipe, self.profiles)
        return worker.optimize(wait_for_others=wait_for_others)

    def ensemble_inputs(self) -> EnsembleInputs:
        """The parts of the study its ensemble uses."""
        return EnsembleInputs(
            settings=self.settings,
            recipe=self.recipe,
            handle=self.handle,
            models=self.models,
            board=self.board,
            folder=self.folder,
        )

    def ensemble(
        self, spec: Ensemble | None = None, *, files: RunDir | None = None
    ) -> EnsembleOutcome:
        """The ensemble of the study's complete trials on its checked split (see
        :func:`toolkit.ensemble.study.build_ensemble`; ``files``: where its files go)."""
        return build_ensemble(self.ensemble_inputs(), self.check_split(), spec, files=files)
