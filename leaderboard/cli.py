"""The ``toolkit leaderboard`` command: show rows, export them, record public scores.

One command with an optional positional part, so both forms work::

    toolkit leaderboard [RUN_DIR] [--top N] [--state S] [--sort COL] [--columns A,B|--wide]
    toolkit leaderboard [RUN_DIR] [...] --json|--csv [--out F]
    toolkit leaderboard record RUN_ID SCORE

A run directory literally named ``record`` can be shown as ``./record``.
Register it with :func:`register`, or ``app.command("leaderboard")(leaderboard_command)``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from toolkit.errors import USAGE_ERROR, ToolkitError
from toolkit.wording import count

from .location import DB_ENV, DEFAULT_DB, RUN_DB_NAME, choose_db
from .row import KINDS, STATES, LeaderboardError
from .store import Leaderboard
from .view import TABLE_COLUMNS, parse_columns, render_table, to_csv, to_json

RECORD = "record"

HELP = "\n\n".join(
    [
        "Show the leaderboard of trials and ensembles, best first.",
        f"RUN_DIR limits the rows to one run. RUN_DIR/{RUN_DB_NAME} is read if present"
        " (filtered by run when it is a symlink to a shared database); otherwise the"
        f" workspace database: --db, ${DB_ENV}, else RUN_DIR/../{RUN_DB_NAME},"
        f" else {DEFAULT_DB}.",
        "The table fits the terminal, one line per row: the columns that do not fit are"
        " left out, least important first, and named under it. --columns picks the columns"
        " and their order, --wide shows them all; their lines may run past the terminal.",
        "'record RUN_ID SCORE' stores the public Kaggle score of a row's submission"
        " (put '--' before a negative score).",
    ]
)
"""Help of the command (paragraphs on single lines so the help formatter wraps them)."""


ArgsArgument = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="RUN_DIR | record RUN_ID SCORE",
        help="A run directory to show, or 'record RUN_ID SCORE'.",
        show_default=False,
    ),
]
DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        envvar=DB_ENV,
        help=f"Leaderboard database (default: {DEFAULT_DB}).",
        show_default=False,
        dir_okay=False,
    ),
]
TopOption = Annotated[
    int | None,
    typer.Option("--top", min=1, help="Keep the best N trials of each run (and ensembles)."),
]
StateOption = Annotated[
    str | None, typer.Option("--state", help=f"Only rows in this state: {', '.join(STATES)}.")
]
KindOption = Annotated[
    str | None, typer.Option("--kind", help=f"Only rows of this kind: {', '.join(KINDS)}.")
]
RecipeOption = Annotated[str | None, typer.Option("--recipe", help="Only this recipe.")]
ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile", help="Only the models of this profile, and the ensembles holding some."
    ),
]
SortOption = Annotated[
    str | None,
    typer.Option("--sort", help="Sort by this column (default: each row's metric, best first)."),
]
DescendingOption = Annotated[
    bool | None,
    typer.Option(
        "--desc/--asc",
        help="Sort direction (default: best first for scores, else ascending).",
        show_default=False,
    ),
]
ColumnsOption = Annotated[
    str | None,
    typer.Option(
        "--columns",
        metavar="A,B,...",
        help=f"Show these table columns in this order, of: {', '.join(TABLE_COLUMNS)}.",
    ),
]
WideOption = Annotated[
    bool, typer.Option("--wide", help="Show every table column, even past the terminal's width.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
CsvOption = Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")]
OutOption = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="Write the JSON/CSV export to this file (format from --json/--csv or suffix).",
        dir_okay=False,
    ),
]


def leaderboard_command(
    args: ArgsArgument = None,
    db: DbOption = None,
    top: TopOption = None,
    state: StateOption = None,
    kind: KindOption = None,
    recipe: RecipeOption = None,
    profile: ProfileOption = None,
    sort: SortOption = None,
    descending: DescendingOption = None,
    columns: ColumnsOption = None,
    wide: WideOption = False,
    as_json: JsonOption = False,
    as_csv: CsvOption = False,
    out: OutOption = None,
) -> None:
    """Show the leaderboard, export it, or record a public score."""
    try:
        positional = list(args or [])
        if positional and positional[0] == RECORD:
            _record(positional[1:], db)
        else:
            fmt = _export_format(as_json, as_csv, out)
            if len(positional) > 1:
                raise LeaderboardError(
                    f"expected at most one RUN_DIR, got {len(positional)}: {' '.join(positional)}"
                    f" (to record a score: leaderboard {RECORD} RUN_ID SCORE)"
                )
            _show(
                run_dir=Path(positional[0]) if positional else None,
                db=db,
                top=top,
                state=state,
                kind=kind,
                recipe=recipe,
                profile=profile,
                sort=sort,
                descending=descending,
                fmt=fmt,
                out=out,
                columns=_table_columns(columns, wide, fmt),
                wide=wide,
            )
    except ToolkitError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(USAGE_ERROR) from None


leaderboard_command.__doc__ = HELP


def register(app: typer.Typer) -> None:
    """Add the ``leaderboard`` command to ``app``."""
    app.command("leaderboard")(leaderboard_command)


# ------------------------------------------------------------------ actions
def _record(rest: list[str], db: Path | None) -> None:
    """``record RUN_ID SCORE``: store a public score and confirm it in one line."""
    if len(rest) != 2:
        raise LeaderboardError(f"usage: leaderboard {RECORD} RUN_ID SCORE (got {len(rest)} args)")
    row_id, raw = rest
    try:
        score = float(raw)
    except ValueError:
        raise LeaderboardError(f"score must be a number, not {raw!r}") from None
    if not math.isfinite(score):
        raise LeaderboardError(f"score must be a finite number, not {raw!r}")
    board = _open(db if db is not None else DEFAULT_DB)
    row = board.record_score(row_id, score)
    where = f" ({row.submission})" if row.submission else ""
    typer.echo(f"recorded public score {score:g} for {row.id}{where}")


def _show(
    *,
    run_dir: Path | None,
    db: Path | None,
    top: int | None,
    state: str | None,
    kind: str | None,
    recipe: str | None,
    profile: str | None,
    sort: str | None,
    descending: bool | None,
    fmt: str | None,
    out: Path | None,
    columns: list[str] | None,
    wide: bool,
) -> None:
    """Select the rows and print them as a table (fitted, these columns or all), JSON or CSV."""
    db_path, filter_run = choose_db(run_dir, db)
    board = _open(db_path)
    rows = board.rows(
        run_dir=run_dir if filter_run else None,
        recipe=recipe,
        profile=profile,
        kind=kind,
        state=state,
        sort=sort,
        descending=descending,
        top=top,
    )
    if run_dir is not None and filter_run and not rows and not run_dir.is_dir():
        _no_such_run(board, run_dir)
    scope = f" for {run_dir}" if run_dir is not None else ""
    filters = any(v is not None for v in (top, state, kind, recipe, profile))
    empty = f"no rows{scope} in {db_path}" + (" matching the filters" if filters else "")
    if fmt is None:
        if not rows:
            typer.echo(empty)
            return
        # $COLUMNS wide, else the terminal's width (even when piped), else 80 columns
        render_table(
            rows,
            Console(),
            title=f"Leaderboard{scope}",
            caption=str(db_path),
            columns=columns,
            wide=wide,
        )
        return
    text = to_json(rows) + "\n" if fmt == "json" else to_csv(rows)
    if not rows:
        typer.echo(empty, err=True)
    if out is None:
        sys.stdout.write(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {count(len(rows), 'row')} to {out}", err=True)


def _open(path: Path) -> Leaderboard:
    """The leaderboard at ``path``; a missing file is a usage error."""
    board = Leaderboard(path)
    if not board.exists():
        raise LeaderboardError(
            f"no leaderboard database at {path} (run a recipe first, or pass --db / ${DB_ENV})"
        )
    return board


def _no_such_run(board: Leaderboard, run_dir: Path) -> None:
    """Raise for a run directory that neither exists nor has rows, naming known runs."""
    known = board.run_dirs()
    hint = f"; runs with rows: {', '.join(known[:5])}" if known else ""
    raise LeaderboardError(f"no run directory {run_dir} and no rows for it in {board.path}{hint}")


def _table_columns(columns: str | None, wide: bool, fmt: str | None) -> list[str] | None:
    """The table columns chosen by ``--columns``; None to fit the terminal or, ``--wide``, all."""
    if columns is None and not wide:
        return None
    if fmt is not None:
        raise LeaderboardError(f"--columns and --wide shape the table, not the {fmt} export")
    if columns is None:
        return None
    if wide:
        raise LeaderboardError("choose one of --columns and --wide")
    return parse_columns(columns)


def _export_format(as_json: bool, as_csv: bool, out: Path | None) -> str | None:
    """'json', 'csv' or None (table) from the flags and ``--out``'s suffix."""
    if as_json and as_csv:
        raise LeaderboardError("choose one of --json and --csv")
    if as_json:
        return "json"
    if as_csv:
        return "csv"
    if out is not None:
        suffix = out.suffix.lower().lstrip(".")
        if suffix in ("json", "csv"):
            return suffix
        raise LeaderboardError(f"--out {out}: add --json or --csv (or use a .json/.csv name)")
    return None
