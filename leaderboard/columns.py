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
    shared = names.pop() if len(names) == 1 else None

    def metric(line: Line) -> str:
        return number(line.row.metric_value, 4) if shared else metric_cell_text(line.row)

    def epochs(line: Line) -> str:
        return "" if line.row.epochs is None else str(line.row.epochs)

    metric_column = Column(
        "metric",
        shared or "metric",
        metric,
        rank=RANKS["repeated_metric" if repeated else "metric"],
        justify="right",
    )
    columns = (
        Column("id", "id", id_cell, rank=RANKS["id"]),
        Column("kind", "kind", lambda line: line.row.kind, rank=RANKS["kind"]),
        Column("state", "state", state_cell, rank=RANKS["state"]),
        Column("recipe", "recipe", lambda line: line.row.recipe, rank=RANKS["recipe"]),
        Column("data", "data", data_cell, rank=RANKS["data"]),
        Column(
            "backbone", "backbone", lambda line: line.row.backbone or "", rank=RANKS["backbone"]
        ),
        Column("profile", "profile", lambda line: line.row.profile or "", rank=RANKS["profile"]),
        Column(
            "val_accuracy",
            "val acc",
            lambda line: percent(line.row.val_accuracy),
            rank=RANKS["val_accuracy"],
            justify="right",
        ),
        Column(
            "val_loss",
            "val loss",
            lambda line: number(line.row.val_loss, 4),
            rank=RANKS["val_loss"],
            justify="right",
        ),
        *(() if repeated else (metric_column,)),
        Column(
            "estimate",
            "estimate",
            lambda line: number(line.row.estimate, 4),
            rank=RANKS["estimate"],
            justify="right",
        ),
        *(
            (
                Column(
                    "fold_mean",
                    "fold mean ± std",
                    fold_cell,
                    rank=RANKS["fold_mean"],
                    justify="right",
                ),
                Column(
                    "folds",
                    "folds",
                    lambda line: str(line.row.folds or ""),
                    rank=RANKS["folds"],
                    justify="right",
                ),
            )
            if folds
            else ()
        ),
        Column("epochs", "epochs", epochs, rank=RANKS["epochs"], justify="right"),
        Column(
            "seconds",
            "seconds",
            lambda line: duration(line.row.seconds),
            rank=RANKS["seconds"],
            justify="right",
        ),
        Column(
            "public_score",
            "public",
            lambda line: number(line.row.public_score, 5),
            rank=RANKS["public_score"],
            justify="right",
        ),
        Column(
            "submission",
            "submission",
            submission_cell,
            rank=RANKS["submission"],
        ),
        Column("params", "key params", params_cell, rank=RANKS["params"]),
        *((metric_column,) if repeated else ()),
    )
    return columns


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
