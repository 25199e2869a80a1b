"""The leaderboard table's columns: what each shows, their priority, which fit a terminal."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.console import JustifyMethod
from rich.text import Text

from toolkit.metrics import METRICS

from .cells import (
    Line,
    data_cell,
    duration,
    fold_cell,
    id_cell,
    metric_cell_text,
    number,
    params_cell,
    percent,
    state_cell,
    submission_cell,
)
from .row import Row
from .store import ensembles_first

REPEATED_METRICS = {
    m.name for m in METRICS.values() if m.history_key in ("val_accuracy", "val_loss")
}
"""Metrics whose values the val acc and val loss columns already show."""


PRIORITY: tuple[str, ...] = (
    "id",
    "state",
    "val_accuracy",
    "val_loss",
    "backbone",
    "profile",
    "metric",
    "estimate",
    "fold_mean",
    "public_score",
    "params",
    "seconds",
    "epochs",
    "folds",
    "recipe",
    "data",
    "submission",
    "kind",
    "repeated_metric",
)
"""The table's columns, most important first (the README's order): a terminal too narrow
for all of them shows a prefix of this list. ``repeated_metric`` is the metric column when
it only repeats val acc or val loss (every row's metric is accuracy or log loss)."""


RANKS = {name: rank for rank, name in enumerate(PRIORITY)}


PARAMS_MIN_WIDTH = 20
"""Narrowest key-params column shown: the params keep this width whatever follows them
(narrower, they are left out, and so is every column after them), and take whatever
width the columns after them leave."""


GAP = 2
"""Columns between two table columns: the right padding and the box's blank divider."""


@dataclass(frozen=True)
class Column:
    """A table column: its cells and how it gives way in a narrow terminal."""

    name: str
    """The row field it shows; the name ``--columns`` takes."""
    header: str
    cell: Callable[[Line], str | Text]
    rank: int
    """Importance: when space runs out, higher ranks are dropped first."""
    justify: JustifyMethod = "left"


def columns_for(lines: Sequence[Line], folds: bool | None = None) -> tuple[Column, ...]:
    """Every table column in display order, for these lines; ``rank`` is the README's priority.

    When all rows share one metric its name heads the metric column, whose
    cells then hold just the values. When every row's metric is accuracy or log
    loss the metric column repeats val acc or val loss: it then ranks last and
    is shown last. The fold columns are there when a row is cross-validated (or
    ``folds`` says so).
    """
    if folds is None:
        folds = any(line.row.folds for line in lines)
    names = {line.row.metric for line in lines if line.row.metric}
    repeated = bool(names) and names <= REPEATED_METRICS
    metric = _metric_column(names.pop() if len(names) == 1 else None, repeated)
    return (
        _column("id", "id", id_cell),
        _column("kind", "kind", lambda line: line.row.kind),
        _column("state", "state", state_cell),
        _column("recipe", "recipe", lambda line: line.row.recipe),
        _column("data", "data", data_cell),
        _column("backbone", "backbone", lambda line: line.row.backbone or ""),
        _column("profile", "profile", lambda line: line.row.profile or ""),
        _right("val_accuracy", "val acc", lambda line: percent(line.row.val_accuracy)),
        _right("val_loss", "val loss", lambda line: number(line.row.val_loss, 4)),
        *(() if repeated else (metric,)),
        _right("estimate", "estimate", lambda line: number(line.row.estimate, 4)),
        *(_fold_columns() if folds else ()),
        _right("epochs", "epochs", _epochs),
        _right("seconds", "seconds", lambda line: duration(line.row.seconds)),
        _right("public_score", "public", lambda line: number(line.row.public_score, 5)),
        _column("submission", "submission", submission_cell),
        _column("params", "key params", params_cell),
        *((metric,) if repeated else ()),
    )


def _column(
    name: str, header: str, cell: Callable[[Line], str | Text], justify: JustifyMethod = "left"
) -> Column:
    """The column ``name`` at its rank in :data:`PRIORITY`."""
    return Column(name, header, cell, rank=RANKS[name], justify=justify)


def _right(name: str, header: str, cell: Callable[[Line], str | Text]) -> Column:
    """A column of numbers, aligned right, at its rank."""
    return _column(name, header, cell, justify="right")


def _metric_column(shared: str | None, repeated: bool) -> Column:
    """The metric column: headed by the rows' one metric and holding its values (``shared``),
    else named ``metric`` with each row's metric in its cells; ranked last when it only
    repeats val acc or val loss (``repeated``)."""

    def metric(line: Line) -> str:
        return number(line.row.metric_value, 4) if shared else metric_cell_text(line.row)

    rank = RANKS["repeated_metric" if repeated else "metric"]
    return Column("metric", shared or "metric", metric, rank=rank, justify="right")


def _fold_columns() -> tuple[Column, ...]:
    """The columns of a cross-validated row: its folds' mean and spread, their number."""
    return (
        _right("fold_mean", "fold mean ± std", fold_cell),
        _right("folds", "folds", lambda line: str(line.row.folds or "")),
    )


def _epochs(line: Line) -> str:
    return "" if line.row.epochs is None else str(line.row.epochs)


TABLE_COLUMNS: tuple[str, ...] = tuple(c.name for c in columns_for([], folds=True))
"""Names of the table's columns in display order: what ``columns=`` and ``--columns`` take."""


def display_order(rows: list[Row]) -> list[Line]:
    """The table's lines in display order: members nested under their ensembles."""
    ordered = ensembles_first(rows)
    by_id = {r.id: r for r in ordered}
    position = {r.id: i for i, r in enumerate(ordered)}
    out: list[Line] = []
    placed: set[str] = set()
    for r in ordered:
        if r.id in placed:
            continue
        placed.add(r.id)
        out.append(Line(r, 0, None, False))
        if r.kind != "ensemble":
            continue
        weights = r.member_weights()
        members = sorted(
            (m for m in weights if m in by_id and m not in placed and by_id[m].kind != "ensemble"),
            key=position.__getitem__,
        )
        for i, member_id in enumerate(members):
            placed.add(member_id)
            out.append(Line(by_id[member_id], 1, weights[member_id], i == len(members) - 1))
    return out


def fit(
    columns: Sequence[Column], need: dict[str, int], cells: dict[str, list[Text]], width: int
) -> list[Column]:
    """The most important columns that fit side by side in ``width``, in display order.

    Columns are taken by rank while they fit, each ``need`` wide (the key
    params at their narrowest): the first that does not fit ends the table, so
    a column is never shown while a more important one is left out. A column
    whose cells are all empty is passed over. The id is always taken.
    """
    taken: list[Column] = []
    for c in sorted(columns, key=lambda c: c.rank):
        if taken and not any(cells[c.name]):
            continue
        if taken and width_of([*taken, c], need) > width:
            break
        taken.append(c)
    return [c for c in columns if c in taken]


def width_of(columns: Sequence[Column], need: dict[str, int]) -> int:
    """Width of a table of ``columns`` side by side, each ``need`` wide."""
    return sum(need[c.name] for c in columns) + GAP * (len(columns) - 1)


def as_text(cell: str | Text) -> Text:
    return Text(cell) if isinstance(cell, str) else cell
