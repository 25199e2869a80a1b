"""The ensemble of a study: greedy selection over its complete trials, then the submission.

Candidates are the study's complete trials, each with the validation
probabilities it saved on the common validation set (cross-validated trials:
out-of-fold probabilities of every train clip). Selection is
:func:`toolkit.ensemble.selection.select_ensemble` (Caruana et al., 2004) on the
recipe's metric, ``ensemble.size`` rounds, optionally starting from the
``ensemble.init_best`` best trials. With ``ensemble.seeds: K`` (K >= 2) every
trial that first selection chose is retrained K - 1 times with ``train.seed +
1 ... + K - 1`` (kept in ``tNNNN/seed<i>/`` and reused when present); those
copies, and each trial's bag (the mean of its K models, ``tNNNN-bag``), join
the candidates and the selection runs again, so the ensemble is never worse on
the selection data than any single candidate. A bag's weight is shared equally
by its models. The ensemble's test probabilities are the weighted average of
its models'; with ``ensemble.refit``, of each chosen trial retrained once on
every train clip for its (mean) best epoch count instead (``tNNNN/refit/``).
They make the run's ``submission.csv``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
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
    refits: dict[str, str] = field(default_factory=dict)
    """Trial id -> id of its refit on every clip, when those made the test prediction."""
    folds: int = 1
    """Folds of the study's trials (their validation predictions are then out-of-fold)."""


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


def bag(run: StudyRun, trial: FrozenTrial, models: list[Model]) -> Model:
    """A trial's seed copies averaged as one candidate (``RUN/tNNNN-bag``)."""
    return Model(
        id=f"{run.trial_id(trial.number)}-bag",
        trial=trial.number,
        seed_index=-1,
        dir=models[0].dir,
        val_probs=np.mean([m.val_probs for m in models], axis=0),
        test_probs=np.mean([m.test_probs for m in models], axis=0),
    )


def _with_seed_copies(
    run: StudyRun,
    trials: dict[str, FrozenTrial],
    models: dict[str, Model],
    chosen: list[str],
    n: int,
) -> tuple[dict[str, Model], dict[str, list[str]]]:
    """More candidates: each chosen trial's ``n - 1`` seed copies and its bag of all ``n``.

    Returns the candidates and, for each bag, the ids of the models it averages.
    """
    candidates = dict(models)
    bags: dict[str, list[str]] = {}
    for mid in chosen:
        group = [models[mid]] + [seed_copy(run, trials[mid], i) for i in range(1, n)]
        candidates.update((m.id, m) for m in group)
        averaged = bag(run, trials[mid], group)
        candidates[averaged.id] = averaged
        bags[averaged.id] = [m.id for m in group]
    return candidates, bags


def _model_weights(members: dict[str, float], bags: dict[str, list[str]]) -> dict[str, float]:
    """The weight of every model: a bag's weight is shared equally by the models it averages."""
    weights: dict[str, float] = {}
    for mid, weight in members.items():
        for model in bags.get(mid, [mid]):
            weights[model] = weights.get(model, 0.0) + weight / len(bags.get(mid, [mid]))
    return dict(sorted(weights.items(), key=lambda kv: (-kv[1], kv[0])))


def build_ensemble(run: StudyRun, spec: Ensemble | None = None) -> EnsembleOutcome:
    """Select, (optionally) reseed, refit and blend the study's complete trials; write the
    submission."""
    started = time.perf_counter()
    spec = spec or run.recipe.ensemble or Ensemble()
    data = run.check_split()
    labels = data.val_labels
    complete = run.trials((TrialState.COMPLETE,))
    if not complete:
        counts = run.counts()
        raise SearchError(
            f"study {run.study_name}: no complete trial to ensemble ({counts['pruned']} pruned, "
            f"{counts['failed']} failed); run more trials or loosen the pruner"
        )
    models = {m.id: m for m in (load_trial_model(run, t) for t in complete)}
    trials = {run.trial_id(t.number): t for t in complete}
    shape = (len(labels), len(data.competition.classes))
    for model in models.values():
        if model.val_probs.shape != shape:
            raise SearchError(
                f"{model.id}: validation probabilities of shape {model.val_probs.shape}, "
                f"expected {shape}: the trial was made on other data"
            )

    def select(candidates: dict[str, Model]) -> EnsembleResult:
        return select_ensemble(
            {mid: m.val_probs for mid, m in candidates.items()},
            labels,
            metric=run.metric,
            size=spec.size,
            init_best=spec.init_best,
        )

    selection = select(models)
    candidates, bags = models, {}
    if spec.seeds > 1:  # seed copies of the chosen trials, and their bags, compete too
        candidates, bags = _with_seed_copies(
            run, trials, models, list(selection.members), spec.seeds
        )
        selection = select(candidates)
    metric = get_metric(run.metric)
    single = {mid: metric.fn(m.val_probs, labels) for mid, m in models.items()}
    best_value = metric.best(single.values())
    best_id = min(mid for mid, v in single.items() if v == best_value)

    weights = _model_weights(selection.members, bags)
    val = blend({k: candidates[k].val_probs for k in weights}, weights)
    test = blend({k: candidates[k].test_probs for k in weights}, weights)
    refits: dict[str, str] = {}
    if spec.refit:
        test, refits = refit_test(run, trials, candidates, weights)

    comp = data.competition
    run_dir = run.run_dir
    submission = run.layout.write_submission(comp, test)
    val_ids = [comp.train_ids[i] for i in data.val_idx]
    run.layout.write_probabilities("val", val_ids, val, comp.classes, labels, npy=False)
    run.layout.write_probabilities("test", comp.test_ids, test, comp.classes, npy=False)
    members = [{"id": k, "weight": w} for k, w in weights.items()]
    row_id = _ensemble_id(run, members, refit=spec.refit)
    outcome = EnsembleOutcome(
        id=row_id,
        metric=run.metric,
        val_metric=selection.val_metric,  # the blend is the selection's average
        val_accuracy=accuracy(val, labels),
        val_loss=log_loss(val, labels),
        members=weights,
        best_trial=best_id,
        best_trial_metric=best_value,
        candidates=len(candidates),
        submission=submission,
        seconds=time.perf_counter() - started,
        selection=selection,
        refits=refits,
        folds=len(data.folds),
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
                "refit": spec.refit,
                "candidates": len(candidates),
            },
            val_accuracy=outcome.val_accuracy,
            val_loss=outcome.val_loss,
            metric=run.metric,
            metric_value=outcome.val_metric,
            seconds=outcome.seconds,
            submission=str(submission.resolve()),
            members=members,
            folds=len(data.folds) if data.cross_validated else None,
        )
    )
    return outcome


def refit_test(
    run: StudyRun,
    trials: dict[str, FrozenTrial],
    models: dict[str, Model],
    weights: dict[str, float],
) -> tuple[np.ndarray, dict[str, str]]:
    """Test probabilities of the ensemble's trials each retrained once on every train clip
    (its weight: its own and its seed copies'); returns them and trial id -> refit id."""
    by_trial: dict[int, float] = {}
    for mid, weight in weights.items():
        number = models[mid].trial
        by_trial[number] = by_trial.get(number, 0.0) + weight
    tests: dict[str, np.ndarray] = {}
    refits: dict[str, str] = {}
    for number in by_trial:
        trial = trials[run.trial_id(number)]
        out = run.layout.trial(number).refit()
        refit_id = f"{run.trial_id(number)}-refit"
        if not out.probabilities_file("test").is_file():
            values = dict(trial.params)
            base = run.trial_recipe(values)
            epochs = int(trial.user_attrs.get("best_epoch", base.train.epochs))
            recipe = base.model_copy(
                update={"train": base.train.model_copy(update={"epochs": epochs})}
            )
            run.trial_model(
                number,
                {**values, "refit_epochs": epochs},
                recipe,
                out,
                row_id=refit_id,
                refit=True,
                description=f"trial {number} refit ({epochs} epochs, every clip)",
            ).execute()
        tests[refit_id] = out.read_probabilities("test")
        refits[run.trial_id(number)] = refit_id
    test = blend(tests, {refits[run.trial_id(n)]: w for n, w in by_trial.items()})
    return test, refits


def _ensemble_id(run: StudyRun, members: list[dict[str, Any]], *, refit: bool = False) -> str:
    """The id of an identical earlier ensemble of this run, else the next ``RUN/eK``."""

    def key(items: list[dict[str, Any]]) -> list[tuple[str, float]]:
        return sorted((str(m["id"]), round(float(m.get("weight") or 0.0), 9)) for m in items)

    numbers = [0]
    for row in run.board.rows(run_dir=run.run_dir, kind="ensemble"):
        if key(row.members) == key(members) and bool(row.params.get("refit")) == refit:
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
        "folds": outcome.folds,
        "refit": outcome.refits,
        "picks": list(selection.picks) if selection else [],
        "trajectory": list(selection.trajectory) if selection else [],
    }
