"""Progress of long work on stderr: rich bars on a terminal, plain lines elsewhere.

When stderr is not a terminal (a log file, a CI log, a notebook cell), a bar
prints plain lines instead of redrawing: a count line once another tenth of
the work is done and 30 s have passed since the last line, a line for each
milestone (an epoch with its metrics) and a line at the end; a transient bar
prints nothing. ``TOOLKIT_NO_PROGRESS=1`` silences both.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

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

PLAIN_STEPS = 10
"""A plain count line needs another 1/PLAIN_STEPS of the work done since the last line..."""
PLAIN_INTERVAL = 30.0
"""...and this many seconds passed since the last line."""


def progress_enabled() -> bool:
    """Whether progress output (bars or plain lines) is shown."""
    return os.environ.get("TOOLKIT_NO_PROGRESS", "") in ("", "0")


@contextmanager
def progress_bar(
    description: str, total: int, transient: bool = False, *, out: Console | None = None
) -> Iterator[Callable[..., None]]:
    """Progress over ``total`` steps; yields ``advance(n=1, *, milestone=False, **fields)``.

    ``fields`` are shown after the count. A ``milestone`` (say, an epoch with its
    metrics) is printed as a line of its own when ``out`` (default: stderr) is
    not a terminal. A ``transient`` bar, for inner steps of a longer task,
    disappears when done on a terminal and prints nothing elsewhere.
    """
    out = out or console
    if not progress_enabled() or (transient and not out.is_terminal):
        yield lambda n=1, **fields: None
    elif not out.is_terminal:
        plain = PlainProgress(description, total, out)
        yield plain.advance
        plain.close()
    else:
        with _rich_bar(description, total, transient, out) as advance:
            yield advance


@contextmanager
def _rich_bar(
    description: str, total: int, transient: bool, out: Console
) -> Iterator[Callable[..., None]]:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, console=out, transient=transient) as progress:
        task = progress.add_task(description, total=total, info="")

        def advance(n: int = 1, *, milestone: bool = False, **fields: object) -> None:
            progress.update(task, advance=n, **({"info": format_fields(fields)} if fields else {}))

        yield advance


def format_fields(fields: dict[str, object]) -> str:
    """``{"epoch": "3/12", "loss": "1.234"}`` -> ``epoch 3/12 loss 1.234``."""
    return " ".join(f"{key} {value}" for key, value in fields.items())


class PlainProgress:
    """Progress as plain lines, for a stderr that is not a terminal."""

    def __init__(
        self, description: str, total: int, out: Console, interval: float = PLAIN_INTERVAL
    ) -> None:
        """Count ``total`` steps of ``description``, printing to ``out``.

        A count line needs ``interval`` seconds since the previous line.
        """
        self.description = description
        self.total = total
        self.out = out
        self.interval = interval
        self.done = 0
        self.fields: dict[str, object] = {}
        self.started = self.last_time = time.monotonic()
        self.last_done = 0
        self.next_done = self._next_threshold()

    def advance(self, n: int = 1, *, milestone: bool = False, **fields: object) -> None:
        """Count ``n`` more steps; print a line at a milestone or when one is due."""
        self.done += n
        if fields:
            self.fields = fields
        if milestone or (
            self.done >= self.next_done and time.monotonic() - self.last_time >= self.interval
        ):
            self.print_line()

    def close(self) -> None:
        """Print the final count, unless the last line already showed it."""
        if self.done != self.last_done:
            self.print_line()

    def print_line(self) -> None:
        """Print ``description: done/total (pct%) elapsed fields`` now."""
        now = time.monotonic()
        percent = f" ({100 * self.done // self.total}%)" if self.total > 0 else ""
        elapsed = timedelta(seconds=int(now - self.started))
        line = f"{self.description}: {self.done}/{self.total}{percent} {elapsed}"
        if self.fields:
            line += f" {format_fields(self.fields)}"
        self.out.print(line, markup=False, highlight=False, soft_wrap=True)
        self.last_time, self.last_done = now, self.done
        self.next_done = self._next_threshold()

    def _next_threshold(self) -> float:
        """The count at which the next 1/``PLAIN_STEPS`` of the total is reached."""
        if self.total <= 0:
            return math.inf
        reached = self.done * PLAIN_STEPS // self.total
        return -(-(reached + 1) * self.total // PLAIN_STEPS)
