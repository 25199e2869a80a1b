"""Which model is which: one small value names every model of a run.

A :class:`ModelKey` is the only place that turns into a leaderboard id, a
folder of the run directory and a row kind, and back:

============  ===========================  =============================
kind          id                           folder (in the run directory)
============  ===========================  =============================
run           ``RUN/r20261128-131502-118``  the run directory itself
trial         ``RUN/t0003``                 ``trials/t0003``
seed          ``RUN/t0003-s1``              ``trials/t0003/seed1``
bag           ``RUN/t0003-bag``             ``trials/t0003/bag``
refit         ``RUN/t0003-refit``           ``trials/t0003/refit``
pseudo        ``RUN/t0003-pseudo``          ``trials/t0003/pseudo``
ensemble      ``RUN/e2``                    the run directory itself
reproduction  ``RUN/t0003-again1``          ``reproduce/t0003-again1``
============  ===========================  =============================

``RUN`` is the run's name: the run directory's for a study, the recipe's for
a plain run. A seed copy is its trial retrained with ``train.seed + index``; a
bag averages a trial and its seed copies; a refit is the trial retrained on
every train clip; a pseudo-labelled copy is the trial trained again with the test
clips its study's ensemble is sure of (:mod:`toolkit.training.pseudo_labels`); a reproduction
is a row trained again by ``toolkit reproduce`` (``again`` and a count after the id
it reproduces).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

Kind = Literal["run", "trial", "seed", "bag", "refit", "pseudo", "ensemble", "reproduction"]

KINDS: tuple[Kind, ...] = (
    "run", "trial", "seed", "bag", "refit", "pseudo", "ensemble", "reproduction"
)  # fmt: skip
"""Every kind of model, as leaderboard rows name them."""

VARIANT_KINDS: tuple[Kind, ...] = ("seed", "bag", "refit", "pseudo")
"""Kinds that are made from a trial."""

TRIALS = "trials"
REPRODUCE = "reproduce"

_PATTERNS: tuple[tuple[Kind, re.Pattern[str]], ...] = (
    ("trial", re.compile(r"t(?P<trial>\d{4,})")),
    ("seed", re.compile(r"t(?P<trial>\d{4,})-s(?P<seed>\d+)")),
    ("bag", re.compile(r"t(?P<trial>\d{4,})-bag")),
    ("refit", re.compile(r"t(?P<trial>\d{4,})-refit")),
    ("pseudo", re.compile(r"t(?P<trial>\d{4,})-pseudo")),
    ("ensemble", re.compile(r"e(?P<number>\d+)")),
    ("run", re.compile(r"(?P<stamp>r\d{8}-\d{6}-\d{3})")),
    ("reproduction", re.compile(r"(?P<original>.+)-again(?P<number>\d+)")),
)
"""The name part of each kind's id (after ``RUN/``), tried in this order."""


@dataclass(frozen=True)
class ModelKey:
    """One model of a run: its kind and the numbers that tell it from its siblings."""

    run: str
    """The run's name: the id's first part."""
    kind: Kind
    trial: int | None = None
    """The trial number of a trial, seed copy, bag or refit."""
    seed: int | None = None
    """A seed copy's index (it trains with ``train.seed + seed``)."""
    number: int | None = None
    """An ensemble's number, or a reproduction's count."""
    stamp: str | None = None
    """A plain run's time stamp (``r`` and the time it started)."""
    original: str | None = None
    """The name part of the model a reproduction reproduces."""

    # ------------------------------------------------------------ making keys
    @classmethod
    def plain_run(cls, run: str, when: datetime | None = None) -> ModelKey:
        """A plain run started ``when`` (default: now)."""
        when = when or datetime.now()
        return cls(run, "run", stamp=f"r{when:%Y%m%d-%H%M%S}-{when.microsecond // 1000:03d}")

    @classmethod
    def of_trial(cls, run: str, number: int) -> ModelKey:
        """Trial ``number`` of a study."""
        return cls(run, "trial", trial=number)

    @classmethod
    def ensemble(cls, run: str, number: int) -> ModelKey:
        """Ensemble ``number`` of a study."""
        return cls(run, "ensemble", number=number)

    def seed_copy(self, index: int) -> ModelKey:
        """This trial retrained with ``train.seed + index``."""
        return ModelKey(self.run, "seed", trial=self._trial_number(), seed=index)

    def bag(self) -> ModelKey:
        """This trial averaged with its seed copies."""
        return ModelKey(self.run, "bag", trial=self._trial_number())

    def refit(self) -> ModelKey:
        """This trial retrained on every train clip."""
        return ModelKey(self.run, "refit", trial=self._trial_number())

    def pseudo_labelled(self) -> ModelKey:
        """This trial retrained with pseudo-labelled test clips."""
        return ModelKey(self.run, "pseudo", trial=self._trial_number())

    def reproduction(self, count: int) -> ModelKey:
        """The ``count``-th reproduction of this model."""
        return ModelKey(self.run, "reproduction", number=count, original=self.name)

    def trial_key(self) -> ModelKey:
        """The trial this model was made from (a trial is its own)."""
        return ModelKey.of_trial(self.run, self._trial_number())

    def _trial_number(self) -> int:
        if self.trial is None:
            raise ValueError(f"{self.id} is not made from a trial")
        return self.trial

    # ------------------------------------------------------------- what it is
    @property
    def name(self) -> str:
        """The id's part after ``RUN/``."""
        if self.kind == "run":
            return str(self.stamp)
        if self.kind == "ensemble":
            return f"e{self.number}"
        if self.kind == "reproduction":
            return f"{self.original}-again{self.number}"
        trial = f"t{self._trial_number():04d}"
        suffix = {
            "trial": "", "seed": f"-s{self.seed}", "bag": "-bag", "refit": "-refit",
            "pseudo": "-pseudo",
        }  # fmt: skip
        return trial + suffix[self.kind]

    @property
    def id(self) -> str:
        """Its leaderboard id, ``RUN/NAME``."""
        return f"{self.run}/{self.name}"

    def folder(self, run_dir: Path | str) -> Path:
        """Its folder in the run directory ``run_dir`` (see the module docstring)."""
        run_dir = Path(run_dir)
        if self.kind in ("run", "ensemble"):
            return run_dir
        if self.kind == "reproduction":
            return run_dir / REPRODUCE / self.name
        trial = run_dir / TRIALS / f"t{self._trial_number():04d}"
        leaf = {
            "trial": None, "seed": f"seed{self.seed}", "bag": "bag", "refit": "refit",
            "pseudo": "pseudo",
        }  # fmt: skip
        part = leaf[self.kind]
        return trial if part is None else trial / part

    @classmethod
    def parse(cls, id: str) -> ModelKey:
        """The key of a leaderboard id; a ValueError names an id no kind makes."""
        run, sep, name = id.rpartition("/")
        if not sep or not run:
            raise ValueError(f"{id!r} is not a model id (RUN/NAME)")
        for kind, pattern in _PATTERNS:
            found = pattern.fullmatch(name)
            if found is None:
                continue
            parts = found.groupdict()
            return cls(
                run,
                kind,
                trial=int(parts["trial"]) if parts.get("trial") else None,
                seed=int(parts["seed"]) if parts.get("seed") else None,
                number=int(parts["number"]) if parts.get("number") else None,
                stamp=parts.get("stamp"),
                original=parts.get("original"),
            )
        raise ValueError(f"{id!r}: no model is named {name!r} (RUN/t0003, RUN/e1, ...)")

    @classmethod
    def kind_of(cls, id: str) -> Kind | None:
        """The kind of a leaderboard id, or ``None`` for an id no kind makes."""
        try:
            return cls.parse(id).kind
        except ValueError:
            return None
