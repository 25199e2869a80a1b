"""What an ensemble leaves: the run's submission and probabilities, ``ensemble.json``, its row."""

from __future__ import annotations

import time
from dataclasses import dataclass
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
from toolkit.runs.records import (
    EnsembleRecord,
    Estimate,
    Member,
    PseudoLabelsRecord,
    StackRecord,
    members_of,
    weights_of,
    write_ensemble,
    write_predictions,
)
from toolkit.runs.run_dir import RunDir
from toolkit.training.pipeline import PreparedData


@dataclass
class EnsembleOutcome:
    """The ensemble a study ended with: its record (what ``ensemble.json`` holds), its
    submission, and the estimate, combination and pseudo-label round that made it."""

    record: EnsembleRecord
    submission: Path
    seconds: float
    estimate: SelectionEstimate | None = None
    """The kept method's cross-validated metric: what to expect on new clips."""
    combination: Combination | None = None
    """How the models were combined (greedy or stacked) and every method's estimate."""
    pseudo_labels: PseudoRound | None = None
    """What the pseudo-label round did (``semi_supervised``), whether kept or not."""

    @property
    def id(self) -> str:
        """The ensemble's id (``RUN/eK``)."""
        return self.record.id

    @property
    def metric(self) -> str:
        """The metric it was chosen on."""
        return self.record.metric

    @property
    def val_metric(self) -> float:
        """Its validation metric."""
        return self.record.val_metric

    @property
    def members(self) -> dict[str, float]:
        """Model id -> weight."""
        return self.record.weights

    @property
    def best_trial(self) -> str:
        """The best single trial's id."""
        return self.record.best_trial

    @property
    def best_trial_metric(self) -> float:
        """The best single trial's validation metric."""
        return self.record.best_trial_metric

    @property
    def candidates(self) -> int:
        """How many models it chose among."""
        return self.record.candidates

    @property
    def method(self) -> str:
        """``greedy`` or ``stack``."""
        return self.record.method


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
    val_ids = [comp.train_ids[i] for i in data.val_idx]
    submission = write_predictions(
        files, comp, test, val_ids=val_ids, val_probs=val, labels=labels, npy=False
    )
    members = members_of(weights)
    method = combination.method if combination is not None else "greedy"
    stacked = method == "stack"  # else the blend is the selection's average
    estimates = _estimates(combination, estimate)
    record = EnsembleRecord(
        id=ensemble_key(run, members, refit=spec.refit, method=method).id,
        study=run.settings.name,
        storage=run.settings.storage,
        metric=run.settings.metric,
        val_metric=get_metric(run.settings.metric).fn(val, labels)
        if stacked
        else selection.val_metric,
        val_accuracy=accuracy(val, labels),
        val_loss=log_loss(val, labels),
        estimate=_estimate(estimate),
        method=method,
        estimates={m: _estimate(e) for m, e in estimates.items()},
        stack=_stack_record(combination),
        best_trial=best[0],
        best_trial_metric=best[1],
        candidates=candidates,
        size=spec.size,
        init_best=spec.init_best,
        seeds=spec.seeds,
        members=members,
        folds=len(data.folds),
        refit=refits,
        picks=list(selection.picks),
        trajectory=list(selection.trajectory),
        pseudo_labels=None
        if pseudo_labels is None
        else PseudoLabelsRecord.model_validate(pseudo_labels.as_dict()),
    )
    write_ensemble(files, record)
    outcome = EnsembleOutcome(
        record,
        submission,
        time.perf_counter() - started,
        estimate=estimate,
        combination=combination,
        pseudo_labels=pseudo_labels,
    )
    files.commit()  # the files in place before a row names them
    run.board.supersede(submission, by=outcome.id)  # an earlier ensemble's file is now this one's
    run.board.upsert(ensemble_row(run, spec, outcome, data))
    return outcome


def ensemble_row(
    run: EnsembleInputs, spec: Ensemble, outcome: EnsembleOutcome, data: PreparedData
) -> Row:
    """The ensemble's leaderboard row, from its record: its members and weights, its
    validation numbers."""
    record = outcome.record
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
            "size": record.size,
            "init_best": record.init_best,
            "seeds": record.seeds,
            "refit": spec.refit,
            "candidates": record.candidates,
            "method": record.method,
            **{f"estimate_{m}": e.value for m, e in record.estimates.items()},
            **pseudo_params(outcome.pseudo_labels),
        },
        val_accuracy=record.val_accuracy,
        val_loss=record.val_loss,
        metric=record.metric,
        metric_value=record.val_metric,
        seconds=outcome.seconds,
        submission=str(outcome.submission.resolve()),
        members=[m.model_dump() for m in record.members],
        folds=len(data.folds) if data.cross_validated else None,
        estimate=record.estimate.value if record.estimate else None,
        profile="+".join(profiles) or None,
        data=DataIdentity.of(run.recipe.data).as_dict(),
    )


def ensemble_key(
    run: EnsembleInputs, members: list[Member], *, refit: bool = False, method: str = "greedy"
) -> ModelKey:
    """The key of an identical earlier ensemble of this run (same members, weights, refit
    and method), else of the next ``RUN/eK``."""

    def weights(items: dict[str, float | None]) -> list[tuple[str, float]]:
        return sorted((k, round(float(w or 0.0), 9)) for k, w in items.items())

    wanted = weights(dict(weights_of(members)))
    numbers = [0]
    for row in run.board.rows(run_dir=run.settings.run_dir, kind="ensemble"):
        try:
            key = ModelKey.parse(row.id)
        except ValueError:
            continue  # not an id this toolkit makes
        same = weights(row.member_weights()) == wanted and bool(row.params.get("refit")) == refit
        if same and row.params.get("method", "greedy") == method:
            return key
        if key.run == run.settings.run and key.number is not None:
            numbers.append(key.number)
    return ModelKey.ensemble(run.settings.run, max(numbers) + 1)


def _estimates(
    combination: Combination | None, estimate: SelectionEstimate | None
) -> dict[str, SelectionEstimate]:
    """Every method's estimate computed for the ensemble (greedy's alone, unless stacked)."""
    if combination is not None and combination.estimates:
        return combination.estimates
    return {"greedy": estimate} if estimate is not None else {}


def _estimate(estimate: SelectionEstimate | None) -> Estimate | None:
    """An estimate as the record holds it."""
    return None if estimate is None else Estimate.model_validate(estimate.as_dict())


def _stack_record(combination: Combination | None) -> StackRecord | None:
    """The stacked model's inputs, strength and weights, when one was fitted (kept or not)."""
    stacked = combination.stack if combination is not None else None
    if stacked is None or combination is None:
        return None
    return StackRecord(
        kept=combination.method == "stack",
        inputs=stacked.inputs,
        C=stacked.model.c,
        weights=stacked.weights,
        parts_C=[c for _, _, c in stacked.fits],
        bags=stacked.bags,
        model=stacked.model.as_dict(),  # what predict applies to new clips
    )


def pseudo_params(round_: PseudoRound | None) -> dict[str, Any]:
    """What the ensemble's row shows of its pseudo-label round: the test clips its kept
    round trained on (0: not kept); nothing without a round."""
    if round_ is None:
        return {}
    return {"pseudo_labels": max(round_.test_clips, default=0) if round_.kept else 0}
