"""Tests for toolkit.metrics and toolkit.ensemble (greedy ensemble selection)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from tests.conftest import held_out_accuracy, run_cli
from toolkit.data.dataset import load_competition
from toolkit.demo import make_demo_competition
from toolkit.ensemble.selection import EnsembleResult, blend, select_ensemble
from toolkit.metrics import METRICS, accuracy, get_metric, log_loss
from toolkit.recipe.loading import load_recipe


def binary(p0: list[float]) -> np.ndarray:
    """Two-class probability table from the class-0 probabilities."""
    col = np.asarray(p0, dtype=np.float64)
    return np.stack([col, 1.0 - col], axis=1)


# --------------------------------------------------------------------------- metrics


def test_accuracy_counts_argmax_hits_and_breaks_row_ties_to_lowest_class() -> None:
    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5], [0.6, 0.4]])
    labels = np.array([0, 0, 0, 1])
    # rows 0 and 2 (tie -> class 0) are right; rows 1 and 3 are wrong
    assert accuracy(probs, labels) == 0.5


def test_log_loss_matches_hand_computation() -> None:
    probs = np.array([[0.8, 0.2], [0.25, 0.75]])
    labels = np.array([0, 1])
    expected = -(math.log(0.8) + math.log(0.75)) / 2
    assert log_loss(probs, labels) == pytest.approx(expected, rel=1e-12)


def test_log_loss_clips_zero_probabilities_and_renormalises_rows() -> None:
    zero = log_loss(np.array([[1.0, 0.0]]), np.array([1]))
    assert math.isfinite(zero)
    assert zero == pytest.approx(-math.log(1e-15), rel=1e-6)
    # an unnormalised row is scored as the distribution it is proportional to
    assert log_loss(np.array([[2.0, 2.0]]), np.array([0])) == pytest.approx(math.log(2))


def test_metric_table_and_direction() -> None:
    assert set(METRICS) == {"accuracy", "log_loss", "macro_f1", "balanced_accuracy"}
    assert METRICS["accuracy"].fn is accuracy and METRICS["accuracy"].direction == "maximize"
    assert METRICS["log_loss"].fn is log_loss and METRICS["log_loss"].direction == "minimize"
    assert METRICS["log_loss"].history_key == "val_loss"
    assert get_metric("accuracy").better(0.9, 0.8)
    assert not get_metric("accuracy").better(0.8, 0.8)
    assert get_metric("log_loss").better(0.2, 0.3)
    assert not get_metric("log_loss").better(0.3, 0.2)
    assert get_metric("log_loss").best([0.3, 0.2, 0.4]) == 0.2
    with pytest.raises(ValueError, match="unknown metric 'acuracy'; did you mean 'accuracy'"):
        get_metric("acuracy")


def test_macro_f1_and_balanced_accuracy_on_a_known_table() -> None:
    # truth 0 0 0 1 1 2; predicted 0 0 1 1 1 1 (class 2 never predicted)
    labels = np.array([0, 0, 0, 1, 1, 2])
    probs = np.eye(3)[[0, 0, 1, 1, 1, 1]]
    # F1: class 0 = 2*2/(3+2) = 0.8; class 1 = 2*2/(2+4) = 2/3; class 2 = 0
    assert METRICS["macro_f1"].fn(probs, labels) == pytest.approx((0.8 + 2 / 3 + 0) / 3)
    # recall: 2/3, 2/2, 0/1
    assert METRICS["balanced_accuracy"].fn(probs, labels) == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert METRICS["accuracy"].fn(probs, labels) == pytest.approx(4 / 6)


def test_metrics_reject_out_of_range_labels() -> None:
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        accuracy(binary([0.5]), np.array([2]))


# ------------------------------------------------------------------ (1) clear winner


def test_clearly_best_model_is_picked_first_with_weight_one() -> None:
    labels = np.array([0, 1, 0, 1, 0, 1])
    best = binary([0.9, 0.1, 0.8, 0.2, 0.9, 0.3])  # all right
    half = binary([0.9, 0.9, 0.9, 0.9, 0.9, 0.9])  # always class 0
    bad = binary([0.2, 0.8, 0.3, 0.7, 0.6, 0.4])  # mostly wrong
    for metric in ("accuracy", "log_loss"):
        result = select_ensemble(
            {"half": half, "best": best, "bad": bad}, labels, metric=metric, size=10
        )
        assert result.picks[0] == "best"
        assert result.members == {"best": 1.0}
        assert result.counts == {"best": 1}
        assert result.val_metric == METRICS[metric].fn(best, labels)
        assert len(result.trajectory) == 10
        assert result.metric == metric


# --------------------------------------------------------------- (2) complementary


def test_complementary_models_are_both_picked() -> None:
    labels = np.zeros(4, dtype=np.int64)
    left = binary([0.9, 0.9, 0.4, 0.4])  # right on rows 0-1, mildly wrong on 2-3
    right = binary([0.4, 0.4, 0.9, 0.9])  # the mirror image
    noise = binary([0.45, 0.45, 0.45, 0.6])
    probs = {"left": left, "right": right, "noise": noise}
    for metric in ("accuracy", "log_loss"):
        singles = [METRICS[metric].fn(p, labels) for p in probs.values()]
        result = select_ensemble(probs, labels, metric=metric, size=5)
        assert set(result.members) == {"left", "right"}
        assert result.members["left"] == pytest.approx(0.5)
        assert result.members["right"] == pytest.approx(0.5)
        assert all(METRICS[metric].better(result.val_metric, s) for s in singles)
    assert select_ensemble(probs, labels, size=5, metric="accuracy").val_metric == 1.0


# ----------------------------------------------------------------------- (3) ties


def test_identical_candidates_resolve_to_lowest_id_regardless_of_insertion_order() -> None:
    labels = np.array([0, 1, 1, 0])
    twin = binary([0.8, 0.3, 0.4, 0.6])
    worse = binary([0.4, 0.3, 0.6, 0.6])
    forward = {"m1": twin, "m2": twin.copy(), "z": worse}
    backward = {"z": worse, "m2": twin.copy(), "m1": twin}
    for metric in ("accuracy", "log_loss"):
        a = select_ensemble(forward, labels, metric=metric, size=4, init_best=1)
        b = select_ensemble(backward, labels, metric=metric, size=4, init_best=1)
        assert a == b
        assert "m2" not in a.picks
        assert a.picks[0] == "m1"
        assert a.members == {"m1": 1.0}


def test_metric_tie_goes_to_better_single_model_before_lower_id() -> None:
    labels = np.zeros(4, dtype=np.int64)
    a = binary([0.9, 0.9, 0.9, 0.2])  # single accuracy 0.75
    b = binary([0.3, 0.3, 0.3, 0.95])  # single accuracy 0.25; a+b -> 1.0
    c = binary([0.6, 0.45, 0.45, 0.9])  # single accuracy 0.50; a+c -> 1.0
    result = select_ensemble({"a": a, "b": b, "c": c}, labels, size=2, metric="accuracy")
    assert result.picks == ("a", "c")
    assert result.counts == {"a": 1, "c": 1}
    assert result.val_metric == 1.0


def test_accuracy_tie_in_round_one_picks_lowest_id() -> None:
    labels = np.array([0, 1])
    x = binary([0.9, 0.9])  # accuracy 0.5
    y = binary([0.1, 0.1])  # accuracy 0.5, different table
    result = select_ensemble({"y": y, "x": x}, labels, size=1, metric="accuracy")
    assert result.picks == ("x",)


# ------------------------------------------------ (4) log_loss trajectory, repetition


def test_log_loss_trajectory_is_monotone_and_models_repeat() -> None:
    labels = np.zeros(4, dtype=np.int64)
    strong = binary([0.9, 0.9, 0.9, 0.3])
    helper = binary([0.5, 0.5, 0.5, 0.9])
    result = select_ensemble({"A": strong, "B": helper}, labels, metric="log_loss", size=5)
    traj = result.trajectory
    assert len(traj) == 5
    assert all(later <= earlier for earlier, later in zip(traj, traj[1:], strict=False))
    assert traj[-1] < traj[0]
    assert result.picks.count("A") >= 2
    assert result.counts == {"A": 4, "B": 1}
    assert result.members == {"A": pytest.approx(0.8), "B": pytest.approx(0.2)}
    assert result.val_metric == traj[-1]
    blended = blend({"A": strong, "B": helper}, result.members)
    assert log_loss(blended, labels) == pytest.approx(result.val_metric, rel=1e-9)


def test_best_prefix_cuts_rounds_that_made_the_ensemble_worse() -> None:
    labels = np.zeros(4, dtype=np.int64)
    strong = binary([0.9, 0.9, 0.9, 0.3])
    helper = binary([0.5, 0.5, 0.5, 0.9])
    result = select_ensemble({"A": strong, "B": helper}, labels, metric="log_loss", size=6)
    traj = result.trajectory
    assert len(traj) == 6 and len(result.picks) == 6
    assert traj[5] > traj[4]  # the sixth round had to add something and it hurt
    assert sum(result.counts.values()) == 5
    assert result.val_metric == traj[4] == min(traj)


def test_symmetric_pair_keeps_the_even_split() -> None:
    labels = np.array([0, 0])
    a = binary([0.9, 0.2])
    b = binary([0.2, 0.9])
    result = select_ensemble({"a": a, "b": b}, labels, metric="log_loss", size=3)
    assert result.trajectory[2] > result.trajectory[1]
    assert result.counts == {"a": 1, "b": 1}
    assert result.val_metric == result.trajectory[1]


# ------------------------------------------------------------------ (5) init_best


def test_init_best_starts_from_the_n_best_single_models_in_rank_order() -> None:
    labels = np.zeros(4, dtype=np.int64)
    strong = binary([0.9, 0.9, 0.9, 0.3])
    helper = binary([0.5, 0.5, 0.5, 0.9])
    weak = binary([0.3, 0.3, 0.3, 0.3])
    probs = {"weak": weak, "helper": helper, "strong": strong}
    result = select_ensemble(probs, labels, metric="log_loss", size=1, init_best=2)
    assert result.picks[:2] == ("strong", "helper")
    assert len(result.trajectory) == 3
    assert result.trajectory[0] == log_loss(strong, labels)
    assert result.trajectory[1] == pytest.approx(log_loss((strong + helper) / 2, labels))
    # without initialisation the greedy path would start strong, strong
    plain = select_ensemble(probs, labels, metric="log_loss", size=2)
    assert plain.picks == ("strong", "strong")


def test_init_best_is_capped_at_the_number_of_candidates() -> None:
    labels = np.array([0, 1, 0])
    probs = {
        "a": binary([0.9, 0.2, 0.8]),
        "b": binary([0.6, 0.4, 0.4]),
        "c": binary([0.4, 0.6, 0.3]),
    }
    result = select_ensemble(probs, labels, size=2, init_best=10, metric="accuracy")
    assert len(result.trajectory) == 5
    assert sorted(result.picks[:3]) == ["a", "b", "c"]
    assert result.picks[0] == "a"


def test_best_prefix_may_drop_unhelpful_init_models() -> None:
    labels = np.zeros(3, dtype=np.int64)
    good = binary([0.9, 0.9, 0.9])
    meh = binary([0.05, 0.05, 0.05])  # averaged with good: 0.475 on class 0 -> wrong
    result = select_ensemble(
        {"good": good, "meh": meh}, labels, size=1, init_best=2, metric="accuracy"
    )
    assert result.picks[:2] == ("good", "meh")
    assert result.trajectory[1] < result.trajectory[0]  # accuracy fell after adding meh
    assert result.members == {"good": 1.0}
    assert result.val_metric == 1.0


# ---------------------------------------------------------------------- (6) blend


def test_blend_is_the_normalised_weighted_average() -> None:
    a = np.array([[1.0, 0.0], [0.5, 0.5]])
    b = np.array([[0.0, 1.0], [0.1, 0.9]])
    unused = np.array([[0.3, 0.7], [0.3, 0.7]])
    expected = np.array([[0.75, 0.25], [0.4, 0.6]])
    got = blend({"a": a, "b": b, "unused": unused}, {"a": 0.75, "b": 0.25})
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # unnormalised weights give the same blend; rows sum to 1
    np.testing.assert_allclose(blend({"a": a, "b": b}, {"b": 1, "a": 3}), expected, atol=1e-12)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-12)
    # a zero weight contributes nothing
    np.testing.assert_allclose(blend({"a": a, "b": b}, {"a": 1.0, "b": 0.0}), a, atol=1e-12)


def test_blend_of_selected_members_reproduces_the_validation_metric() -> None:
    rng = np.random.default_rng(7)
    probs = {f"m{i}": rng.dirichlet(np.ones(4), size=50) for i in range(5)}
    labels = rng.integers(0, 4, size=50)
    result = select_ensemble(probs, labels, metric="log_loss", size=15)
    blended = blend(probs, result.members)
    assert log_loss(blended, labels) == pytest.approx(result.val_metric, rel=1e-9)


# ----------------------------------------------------------------------- (7) errors


def test_empty_candidates_rejected() -> None:
    with pytest.raises(ValueError, match="no candidate"):
        select_ensemble({}, np.array([0]), metric="accuracy")


def test_shape_mismatch_names_the_candidate() -> None:
    probs = {"a": binary([0.5, 0.5]), "b": binary([0.5, 0.5, 0.5])}
    with pytest.raises(ValueError, match=r"candidate 'b' has shape \(3, 2\); expected \(2, 2\)"):
        select_ensemble(probs, np.array([0, 1]), metric="accuracy")
    three_class = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match="candidate 'zz' has shape"):
        select_ensemble(
            {"a": binary([0.5, 0.5]), "zz": three_class}, np.array([0, 1]), metric="accuracy"
        )


def test_label_errors() -> None:
    probs = {"a": binary([0.5, 0.5])}
    with pytest.raises(ValueError, match=r"label 2 is out of range \[0, 2\).*'a'"):
        select_ensemble(probs, np.array([0, 2]), metric="accuracy")
    with pytest.raises(ValueError, match=r"label -1 is out of range"):
        select_ensemble(probs, np.array([-1, 0]), metric="accuracy")
    with pytest.raises(ValueError, match="labels has 3 entries but candidate 'a' has 2 rows"):
        select_ensemble(probs, np.array([0, 1, 1]), metric="accuracy")
    with pytest.raises(ValueError, match="integers"):
        select_ensemble(probs, np.array([0.0, 1.0]), metric="accuracy")


def test_parameter_errors() -> None:
    probs = {"a": binary([0.5, 0.5])}
    labels = np.array([0, 1])
    with pytest.raises(ValueError, match="size must be an integer >= 1; got 0"):
        select_ensemble(probs, labels, size=0, metric="accuracy")
    with pytest.raises(ValueError, match="init_best must be an integer >= 0"):
        select_ensemble(probs, labels, init_best=-1, metric="accuracy")
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        select_ensemble(probs, labels, metric="auc")


def test_bad_table_contents_name_the_candidate() -> None:
    labels = np.array([0, 1])
    logits = np.array([[2.0, 1.0], [0.5, 0.3]])
    with pytest.raises(ValueError, match="candidate 'raw' rows must sum to 1"):
        select_ensemble({"ok": binary([0.5, 0.5]), "raw": logits}, labels, metric="accuracy")
    with pytest.raises(ValueError, match="candidate 'neg' contains negative"):
        select_ensemble({"neg": np.array([[1.5, -0.5], [0.5, 0.5]])}, labels, metric="accuracy")
    with pytest.raises(ValueError, match="candidate 'nan' contains non-finite"):
        select_ensemble({"nan": np.array([[np.nan, 1.0], [0.5, 0.5]])}, labels, metric="accuracy")
    with pytest.raises(ValueError, match="candidate 'flat' must be a 2-D"):
        select_ensemble({"flat": np.array([0.5, 0.5])}, labels, metric="accuracy")


def test_blend_errors() -> None:
    a = binary([0.5, 0.5])
    with pytest.raises(ValueError, match="candidate 'b' has a weight but no probability table"):
        blend({"a": a}, {"a": 0.5, "b": 0.5})
    with pytest.raises(ValueError, match="weight for candidate 'a' must be finite and >= 0"):
        blend({"a": a}, {"a": -1.0})
    with pytest.raises(ValueError, match="sum to 0"):
        blend({"a": a}, {"a": 0.0})
    with pytest.raises(ValueError, match="candidate 'b' has shape"):
        blend({"a": a, "b": binary([0.5])}, {"a": 0.5, "b": 0.5})


# -------------------------------------------------------- (8) property-style check


@pytest.mark.parametrize("metric", list(METRICS))
def test_ensemble_is_never_worse_than_the_best_single_model(metric: str) -> None:
    fn = METRICS[metric].fn
    for seed in range(40):
        rng = np.random.default_rng(seed)
        n_models = int(rng.integers(1, 7))
        n_rows = int(rng.integers(5, 60))
        n_classes = int(rng.integers(2, 6))
        labels = rng.integers(0, n_classes, size=n_rows)
        # sharpen some tables so that the models differ in quality
        probs = {
            f"m{i}": rng.dirichlet(np.full(n_classes, float(rng.uniform(0.2, 2.0))), size=n_rows)
            for i in range(n_models)
        }
        singles = [fn(p, labels) for p in probs.values()]
        best_single = METRICS[metric].best(singles)
        init_best = int(rng.integers(0, 3))
        size = int(rng.integers(1, 25))
        result = select_ensemble(probs, labels, metric=metric, size=size, init_best=init_best)

        assert isinstance(result, EnsembleResult)
        assert not METRICS[metric].better(best_single, result.val_metric), seed
        assert result.trajectory[0] == best_single, seed
        assert len(result.trajectory) == min(init_best, n_models) + size
        # the kept prefix is the best point of the trajectory (ties within 1e-12)
        goodness = METRICS[metric].goodness
        assert max(goodness(t) for t in result.trajectory) <= goodness(result.val_metric) + 1e-12
        assert sum(result.members.values()) == pytest.approx(1.0)
        assert all(w > 0 for w in result.members.values())
        kept = sum(result.counts.values())
        assert result.counts == {k: result.picks[:kept].count(k) for k in set(result.picks[:kept])}
        assert fn(blend(probs, result.members), labels) == pytest.approx(
            result.val_metric, rel=1e-9, abs=1e-12
        )


# ------------------------------------------------------ on clips that did not choose it

HELD_OUT_STUDY = """
name: held-out
data: {{root: {root}, sample_rate: 16000, duration: 1.5}}
features: {{name: mel, n_fft: 512, hop_length: 256, n_mels: 32}}
augmenters: [{{name: mixup, alpha: 0.2}}]
split: {{test_size: 0.3}}
model: {{backbone: {{name: head, hidden: 64, dropout: 0.2}}}}
train:
  epochs: 30
  batch_size: 32
  optimizer: {{name: adamw, lr: 0.003}}
  scheduler: {{name: cosine}}
cache: {{dir: {work}/cache}}
output: {{leaderboard: {work}/leaderboard.db}}
search:
  n_trials: 5
  sampler: {{name: random, seed: 0}}
  pruner: {{name: none}}
  space:
    train.optimizer.lr: {{low: 0.0003, high: 0.03, log: true}}
    model.backbone.hidden: {{choices: [0, 32, 128]}}
ensemble: {{size: 10}}
"""


@pytest.mark.slow
def test_the_ensemble_holds_up_on_held_out_test_labels(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The greedy ensemble is chosen on validation predictions; on the demo's held-out test
    labels it must still beat chance and be no worse than the best single trial by more than
    the noise of that many clips (``1 / sqrt(n)``: two standard errors of an accuracy near
    one half)."""
    work = tmp_path_factory.mktemp("held-out")
    comp = make_demo_competition(
        work / "comp", n_train=150, n_test=150, seed=21, duration=1.5, formats=("wav",)
    )
    recipe = work / "recipe.yaml"
    recipe.write_text(HELD_OUT_STUDY.format(root=comp.root, work=work))
    done = run_cli("run", recipe, "--output", work / "run", "--no-report", cwd=work)
    assert done.returncode == 0, done.stderr
    competition = load_competition(load_recipe(recipe).recipe.data)
    summary = json.loads((work / "run" / "ensemble.json").read_text())
    best_trial = summary["best_trial"].rsplit("/", 1)[-1]
    best = np.load(work / "run" / "trials" / best_trial / "test_probs.npy")
    table = pd.read_csv(work / "run" / "test_probs.csv")
    ensemble = table[[c for c in table.columns if c.startswith("p_")]].to_numpy(np.float64)
    ensemble_acc, majority = held_out_accuracy(comp.root, competition, ensemble)
    best_acc, _ = held_out_accuracy(comp.root, competition, best)
    margin = 1 / math.sqrt(len(competition.test_ids))
    print(f"held-out accuracy: ensemble {ensemble_acc:.3f}, best trial {best_acc:.3f}")
    assert ensemble_acc > max(0.25, majority) + 0.05, (ensemble_acc, majority)
    assert ensemble_acc >= best_acc - margin, (ensemble_acc, best_acc, margin)
