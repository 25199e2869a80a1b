"""Views of leaderboard rows: a rich table, JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .store import COLUMNS, Row, ensembles_first

STATE_STYLES = {
    "complete": "green",
    "running": "yellow",
    "pruned": "bright_black",
    "failed": "red",
}
"""Colour of each state in the table."""

PARAMS_WIDTH = 60
"""Longest rendering of the key-params cell before it is cut with an ellipsis."""


def render_table(
    rows: list[Row],
    console: Console,
    *,
    title: str | None = None,
    caption: str | None = None,
) -> None:
    """Print ``rows`` as a rich table: best first, each ensemble above its members.

    Members of an ensemble shown in the table are listed right under it,
    indented and marked with their weight; rows are coloured by state.
    """
    if not rows:
        console.print("no rows")
        return
    table = Table(title=title, caption=caption, header_style="bold", show_lines=False)
    table.add_column("id", no_wrap=True)
    table.add_column("kind")
    table.add_column("state")
    table.add_column("recipe")
    table.add_column("backbone")
    table.add_column("val acc", justify="right")
    table.add_column("val loss", justify="right")
    table.add_column("metric", no_wrap=True)
    table.add_column("epochs", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("public", justify="right")
    table.add_column("submission")
    table.add_column("key params", overflow="fold")

    for row, depth, weight, last in _display_order(rows):
        if depth:
            branch = "└" if last else "├"
            marker = f" ×{weight:.3g}" if weight is not None else ""
            id_cell = Text(f"  {branch} {row.id}{marker}")
        else:
            id_cell = Text(row.id, style="bold" if row.kind == "ensemble" else "")
        table.add_row(
            id_cell,
            row.kind,
            Text(row.state, style=STATE_STYLES.get(row.state, "")),
            row.recipe,
            row.backbone or "",
            _percent(row.val_accuracy),
            _number(row.val_loss, 4),
            _metric(row),
            "" if row.epochs is None else str(row.epochs),
            _duration(row.seconds),
            _number(row.public_score, 5),
            _short_path(row.submission),
            _params(row),
            style=_row_style(row),
        )
    console.print(table)


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
def _display_order(rows: list[Row]) -> list[tuple[Row, int, float | None, bool]]:
    """(row, depth, weight, is last member) in display order: members nested under ensembles."""
    ordered = ensembles_first(rows)
    by_id = {r.id: r for r in ordered}
    position = {r.id: i for i, r in enumerate(ordered)}
    out: list[tuple[Row, int, float | None, bool]] = []
    placed: set[str] = set()
    for r in ordered:
        if r.id in placed:
            continue
        placed.add(r.id)
        out.append((r, 0, None, False))
        if r.kind != "ensemble":
            continue
        weights = r.member_weights()
        members = sorted(
            (m for m in weights if m in by_id and m not in placed and by_id[m].kind == "trial"),
            key=position.__getitem__,
        )
        for i, member_id in enumerate(members):
            placed.add(member_id)
            out.append((by_id[member_id], 1, weights[member_id], i == len(members) - 1))
    return out


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
    items = [f"{k}={_compact(v)}" for k, v in _flatten(row.params)]
    if row.kind == "ensemble" and row.members:
        items.insert(0, f"members={len(row.members)}")
    text = " ".join(items)
    return text if len(text) <= PARAMS_WIDTH else text[: PARAMS_WIDTH - 1] + "…"


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
