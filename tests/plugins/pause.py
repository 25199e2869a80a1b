"""A plugin file for tests that kill a run: it stops the run at a chosen point and says so.

Kill tests must not guess with sleeps how far a run has got (a fast machine
finishes first). With ``TOOLKIT_TEST_PAUSE=MARKER:N`` in its environment, the
process blocks at the N-th point reached (see below), after writing ``MARKER``;
the test waits for the marker, then kills. Points are counted from the first
one reached with that value of the variable (so tests in one process count
apart). With ``TOOLKIT_TEST_PAUSE_SECONDS=S`` too, the process waits S seconds
there and goes on (a trial that outlasts a study's timeout). Without the
variable, or at other points, both plugins change nothing: a run with them
gives the numbers it gives without them.

- augmenter ``pause``: a batch augmenter that returns its batch unchanged; a
  point is a model's first training step (the N-th model built in the process);
- separator ``pause``: keeps the mixture (like ``none``); a point is a batch of
  clips to separate.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from toolkit import BatchAugmenter, Separator, hookimpl

ENV = "TOOLKIT_TEST_PAUSE"
SECONDS_ENV = "TOOLKIT_TEST_PAUSE_SECONDS"
_REACHED: dict[str, int] = {}
"""Points reached, by value of :data:`ENV`."""


def _point() -> None:
    """Count a point; at the chosen one, write the marker and block until killed (or for
    :data:`SECONDS_ENV` seconds)."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    marker, _, n = wanted.rpartition(":")
    _REACHED[wanted] = _REACHED.get(wanted, 0) + 1
    if _REACHED[wanted] == int(n):
        Path(marker).write_text(f"paused at point {n}\n")
        seconds = os.environ.get(SECONDS_ENV)
        if seconds:
            time.sleep(float(seconds))
            return
        while True:
            time.sleep(60)


class Pause(BatchAugmenter):
    """The identity on every batch; the model's first step is a point."""

    def __init__(self) -> None:
        self.started = False

    def __call__(self, x, y, generator):  # type: ignore[no-untyped-def]
        if not self.started:
            self.started = True
            _point()
        return x, y


class PauseSeparator(Separator):
    """Keeps the mixture; each batch is a point."""

    def separate(self, waves):  # type: ignore[no-untyped-def]
        _point()
        return waves


@hookimpl
def register_augmenters(register):  # type: ignore[no-untyped-def]
    register("pause", Pause, description="identity; blocks at a chosen model (tests)")


@hookimpl
def register_separators(register):  # type: ignore[no-untyped-def]
    register(
        "pause",
        PauseSeparator,
        input_sample_rate=None,
        input_channels=1,
        description="keeps the mixture; blocks at a chosen batch (tests)",
    )
