"""A run folder that is always whole: a plain run writes beside it and swaps in at the end.

A plain run writes its files into ``.NAME.partial`` beside its folder ``NAME``; when
its model is saved, :meth:`StagedFolder.commit` moves the earlier run aside
(``.NAME.old``), renames the new one into place, brings back what the folder keeps
across runs (its leaderboard database, its ``reproduce/`` folder) and removes the
earlier run. Whenever the process is stopped, ``NAME`` holds either the earlier run,
untouched, or the new one, complete. A run folder that is a mount point (a disk of its
own) cannot be renamed: the run is staged in its ``.partial/`` folder, marked complete
when written, then its files are moved up in place of the earlier run's (moved to
``.old/`` and removed); a move cut short is finished by the next run.

The next run finishes or undoes a swap cut short (:meth:`StagedFolder.recover`) and
starts its staging folder afresh, keeping only the finished folds of a cross-validated
run killed half-way (each is checked against the recipe before it is reused).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from toolkit.disk import disk_errors
from toolkit.leaderboard.location import RUN_DB_NAME
from toolkit.runs.model_key import REPRODUCE
from toolkit.runs.run_dir import RunDir

KEPT = (RUN_DB_NAME, f"{RUN_DB_NAME}-wal", f"{RUN_DB_NAME}-shm", REPRODUCE)
"""Entries of a run folder that belong to the folder, not to one run: a new run keeps them."""

COMPLETE = ".complete"
"""Marks a staging folder inside a mount point as whole: its files replace the run's."""

FOLD_PREFIX = "fold"
"""A cross-validated model's fold folders (``fold1``...), reused from a killed run."""


@dataclass(frozen=True)
class StagedFolder:
    """The run folder ``target`` and the folders beside it a plain run swaps through."""

    target: Path

    @property
    def inside(self) -> bool:
        """Whether the run is staged inside its folder (a mount point cannot be renamed)."""
        return os.path.ismount(self.target)

    @property
    def staging(self) -> Path:
        """Where the new run is written: ``.NAME.partial`` beside the folder (inside it,
        ``.partial``, for a mount point)."""
        if self.inside:
            return self.target / ".partial"
        return self.target.parent / f".{self.target.name}.partial"

    @property
    def aside(self) -> Path:
        """Where the earlier run waits while the new one is moved in: ``.NAME.old`` (inside
        a mount point, ``.old``)."""
        if self.inside:
            return self.target / ".old"
        return self.target.parent / f".{self.target.name}.old"

    def recover(self) -> None:
        """Finish or undo a swap a killed process cut short: the earlier run put back when
        the new one never arrived, else what the folder keeps brought over and the rest
        removed."""
        if self.inside:
            if (self.staging / COMPLETE).exists():
                self._move_up()
            elif self.aside.exists():  # the move was done, its last removal not
                shutil.rmtree(self.aside)
            return
        if not self.aside.exists():
            return
        with disk_errors(self.target.parent):
            if not self.target.exists():
                os.replace(self.aside, self.target)
                return
            self._bring_back()
            shutil.rmtree(self.aside)

    def begin(self) -> RunDir:
        """A fresh staging folder for a new run (a killed run's finished folds kept, and the
        earlier run's folds linked in: each is reused if it holds the recipe asked for)."""
        self.recover()
        with disk_errors(self.target.parent):
            if self.staging.is_dir():
                for entry in self.staging.iterdir():
                    if not (entry.is_dir() and entry.name.startswith(FOLD_PREFIX)):
                        _remove(entry)
            self.staging.mkdir(parents=True, exist_ok=True)
            if not self.inside and self.target.is_dir():
                for fold in self.target.glob(f"{FOLD_PREFIX}*"):
                    if fold.is_dir() and not (self.staging / fold.name).exists():
                        # hard links: files are replaced by rename, never written in place
                        shutil.copytree(fold, self.staging / fold.name, copy_function=_link)
        return RunDir(self.staging)

    def commit(self) -> RunDir:
        """Swap the staged run in for the earlier one; returns the run folder."""
        if self.inside:
            with disk_errors(self.target):
                (self.staging / COMPLETE).touch()
                self._move_up()
            return RunDir(self.target)
        with disk_errors(self.target.parent):
            if self.target.exists():
                os.replace(self.target, self.aside)
            os.replace(self.staging, self.target)
            if self.aside.exists():
                self._bring_back()
                shutil.rmtree(self.aside)
        return RunDir(self.target)

    def _move_up(self) -> None:
        """Inside a mount point: the earlier run's files to ``.old``, the complete staged
        run's up into the folder, both folders then removed (each step safe to repeat)."""
        self.aside.mkdir(exist_ok=True)
        own = {self.staging.name, self.aside.name, *KEPT}
        for entry in self.target.iterdir():
            if entry.name not in own:
                os.replace(entry, self.aside / entry.name)
        for entry in self.staging.iterdir():
            if entry.name != COMPLETE:
                os.replace(entry, self.target / entry.name)
        shutil.rmtree(self.staging)
        shutil.rmtree(self.aside)

    def _bring_back(self) -> None:
        """Move what the folder keeps across runs from the earlier run into the new one."""
        for name in KEPT:
            old, new = self.aside / name, self.target / name
            if (old.exists() or old.is_symlink()) and not (new.exists() or new.is_symlink()):
                os.replace(old, new)


def _link(source: str, target: str) -> None:
    """A hard link of ``source`` at ``target`` (a copy where the file system has none)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink(missing_ok=True)
