"""The toolkit from Python (a notebook, a script): run a recipe, open a finished run, read a
leaderboard; results as pandas DataFrames, problems as exceptions.

:func:`run` is what ``toolkit run`` does (the command is a thin wrapper of it), and
returns a :class:`Run`; :func:`load_run` gives the same object for a finished run's
folder, :func:`leaderboard` the rows of a run or a database as a DataFrame with the
columns of ``toolkit leaderboard --json``. Bad input raises a
:class:`~toolkit.errors.ToolkitError` whose message is the command's one line; a run
stopped by Ctrl-C raises :class:`~toolkit.errors.RunInterrupted` once its finished work
is kept. Nothing here exits the interpreter.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import ModelError, RunInterrupted, ToolkitError, error_line, write_traceback

if TYPE_CHECKING:
    import pandas as pd

    from toolkit.recipe.schema import Recipe
    from toolkit.workflow import RunResult, StudyResult

Overrides = Mapping[str, Any] | Sequence[str] | None
"""Recipe keys to override: a mapping of key paths to values (``{"search.timeout": 600}``)
or ``KEY=VALUE`` strings, as ``--set`` takes them."""


@dataclass(frozen=True)
class RunEstimate:
    """What a study's ensemble is expected to score on new clips, and the figures beside it
    that ``toolkit run`` prints (none of them looks at the test clips)."""

    metric: str
    value: float
    """The kept method's cross-validated metric: the number to expect on new clips."""
    accuracy: float
    parts: tuple[float, ...]
    """The metric on each held-out part alone (the spread, not the estimate)."""
    procedure: str
    """What was cross-validated: greedy ``selection`` or the ``stack``."""
    validation: float
    """The ensemble's metric on the clips it was chosen on (optimistic)."""
    best_trial: str
    best_trial_metric: float
    method: str
    """How the ensemble combines its models: ``greedy`` or ``stack``."""
    methods: dict[str, float] = field(default_factory=dict)
    """Every method estimated, with its estimate (``ensemble.method: auto`` keeps the best)."""

    def describe(self) -> str:
        """The estimate in the words ``toolkit run`` prints after ``estimate:``."""
        from toolkit.ensemble.estimate import SelectionEstimate

        estimate = SelectionEstimate(
            self.metric, self.value, list(self.parts), self.accuracy, self.procedure
        )
        return estimate.describe()


@dataclass
class Run:
    """A run folder and what it holds: its leaderboard rows, submission, estimate, report.

    ``outcome`` is what this process's :func:`run` did (``None`` for :func:`load_run`).
    """

    path: Path
    kind: str
    """``plain`` (one model) or ``study`` (trials and their ensemble)."""
    outcome: RunResult | StudyResult | None = field(default=None, repr=False)
    written_report: Path | None = field(default=None, repr=False)
    """The report this process's :func:`run` wrote (``None``: none, or it failed)."""

    @property
    def leaderboard(self) -> pd.DataFrame:
        """This run's leaderboard rows, best first (the columns of ``toolkit leaderboard
        --json``; empty when its database is gone)."""
        return leaderboard(self.path)

    @property
    def submission_path(self) -> Path:
        """The run's ``submission.csv``."""
        from toolkit.runs.run_dir import SUBMISSION

        return self.path / SUBMISSION

    @property
    def submission(self) -> pd.DataFrame:
        """The run's submission as a DataFrame (its ids as text, as the CSV has them)."""
        import pandas as pd

        return pd.read_csv(self.submission_path, dtype={self._recipe().data.id_column: str})

    @property
    def estimate(self) -> RunEstimate | None:
        """A study's estimate and figures (:class:`RunEstimate`); ``None`` for a plain run,
        or an ensemble recorded without an estimate."""
        from toolkit.runs.records import read_ensemble
        from toolkit.runs.run_dir import RunDir

        record = read_ensemble(RunDir(self.path))
        if record is None or record.estimate is None:
            return None
        kept = record.estimate
        return RunEstimate(
            metric=kept.metric,
            value=kept.value,
            accuracy=kept.accuracy,
            parts=tuple(kept.parts),
            procedure=kept.procedure,
            validation=record.val_metric,
            best_trial=record.best_trial,
            best_trial_metric=record.best_trial_metric,
            method=record.method,
            methods={name: e.value for name, e in record.estimates.items()},
        )

    @property
    def report_path(self) -> Path | None:
        """The run's ``report.html``; ``None`` when none was written."""
        page = self.path / "report.html"
        return page if page.is_file() else None

    def predict(
        self, clips: Path | str, output: Path | str | None = None, probabilities: bool = False
    ) -> pd.DataFrame:
        """Predict ``clips`` (a folder of audio files, or a CSV of ids) as ``toolkit predict``
        does; returns the submission as a DataFrame (with ``probabilities``, each class's
        probability), also written to ``output`` when given."""
        from toolkit.deploy.prediction import predict

        prediction = predict(self.path, clips, output=output, probabilities=probabilities)
        return prediction.probability_table() if probabilities else prediction.submission()

    def _recipe(self) -> Recipe:
        from toolkit.report.collect import read_run_recipe
        from toolkit.runs.run_dir import RunDir

        return read_run_recipe(RunDir(self.path))[0]


def run(
    recipe: Path | str,
    data_root: Path | str | None = None,
    overrides: Overrides = None,
    output: Path | str | None = None,
    storage: str | None = None,
    *,
    report: bool = True,
) -> Run:
    """Run a recipe end to end, as ``toolkit run`` does, and return the finished :class:`Run`.

    ``data_root`` is the competition folder (``data.root``), ``overrides`` recipe keys
    (see :data:`Overrides`), ``output`` the run folder, ``storage`` the study's Optuna URL;
    ``report`` writes ``report.html`` at the end (a report that fails is a warning: the
    run's work stands). Raises a :class:`~toolkit.errors.ToolkitError` for bad input and
    :class:`~toolkit.errors.RunInterrupted` when stopped by Ctrl-C (finished work kept).
    """
    from toolkit.recipe.loading import load_recipe, locations
    from toolkit.study.settings import has_study

    texts = override_texts(overrides, data_root)
    loaded = load_recipe(recipe, texts, Path(output) if output is not None else None)
    _status(locations(loaded.recipe))
    with kept_on_interrupt():
        from toolkit.workflow import run_recipe  # torch: only once the recipe is valid

        outcome = run_recipe(loaded, storage)
        study = has_study(loaded.recipe)
        page = _write_report(outcome.run_dir, storage if study else None) if report else None
    return Run(
        path=outcome.run_dir,
        kind="study" if study else "plain",
        outcome=outcome,
        written_report=page,
    )


def load_run(run_dir: Path | str) -> Run:
    """The :class:`Run` of a finished run folder (a study's or a plain run's); a folder that
    holds no finished run is a one-line :class:`~toolkit.errors.ModelError`."""
    from toolkit.report.collect import read_run_recipe
    from toolkit.runs.run_dir import SUBMISSION, RunDir
    from toolkit.study.settings import has_study

    path = Path(run_dir)
    try:
        recipe, _ = read_run_recipe(RunDir(path))
    except ToolkitError as exc:  # no such folder, or no recipe in it
        raise exc if isinstance(exc, ModelError) else ModelError(str(exc)) from None
    if not (path / SUBMISSION).is_file():
        raise ModelError(
            f"{path}: no {SUBMISSION}: the run did not finish; run its recipe again to finish it"
        )
    return Run(path=path.absolute(), kind="study" if has_study(recipe) else "plain")


def leaderboard(source: Path | str) -> pd.DataFrame:
    """The leaderboard rows of a run folder (those of its run) or of a leaderboard database
    (all of them), best first, as a DataFrame with the columns of ``toolkit leaderboard
    --json``; neither a folder nor a database is a one-line error."""
    import pandas as pd

    from toolkit.leaderboard.row import COLUMNS, LeaderboardError
    from toolkit.leaderboard.store import Leaderboard
    from toolkit.leaderboard.view import to_json

    path = Path(source)
    if path.is_dir():
        rows = _run_rows(path)
    elif Leaderboard(path).exists():
        rows = Leaderboard(path).rows()
    else:
        raise LeaderboardError(
            f"{path}: neither a run directory nor a leaderboard database (run a recipe first)"
        )
    return pd.DataFrame(json.loads(to_json(rows)), columns=list(COLUMNS))


def override_texts(overrides: Overrides, data_root: Path | str | None = None) -> list[str]:
    """``overrides`` (a mapping or ``KEY=VALUE`` strings) and ``data_root`` as the
    ``KEY=VALUE`` texts ``--set`` takes; a value is written so that it reads back as
    itself."""
    import yaml

    if overrides is None:
        texts: list[str] = []
    elif isinstance(overrides, str):
        texts = [overrides]
    elif isinstance(overrides, Mapping):
        texts = []
        for key, value in overrides.items():
            plain = str(value) if isinstance(value, str | Path) else None
            fits = plain is not None and yaml.safe_load(plain or "''") == plain
            texts.append(f"{key}={plain if fits else json.dumps(value, default=str)}")
    else:
        texts = [str(text) for text in overrides]
    if data_root is not None:
        texts.insert(0, f"data.root={data_root}")
    return texts


@contextmanager
def kept_on_interrupt() -> Iterator[None]:
    """Ctrl-C (a plain :class:`KeyboardInterrupt`) inside: :class:`RunInterrupted`, raised
    after the run kept its finished work."""
    try:
        yield
    except KeyboardInterrupt as exc:
        if type(exc) is not KeyboardInterrupt:  # already one of ours, or a closed pipe
            raise
        raise RunInterrupted() from None


def _run_rows(path: Path) -> list[Any]:
    """The rows of the run in ``path``: from its recipe's leaderboard, else the one
    ``toolkit leaderboard RUN_DIR`` reads."""
    from toolkit.report.collect import leaderboard_rows, read_run_recipe
    from toolkit.runs.run_dir import RECIPE, RunDir

    recipe = read_run_recipe(RunDir(path))[0] if (path / RECIPE).is_file() else None
    return leaderboard_rows(path.resolve(), recipe, None)[1]


def _status(message: str) -> None:
    """One line about the run on stderr, unless progress is off."""
    from toolkit.progress import console, progress_enabled

    if progress_enabled():
        console.print(message, markup=False, highlight=False, soft_wrap=True)


def _write_report(run_dir: Path, storage: str | None) -> Path | None:
    """The report at the end of a run; if it fails, a warning: the run's work stands."""
    from toolkit.progress import warn
    from toolkit.report import write_report

    try:
        return write_report(run_dir, storage)
    except Exception as exc:  # noqa: BLE001 - the submission is written whatever the report does
        log = write_traceback(exc)
        warn(f"no report ({error_line(exc, typed=True)}; traceback in {log})")
        return None
