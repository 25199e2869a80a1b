"""Temperature scaling (toolkit/training/calibration.py) and calibrated selection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import assert_predicts_own_test_probs
from toolkit.demo import DemoCompetition
from toolkit.metrics import accuracy, log_loss
from toolkit.training.calibration import apply_temperature, fit_temperature


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def sampled(temperature: float, n: int = 4000, k: int = 4, seed: int = 0):
    """Logits of ``n`` clips and labels drawn from ``softmax(logits / temperature)``: a model
    whose logits are ``temperature`` times too large (or small) for its accuracy."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, size=(n, k))
    truth = softmax(logits / temperature)
    labels = np.array([rng.choice(k, p=row) for row in truth])
    return softmax(logits), labels


@pytest.mark.parametrize("true_t", [0.5, 2.5, 6.0])
def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_with(
    true_t: float,
) -> None:
    probs, labels = sampled(true_t)
    fitted = fit_temperature(probs, labels)
    assert fitted == pytest.approx(true_t, rel=0.1)
    # the calibrated loss is lower than the raw one, and as low as the truth's
    calibrated = log_loss(apply_temperature(probs, fitted), labels)
    assert calibrated < log_loss(probs, labels)
    assert calibrated <= log_loss(apply_temperature(probs, true_t), labels) + 1e-9


def test_calibrated_predictions_keep_a_temperature_near_one() -> None:
    probs, labels = sampled(1.0)
    assert fit_temperature(probs, labels) == pytest.approx(1.0, abs=0.08)


@pytest.mark.parametrize("seed", range(6))
def test_fit_temperature_never_worsens_log_loss(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(2, 40)), int(rng.integers(2, 6))
    probs = softmax(rng.normal(0.0, rng.uniform(0.1, 8.0), size=(n, k)))
    labels = rng.integers(0, k, size=n)
    fitted = fit_temperature(probs, labels)
    assert fitted > 0
    assert log_loss(apply_temperature(probs, fitted), labels) <= log_loss(probs, labels)
    assert fit_temperature(probs, labels) == fitted  # deterministic


def test_apply_temperature_keeps_every_arg_max_and_the_identity_at_one() -> None:
    probs, labels = sampled(2.0, n=200)
    assert apply_temperature(probs, 1.0) is probs
    for t in (0.01, 0.3, 3.0, 500.0):
        scaled = apply_temperature(probs, t)
        assert np.allclose(scaled.sum(axis=1), 1.0)
        assert accuracy(scaled, labels) == accuracy(probs, labels)
    logits = np.log(probs)
    assert np.allclose(apply_temperature(probs, 4.0), softmax(logits / 4.0))
    with pytest.raises(ValueError, match="positive"):
        apply_temperature(probs, 0.0)


# ------------------------------------------------ a cross-validated model: a temperature per fold
FOLD_SCRIPT = [[1, 6.0], [1, 6.0]]
"""Both epochs sure of class 1 on every clip (logit 6): each fold's temperature softens that to
its own held-out clips' share of class 1, which differs from fold to fold."""


def script_probs(n: int, k: int, favoured: int, scale: float) -> np.ndarray:
    """What the ``scripted`` backbone predicts for ``n`` clips: ``scale`` on one class."""
    logits = np.zeros((n, k))
    logits[:, favoured] = scale
    return softmax(logits)


def fold_part(folder: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """A fold's held-out clips: their ids, labels (class indices) and saved probabilities."""
    table = pd.read_csv(folder / "val_probs.csv", dtype={"id": str, "label": str})
    classes = [c.removeprefix("p_") for c in table.columns if c.startswith("p_")]
    labels = np.array([classes.index(label) for label in table["label"]])
    probs = table[[f"p_{c}" for c in classes]].to_numpy()
    return list(table["id"]), labels, probs


@pytest.mark.slow
def test_each_fold_fits_its_temperature_on_its_own_held_out_clips_only(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    from tests.test_search import SCRIPTED_SEARCH, scripted_study

    search = SCRIPTED_SEARCH.format(metric="log_loss")
    cache = f"cache.dir={tmp_path / 'cache'}"
    run_dir = scripted_study(
        tiny_competition.root,
        tmp_path,
        cache,
        search,
        FOLD_SCRIPT,
        "split.folds=3",
        "split.stratify=false",  # folds with their own shares of class 1
    )
    trial = run_dir / "trials" / "t0000"
    parts = [fold_part(trial / f"fold{k}") for k in (1, 2, 3)]
    ids = [i for part in parts for i in part[0]]
    assert len(ids) == len(set(ids)) == tiny_competition.n_train  # the folds split the clips
    shares = [float(np.mean(labels == 1)) for _, labels, _ in parts]
    assert len(set(shares)) == 3, f"the case needs folds unlike each other: {shares}"
    k = parts[0][2].shape[1]
    temperatures = []
    for fold, (fold_ids, labels, saved) in enumerate(parts, 1):
        record = json.loads((trial / f"fold{fold}" / "model.json").read_text())
        raw = script_probs(len(fold_ids), k, *FOLD_SCRIPT[record["best_epoch"] - 1])
        own = fit_temperature(raw, labels)  # on exactly this fold's held-out predictions
        assert record["temperature"] == pytest.approx(own, rel=1e-6)  # float32 logits
        assert np.allclose(saved, apply_temperature(raw, own))  # what it saved: calibrated
        for other, (_, other_labels, _) in enumerate(parts, 1):
            if other == fold:  # another fold's clips, had they been seen, change it
                continue
            both = np.concatenate([labels, other_labels])
            seen = fit_temperature(script_probs(len(both), k, 1, 6.0), both)
            assert abs(seen - own) > 1e-3 * own, (fold, other)
        temperatures.append(record["temperature"])
    model = json.loads((trial / "model.json").read_text())
    assert model["fold_temperatures"] == pytest.approx(temperatures)
    # the test prediction: the folds' calibrated predictions' mean
    test_probs = np.load(trial / "test_probs.npy")
    expected = np.mean(
        [apply_temperature(script_probs(len(test_probs), k, 1, 6.0), t) for t in temperatures],
        axis=0,
    )
    assert np.allclose(test_probs, expected)


@pytest.mark.slow
def test_a_refit_takes_its_trials_temperature_and_predict_applies_it(
    tiny_study: Path, tiny_competition: DemoCompetition
) -> None:
    refits = sorted(tiny_study.glob("trials/t*/refit/model.json"))
    assert refits, "the tiny study refits its chosen trials"
    for path in refits:
        refit = json.loads(path.read_text())
        trial = json.loads((path.parent.parent / "model.json").read_text())
        assert trial["temperature"] != 1.0  # the case: a trial its validation calibrated
        assert refit["temperature"] == pytest.approx(trial["temperature"])
        state = torch.load(path.parent / "best.pt", weights_only=True)
        assert state["temperature"] == pytest.approx(trial["temperature"])
    # predict divides by the saved temperatures: the run's own test probabilities, bit for bit
    sample = tiny_competition.root / "sample_submission.csv"
    assert len(assert_predicts_own_test_probs(tiny_study, sample)) >= 1


def test_a_model_record_written_before_calibration_reads_as_temperature_one(
    tmp_path: Path,
) -> None:
    from toolkit.runs.records import read_model
    from toolkit.runs.run_dir import RunDir

    folder = RunDir(tmp_path / "t0000")
    folder.path.mkdir()
    old = {"id": "run/t0000", "kind": "trial", "metric": "log_loss", "metric_value": 0.9}
    folder.file("model.json").write_text(json.dumps(old))
    record = read_model(folder)
    assert record is not None
    assert record.temperature == 1.0 and record.held_out_temperature == 1.0
    folds = {**old, "fold_temperatures": [2.0, 8.0]}  # a refit takes their geometric mean
    folder.file("model.json").write_text(json.dumps(folds))
    assert read_model(folder).held_out_temperature == pytest.approx(4.0)  # type: ignore[union-attr]
