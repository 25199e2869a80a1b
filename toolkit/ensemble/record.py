"""What an ensemble leaves: the run's submission and probabilities, ``ensemble.json``, its row."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.ensemble.estimate import SelectionEstimate
from toolkit.ensemble.pseudo_round import PseudoRound
from toolkit.ensemble.selection import EnsembleResult
from toolkit.leaderboard.row import Row
from toolkit.metrics import accuracy, log_loss
from toolkit.model_key import ModelKey
from toolkit.pipeline import PreparedData
from toolkit.recipe import Ensemble
from toolkit.study.run import StudyRun


@dataclass
class EnsembleOutcome:
    """The ensemble a study ended with, and how it compares with the best single trial."""

    id: str
    metric: str
    val_metric: float
    val_accuracy: float
    val_loss: float
    members: dict[str, float]
    best_trial: str
    best_trial_metric: float
    candidates: int
    submission: Path
    seconds: float
    selection: EnsembleResult | None = None
    refits: dict[str, str] = field(default_factory=dict)
    """Trial id -> id of its refit on every clip, when those made the test prediction."""
    folds: int = 1
    """Folds of the study's trials (their validation predictions are then out-of-fold)."""
    estimate: SelectionEstimate | None = None
    """The selection procedure's cross-validated metric: what to expect on new clips."""
    pseudo_labels: PseudoRound | None = None
    """What the pseudo-label round did (``semi_supervised``), whether kept or not."""


def record_ensemble(
    run: StudyRun,
    spec: Ensemble,
    data: PreparedData,
    *,
    selection: EnsembleResult,
    estimate: SelectionEstimate,
    weights: dict[str, float],
    val: np.ndarray,
    test: np.ndarray,
    refits: dict[str, str],
    best: tuple[str, float],
    candidates: int,
    started: float,
    pseudo_labels: PseudoRound | None = None,
) -> EnsembleOutcome:
    """Write the ensemble's files and its leaderboard row; return what it is."""
    comp = data.competition
    layout = run.layout
    labels = data.val_labels
    submission = layout.write_submission(comp, test)
    val_ids = [comp.train_ids[i] for i in data.val_idx]
    layout.write_probabilities("val", val_ids, val, comp.classes, labels, npy=False)
    layout.write_probabilities("test", comp.test_ids, test, comp.classes, npy=False)
    members = [{"id": k, "weight": w} for k, w in weights.items()]
    outcome = EnsembleOutcome(
        id=ensemble_key(run, members, refit=spec.refit).id,
        metric=run.settings.metric,
        val_metric=selection.val_metric,  # the blend is the selection's average
        val_accuracy=accuracy(val, labels),
        val_loss=log_loss(val, labels),
        members=weights,
        best_trial=best[0],
        best_trial_metric=best[1],
        candidates=candidates,
        submission=submission,
        seconds=time.perf_counter() - started,
        selection=selection,
        refits=refits,
        folds=len(data.folds),
        estimate=estimate,
        pseudo_labels=pseudo_labels,
    )
    layout.write_ensemble(summary(run, spec, outcome))
    run.board.upsert(ensemble_row(run, spec, outcome, data))
    return outcome


def ensemble_row(
    run: StudyRun, spec: Ensemble, outcome: EnsembleOutcome, data: PreparedData
) -> Row:
    """The ensemble's leaderboard row: its members and weights, its validation numbers."""
    run_dir = run.settings.run_dir
    rows = {r.id: r for r in run.board.rows(run_dir=run_dir)}
    backbones = sorted({str(rows[k].backbone) for k in outcome.members if k in rows})
    return Row(
        id=outcome.id,
        kind="ensemble",
        recipe=run.recipe.name,
        run_dir=str(run_dir.resolve()),
        state="complete",
        backbone="+".join(backbones) or None,
        params={
            "size": spec.size,
            "init_best": spec.init_best,
            "seeds": spec.seeds,
            "refit": spec.refit,
            "candidates": outcome.candidates,
            **pseudo_params(outcome.pseudo_labels),
        },
        val_accuracy=outcome.val_accuracy,
        val_loss=outcome.val_loss,
        metric=outcome.metric,
        metric_value=outcome.val_metric,
        seconds=outcome.seconds,
        submission=str(outcome.submission.resolve()),
        members=[{"id": k, "weight": w} for k, w in outcome.members.items()],
        folds=len(data.folds) if data.cross_validated else None,
        estimate=outcome.estimate.value if outcome.estimate else None,
    )


def ensemble_key(run: StudyRun, members: list[dict[str, Any]], *, refit: bool = False) -> ModelKey:
    """The key of an identical earlier ensemble of this run, else of the next ``RUN/eK``."""

    def weights(items: list[dict[str, Any]]) -> list[tuple[str, float]]:
        return sorted((str(m["id"]), round(float(m.get("weight") or 0.0), 9)) for m in items)

    numbers = [0]
    for row in run.board.rows(run_dir=run.settings.run_dir, kind="ensemble"):
        try:
            key = ModelKey.parse(row.id)
        except ValueError:
            continue  # not an id this toolkit makes
        if weights(row.members) == weights(members) and bool(row.params.get("refit")) == refit:
            return key
        if key.run == run.settings.run and key.number is not None:
            numbers.append(key.number)
    return ModelKey.ensemble(run.settings.run, max(numbers) + 1)


def summary(run: StudyRun, spec: Ensemble, outcome: EnsembleOutcome) -> dict[str, Any]:
    """``ensemble.json``: members, weights, picks, trajectory and the best single trial."""
    selection = outcome.selection
    return {
        "id": outcome.id,
        "study": run.settings.name,
        "storage": run.settings.storage,
        "metric": outcome.metric,
        "val_metric": outcome.val_metric,
        "val_accuracy": outcome.val_accuracy,
        "val_loss": outcome.val_loss,
        "estimate": outcome.estimate.as_dict() if outcome.estimate else None,
        "best_trial": outcome.best_trial,
        "best_trial_metric": outcome.best_trial_metric,
        "candidates": outcome.candidates,
        "size": spec.size,
        "init_best": spec.init_best,
        "seeds": spec.seeds,
        "members": [{"id": k, "weight": w} for k, w in outcome.members.items()],
        "folds": outcome.folds,
        "refit": outcome.refits,
        "picks": list(selection.picks) if selection else [],
        "trajectory": list(selection.trajectory) if selection else [],
        "pseudo_labels": outcome.pseudo_labels.as_dict() if outcome.pseudo_labels else None,
    }


def pseudo_params(round_: PseudoRound | None) -> dict[str, Any]:
    """What the ensemble's row shows of its pseudo-label round: the test clips its kept
    round trained on (0: not kept); nothing without a round."""
    if round_ is None:
        return {}
    return {"pseudo_labels": max(round_.test_clips, default=0) if round_.kept else 0}
