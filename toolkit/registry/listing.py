"""``toolkit plugins`` as text (one table per kind, fitted to the terminal's width) and as
JSON data."""

from __future__ import annotations

import textwrap
from pathlib import Path

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from toolkit.registry.kinds import KINDS
from toolkit.registry.table import Registry

DESCRIPTION_LINES = 2
"""Lines a description may take; a longer one is cut with an ellipsis (``--json`` has it all)."""

DESCRIPTION_MIN_WIDTH = 30
"""Narrowest description column: a narrower terminal wraps the table's lines instead."""


def origin(source: str, version: str) -> str:
    """Where a plugin comes from and its version, compactly: ``builtin 1``, ``mynet.py 2``."""
    where = source if source == "builtin" else Path(source).name or source
    return f"{where} {version}"


def plugin_records(registry: Registry) -> dict[str, dict[str, dict[str, str]]]:
    """Every registered plugin by kind and name: its version, source, source's version and
    description (what ``toolkit plugins --json`` prints)."""
    return {
        kind: {
            name: {
                "version": entry.version,
                "source": entry.source,
                "source_version": entry.source_version,
                "description": entry.description,
            }
            for name, entry in ((n, registry.entries[kind][n]) for n in registry.list_names(kind))
        }
        for kind in KINDS
    }


def plugin_listing(registry: Registry, width: int) -> RenderableType:
    """Every registered plugin, a section per kind (its title the kind): name, origin and
    description, the description wrapped to at most :data:`DESCRIPTION_LINES` lines of
    what ``width`` leaves."""
    rows = {
        kind: [
            (name, origin(entry.source, entry.version), entry.description)
            for name, entry in ((n, registry.entries[kind][n]) for n in registry.list_names(kind))
        ]
        for kind in KINDS
    }
    every = [row for kind_rows in rows.values() for row in kind_rows]
    name_width = max([len("name"), *(len(r[0]) for r in every)])
    origin_width = max([len("from"), *(len(r[1]) for r in every)])
    room = max(DESCRIPTION_MIN_WIDTH, width - name_width - origin_width - 2 * 2)
    sections: list[RenderableType] = []
    for kind, kind_rows in rows.items():
        table = Table(
            title=Text(kind, style="bold"),
            title_justify="left",
            box=None,
            padding=(0, 2, 0, 0),
            pad_edge=False,
            header_style="dim",
        )
        table.add_column("name", min_width=name_width, no_wrap=True)
        table.add_column("from", min_width=origin_width, no_wrap=True)
        table.add_column("description", no_wrap=True)
        for name, where, description in kind_rows:
            table.add_row(name, where, _wrapped(description, room))
        if not kind_rows:
            table.add_row("(none)", "", "")
        sections.append(table)
    return Group(*(part for table in sections for part in (table, Text(""))))


def _wrapped(text: str, width: int) -> str:
    """``text`` in lines of ``width``, at most :data:`DESCRIPTION_LINES` (the last cut short)."""
    return "\n".join(
        textwrap.wrap(text, width, max_lines=DESCRIPTION_LINES, placeholder=" …") or [""]
    )
