"""A study's pseudo-label round: the ensemble's chosen trials trained again with the test
clips the ensemble is sure of, kept only if the ensemble's grouped estimate improves.

With ``semi_supervised`` in the recipe, once the ensemble is chosen, every trial
it chose (directly, through a seed copy or a bag) is trained again as a
pseudo-labelled copy (``RUN/tNNNN-pseudo``, see :mod:`toolkit.runs.model_key`), on
the same folds, its training parts joined by the sure test clips (see
:mod:`toolkit.training.pseudo_labels`). Fold ``k``'s targets are the ensemble's blend of
its models' fold-``k`` test predictions: those models never trained on fold
``k``'s held-out clips, so the copies' out-of-fold predictions stay out-of-fold
(one leak remains, small: the ensemble's weights were chosen on every clip).
The copies join the candidates, the selection runs again and so does its
estimate; the new ensemble is kept only when its estimate is better than the
first's. Test clips are only ever trained on, never validated on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from toolkit.ensemble.candidates import Candidate, Pool
from toolkit.ensemble.estimate import SelectionEstimate
from toolkit.ensemble.inputs import EnsembleInputs
from toolkit.ensemble.selection import EnsembleResult, blend
from toolkit.metrics import get_metric
from toolkit.recipe.schema import PseudoLabels
from toolkit.training.pipeline import PreparedData
from toolkit.training.pseudo_labels import PseudoLabelSet
from toolkit.wording import count

Chooser = Callable[[Pool], tuple[EnsembleResult, SelectionEstimate]]
"""The ensemble's selection and its estimate over a pool of candidates."""


@dataclass(frozen=True)
class PseudoRound:
    """What the round did, as ``ensemble.json`` records it."""

    threshold: float
    power: float
    test_clips: list[int]
    """Sure test clips each fold's second round trained on."""
    of: int
    """Test clips in all."""
    models: list[str]
    """The pseudo-labelled copies trained (one per chosen trial)."""
    labelled_by: dict[str, float]
    """The first ensemble's models and weights, whose test predictions made the labels."""
    metric: str
    estimate_before: float
    estimate_after: float | None
    """None when no test clip was sure enough: nothing was trained."""
    kept: bool

    def as_dict(self) -> dict[str, object]:
        """Its fields."""
        return asdict(self)

    def describe(self) -> str:
        """The round in a line, e.g. for the CLI."""
        if self.estimate_after is None:
            return f"pseudo-labels: no test clip reached {self.threshold}; no second round"
        verdict = "kept" if self.kept else "not kept"
        return (
            f"pseudo-labels: {count(len(self.models), 'trial')} trained again with "
            f"{max(self.test_clips)} of {count(self.of, 'test clip')}; estimate {self.metric} "
            f"{self.estimate_before:.4f} -> {self.estimate_after:.4f}, {verdict}"
        )


@dataclass
class PseudoOutcome:
    """The round's record and, when it was kept, the ensemble that replaces the first."""

    record: PseudoRound
    kept: tuple[Pool, EnsembleResult, SelectionEstimate] | None = None
    """The pool with the copies, the selection over it and its estimate (None: not kept)."""


def fold_test_blends(
    run: EnsembleInputs, pool: Pool, weights: dict[str, float], data: PreparedData
) -> list[np.ndarray]:
    """The ensemble's test prediction made by each fold's models alone (fold order): the
    weighted blend of every member model's fold-``k`` test probabilities (a single
    split: of its test probabilities)."""
    if not data.cross_validated:
        return [blend(pool.probs("test"), weights)]
    blends = []
    for k in range(1, len(data.folds) + 1):
        fold_probs = {
            mid: run.folder.model(pool.candidates[mid].key).fold(k).read_probabilities("test")
            for mid in weights
        }
        blends.append(blend(fold_probs, weights))
    return blends


def chosen_trials(pool: Pool, weights: dict[str, float]) -> list[str]:
    """The trials the ensemble's models come from (ids, sorted)."""
    return sorted({pool.candidates[mid].key.trial_key().id for mid in weights})


def pseudo_label_round(
    run: EnsembleInputs,
    pool: Pool,
    data: PreparedData,
    settings: PseudoLabels,
    weights: dict[str, float],
    first: SelectionEstimate,
    choose: Chooser,
) -> PseudoOutcome:
    """Train the chosen trials' pseudo-labelled copies (or find them done), choose again
    over the pool with them, and keep the new choice only if its estimate is better."""
    labels = PseudoLabelSet.of(fold_test_blends(run, pool, weights, data), settings)

    def record(models: list[str], after: float | None, kept: bool) -> PseudoRound:
        return PseudoRound(
            threshold=settings.threshold,
            power=settings.power,
            test_clips=labels.clips,
            of=len(data.competition.test_ids),
            models=models,
            labelled_by=dict(weights),
            metric=first.metric,
            estimate_before=first.value,
            estimate_after=after,
            kept=kept,
        )

    if not any(labels.clips):
        return PseudoOutcome(record([], None, False))
    second = Pool(pool.trials, dict(pool.candidates))
    models = []
    for tid in chosen_trials(pool, weights):
        trial = pool.trials[tid]
        variant = run.models.variant(trial.key.pseudo_labelled(), trial.values)
        folder = run.models.ensure(variant, labels)
        second.candidates[variant.key.id] = Candidate.read(variant.key, folder)
        models.append(variant.key.id)
    selection, estimate = choose(second)
    if not get_metric(first.metric).better(estimate.value, first.value):
        return PseudoOutcome(record(models, estimate.value, False))
    return PseudoOutcome(record(models, estimate.value, True), (second, selection, estimate))
