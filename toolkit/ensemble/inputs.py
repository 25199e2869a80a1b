"""What the ensemble of a study works with: the study's parts it reads and writes, nothing else.

The study (:class:`toolkit.study.run.StudyRun`) wires them; the ensemble's
modules take this, so they depend on these parts and not on the study.
"""

from __future__ import annotations

from dataclasses import dataclass

from toolkit.leaderboard.store import Leaderboard
from toolkit.recipe.schema import Recipe
from toolkit.runs.run_dir import RunDir
from toolkit.study.handle import StudyHandle
from toolkit.study.models import StudyModels
from toolkit.study.settings import StudySettings


@dataclass(frozen=True)
class EnsembleInputs:
    """The parts of a study its ensemble uses."""

    settings: StudySettings
    """Which study: its name, storage, search (profiles), metric and run folder."""
    recipe: Recipe
    """The study's recipe: its ensemble, semi_supervised, split and data."""
    handle: StudyHandle
    """The Optuna study: its complete trials."""
    models: StudyModels
    """The factory of variants (seed copies, refits, pseudo-labelled copies)."""
    board: Leaderboard
    """Where the bags' and the ensemble's rows go."""
    folder: RunDir
    """The run folder: the trials' and variants' files."""
