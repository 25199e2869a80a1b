"""``toolkit report`` and ``toolkit reproduce``: read a finished run, or train its row again."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from toolkit.cli.options import StorageOption
from toolkit.cli.support import friendly, out


@friendly
def reproduce(
    run_id: Annotated[str, typer.Argument(help="Leaderboard id of a run, trial or seed copy.")],
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            envvar="TOOLKIT_LEADERBOARD",
            help="Leaderboard database (default: runs/leaderboard.db).",
            show_default=False,
            dir_okay=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="New folder (default: RUN_DIR/reproduce/ID)."),
    ] = None,
) -> None:
    """Train one leaderboard row again from the recipe it stored; say whether it matches.

    Exits 0 when the metrics and probabilities are identical, 1 when they differ.
    """
    from toolkit.leaderboard.location import default_db_path
    from toolkit.leaderboard.store import Leaderboard
    from toolkit.runs.reproduce import reproduce as reproduce_row

    outcome = reproduce_row(Leaderboard(db or default_db_path()), run_id, output)
    result = outcome.result
    out.print(f"reproduced {run_id} as {result.leaderboard_id} in {result.run_dir}")
    for change in outcome.version_changes:
        out.print(f"version changed since: {change}")
    out.print(f"compared: {', '.join(outcome.compared)}")
    if outcome.matches:
        out.print("match: the metrics and probabilities are identical")
        return
    for difference in outcome.differences:
        out.print(f"differs: {difference}")
    out.print("match: no")
    raise typer.Exit(1)


@friendly
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by toolkit run.")],
    storage: StorageOption = None,
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            envvar="TOOLKIT_LEADERBOARD",
            help="Leaderboard database (default: the run recipe's output.leaderboard).",
            show_default=False,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Write RUN_DIR/report.html, one self-contained page of the run's figures; print its path.

    The figures are also written to RUN_DIR/figures/*.png. A study still
    running is reported as far as it got.
    """
    from toolkit.report import write_report

    out.print(str(write_report(run_dir, storage, db)), highlight=False, soft_wrap=True)
