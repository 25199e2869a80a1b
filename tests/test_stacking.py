"""The stacked ensemble: a level-2 model whose estimate never saw the clips it scores, and
``ensemble.method: auto`` keeping the better of greedy and stacked."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.ensemble.candidates import Candidate, Pool, TrialRecord
from toolkit.ensemble.estimate import estimate_selection
from toolkit.ensemble.method import Combination, choose_method
from toolkit.ensemble.selection import blend, select_ensemble
from toolkit.ensemble.stacking import fit_stack, level_one, stack_ensemble
from toolkit.metrics import accuracy, get_metric
from toolkit.recipe.schema import Ensemble
from toolkit.runs.model_key import ModelKey


def parts_of(n: int, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [np.sort(p) for p in np.array_split(rng.permutation(n), count)]


def own_answer_candidates(labels: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """One candidate per clip that knows that clip's label and nothing else: a level-2 model
    that saw a clip's own row while fitting would get that clip right."""
    n = len(labels)
    probs = {}
    for i in range(n):
        table = np.full((n, k), 1.0 / k)
        table[i] = 0.05 / (k - 1)
        table[i, labels[i]] = 0.95
        probs[f"t{i:04d}"] = table
    return probs


def test_the_level_two_model_never_sees_the_clip_it_predicts() -> None:
    rng = np.random.default_rng(0)
    n, k = 30, 3
    labels = rng.integers(0, k, n)
    probs = own_answer_candidates(labels, k)
    parts = parts_of(n, 5, rng)
    # a level-2 model fitted on every clip knows every clip's answer ...
    inputs = sorted(probs)
    x = level_one(probs, inputs)
    assert accuracy(fit_stack(x, labels, k, 10.0).predict(x), labels) > 0.95
    # ... but the stack's held-out predictions come from models fitted without their part
    stacked = stack_ensemble(probs, probs, labels, parts, metric="accuracy")
    majority = np.bincount(labels).max() / n
    assert stacked.estimate.accuracy <= majority + 0.05
    assert stacked.estimate.procedure == "stack" and len(stacked.estimate.parts) == 5
    for fitted, predicted, _ in stacked.fits:  # and their rows never overlap
        assert not set(fitted.tolist()) & set(predicted.tolist())
        assert len(fitted) + len(predicted) == n
    predicted = np.sort(np.concatenate([p for _, p, _ in stacked.fits]))
    np.testing.assert_array_equal(predicted, np.arange(n))
    assert stacked.test.shape == (n, k)
    np.testing.assert_allclose(stacked.test.sum(axis=1), 1.0)


def test_groups_kept_in_one_part_never_straddle_the_level_two_folds() -> None:
    rng = np.random.default_rng(1)
    n, k = 80, 4
    labels = rng.integers(0, k, n)
    groups = np.repeat(np.arange(20), 4)  # 20 songs of 4 clips
    song_parts = np.array_split(rng.permutation(20), 4)
    parts = [np.flatnonzero(np.isin(groups, songs)) for songs in song_parts]
    probs = {f"t{i:04d}": rng.dirichlet(np.ones(k), size=n) for i in range(2)}
    stacked = stack_ensemble(probs, probs, labels, parts, metric="log_loss")
    for fitted, predicted, _ in stacked.fits:
        assert not set(groups[fitted].tolist()) & set(groups[predicted].tolist())


def pool_of(probs: dict[str, np.ndarray]) -> Pool:
    pool = Pool({})
    for cid, table in probs.items():
        key = ModelKey.parse(cid)
        pool.trials[cid] = TrialRecord(key, {}, None)
        pool.candidates[cid] = Candidate(key, table, table)
    return pool


def greedy_of(pool: Pool, labels: np.ndarray, parts: list[np.ndarray], metric: str) -> Combination:
    probs = pool.probs("val")
    chosen = select_ensemble(probs, labels, metric=metric, size=10)
    estimate = estimate_selection(probs, labels, parts, metric=metric, size=10)
    val = blend(probs, chosen.members)
    return Combination("greedy", dict(chosen.members), val, val, estimate)


def test_auto_keeps_the_stack_when_it_estimates_better() -> None:
    rng = np.random.default_rng(2)
    n, k = 200, 4
    labels = rng.integers(0, k, n)
    shifted = np.full((n, k), 0.1 / (k - 1))  # sure of the wrong class: the next one
    shifted[np.arange(n), (labels + 1) % k] = 0.9
    probs = {"run/t0000": shifted, "run/t0001": rng.dirichlet(np.ones(k), size=n)}
    pool = pool_of(probs)
    parts = parts_of(n, 5, rng)
    greedy = greedy_of(pool, labels, parts, "accuracy")
    kept = choose_method(Ensemble(method="auto"), pool, labels, parts, "accuracy", greedy)
    assert kept.method == "stack"  # it learns the shift that no average of the two undoes
    assert set(kept.estimates) == {"greedy", "stack"}
    assert kept.estimates["stack"].value > kept.estimates["greedy"].value + 0.5
    assert kept.estimate is kept.estimates["stack"]
    assert accuracy(kept.test, labels) > 0.95  # its test probabilities are the stack's
    assert set(kept.weights) <= set(probs) and abs(sum(kept.weights.values()) - 1) < 1e-9


@pytest.mark.parametrize("method", ["auto", "greedy"])
def test_greedy_is_kept_when_the_stack_estimates_worse(method: str) -> None:
    rng = np.random.default_rng(0)
    n, k = 40, 4  # few clips, one good model among ten that know nothing: the stack overfits
    labels = rng.integers(0, k, n)
    good = np.full((n, k), 0.2 / (k - 1))
    guess = np.where(rng.random(n) < 0.8, labels, rng.integers(0, k, n))
    good[np.arange(n), guess] = 0.8
    noise = {f"run/t{i:04d}": rng.dirichlet(np.ones(k), size=n) for i in range(1, 11)}
    pool = pool_of({"run/t0000": good, **noise})
    parts = parts_of(n, 5, rng)
    greedy = greedy_of(pool, labels, parts, "log_loss")
    kept = choose_method(Ensemble(method=method), pool, labels, parts, "log_loss", greedy)
    assert kept is greedy and kept.method == "greedy"
    if method == "greedy":  # no stack is fitted
        assert set(kept.estimates) == {"greedy"} and kept.stack is None
    else:  # both estimated; the stack's is worse (a higher log loss)
        stack, chosen = kept.estimates["stack"].value, kept.estimates["greedy"].value
        assert get_metric("log_loss").better(chosen, stack)
        assert kept.stack is not None and not np.array_equal(kept.test, kept.stack.test)
