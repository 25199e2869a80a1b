"""The ensemble of a study: greedy selection over its complete trials, then the submission.

Candidates are the study's complete trials, each with the validation
probabilities it saved on the common validation set (cross-validated trials:
out-of-fold probabilities of every train clip; see :mod:`.candidates`).
Selection is :func:`toolkit.ensemble.selection.select_ensemble` (Caruana et
al., 2004) on the recipe's metric, ``ensemble.size`` rounds, optionally
starting from the ``ensemble.init_best`` best trials. With ``ensemble.seeds:
K`` (K >= 2) every trial that first selection chose gets K - 1 seed copies
(``train.seed + 1 ... + K - 1``, variants of the trial, reused when done) and a
bag (the mean of its K models); they join the candidates and the selection runs
again, so the ensemble is never worse on the selection data than any single
candidate. A bag's weight is shared equally by its models. The ensemble's test
probabilities are the weighted average of its models'; with
``ensemble.refit``, of each chosen trial's refit (its variant retrained on
every train clip for its best epoch count) instead. They make the run's
``submission.csv`` (:mod:`.record`). The ensemble's own validation score is
optimistic (it was chosen on those predictions); its ``estimate`` repeats the
final selection on all but one part of the clips and scores the part held out
(:mod:`.estimate`): the number to expect. With ``semi_supervised``, the chosen
trials are then trained again with the test clips the ensemble is sure of, and
the ensemble chosen again over them too is kept if its estimate is better
(:mod:`.pseudo_round`).
"""

from __future__ import annotations

import time

import numpy as np

from toolkit.ensemble.candidates import Pool, add_seed_bags, seeds_wanted, trial_pool
from toolkit.ensemble.estimate import SelectionEstimate, estimate_parts, estimate_selection
from toolkit.ensemble.inputs import EnsembleInputs
from toolkit.ensemble.members import trial_weights
from toolkit.ensemble.method import Combination, choose_method
from toolkit.ensemble.pseudo_round import PseudoRound, pseudo_label_round
from toolkit.ensemble.record import EnsembleOutcome, record_ensemble
from toolkit.ensemble.selection import EnsembleResult, blend, select_ensemble
from toolkit.metrics import best_key, get_metric
from toolkit.recipe.schema import Ensemble
from toolkit.runs.records import read_model
from toolkit.runs.run_dir import RunDir
from toolkit.training.pipeline import PreparedData


def build_ensemble(
    run: EnsembleInputs,
    data: PreparedData,
    spec: Ensemble | None = None,
    *,
    files: RunDir | None = None,
) -> EnsembleOutcome:
    """Select, (optionally) reseed, refit and blend the study's complete trials, whose
    predictions are of ``data`` (the study's checked split); write the submission and the
    ensemble's row. ``files`` (default: the run folder) takes the ensemble's files: a staged
    one (:meth:`RunDir.staged`) moves them in with the files written there before, as one
    set, before the row is written."""
    started = time.perf_counter()
    spec = spec or run.recipe.ensemble or Ensemble()
    pool = trial_pool(run, data)
    metric = run.settings.metric
    selection = select(pool, data, spec, metric)
    if seeds_wanted(run, spec):  # seed copies of the chosen trials, and their bags, compete too
        add_seed_bags(run, pool, list(selection.members), spec.seeds, data)
        selection = select(pool, data, spec, metric)

    def choose(candidates: Pool) -> tuple[EnsembleResult, SelectionEstimate]:
        return select(candidates, data, spec, metric), estimate(candidates, data, spec, run)

    expected = estimate(pool, data, spec, run)
    weights = pool.model_weights(selection.members)
    pseudo: PseudoRound | None = None
    if run.recipe.semi_supervised is not None:
        settings = run.recipe.semi_supervised.pseudo_labels
        round_ = pseudo_label_round(run, pool, data, settings, weights, expected, choose)
        pseudo = round_.record
        if round_.kept is not None:
            pool, selection, expected = round_.kept
            weights = pool.model_weights(selection.members)
    val = blend(pool.probs("val"), weights)
    test = blend(pool.probs("test"), weights)
    greedy = Combination("greedy", weights, val, test, expected)
    parts = estimate_parts(data, run.recipe.split.random_state)  # the stack's folds
    kept = choose_method(spec, pool, data.val_labels, parts, metric, greedy)
    weights, val, test = kept.weights, kept.val, kept.test
    refits: dict[str, str] = {}
    if spec.refit:
        test, refits = refit_test(run, pool, weights)
    best_id, best_value = best_trial(pool, data, run.settings.metric)
    return record_ensemble(
        run,
        spec,
        data,
        selection=selection,
        estimate=kept.estimate,
        weights=weights,
        val=val,
        test=test,
        refits=refits,
        best=(best_id, best_value),
        candidates=len(pool.candidates),
        started=started,
        combination=kept,
        pseudo_labels=pseudo,
        files=files,
    )


def estimate(
    pool: Pool, data: PreparedData, spec: Ensemble, run: EnsembleInputs
) -> SelectionEstimate:
    """The selection over the pool's candidates, cross-validated (:mod:`.estimate`)."""
    return estimate_selection(
        pool.probs("val"),
        data.val_labels,
        estimate_parts(data, run.recipe.split.random_state),
        metric=run.settings.metric,
        size=spec.size,
        init_best=spec.init_best,
    )


def select(pool: Pool, data: PreparedData, spec: Ensemble, metric: str) -> EnsembleResult:
    """Greedy selection over the pool's candidates' validation probabilities."""
    return select_ensemble(
        pool.probs("val"), data.val_labels, metric=metric, size=spec.size, init_best=spec.init_best
    )


def best_trial(pool: Pool, data: PreparedData, metric: str) -> tuple[str, float]:
    """The best single trial on the validation clips (the rule of
    :func:`toolkit.metrics.best_key`), and its metric."""
    rule = get_metric(metric)
    single = {tid: rule.fn(pool.candidates[tid].val_probs, data.val_labels) for tid in pool.trials}
    best = best_key(single.items(), metric)
    assert best is not None
    return best, single[best]


def refit_test(
    run: EnsembleInputs, pool: Pool, weights: dict[str, float]
) -> tuple[np.ndarray, dict[str, str]]:
    """Test probabilities of the ensemble's trials each retrained once on every train clip
    (its weight: its own and its seed copies'), calibrated by the trial's temperature;
    returns them and trial id -> refit id."""
    by_trial = trial_weights(weights)
    tests: dict[str, np.ndarray] = {}
    refits: dict[str, str] = {}
    for tid in by_trial:
        trial = pool.trials[tid]
        record = read_model(run.folder.model(trial.key), trial.key)
        temperature = 1.0 if record is None else record.held_out_temperature
        variant = run.models.variant(
            trial.key.refit(), trial.values, trial.best_epoch, temperature=temperature
        )
        tests[variant.key.id] = run.models.ensure(variant).read_probabilities("test")
        refits[tid] = variant.key.id
    test = blend(tests, {refits[tid]: w for tid, w in by_trial.items()})
    return test, refits
