"""Progress of long work on stderr: rich bars on a terminal, plain lines elsewhere.

On a terminal a bar is one live line fitted to the terminal's width (see
:func:`bar_line`), and each milestone (an epoch with its metrics) is printed as
a line of its own above it, so the history stays on the screen. When stderr is
not a terminal (a log file, a CI log, a notebook cell), a bar prints plain
lines instead of redrawing: a count line once another tenth of the work is
done and 30 s have passed since the last line, a line for each milestone and
a line at the end; a count line and a milestone due at the same step make one
line. A transient bar prints nothing there. In a Jupyter kernel (a notebook
cell) a bar is one output of the cell redrawn in place (IPython's display
handles: no widgets needed), holding the milestones' lines above the bar as a
terminal shows them; a transient bar is cleared when done.
``TOOLKIT_NO_PROGRESS=1`` silences all of them.
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from rich.cells import cell_len, set_cell_size
from rich.console import Console, Group, RenderableType
from rich.jupyter import JUPYTER_HTML_FORMAT
from rich.progress import Progress
from rich.text import Text

console = Console(stderr=True)
"""Where progress and status lines go (stderr, so stdout stays parseable)."""

PLAIN_STEPS = 10
"""A plain count line needs another 1/PLAIN_STEPS of the work done since the last line..."""
PLAIN_INTERVAL = 30.0
"""...and this many seconds passed since the last line."""

BAR_MIN_WIDTH = 10
"""Narrowest bar drawn on a terminal; with less room the bar is left out."""
BAR_MAX_WIDTH = 40
"""Widest bar drawn on a terminal."""
FIELDS_MIN_WIDTH = 16
"""Width the fields (``epoch 3/12 loss 1.234``) keep before the bar and the times get room."""
JUPYTER_INTERVAL = 0.5
"""Seconds between two redraws of a bar in a notebook cell (milestones redraw at once)."""


def warn(message: str) -> None:
    """One ``warning: ...`` line on stderr (always, even with progress off)."""
    console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)


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
    if not progress_enabled():
        yield lambda n=1, **fields: None
    elif out.is_jupyter:
        bar = JupyterBar(description, total, out, transient=transient)
        try:
            yield bar.advance
        finally:  # an interrupted cell keeps the bar as far as it went
            bar.close()
    elif transient and not out.is_terminal:
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
    with _FittedProgress(console=out, transient=transient) as progress:
        task = progress.add_task(description, total=total, info="")

        def advance(n: int = 1, *, milestone: bool = False, **fields: object) -> None:
            if milestone:  # a line of its own above the bar, which keeps its running fields
                progress.update(task, advance=n)
                progress.refresh()  # the bar redrawn under the line shows this step
                line = f"{description} {format_fields(fields)}" if fields else description
                progress.console.print(line, markup=False, highlight=False)
            else:
                info = {"info": format_fields(fields)} if fields else {}
                progress.update(task, advance=n, **info)

        yield advance


class _FittedProgress(Progress):
    """A rich progress whose tasks are each one line fitted to the console's width."""

    def get_renderables(self) -> Iterator[RenderableType]:
        for task in self.tasks:
            if task.visible:
                yield bar_line(
                    task.description,
                    int(task.completed),
                    None if task.total is None else int(task.total),
                    task.elapsed,
                    task.time_remaining,
                    str(task.fields.get("info", "")),
                    self.console.width,
                )


def bar_line(
    description: str,
    done: int,
    total: int | None,
    elapsed: float | None,
    remaining: float | None,
    fields: str,
    width: int,
) -> Text:
    """A terminal progress line at most ``width`` cells wide:
    ``description bar done/total elapsed remaining fields``.

    The description and the count always stay (the description is cut when
    even they do not fit). The rest is taken in this order while it fits, the
    first part that does not fit ending the line: the fields' first
    :data:`FIELDS_MIN_WIDTH` cells (or what is left, cut), the bar at
    :data:`BAR_MIN_WIDTH`, the elapsed time, the time remaining. The width
    left then goes to the whole fields, then to a bar up to
    :data:`BAR_MAX_WIDTH`. Fields that do not fit are cut with an ellipsis.
    """
    count = f"{done}/{'?' if total is None else total}"
    times = [_clock(elapsed), _clock(remaining)]
    room = width - cell_len(count) - 1
    head = description if cell_len(description) <= room else _cut(description, max(0, room))
    room -= cell_len(head)
    field_cells = bar_cells = 0
    shown_times: list[str] = []
    wanted = min(cell_len(fields), FIELDS_MIN_WIDTH)
    if wanted and room < wanted + 1:
        field_cells = max(0, room - 1)
        room = 0
    else:
        if wanted:
            field_cells, room = wanted, room - wanted - 1
        if room >= BAR_MIN_WIDTH + 1:
            bar_cells, room = BAR_MIN_WIDTH, room - BAR_MIN_WIDTH - 1
            for text in times:
                if room < cell_len(text) + 1:
                    break
                shown_times.append(text)
                room -= cell_len(text) + 1
    if field_cells:
        grow = min(cell_len(fields) - field_cells, room)
        field_cells, room = field_cells + grow, room - grow
    if bar_cells:
        bar_cells += min(BAR_MAX_WIDTH - bar_cells, room)

    line = Text(head, style="bold", no_wrap=True, overflow="ellipsis")
    if bar_cells:
        filled = bar_cells if not total else min(bar_cells, round(bar_cells * done / total))
        line.append(" ")
        line.append("━" * filled, style="bar.finished" if filled == bar_cells else "bar.complete")
        line.append("━" * (bar_cells - filled), style="bar.back")
    line.append(" ")
    line.append(count, style="progress.download")
    for text, style in zip(shown_times, ("progress.elapsed", "progress.remaining"), strict=False):
        line.append(" ")
        line.append(text, style=style)
    if field_cells:
        line.append(" " + _cut(fields, field_cells))
    return line


def _cut(text: str, cells: int) -> str:
    """``text`` in at most ``cells`` cells, its end replaced by ``…`` when cut."""
    if cell_len(text) <= cells:
        return text
    return set_cell_size(text, max(0, cells - 1)) + "…" if cells else ""


def _clock(seconds: float | None) -> str:
    """``65.3`` -> ``0:01:05``; ``None`` -> ``-:--:--``."""
    return "-:--:--" if seconds is None else str(timedelta(seconds=int(seconds)))


class CellDisplay:
    """One output of the running notebook cell, redrawn in place with a rich renderable.

    Uses IPython's display handles (``display_id``), so it needs no widget library;
    IPython is imported only here, that is only inside a Jupyter kernel.
    """

    def __init__(self, renderable: RenderableType, out: Console) -> None:
        """Show ``renderable`` as a new output of the cell, as ``out`` would print it."""
        from IPython.display import display

        self.out = out
        self.handle: Any = display(self._bundle(renderable), raw=True, display_id=True)

    def update(self, renderable: RenderableType | None) -> None:
        """Redraw the output as ``renderable`` (``None``: an empty output)."""
        bundle = {"text/plain": ""} if renderable is None else self._bundle(renderable)
        self.handle.update(bundle, raw=True)

    def _bundle(self, renderable: RenderableType) -> dict[str, str]:
        """``renderable`` as notebook data: plain text, and HTML with rich's colours."""
        record = Console(
            file=io.StringIO(), record=True, width=self.out.width, force_terminal=True,
            force_jupyter=False, color_system="truecolor",
        )  # fmt: skip
        record.print(renderable)
        html = record.export_html(inline_styles=True, code_format=JUPYTER_HTML_FORMAT, clear=False)
        return {"text/plain": record.export_text().rstrip("\n"), "text/html": html}


class JupyterBar:
    """A bar in a notebook cell: one output holding the milestones' lines and the bar,
    redrawn at each milestone and at most every :data:`JUPYTER_INTERVAL` seconds between."""

    def __init__(
        self,
        description: str,
        total: int,
        out: Console,
        *,
        transient: bool = False,
        interval: float = JUPYTER_INTERVAL,
    ) -> None:
        """Show a bar over ``total`` steps of ``description`` in the running cell."""
        self.description = description
        self.total = total
        self.out = out
        self.transient = transient
        self.interval = interval
        self.done = 0
        self.info = ""
        self.lines: list[str] = []
        self.started = self.drawn = time.monotonic()
        self.display = CellDisplay(self.renderable(), out)

    def advance(self, n: int = 1, *, milestone: bool = False, **fields: object) -> None:
        """Count ``n`` more steps; a ``milestone`` adds its line above the bar."""
        self.done += n
        if milestone:
            line = self.description
            self.lines.append(f"{line} {format_fields(fields)}" if fields else line)
        elif fields:
            self.info = format_fields(fields)
        if milestone or time.monotonic() - self.drawn >= self.interval:
            self.redraw()

    def close(self) -> None:
        """The final redraw (a transient bar with no milestone line leaves an empty output)."""
        self.redraw(final=True)

    def redraw(self, final: bool = False) -> None:
        """Redraw the cell's output now."""
        self.drawn = time.monotonic()
        if final and self.transient:
            self.display.update(Text("\n".join(self.lines)) if self.lines else None)
        else:
            self.display.update(self.renderable())

    def renderable(self) -> RenderableType:
        """The milestones' lines, then the bar as a terminal draws it."""
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if self.done and elapsed > 0 else 0.0
        remaining = (self.total - self.done) / rate if rate else None
        bar = bar_line(
            self.description, self.done, self.total, elapsed, remaining, self.info, self.out.width
        )
        return Group(*(Text(line) for line in self.lines), bar)


def format_fields(fields: dict[str, object]) -> str:
    """``{"epoch": "3/12", "loss": "1.234"}`` -> ``epoch 3/12 loss 1.234``."""
    return " ".join(f"{key} {value}" for key, value in fields.items())


class PlainProgress:
    """Progress as plain lines, for a stderr that is not a terminal.

    A count line that falls due is held until the next step is counted (or the
    bar closes), so that a milestone coming first replaces it: the two would
    print at the same moment, and the milestone's line has the metrics.
    """

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
        self.held: str | None = None
        """A count line due at the last step, printed when the next one starts."""

    def advance(self, n: int = 1, *, milestone: bool = False, **fields: object) -> None:
        """Count ``n`` more steps; print a line at a milestone, hold one when it is due."""
        if self.held is not None and n and not milestone:
            self._print(self.held)
        self.held = None
        self.done += n
        if fields:
            self.fields = fields
        if milestone:
            self.print_line()
        elif self.done >= self.next_done and time.monotonic() - self.last_time >= self.interval:
            self.held = self._line()
            self.last_time, self.last_done = time.monotonic(), self.done
            self.next_done = self._next_threshold()

    def close(self) -> None:
        """Print the held line and the final count, unless a line already showed it."""
        if self.held is not None:
            self._print(self.held)
            self.held = None
        if self.done != self.last_done:
            self.print_line()

    def print_line(self) -> None:
        """Print ``description: done/total (pct%) elapsed fields`` now."""
        self._print(self._line())
        self.last_time, self.last_done = time.monotonic(), self.done
        self.next_done = self._next_threshold()

    def _line(self) -> str:
        """``description: done/total (pct%) elapsed fields`` as of now."""
        percent = f" ({100 * self.done // self.total}%)" if self.total > 0 else ""
        elapsed = timedelta(seconds=int(time.monotonic() - self.started))
        line = f"{self.description}: {self.done}/{self.total}{percent} {elapsed}"
        return f"{line} {format_fields(self.fields)}" if self.fields else line

    def _print(self, line: str) -> None:
        self.out.print(line, markup=False, highlight=False, soft_wrap=True)

    def _next_threshold(self) -> float:
        """The count at which the next 1/``PLAIN_STEPS`` of the total is reached."""
        if self.total <= 0:
            return math.inf
        reached = self.done * PLAIN_STEPS // self.total
        return -(-(reached + 1) * self.total // PLAIN_STEPS)


def format_seconds(seconds: float | None) -> str:
    """``75`` -> ``1m15s``; ``None`` -> ``?``."""
    if seconds is None:
        return "?"
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
