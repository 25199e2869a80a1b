"""Rich progress bars for long work, silenced by ``TOOLKIT_NO_PROGRESS=1``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)
"""Where progress and status lines go (stderr, so stdout stays parseable)."""


def progress_enabled() -> bool:
    """Whether progress bars are shown."""
    return os.environ.get("TOOLKIT_NO_PROGRESS", "") in ("", "0")


@contextmanager
def progress_bar(
    description: str, total: int, transient: bool = False
) -> Iterator[Callable[..., None]]:
    """A bar of ``total`` steps; yields ``advance(n=1, **fields)``, fields shown after it.

    A ``transient`` bar disappears when done (for inner steps of a longer task).
    """
    if not progress_enabled():
        yield lambda n=1, **fields: None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, console=console, transient=transient) as progress:
        task = progress.add_task(description, total=total, info="")

        def advance(n: int = 1, **fields: object) -> None:
            info = "  ".join(f"{k} {v}" for k, v in fields.items())
            progress.update(task, advance=n, **({"info": info} if fields else {}))

        yield advance
