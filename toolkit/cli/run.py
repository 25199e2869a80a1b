"""``toolkit run`` and ``toolkit worker``: train a recipe, or run its study's trials."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from toolkit.cli.options import OutputOption, SetOption, StorageOption
from toolkit.cli.support import friendly, out, status, stop_on_sigterm
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
    from toolkit.api import run as run_recipe

    stop_on_sigterm()
    done = run_recipe(
        recipe, overrides=set_ or [], output=output, storage=storage, report=not no_report
    )
    if done.kind == "study":
        _say_study(done.outcome)
    else:
        _say_plain(done.outcome)
    if done.written_report is not None:
        out.print(f"report: {done.written_report}")


def _say_plain(result: Any) -> None:
    """What a plain run did: its submission, its best epoch's figures, its row."""
    out.print(f"submission: {result.submission}")
    out.print(
        f"best validation accuracy: {result.val_accuracy:.4f} "
        f"(epoch {result.best_epoch}, log loss {result.val_loss:.4f})"
    )
    out.print(f"leaderboard: {result.leaderboard_id} ({result.seconds:.0f} s)")


def _say_study(result: Any) -> None:
    """What a study did: its trials, its ensemble, the estimate, the submission."""
    counts = result.worker.counts
    ens = result.ensemble
    out.print(
        f"study {result.study_name}: {count(counts['complete'] + counts['pruned'], 'trial')} "
        f"({counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed) "
        f"in {result.storage}",
        highlight=False,
        soft_wrap=True,
    )
    _say_timeout(result.timeout, result.worker)
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


def _say_method(ens: Any) -> None:
    """One line on how the ensemble combines its models, when a stack was fitted."""
    combination = ens.combination
    if combination is None or len(combination.estimates) < 2:
        return
    both = ", ".join(f"{m} {e.value:.4f}" for m, e in combination.estimates.items())
    out.print(f"method: {combination.method} kept (estimates: {both})", highlight=False)


def _say_timeout(timeout: float | None, report: Any) -> None:
    """One line when the worker stopped starting trials at ``search.timeout``."""
    if report.stopped_by == "timeout" and timeout is not None:
        out.print(
            f"stopped at search.timeout ({timeout:g} s): no trial started after it; "
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
    _say_timeout(loaded.recipe.search.timeout if loaded.recipe.search else None, report)
