"""A live view of a running study: trials finished, pruned and running, best so far, time left.

The view is a rich ``Live`` on stderr, redrawn twice a second and updated by
the search after every epoch and every trial. In a Jupyter kernel it is one
output of the cell, redrawn by the search and left showing the final count.
``TOOLKIT_NO_PROGRESS=1`` or a stderr that is not a terminal (a log file, a CI
log) turns the live part off, so nothing is redrawn; the one-line log of each
finished trial is printed either way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import TracebackType

from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from toolkit.progress import CellDisplay, console, format_seconds, progress_enabled


@dataclass
class StudyStatus:
    """What the live view shows; the search fills it in from the study's storage."""

    study: str
    metric: str
    n_trials: int
    timeout: float | None = None
    complete: int = 0
    pruned: int = 0
    running: int = 0
    failed: int = 0
    best_value: float | None = None
    best_trial: int | None = None
    current: str = ""
    trial_seconds: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def finished(self) -> int:
        """Trials that count toward ``n_trials``: complete and pruned ones."""
        return self.complete + self.pruned

    @property
    def left(self) -> int:
        """Trials still to finish."""
        return max(0, self.n_trials - self.finished)

    def elapsed(self) -> float:
        """Seconds since this worker started."""
        return time.monotonic() - self.started

    def time_left(self) -> tuple[float | None, str]:
        """Seconds left and how they are known: ``timeout``, ``estimate`` or ``""``."""
        estimate = None
        if self.trial_seconds and self.left:
            mean = sum(self.trial_seconds) / len(self.trial_seconds)
            estimate = mean * self.left / max(1, self.running)
        if self.timeout is not None:
            remaining = max(0.0, self.timeout - self.elapsed())
            if estimate is None or remaining <= estimate:
                return remaining, "timeout"
        if estimate is not None:
            return estimate, "estimate"
        return (0.0, "") if not self.left else (None, "")


def render_status(status: StudyStatus) -> RenderableType:
    """The status as a small rich table (also used for the final summary)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    counts = Text()
    counts.append(f"{status.finished}/{status.n_trials} finished", style="bold")
    counts.append(f"  {status.complete} complete", style="green")
    counts.append(f"  {status.pruned} pruned", style="bright_black")
    counts.append(f"  {status.running} running", style="yellow")
    counts.append(f"  {status.failed} failed", style="red" if status.failed else "")
    grid.add_row("study", f"{status.study} ({status.metric})")
    grid.add_row("trials", counts)
    if status.best_value is not None:
        grid.add_row("best", f"{status.best_value:.4f} (trial {status.best_trial})")
    else:
        grid.add_row("best", "no trial complete yet")
    left, how = status.time_left()
    suffix = f" ({how})" if how == "estimate" else ""
    grid.add_row(
        "time",
        f"{format_seconds(status.elapsed())} elapsed, {format_seconds(left)} left{suffix}",
    )
    if status.current:
        grid.add_row("now", status.current)
    return grid


class LiveView:
    """The rich live view of a study; no display when progress is off or stderr is neither a
    terminal nor a notebook cell."""

    def __init__(self, status: StudyStatus, enabled: bool | None = None) -> None:
        self.status = status
        if enabled is None:
            enabled = progress_enabled() and (console.is_terminal or console.is_jupyter)
        self.enabled = enabled
        self._live: Live | None = None
        self._cell: CellDisplay | None = None

    def __rich__(self) -> RenderableType:
        return Group(Text("search", style="bold magenta"), render_status(self.status))

    def __enter__(self) -> LiveView:
        if self.enabled and console.is_jupyter:
            self._cell = CellDisplay(self, console)
        elif self.enabled:
            self._live = Live(self, console=console, refresh_per_second=2, transient=True)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
            self._live = None
        self.refresh()  # a notebook cell keeps the final count
        self._cell = None

    def refresh(self) -> None:
        """Redraw now (the view also redraws by itself twice a second)."""
        if self._live is not None:
            self._live.refresh()
        elif self._cell is not None:
            self._cell.update(self)

    def log(self, message: str) -> None:
        """Print one line above the live view (always, even with progress off)."""
        console.print(message, highlight=False, soft_wrap=True)
