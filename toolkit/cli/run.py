"""``toolkit run`` and ``toolkit worker``: train a recipe, or run its study's trials."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from toolkit.cli.options import OutputOption, SetOption, StorageOption
from toolkit.cli.support import err, friendly, out, status, stop_on_sigterm, write_traceback
from toolkit.errors import ToolkitError, error_line
from toolkit.wording import count


@friendly
def run(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    set_: SetOption = None,
    output: OutputOption = None,
    storage: StorageOption = None,
    no_report: Annotated[
        bool, typer.Option("--no-report", help="Do not write RUN_DIR/report.html at the end.")
    ] = False,
) -> None:
    """Run a recipe end to end and write the submission and the report.

    With a search: or ensemble: section, run (or continue) its study, then
    select the ensemble of its trials.
    """
    from toolkit.recipe.loading import load_recipe, locations
    from toolkit.study.settings import has_study

    loaded = load_recipe(recipe, set_ or [], output)
    status(locations(loaded.recipe))
    stop_on_sigterm()
    from toolkit.workflow import run as run_recipe  # torch: only once the recipe is valid

    if has_study(loaded.recipe):
        run_dir = _run_study(loaded, storage)
        if not no_report:
            _run_report(run_dir, storage)
        return
    if storage is not None:
        raise ToolkitError(f"--storage: {recipe} has no search: section to keep a study of")
    result = run_recipe(loaded)
    out.print(f"submission: {result.submission}")
    out.print(
        f"best validation accuracy: {result.val_accuracy:.4f} "
        f"(epoch {result.best_epoch}, log loss {result.val_loss:.4f})"
    )
    out.print(f"leaderboard: {result.leaderboard_id} ({result.seconds:.0f} s)")
    if not no_report:
        _run_report(result.run_dir, None)


def _run_report(run_dir: Path, storage: str | None) -> None:
    """The report at the end of a run; if it fails, a warning: the run's work stands."""
    from toolkit.report import write_report

    try:
        page = write_report(run_dir, storage)
    except Exception as exc:  # noqa: BLE001 - the submission is written whatever the report does
        log = write_traceback(exc)
        message = error_line(exc, typed=True)
        err.print(f"warning: no report ({message}; traceback in {log})", highlight=False)
        return
    out.print(f"report: {page}")


def _run_study(loaded: Any, storage: str | None) -> Path:
    from toolkit.workflow import run_study

    result = run_study(loaded, storage)
    counts = result.worker.counts
    ens = result.ensemble
    out.print(
        f"study {result.study_name}: {count(counts['complete'] + counts['pruned'], 'trial')} "
        f"({counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed) "
        f"in {result.storage}",
        highlight=False,
        soft_wrap=True,
    )
    _say_timeout(loaded, result.worker)
    out.print(f"best trial: {ens.best_trial} ({ens.metric} {ens.best_trial_metric:.4f})")
    members = ", ".join(f"{k} ×{w:.3g}" for k, w in ens.members.items())
    out.print(
        f"ensemble: {ens.id} of {count(ens.candidates, 'candidate')}, validation {ens.metric} "
        f"{ens.val_metric:.4f}: {members}",
        highlight=False,
        soft_wrap=True,
    )
    if ens.estimate is not None:
        out.print(f"estimate: {ens.estimate.describe()}", highlight=False, soft_wrap=True)
    _say_method(ens)
    if ens.pseudo_labels is not None:
        out.print(ens.pseudo_labels.describe(), highlight=False, soft_wrap=True)
    out.print(f"submission: {result.submission}", highlight=False, soft_wrap=True)
    out.print(f"dashboard: optuna-dashboard {result.storage}", highlight=False, soft_wrap=True)
    return result.run_dir


def _say_method(ens: Any) -> None:
    """One line on how the ensemble combines its models, when a stack was fitted."""
    combination = ens.combination
    if combination is None or len(combination.estimates) < 2:
        return
    both = ", ".join(f"{m} {e.value:.4f}" for m, e in combination.estimates.items())
    out.print(f"method: {combination.method} kept (estimates: {both})", highlight=False)


def _say_timeout(loaded: Any, report: Any) -> None:
    """One line when the worker stopped starting trials at ``search.timeout``."""
    search = loaded.recipe.search
    if report.stopped_by == "timeout" and search is not None and search.timeout is not None:
        out.print(
            f"stopped at search.timeout ({search.timeout:g} s): no trial started after it; "
            "run again to continue the study",
            highlight=False,
            soft_wrap=True,
        )


@friendly
def worker(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file with a search: section.")],
    set_: SetOption = None,
    output: OutputOption = None,
    storage: StorageOption = None,
) -> None:
    """Join a recipe's study as one more worker (process or machine) and run its trials.

    Workers share the study through --storage; they stop when the study has
    search.n_trials finished trials. `toolkit run` builds the ensemble.
    """
    from toolkit.recipe.loading import load_recipe, locations

    loaded = load_recipe(recipe, set_ or [], output)
    status(locations(loaded.recipe))
    stop_on_sigterm()
    from toolkit.workflow import run_worker  # torch: only once the recipe is valid

    report = run_worker(loaded, storage)
    counts = report.counts
    mine = report.numbers()
    out.print(
        f"worker ran {len(mine)} trial(s): {', '.join(map(str, mine)) or 'none'}",
        highlight=False,
    )
    out.print(
        f"study {report.study_name}: {counts['complete'] + counts['pruned']} finished "
        f"({counts['complete']} complete, {counts['pruned']} pruned), {counts['running']} running, "
        f"{counts['failed']} failed in {report.storage}",
        highlight=False,
        soft_wrap=True,
    )
    _say_timeout(loaded, report)

