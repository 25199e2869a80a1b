"""A set of a folder's files replaced as one: written aside, then moved in together.

A study's folder keeps its trials and its Optuna storage across runs (a rerun resumes
them), so it cannot be swapped whole as a plain run's is (:mod:`toolkit.runs.staging`).
Its own files (the ensemble's submission and probabilities, ``ensemble.json``, the
recipe, the data, the stats) are the set a run replaces: they are written into
``.staged/`` inside the folder; :meth:`StagedFiles.commit` writes the list of them
(``.staged/.complete``), then moves each into place and removes the ones of the set
the new run did not write. Whenever the process is stopped, the folder holds the
earlier run's set untouched, or (once ``.complete`` exists) a set the next
:meth:`StagedFiles.recover` completes; a staging folder without ``.complete`` is the
unfinished work of a stopped run, thrown away.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from toolkit.disk import disk_errors

STAGED = ".staged"
"""The folder, inside the run folder, that a run's files are written into first."""

COMPLETE = ".complete"
"""Inside :data:`STAGED`: the names of a whole set, written when the set is; from then on
the set replaces the folder's."""


@dataclass(frozen=True)
class StagedFiles:
    """The files of ``owned`` in ``folder``, replaced as one set through :data:`STAGED`."""

    folder: Path
    owned: tuple[str, ...]

    @property
    def staging(self) -> Path:
        """Where the new set is written."""
        return self.folder / STAGED

    def begin(self) -> Path:
        """A fresh staging folder (a complete set left by a stopped run is moved in first,
        an incomplete one thrown away); returns it."""
        self.recover()
        with disk_errors(self.folder):
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging.mkdir(parents=True)
        return self.staging

    def commit(self) -> None:
        """Move the staged set into the folder, in place of the earlier set."""
        names = sorted(entry.name for entry in self.staging.iterdir())
        unknown = set(names) - set(self.owned)
        if unknown:
            raise ValueError(f"staged files outside the set: {', '.join(sorted(unknown))}")
        with disk_errors(self.folder):
            _write_list(self.staging / COMPLETE, names)
            self._move_in(names)

    def recover(self) -> None:
        """Finish moving in a complete set that a stopped process left half moved."""
        marker = self.staging / COMPLETE
        if not marker.is_file():
            return
        with disk_errors(self.folder):
            self._move_in(marker.read_text().split())

    def _move_in(self, names: Iterable[str]) -> None:
        """Each staged file into place, then the set's files the new run did not write
        removed, then the staging folder (each step safe to repeat)."""
        names = list(names)
        for name in names:
            staged = self.staging / name
            if staged.exists():
                os.replace(staged, self.folder / name)
        for name in set(self.owned) - set(names):
            (self.folder / name).unlink(missing_ok=True)
        shutil.rmtree(self.staging)


def _write_list(path: Path, names: list[str]) -> None:
    """The set's names, one a line, written whole before it counts."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_text("".join(f"{name}\n" for name in names))
    os.replace(partial, path)
