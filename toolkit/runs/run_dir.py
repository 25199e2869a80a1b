"""The layout of a run directory: its file names, and every writer and reader of them.

A run directory holds one model (a plain run), or a study: its trials under
``trials/tNNNN/`` (each a model folder; its seed copies, bag and refit in
folders of their own inside, see :mod:`toolkit.runs.model_key`), and the ensemble's
files at the top. A model folder holds:

============================  ==================================================
``recipe.yaml``               the resolved recipe
``stats.json``                what the cached stages computed and reused
``data.json``                 the data the run read: its folder and the digest of its
                              train CSV and sample submission (a run's top level only)
``metrics.csv``               one row per epoch (see the trainer)
``best.pt``                   the best epoch's weights, backbone block, classes
``val_probs.npy|csv``         validation probabilities (the csv with labels)
``test_probs.npy|csv``        test probabilities
``submission.csv``            the sample submission filled in
``pseudo_labels.json``        with ``semi_supervised``: a plain run's pseudo-label round
                              (clips, both rounds' metric, whether the second was
                              kept), or the pseudo-labels a study's second-round
                              model trained with (their digest, clips per fold)
``model.json``                the finished model's record: its id, best epoch, metric
                              values and files (:mod:`toolkit.runs.records`); a bag's
                              folder has it too
============================  ==================================================

A cross-validated model (``split.folds: K``) keeps each fold's model folder in
``foldK/``; its own ``val_probs`` are then out-of-fold, one row per train clip,
its ``test_probs`` the folds' mean, its ``metrics.csv`` every fold's epochs (a
``fold`` column) and it has no ``best.pt``. A refit (the model retrained on
every train clip) has no validation files; a bag (a trial and its seed copies
averaged) only its probabilities, submission and record.

:meth:`RunDir.holds` is the one rule for whether a model folder is done: it
holds the files of a finished model of exactly the recipe asked for.

A run with an ensemble also ``ensemble.json`` (its record: members, weights, picks,
trajectory, the estimate) and, by default, its Optuna storage ``study.db``. A run
whose split grouped the clips by the sources it found (``split.groups: auto``)
has ``sources.json``: the groups, each clip's, and what they say of the split
without groups. A study replaces its own files (:data:`STUDY_FILES`) as one set: a run
writes them through :meth:`RunDir.staged` and moves them in with :meth:`RunDir.commit`
(:mod:`toolkit.runs.staged_files`), so a stopped run leaves the earlier set untouched.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from toolkit.data.cache import atomic_write
from toolkit.data.dataset import Competition
from toolkit.data.submission import probability_frame, write_submission
from toolkit.disk import disk_errors
from toolkit.recipe.schema import Recipe, dump_recipe
from toolkit.runs.data_identity import DATA_FILE, DataIdentity
from toolkit.runs.model_key import ModelKey
from toolkit.runs.staged_files import StagedFiles
from toolkit.validation.source_links import FoundSources

RECIPE = "recipe.yaml"
STATS = "stats.json"
METRICS = "metrics.csv"
WEIGHTS = "best.pt"
SUBMISSION = "submission.csv"
ENSEMBLE = "ensemble.json"
PSEUDO_LABELS = "pseudo_labels.json"
SOURCES = "sources.json"
STUDY = "study.db"
SPLITS = ("val", "test")
"""The predicted splits: ``val_probs.*`` and ``test_probs.*``."""

MODEL_FILES = (METRICS, *(f"{split}_probs.npy" for split in SPLITS))
"""A model's files whose numbers say whether it reproduces."""

STUDY_FILES = (
    RECIPE,
    DATA_FILE,
    STATS,
    SOURCES,
    ENSEMBLE,
    SUBMISSION,
    *(f"{split}_probs{suffix}" for split in SPLITS for suffix in (".csv", ".npy")),
)
"""A study's own files, at the top of its folder: the set a run of the study replaces whole
(its trials and its storage stay)."""


@dataclass(frozen=True)
class RunDir:
    """A run (or model) directory: where each of its files is, and how it is written and read."""

    path: Path
    staging: Path | None = None
    """Where its writers put its files until :meth:`commit` (None: in place)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # ------------------------------------------------------------ places
    def file(self, name: str) -> Path:
        """The path of one of its files (one of this module's names)."""
        return self.path / name

    def probabilities_file(self, split: str, suffix: str = ".npy") -> Path:
        """``val_probs.npy`` / ``test_probs.csv`` and the like."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; one of {', '.join(SPLITS)}")
        return self.path / f"{split}_probs{suffix}"

    def model(self, key: ModelKey) -> RunDir:
        """The folder of the model ``key`` names in this run directory."""
        return RunDir(key.folder(self.path))

    def fold(self, number: int) -> RunDir:
        """The folder of this model's fold ``number`` (1-based) when cross-validated."""
        return RunDir(self.path / f"fold{number}")

    def study_storage(self) -> str:
        """The default Optuna storage URL, ``sqlite:///RUN_DIR/study.db`` (absolute)."""
        return f"sqlite:///{self.file(STUDY).resolve()}"

    # ----------------------------------------------------------- writers
    def create(self) -> RunDir:
        """Make the folder (and its parents)."""
        with disk_errors(self.path):
            self.path.mkdir(parents=True, exist_ok=True)
        return self

    def write_recipe(self, recipe: Recipe) -> Path:
        """``recipe.yaml``: the resolved recipe."""
        return self._write_text(RECIPE, dump_recipe(recipe))

    def write_stats(self, stats: dict[str, Any]) -> Path:
        """``stats.json``: what the cached stages did."""
        return self._write_text(STATS, json.dumps(stats, indent=2))

    def write_data(self, data: DataIdentity) -> Path:
        """``data.json``: the data the run read (see :mod:`toolkit.runs.data_identity`)."""
        return self._write_text(DATA_FILE, json.dumps(data.as_dict(), indent=2))

    def write_sources(self, found: FoundSources, ids: Sequence[str]) -> Path:
        """``sources.json``: the groups ``split.groups: auto`` found, and each clip's."""
        groups = found.groups
        summary = {
            "groups": groups.count,
            "clips": len(ids),
            "largest": groups.largest,
            "alone": groups.singletons,
            "cap": groups.cap,
            "refused": groups.refused,
            "links": groups.links,
            "straddled": found.straddled,
            "pairs": found.pairs,
            "group_of": dict(zip(ids, groups.labels.tolist(), strict=True)),
        }
        return self._write_text(SOURCES, json.dumps(summary, indent=2))

    def write_history(self, history: Sequence[dict[str, float]]) -> Path:
        """``metrics.csv``: one row per epoch."""
        frame = pd.DataFrame(list(history))
        return self._put(METRICS, lambda h: frame.to_csv(h, index=False))

    def write_weights(self, state: dict[str, Any]) -> Path:
        """``best.pt``: the best epoch's weights and what rebuilds their network."""
        import torch

        return self._put(WEIGHTS, lambda h: torch.save(state, h))

    def write_probabilities(
        self,
        split: str,
        ids: Sequence[str],
        probs: np.ndarray,
        classes: Sequence[str],
        labels: np.ndarray | None = None,
        *,
        npy: bool = True,
    ) -> None:
        """``<split>_probs.csv`` (ids, true labels if given, a column per class) and ``.npy``."""
        frame = probability_frame(ids, probs, classes, labels)
        table = self.probabilities_file(split, ".csv").name
        self._put(table, lambda h: frame.to_csv(h, index=False))
        if npy:
            self._put(self.probabilities_file(split).name, lambda h: np.save(h, probs))

    def write_submission(self, competition: Competition, test_probs: np.ndarray) -> Path:
        """``submission.csv``: the sample submission filled in from test probabilities."""
        write_submission(competition, test_probs, self._target(SUBMISSION))
        return self.file(SUBMISSION)

    def write_json(self, name: str, record: dict[str, Any]) -> Path:
        """A JSON file of the folder (``ensemble.json``, ``model.json``: see
        :mod:`toolkit.runs.records`), indented."""
        return self._write_text(name, json.dumps(record, indent=2))

    def write_pseudo_labels(self, summary: dict[str, Any]) -> Path:
        """``pseudo_labels.json``: what the model's pseudo-label round did, or which
        pseudo-labels it trained with."""
        return self._write_text(PSEUDO_LABELS, json.dumps(summary, indent=2))

    def _write_text(self, name: str, text: str) -> Path:
        return self._put(name, lambda h: h.write(text.encode()))

    def _put(self, name: str, write: Callable[[Any], Any]) -> Path:
        """Write file ``name`` through ``write(handle)``, whole or not at all; its path in the
        folder (where it is once committed, when staged)."""
        atomic_write(self._target(name), write)
        return self.file(name)

    def _target(self, name: str) -> Path:
        """Where a writer puts file ``name``: the staging folder while there is one."""
        return (self.staging or self.path) / name

    # ------------------------------------------------------ a study's set
    def staged(self) -> RunDir:
        """This study folder with its own files (:data:`STUDY_FILES`) written aside, to
        replace the folder's as one set at :meth:`commit`."""
        return RunDir(self.path, staging=self._study_files().begin())

    def commit(self) -> RunDir:
        """Move the staged files in, in place of the earlier set (nothing when not staged);
        the folder, written in place from now on."""
        if self.staging is not None:
            self._study_files().commit()
        return RunDir(self.path)

    def recover(self) -> None:
        """Finish moving in a set of files a stopped run had begun to move in."""
        self._study_files().recover()

    def _study_files(self) -> StagedFiles:
        return StagedFiles(self.path, STUDY_FILES)

    def clear(self) -> None:
        """Remove the folder and everything in it (a model's folder left by older work)."""
        shutil.rmtree(self.path, ignore_errors=True)

    # ----------------------------------------------------------- readers
    def read_recipe(self) -> dict[str, Any]:
        """Its ``recipe.yaml`` as the raw mapping written (a RecipeError when it is missing
        or unreadable): the one reader of a run's or model's recipe file."""
        from toolkit.recipe.loading import read_recipe_file

        return read_recipe_file(self.file(RECIPE))

    def holds(
        self, recipe: Recipe, *, validated: bool = True, pseudo_labels: str | None = None
    ) -> bool:
        """Whether the folder holds a finished model of exactly ``recipe``: its
        ``recipe.yaml`` is that recipe, resolved, and its numbers are all there (a model
        trained on every clip, ``validated=False``, has no validation files). With
        ``pseudo_labels`` (a :meth:`~toolkit.training.pseudo_labels.PseudoLabelSet.digest`), the
        model must also have trained on exactly those pseudo-labels.

        The one rule for "is this model already done?": a fold of a resumed run, a
        trial's seed copy, refit or pseudo-labelled copy found again.
        """
        names = MODEL_FILES if validated else (METRICS, "test_probs.npy")
        if not all(self.file(name).is_file() for name in (RECIPE, *names)):
            return False
        if pseudo_labels is not None and self.pseudo_labels_digest() != pseudo_labels:
            return False
        return self.file(RECIPE).read_text() == dump_recipe(recipe)

    def pseudo_labels_digest(self) -> str | None:
        """The digest of the pseudo-labels the model trained with, from
        ``pseudo_labels.json`` (None without one, or one of a plain run's own round)."""
        try:
            record = json.loads(self.file(PSEUDO_LABELS).read_text())
        except (OSError, ValueError):
            return None
        return record.get("digest") if isinstance(record, dict) else None

    def read_probabilities(self, split: str) -> np.ndarray:
        """The saved ``[N, K]`` probabilities of ``split``."""
        return np.load(self.probabilities_file(split))

    def read_probability_table(self, split: str) -> pd.DataFrame:
        """``<split>_probs.csv``: ids, true labels (validation), a ``p_<class>`` column each."""
        return pd.read_csv(self.probabilities_file(split, ".csv"), dtype={"id": str, "label": str})

    def read_history(self) -> pd.DataFrame:
        """``metrics.csv`` as a table."""
        return pd.read_csv(self.file(METRICS))

    def read_weights(self) -> dict[str, Any]:
        """``best.pt`` as written (tensors and plain values only; no code is run)."""
        import torch

        return torch.load(self.file(WEIGHTS), map_location="cpu", weights_only=True)
