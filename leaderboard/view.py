"""Views of leaderboard rows: a rich table, JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from .columns import (
    PARAMS_MIN_WIDTH,
    TABLE_COLUMNS,
    as_text,
    columns_for,
    display_order,
    fit,
    width_of,
)
from .row import COLUMNS, LeaderboardError, Row
from .store import check_column


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
    lines = display_order(rows)
    every = columns_for(lines, folds=True if columns is not None else None)
    if wide:
        columns = [c.name for c in every]
    if any(r.folds for r in rows):
        note = "rows with folds: val acc, val loss and the metric are out-of-fold"
        caption = f"{caption}\n{note}" if caption else note
    cells = {c.name: [as_text(c.cell(line)) for line in lines] for c in every}
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
        shown = fit(every, need, cells, console.width)
        hidden = [c.header for c in sorted(every, key=lambda c: c.rank) if c not in shown]
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
    width = width_of(shown, need)
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
    lines = display_order(rows)
    by_name = {c.name: c for c in columns_for(lines, folds=True)}
    shown = [by_name[name] for name in dict.fromkeys(columns)]
    plain = [
        PlainLine(line.row, line.depth, [as_text(c.cell(line)).plain for c in shown])
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


def _row_style(row: Row) -> str:
    if row.state == "pruned":
        return "dim"
    if row.state == "failed":
        return "red"
    return ""


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
