"""The ensemble of a study: greedy selection over its complete trials, then the submission.

Candidates are the study's complete trials, each with the validation
probabilities it saved on the common validation set. Selection is
:func:`toolkit.ensemble.selection.select_ensemble` (Caruana et al., 2004) on the
recipe's metric, ``ensemble.size`` rounds, optionally starting from the
``ensemble.init_best`` best trials. With ``ensemble.seeds: K`` (K >= 2) every
chosen trial is represented by K models: itself and K - 1 copies retrained with
``train.seed + 1 ... + K - 1`` (kept in ``tNNNN/seed<i>/`` and reused when
present); its weight is shared equally among them. The ensemble's test
probabilities are the weighted average of its models'; they make the run's
``submission.csv``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from toolkit.ensemble.selection import EnsembleResult, blend, select_ensemble
from toolkit.errors import SearchError
from toolkit.leaderboard.store import Row
from toolkit.metrics import accuracy, get_metric, log_loss
from toolkit.recipe import Ensemble
from toolkit.run_dir import RunDir
from toolkit.study import StudyRun


@dataclass
class Model:
    """One model of an ensemble: a trial or one of its seed copies, with its probabilities."""

    id: str
    trial: int
    seed_index: int
    dir: Path
    val_probs: np.ndarray
    test_probs: np.ndarray


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


def _model(run: StudyRun, trial: int, seed_index: int, out: RunDir) -> Model:
    """A model of the ensemble from the probabilities saved in ``out``."""
    return Model(
        id=run.trial_id(trial, seed_index),
        trial=trial,
        seed_index=seed_index,
        dir=out.path,
        val_probs=out.read_probabilities("val"),
        test_probs=out.read_probabilities("test"),
    )


def load_trial_model(run: StudyRun, trial: FrozenTrial) -> Model:
    """The saved probabilities of a complete trial."""
    recorded = trial.user_attrs.get("dir")
    out = RunDir(recorded) if recorded else run.layout.trial(trial.number)
    if not out.has_predictions():
        fallback = run.layout.trial(trial.number)
        if not fallback.has_predictions():
            raise SearchError(
                f"trial {trial.number}: no probabilities in {out.path}; workers on other "
                "machines must write to a run directory this machine can read (--output)"
            )
        out = fallback
    return _model(run, trial.number, 0, out)


def seed_copy(run: StudyRun, trial: FrozenTrial, index: int) -> Model:
    """Trial ``trial`` retrained with ``train.seed + index`` (reused when already saved)."""
    out = run.layout.trial(trial.number).seed_copy(index)
    if not out.has_predictions():
        values = dict(trial.params)
        base = run.trial_recipe(values)
        recipe = base.model_copy(
            update={"train": base.train.model_copy(update={"seed": base.train.seed + index})}
        )
        run.trial_model(
            trial.number,
            values,
            recipe,
            out,
            seed_index=index,
            description=f"trial {trial.number} seed {recipe.train.seed}",
        ).execute()
    return _model(run, trial.number, index, out)


def build_ensemble(run: StudyRun, spec: Ensemble | None = None) -> EnsembleOutcome:
    """Select, (optionally) reseed and blend the study's complete trials; write the submission."""
    started = time.perf_counter()
    spec = spec or run.recipe.ensemble or Ensemble()
    data = run.check_split()
    labels = data.labels[data.val_idx]
    complete = run.trials((TrialState.COMPLETE,))
    if not complete:
        counts = run.counts()
        raise SearchError(
            f"study {run.study_name}: no complete trial to ensemble ({counts['pruned']} pruned, "
            f"{counts['failed']} failed); run more trials or loosen the pruner"
        )
    models = {m.id: m for m in (load_trial_model(run, t) for t in complete)}
    shape = (len(labels), len(data.competition.classes))
    for model in models.values():
        if model.val_probs.shape != shape:
            raise SearchError(
                f"{model.id}: validation probabilities of shape {model.val_probs.shape}, "
                f"expected {shape}: the trial was made on other data"
            )
    selection = select_ensemble(
        {mid: m.val_probs for mid, m in models.items()},
        labels,
        metric=run.metric,
        size=spec.size,
        init_best=spec.init_best,
    )
    metric = get_metric(run.metric)
    single = {mid: metric.fn(m.val_probs, labels) for mid, m in models.items()}
    best_value = metric.best(single.values())
    best_id = min(mid for mid, v in single.items() if v == best_value)

    weights: dict[str, float] = {}
    chosen: dict[str, Model] = {}
    by_trial = {m.id: t for m, t in zip(models.values(), complete, strict=True)}
    copies = max(1, spec.seeds)
    for mid, weight in selection.members.items():
        group = [models[mid]]
        group += [seed_copy(run, by_trial[mid], i) for i in range(1, copies)]
        for model in group:
            chosen[model.id] = model
            weights[model.id] = weight / len(group)
    val = blend({k: m.val_probs for k, m in chosen.items()}, weights)
    test = blend({k: m.test_probs for k, m in chosen.items()}, weights)
    # without seed copies the blend is the selection's own average: report its exact score
    value = selection.val_metric if copies == 1 else metric.fn(val, labels)

    comp = data.competition
    run_dir = run.run_dir
    submission = run.layout.write_submission(comp, test)
    val_ids = [comp.train_ids[i] for i in data.val_idx]
    run.layout.write_probabilities("val", val_ids, val, comp.classes, labels, npy=False)
    run.layout.write_probabilities("test", comp.test_ids, test, comp.classes, npy=False)
    members = [{"id": k, "weight": w} for k, w in weights.items()]
    row_id = _ensemble_id(run, members)
    outcome = EnsembleOutcome(
        id=row_id,
        metric=run.metric,
        val_metric=value,
        val_accuracy=accuracy(val, labels),
        val_loss=log_loss(val, labels),
        members=weights,
        best_trial=best_id,
        best_trial_metric=best_value,
        candidates=len(models),
        submission=submission,
        seconds=time.perf_counter() - started,
        selection=selection,
    )
    run.layout.write_ensemble(_summary(run, spec, outcome))
    rows = {r.id: r for r in run.board.rows(run_dir=run_dir)}
    backbones = sorted({str(rows[k].backbone) for k in weights if k in rows})
    run.board.upsert(
        Row(
            id=row_id,
            kind="ensemble",
            recipe=run.recipe.name,
            run_dir=str(run_dir.resolve()),
            state="complete",
            backbone="+".join(backbones) or None,
            params={
                "size": spec.size,
                "init_best": spec.init_best,
                "seeds": spec.seeds,
                "candidates": len(models),
            },
            val_accuracy=outcome.val_accuracy,
            val_loss=outcome.val_loss,
            metric=run.metric,
            metric_value=value,
            seconds=outcome.seconds,
            submission=str(submission.resolve()),
            members=members,
        )
    )
    return outcome


def _ensemble_id(run: StudyRun, members: list[dict[str, Any]]) -> str:
    """The id of an identical earlier ensemble of this run, else the next ``RUN/eK``."""

    def key(items: list[dict[str, Any]]) -> list[tuple[str, float]]:
        return sorted((str(m["id"]), round(float(m.get("weight") or 0.0), 9)) for m in items)

    numbers = [0]
    for row in run.board.rows(run_dir=run.run_dir, kind="ensemble"):
        if key(row.members) == key(members):
            return row.id
        found = re.fullmatch(rf"{re.escape(run.prefix)}/e(\d+)", row.id)
        if found:
            numbers.append(int(found.group(1)))
    return f"{run.prefix}/e{max(numbers) + 1}"


def _summary(run: StudyRun, spec: Ensemble, outcome: EnsembleOutcome) -> dict[str, Any]:
    selection = outcome.selection
    return {
        "id": outcome.id,
        "study": run.study_name,
        "storage": run.storage_url,
        "metric": outcome.metric,
        "val_metric": outcome.val_metric,
        "val_accuracy": outcome.val_accuracy,
        "val_loss": outcome.val_loss,
        "best_trial": outcome.best_trial,
        "best_trial_metric": outcome.best_trial_metric,
        "candidates": outcome.candidates,
        "size": spec.size,
        "init_best": spec.init_best,
        "seeds": spec.seeds,
        "members": [{"id": k, "weight": w} for k, w in outcome.members.items()],
        "picks": list(selection.picks) if selection else [],
        "trajectory": list(selection.trajectory) if selection else [],
    }
