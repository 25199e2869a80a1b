"""What an ensemble leaves: the run's submission and probabilities, ``ensemble.json``, its row."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.ensemble.estimate import SelectionEstimate
from toolkit.ensemble.inputs import EnsembleInputs
from toolkit.ensemble.method import Combination
from toolkit.ensemble.pseudo_round import PseudoRound
from toolkit.ensemble.selection import EnsembleResult
from toolkit.leaderboard.row import Row
from toolkit.metrics import accuracy, get_metric, log_loss
from toolkit.recipe.schema import Ensemble
from toolkit.runs.data_identity import DataIdentity
from toolkit.runs.model_key import ModelKey
from toolkit.runs.run_dir import RunDir
from toolkit.training.pipeline import PreparedData


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
    """The kept method's cross-validated metric: what to expect on new clips."""
    combination: Combination | None = None
    """How the models were combined (greedy or stacked) and every method's estimate."""
    pseudo_labels: PseudoRound | None = None
    """What the pseudo-label round did (``semi_supervised``), whether kept or not."""

    @property
    def method(self) -> str:
        """``greedy`` or ``stack``."""
        return self.combination.method if self.combination is not None else "greedy"


def record_ensemble(
    run: EnsembleInputs,
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
    combination: Combination | None = None,
    pseudo_labels: PseudoRound | None = None,
    files: RunDir | None = None,
) -> EnsembleOutcome:
    """Write the ensemble's files (into ``files``, by default the run folder; a staged one is
    committed) and then its leaderboard row; return what it is."""
    comp = data.competition
    files = files or run.folder
    labels = data.val_labels
    submission = files.write_submission(comp, test)
    val_ids = [comp.train_ids[i] for i in data.val_idx]
    files.write_probabilities("val", val_ids, val, comp.classes, labels, npy=False)
    files.write_probabilities("test", comp.test_ids, test, comp.classes, npy=False)
    members = [{"id": k, "weight": w} for k, w in weights.items()]
    method = combination.method if combination is not None else "greedy"
    stacked = method == "stack"  # else the blend is the selection's average
    outcome = EnsembleOutcome(
        id=ensemble_key(run, members, refit=spec.refit, method=method).id,
        metric=run.settings.metric,
        val_metric=get_metric(run.settings.metric).fn(val, labels)
        if stacked
        else selection.val_metric,
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
        combination=combination,
        pseudo_labels=pseudo_labels,
    )
    files.write_ensemble(summary(run, spec, outcome))
    files.commit()  # the files in place before a row names them
    run.board.supersede(submission, by=outcome.id)  # an earlier ensemble's file is now this one's
    run.board.upsert(ensemble_row(run, spec, outcome, data))
    return outcome


def ensemble_row(
    run: EnsembleInputs, spec: Ensemble, outcome: EnsembleOutcome, data: PreparedData
) -> Row:
    """The ensemble's leaderboard row: its members and weights, its validation numbers."""
    run_dir = run.settings.run_dir
    rows = {r.id: r for r in run.board.rows(run_dir=run_dir)}
    backbones = sorted({str(rows[k].backbone) for k in outcome.members if k in rows})
    profiles = sorted({str(rows[k].profile) for k in outcome.members if k in rows} - {"None"})
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
            "method": outcome.method,
            **{f"estimate_{m}": e.value for m, e in _estimates(outcome).items()},
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
        profile="+".join(profiles) or None,
        data=DataIdentity.of(run.recipe.data).as_dict(),
    )


def ensemble_key(
    run: EnsembleInputs,
    members: list[dict[str, Any]],
    *,
    refit: bool = False,
    method: str = "greedy",
) -> ModelKey:
    """The key of an identical earlier ensemble of this run (same members, weights, refit
    and method), else of the next ``RUN/eK``."""

    def weights(items: list[dict[str, Any]]) -> list[tuple[str, float]]:
        return sorted((str(m["id"]), round(float(m.get("weight") or 0.0), 9)) for m in items)

    numbers = [0]
    for row in run.board.rows(run_dir=run.settings.run_dir, kind="ensemble"):
        try:
            key = ModelKey.parse(row.id)
        except ValueError:
            continue  # not an id this toolkit makes
        same = weights(row.members) == weights(members) and bool(row.params.get("refit")) == refit
        if same and row.params.get("method", "greedy") == method:
            return key
        if key.run == run.settings.run and key.number is not None:
            numbers.append(key.number)
    return ModelKey.ensemble(run.settings.run, max(numbers) + 1)


def summary(run: EnsembleInputs, spec: Ensemble, outcome: EnsembleOutcome) -> dict[str, Any]:
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
        "method": outcome.method,
        "estimates": {m: e.as_dict() for m, e in _estimates(outcome).items()},
        "stack": _stack_summary(outcome),
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


def _estimates(outcome: EnsembleOutcome) -> dict[str, SelectionEstimate]:
    """Every method's estimate computed for the ensemble (greedy's alone, unless stacked)."""
    if outcome.combination is not None and outcome.combination.estimates:
        return outcome.combination.estimates
    return {"greedy": outcome.estimate} if outcome.estimate is not None else {}


def _stack_summary(outcome: EnsembleOutcome) -> dict[str, Any] | None:
    """The stacked model's inputs, strength and weights, when one was fitted (kept or not)."""
    stacked = outcome.combination.stack if outcome.combination is not None else None
    if stacked is None:
        return None
    return {
        "kept": outcome.method == "stack",
        "inputs": stacked.inputs,
        "C": stacked.model.c,
        "weights": stacked.weights,
        "parts_C": [c for _, _, c in stacked.fits],
        "bags": stacked.bags,
        "model": stacked.model.as_dict(),  # what predict applies to new clips
    }


def pseudo_params(round_: PseudoRound | None) -> dict[str, Any]:
    """What the ensemble's row shows of its pseudo-label round: the test clips its kept
    round trained on (0: not kept); nothing without a round."""
    if round_ is None:
        return {}
    return {"pseudo_labels": max(round_.test_clips, default=0) if round_.kept else 0}
