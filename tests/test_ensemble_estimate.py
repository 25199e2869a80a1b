"""The ensemble's estimate: greedy selection cross-validated, not scored on what chose it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from toolkit.ensemble.estimate import estimate_parts, estimate_selection
from toolkit.ensemble.selection import select_ensemble

N, K = 400, 4


def noise_candidates(rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
    """``count`` candidates whose probabilities know nothing of the labels."""
    return {f"t{i:04d}": rng.dirichlet(np.ones(K), size=N) for i in range(count)}


def parts_of(rng: np.random.Generator, n_parts: int = 5) -> list[np.ndarray]:
    return [np.sort(p) for p in np.array_split(rng.permutation(N), n_parts)]


def test_selection_on_noise_fools_its_own_score_but_not_the_estimate() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, K, N)
    probs = noise_candidates(rng, 60)
    chosen = select_ensemble(probs, labels, metric="accuracy", size=20)
    estimate = estimate_selection(probs, labels, parts_of(rng), metric="accuracy", size=20)
    chance = 1 / K
    # chosen on these very labels: above chance by luck alone
    assert chosen.val_metric > chance + 0.05
    # cross-validated: no better than chance, within sampling noise (sd ~ 0.022 here)
    assert abs(estimate.value - chance) < 0.06
    assert estimate.value < chosen.val_metric - 0.04
    assert estimate.accuracy == estimate.value and len(estimate.parts) == 5


def test_with_real_signal_the_estimate_is_close_to_the_selection() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, K, N)
    probs = {}
    for i in range(12):  # each candidate right about 70% of the time
        logits = rng.normal(size=(N, K))
        right = rng.random(N) < 0.7
        logits[right, labels[right]] += 4.0
        probs[f"t{i:04d}"] = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    chosen = select_ensemble(probs, labels, metric="log_loss", size=10)
    estimate = estimate_selection(probs, labels, parts_of(rng), metric="log_loss", size=10)
    assert estimate.metric == "log_loss"
    assert chosen.val_metric <= estimate.value <= chosen.val_metric * 1.1  # lower is better
    assert estimate.accuracy > 0.8  # an average of 12 such candidates


def test_one_part_gives_the_selections_own_score() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, K, N)
    probs = noise_candidates(rng, 5)
    chosen = select_ensemble(probs, labels, metric="accuracy", size=5)
    whole = estimate_selection(probs, labels, [np.arange(N)], metric="accuracy", size=5)
    assert whole.value == chosen.val_metric and whole.parts == [chosen.val_metric]


def test_parts_must_cover_every_clip() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, K, N)
    probs = noise_candidates(rng, 3)
    with pytest.raises(ValueError, match="cover every"):
        estimate_selection(
            probs, labels, [np.arange(0, 100), np.arange(100, 200)], metric="accuracy", size=3
        )


def test_parts_keep_the_groups_when_every_class_is_rarer_than_the_parts() -> None:
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 3, 3, 3])  # no class has 5 clips
    groups = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    data = SimpleNamespace(
        cross_validated=False,
        val_labels=labels,
        val_idx=np.arange(10),
        competition=SimpleNamespace(groups=groups),
    )
    parts = estimate_parts(data)  # type: ignore[arg-type]
    assert len(parts) == 5
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(10))
    assert all(len(set(groups[p].tolist())) == 1 for p in parts)  # a song in one part
