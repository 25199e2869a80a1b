"""The models that make a finished run's submission, and how their predictions combine.

A study's submission is its ensemble (``ensemble.json``, read as its
:class:`~toolkit.runs.records.EnsembleRecord`): its members, each a
trial or a seed copy (a chosen bag is already shared out among its models),
with their weights, blended by :func:`toolkit.ensemble.selection.blend`. With
refit (``ensemble.json``'s ``refit``: trial id -> refit id), each chosen trial's
refit on every clip replaces its models, with their weights summed
(:func:`toolkit.ensemble.members.trial_weights`). A stacked ensemble
(``method: stack``) applies its level-2 model, saved in ``ensemble.json``, to
its inputs' probabilities side by side (an input that is a bag: its models'
mean). A plain run's submission is its own model, whose probabilities are taken
as they are. The folder may also
be one model's (a trial's, say), or an export of the run (the same files).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from toolkit.ensemble.members import bag_mean, trial_weights
from toolkit.errors import ModelError, error_at
from toolkit.runs.model_key import ModelKey
from toolkit.runs.records import EnsembleRecord, read_ensemble
from toolkit.runs.run_dir import ENSEMBLE, RECIPE, RunDir

if TYPE_CHECKING:
    from toolkit.ensemble.stacking import StackModel  # scikit-learn: only for a stack


@dataclass(frozen=True)
class ChosenModel:
    """One model of the submission: its id, its folder and its weight in the blend."""

    id: str
    folder: RunDir
    weight: float


@dataclass(frozen=True)
class Stack:
    """A stacked ensemble's level-2 model and its inputs, in the order it reads them."""

    model: StackModel
    inputs: tuple[str, ...]
    bags: dict[str, tuple[str, ...]]
    """The inputs that are bags, and their models."""

    def models(self) -> list[str]:
        """Every model an input is made of, in the inputs' order."""
        return [m for i in self.inputs for m in self.bags.get(i, (i,))]

    def probabilities(self, probs: dict[str, np.ndarray]) -> np.ndarray:
        """The level-2 model's probabilities, from every model's (id -> ``[N, K]``)."""
        from toolkit.ensemble.stacking import stacked_probabilities

        level_one = {
            i: bag_mean([probs[m] for m in self.bags[i]]) if i in self.bags else probs[i]
            for i in self.inputs
        }
        return stacked_probabilities(self.model, level_one, self.inputs)


@dataclass(frozen=True)
class Choice:
    """The models of a run's submission, and how their probabilities combine."""

    run_dir: Path
    models: tuple[ChosenModel, ...]
    blended: bool
    """Whether the models' probabilities are combined (an ensemble); else the one model's
    are the submission's as they are."""
    stack: Stack | None = None
    """A stacked ensemble's level-2 model (else the models' weights blend them)."""

    @property
    def weights(self) -> dict[str, float]:
        """Model id -> weight, in the ensemble's order."""
        return {m.id: m.weight for m in self.models}

    def combine(self, probs: dict[str, np.ndarray]) -> np.ndarray:
        """The submission's probabilities from each model's (id -> ``[N, K]``): the one
        model's, the stack's, or the weighted blend."""
        if not self.blended:
            return next(iter(probs.values()))
        if self.stack is not None:
            return self.stack.probabilities(probs)
        from toolkit.ensemble.selection import blend

        return blend(probs, self.weights)


def chosen_models(run_dir: Path | str) -> Choice:
    """The models ``run_dir``'s submission is made of (see the module docstring); a folder
    that holds neither an ensemble nor a model is a one-line error."""
    run_dir = Path(run_dir)
    run_folder = RunDir(run_dir)
    if not run_dir.is_dir():
        raise ModelError(f"{run_dir}: run directory not found")
    record = read_ensemble(run_folder)
    if record is not None:
        weights = record.weights
        if record.refit:
            weights = {record.refit[trial]: w for trial, w in trial_weights(weights).items()}
        stack = _stack(record, run_folder.file(ENSEMBLE))
        if stack is not None:  # every input counts, whatever its share of the coefficients
            weights = {m: weights.get(m, 0.0) for m in stack.models()}
        models = tuple(
            ChosenModel(model_id, run_folder.model(_key(model_id, run_folder)), weight)
            for model_id, weight in weights.items()
        )
        return Choice(run_dir, models, blended=True, stack=stack)
    if run_folder.file(RECIPE).is_file():
        return Choice(run_dir, (ChosenModel(run_dir.name, run_folder, 1.0),), blended=False)
    raise ModelError(
        f"{run_dir}: neither {ENSEMBLE} nor {RECIPE}; give a run directory written by "
        "toolkit run (a study's, a plain run's or one model's folder) or an export of one"
    )


def _stack(record: EnsembleRecord, path: Path) -> Stack | None:
    """The level-2 model of a stacked ensemble (``None`` for a greedy one)."""
    if record.method != "stack":
        return None
    from toolkit.ensemble.stacking import StackModel

    saved = record.stack
    if saved is None or saved.model is None:
        raise ModelError(
            f"{path}: a stacked ensemble without its level-2 model (made by an older "
            "toolkit); run 'toolkit run' on its recipe again: its trials are found done and "
            "the ensemble is fitted anew"
        )
    try:
        model = StackModel.from_dict(saved.model)
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"{path}: damaged ensemble file (its stack)") from None
    return Stack(model, tuple(saved.inputs), {b: tuple(ms) for b, ms in saved.bags.items()})


def _key(model_id: str, run_folder: RunDir) -> ModelKey:
    try:
        return ModelKey.parse(model_id)
    except ValueError as exc:
        raise ModelError(error_at(run_folder.file(ENSEMBLE), exc)) from None
