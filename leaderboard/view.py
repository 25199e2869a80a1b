"""Views of leaderboard rows: a rich table, JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from rich import box
from rich.cells import cell_len
from rich.console import Console, JustifyMethod
from rich.table import Table
from rich.text import Text

from toolkit.metrics import METRICS

from .store import COLUMNS, LeaderboardError, Row, check_column, ensembles_first

STATE_STYLES = {
    "complete": "green",
    "running": "yellow",
    "pruned": "bright_black",
    "failed": "red",
}
"""Colour of each state in the table."""

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
    "metric",
    "fold_mean",
    "public_score",
    "params",
    "seconds",
    "epochs",
    "folds",
    "recipe",
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

_GAP = 2
"""Columns between two table columns: the right padding and the box's blank divider."""


class _Line(NamedTuple):
    """One table row: a leaderboard row, nested (depth 1) under its ensemble or not."""

    row: Row
    depth: int
    weight: float | None
    last: bool


@dataclass(frozen=True)
class Column:
    """A table column: its cells and how it gives way in a narrow terminal."""

    name: str
    """The row field it shows; the name ``--columns`` takes."""
    header: str
    cell: Callable[[_Line], str | Text]
    rank: int
    """Importance: when space runs out, higher ranks are dropped first."""
    justify: JustifyMethod = "left"


def _id_cell(line: _Line) -> Text:
    """The id; a member's is indented under its ensemble, with a branch and its weight."""
    row = line.row
    if line.depth:
        branch = "└" if line.last else "├"
        marker = f" ×{line.weight:.3g}" if line.weight is not None else ""
        return Text(f"  {branch} {row.id}{marker}")
    return Text(row.id, style="bold" if row.kind == "ensemble" else "")


def _state_cell(line: _Line) -> Text:
    """The state in its colour."""
    return Text(line.row.state, style=STATE_STYLES.get(line.row.state, ""))


def _params_cell(line: _Line) -> Text:
    """The key parameters on one line, cut with an ellipsis where the column ends."""
    return Text(_params(line.row), no_wrap=True, overflow="ellipsis")


def _fold_cell(line: _Line) -> str:
    """``mean ± std`` of a cross-validated row's per-fold metric."""
    row = line.row
    if row.fold_mean is None:
        return ""
    return f"{_number(row.fold_mean, 4)} ± {_number(row.fold_std, 4)}"


def _columns(lines: Sequence[_Line], folds: bool | None = None) -> tuple[Column, ...]:
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

    def metric(line: _Line) -> str:
        return _number(line.row.metric_value, 4) if shared else _metric(line.row)

    def epochs(line: _Line) -> str:
        return "" if line.row.epochs is None else str(line.row.epochs)

    metric_column = Column(
        "metric",
        shared or "metric",
        metric,
        rank=RANKS["repeated_metric" if repeated else "metric"],
        justify="right",
    )
    columns = (
        Column("id", "id", _id_cell, rank=RANKS["id"]),
        Column("kind", "kind", lambda line: line.row.kind, rank=RANKS["kind"]),
        Column("state", "state", _state_cell, rank=RANKS["state"]),
        Column("recipe", "recipe", lambda line: line.row.recipe, rank=RANKS["recipe"]),
        Column(
            "backbone", "backbone", lambda line: line.row.backbone or "", rank=RANKS["backbone"]
        ),
        Column(
            "val_accuracy",
            "val acc",
            lambda line: _percent(line.row.val_accuracy),
            rank=RANKS["val_accuracy"],
            justify="right",
        ),
        Column(
            "val_loss",
            "val loss",
            lambda line: _number(line.row.val_loss, 4),
            rank=RANKS["val_loss"],
            justify="right",
        ),
        *(() if repeated else (metric_column,)),
        *(
            (
                Column(
                    "fold_mean",
                    "fold mean ± std",
                    _fold_cell,
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
            lambda line: _duration(line.row.seconds),
            rank=RANKS["seconds"],
            justify="right",
        ),
        Column(
            "public_score",
            "public",
            lambda line: _number(line.row.public_score, 5),
            rank=RANKS["public_score"],
            justify="right",
        ),
        Column(
            "submission",
            "submission",
            lambda line: _short_path(line.row.submission),
            rank=RANKS["submission"],
        ),
        Column("params", "key params", _params_cell, rank=RANKS["params"]),
        *((metric_column,) if repeated else ()),
    )
    return columns


TABLE_COLUMNS: tuple[str, ...] = tuple(c.name for c in _columns([], folds=True))
"""Names of the table's columns in display order: what ``columns=`` and ``--columns`` take."""


def render_table(
    rows: list[Row],
    console: Console,
    *,
    title: str | None = None,
    caption: str | None = None,
    columns: Sequence[str] | None = None,
    wide: bool = False,
) -> None:
    """Print ``rows`` as a rich table fitted to the console: best first, ensembles above members.

    Every row takes one line and only the key parameters are ever cut (with an
    ellipsis). By default the table holds the most important columns that fit
    in ``console.width``, in the order of :data:`PRIORITY` (the key parameters
    at least :data:`PARAMS_MIN_WIDTH` wide, and the width left over), and the
    caption names the others. ``columns`` shows exactly the named columns (see
    :data:`TABLE_COLUMNS`) in that order, and ``wide`` every column, in lines
    longer than the console if they do not fit.

    Members of an ensemble shown in the table are listed right under it,
    indented and marked with their weight; rows are coloured by state.
    """
    if not rows:
        console.print("no rows")
        return
    lines = _display_order(rows)
    every = _columns(lines, folds=True if columns is not None else None)
    if wide:
        columns = [c.name for c in every]
    if any(r.folds for r in rows):
        note = "rows with folds: val acc, val loss and the metric are out-of-fold"
        caption = f"{caption}\n{note}" if caption else note
    cells = {c.name: [_text(c.cell(line)) for line in lines] for c in every}
    need = {
        c.name: max(cell_len(c.header), *(cell.cell_len for cell in cells[c.name])) for c in every
    }
    need["params"] = min(need["params"], PARAMS_MIN_WIDTH)
    if columns is not None:
        for name in columns:
            check_column(name, TABLE_COLUMNS)
        by_name = {c.name: c for c in every}
        shown = [by_name[name] for name in dict.fromkeys(columns)]
    else:
        shown = _fit(every, need, cells, console.width)
        hidden = [c.name for c in sorted(every, key=lambda c: c.rank) if c not in shown]
        if hidden:
            note = f"--wide adds {', '.join(hidden)}"
            caption = f"{caption}\n{note}" if caption else note
    table = Table(
        title=title,
        caption=caption,
        header_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    for c in shown:
        # the key params are the one column that shrinks (its cells cut themselves short)
        table.add_column(c.header, justify=c.justify, no_wrap=c.name != "params")
    for i, line in enumerate(lines):
        table.add_row(*(cells[c.name][i] for c in shown), style=_row_style(line.row))
    width = _width(shown, need)
    if width > console.width:  # only chosen columns overflow: print longer lines than the console
        table.width = width
    console.print(table, crop=False)


class PlainLine(NamedTuple):
    """One line of the table as plain text: its row, its depth (1: an ensemble's member), cells."""

    row: Row
    depth: int
    cells: list[str]


def plain_table(
    rows: list[Row], columns: Sequence[str] = TABLE_COLUMNS
) -> tuple[list[str], list[PlainLine]]:
    """The table's headers and lines as plain text (for pages other than the terminal).

    The same columns, cells and order as :func:`render_table` with ``columns``:
    best first, each ensemble's members under it with their weights.
    """
    for name in columns:
        check_column(name, TABLE_COLUMNS)
    lines = _display_order(rows)
    by_name = {c.name: c for c in _columns(lines, folds=True)}
    shown = [by_name[name] for name in dict.fromkeys(columns)]
    plain = [
        PlainLine(line.row, line.depth, [_text(c.cell(line)).plain for c in shown])
        for line in lines
    ]
    return [c.header for c in shown], plain


def parse_columns(text: str) -> list[str]:
    """The table columns named in a comma-separated list such as ``id,state,val_loss``."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise LeaderboardError(f"no column names in {text!r}; valid: {', '.join(TABLE_COLUMNS)}")
    for name in names:
        check_column(name, TABLE_COLUMNS)
    return names


def to_json(rows: list[Row]) -> str:
    """The rows as a JSON list of objects with every :class:`Row` field (non-finite -> null)."""
    return json.dumps([_finite(r.to_dict()) for r in rows], indent=2, default=str)


def to_csv(rows: list[Row]) -> str:
    """The rows as CSV with a header of every :class:`Row` field; params and members as JSON."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        values = r.to_dict()
        writer.writerow([_csv_cell(values[c]) for c in COLUMNS])
    return buffer.getvalue()


# ------------------------------------------------------------------ helpers
def _display_order(rows: list[Row]) -> list[_Line]:
    """The table's lines in display order: members nested under their ensembles."""
    ordered = ensembles_first(rows)
    by_id = {r.id: r for r in ordered}
    position = {r.id: i for i, r in enumerate(ordered)}
    out: list[_Line] = []
    placed: set[str] = set()
    for r in ordered:
        if r.id in placed:
            continue
        placed.add(r.id)
        out.append(_Line(r, 0, None, False))
        if r.kind != "ensemble":
            continue
        weights = r.member_weights()
        members = sorted(
            (m for m in weights if m in by_id and m not in placed and by_id[m].kind != "ensemble"),
            key=position.__getitem__,
        )
        for i, member_id in enumerate(members):
            placed.add(member_id)
            out.append(_Line(by_id[member_id], 1, weights[member_id], i == len(members) - 1))
    return out


def _fit(
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
        if taken and _width([*taken, c], need) > width:
            break
        taken.append(c)
    return [c for c in columns if c in taken]


def _width(columns: Sequence[Column], need: dict[str, int]) -> int:
    """Width of a table of ``columns`` side by side, each ``need`` wide."""
    return sum(need[c.name] for c in columns) + _GAP * (len(columns) - 1)


def _text(cell: str | Text) -> Text:
    return Text(cell) if isinstance(cell, str) else cell


def _row_style(row: Row) -> str:
    if row.state == "pruned":
        return "dim"
    if row.state == "failed":
        return "red"
    return ""


def _percent(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "" if value is None else str(value)
    return f"{100 * value:.2f}%"


def _number(value: float | None, digits: int) -> str:
    if value is None:
        return ""
    return f"{value:.{digits}f}" if math.isfinite(value) else str(value)


def _metric(row: Row) -> str:
    if not row.metric:
        return ""
    if row.metric_value is None:
        return row.metric
    return f"{row.metric} {row.metric_value:.4f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _short_path(path: str | None) -> str:
    if not path:
        return ""
    parts = Path(path).parts
    return str(Path(*parts[-2:])) if len(parts) >= 2 else path


def _params(row: Row) -> str:
    """``key=value`` of each parameter, in order, each key by its short name (see
    :func:`_short_names`) and a pair already shown under that name left out."""
    flat = [(key, _compact(value)) for key, value in _flatten(row.params)]
    names = _short_names(flat)
    items = list(dict.fromkeys(f"{names[key]}={value}" for key, value in flat))
    if row.kind == "ensemble" and row.members:
        items.insert(0, f"members={len(row.members)}")
    return " ".join(items)


def _short_names(flat: list[tuple[str, str]]) -> dict[str, str]:
    """Each dotted key's last part (``train.optimizer.lr`` -> ``lr``; ``copies.0`` keeps the
    part before a number), or the whole key when another key of that short name has another
    value: the sampled ``train.optimizer.lr`` and the settings' ``lr`` show once, as ``lr``."""

    def short(key: str) -> str:
        parts = key.split(".")
        start = len(parts) - 1
        while start > 0 and parts[start].isdigit():
            start -= 1
        return ".".join(parts[start:])

    values: dict[str, set[str]] = {}
    for key, value in flat:
        values.setdefault(short(key), set()).add(value)
    return {key: short(key) if len(values[short(key)]) == 1 else key for key, _ in flat}


def _flatten(params: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.extend(_flatten(value, f"{name}."))
        else:
            out.append((name, value))
    return out


def _compact(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ",".join(_compact(v) for v in value)
    return str(value)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(_finite(value), default=str)
    return value
