"""The cells of the leaderboard table: each row's values as short text."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

from rich.text import Text

from .row import Row


class Line(NamedTuple):
    """One table row: a leaderboard row, nested (depth 1) under its ensemble or not."""

    row: Row
    depth: int
    weight: float | None
    last: bool


STATE_STYLES = {
    "complete": "green",
    "running": "yellow",
    "pruned": "bright_black",
    "interrupted": "magenta",
    "failed": "red",
}
"""Colour of each state in the table."""


def id_cell(line: Line) -> Text:
    """The id; a member's is indented under its ensemble, with a branch and its weight."""
    row = line.row
    if line.depth:
        branch = "└" if line.last else "├"
        marker = f" ×{line.weight:.3g}" if line.weight is not None else ""
        return Text(f"  {branch} {row.id}{marker}")
    return Text(row.id, style="bold" if row.kind == "ensemble" else "")


def state_cell(line: Line) -> Text:
    """The state in its colour."""
    return Text(line.row.state, style=STATE_STYLES.get(line.row.state, ""))


def params_cell(line: Line) -> Text:
    """The key parameters on one line, cut with an ellipsis where the column ends."""
    return Text(params_text(line.row), no_wrap=True, overflow="ellipsis")


def data_cell(line: Line) -> str:
    """The data a row was trained on: its folder's name and the start of its digest."""
    data = line.row.data
    if not data.get("root"):
        return ""
    name = Path(str(data["root"])).name
    digest = data.get("digest")
    return f"{name}@{str(digest)[:8]}" if digest else name


def submission_cell(line: Line) -> str:
    """The submission's folder and name; a replaced row's says by which row."""
    if line.row.replaced_by:
        return f"replaced by {line.row.replaced_by}"
    return short_path(line.row.submission)


def fold_cell(line: Line) -> str:
    """``mean ± std`` of a cross-validated row's per-fold metric."""
    row = line.row
    if row.fold_mean is None:
        return ""
    return f"{number(row.fold_mean, 4)} ± {number(row.fold_std, 4)}"


def percent(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "" if value is None else str(value)
    return f"{100 * value:.2f}%"


def number(value: float | None, digits: int) -> str:
    if value is None:
        return ""
    return f"{value:.{digits}f}" if math.isfinite(value) else str(value)


def metric_cell_text(row: Row) -> str:
    if not row.metric:
        return ""
    if row.metric_value is None:
        return row.metric
    return f"{row.metric} {row.metric_value:.4f}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def short_path(path: str | None) -> str:
    if not path:
        return ""
    parts = Path(path).parts
    return str(Path(*parts[-2:])) if len(parts) >= 2 else path


def params_text(row: Row) -> str:
    """``key=value`` of each parameter, in order, each key by its short name (see
    :func:`short_names`) and a pair already shown under that name left out."""
    shown = {k: v for k, v in row.params.items() if not (k == "profile" and row.profile)}
    flat = [(key, compact(value)) for key, value in flatten(shown)]
    names = short_names(flat)
    items = list(dict.fromkeys(f"{names[key]}={value}" for key, value in flat))
    if row.kind == "ensemble" and row.members:
        items.insert(0, f"members={len(row.members)}")
    return " ".join(items)


def short_names(flat: list[tuple[str, str]]) -> dict[str, str]:
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


def flatten(params: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.extend(flatten(value, f"{name}."))
        else:
            out.append((name, value))
    return out


def compact(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ",".join(compact(v) for v in value)
    return str(value)
