"""A stacked ensemble: a level-2 model over the level-1 models' held-out probabilities.

The level-1 models are the study's trials (each trial's bag of seed copies in its
place when it has one). Their validation probabilities are held out already
(out-of-fold when cross-validated): no level-1 model trained on the clip it
predicts. The level-2 model is a multinomial logistic regression (L2-regularised,
scikit-learn) on their probabilities side by side (as AutoGluon's stackers take
them: bounded, so a model of wild confidence cannot swamp the others), so it can
weigh each model per class, and undo a model's bias, where greedy selection only
averages.

Its own folds are the estimate's parts (:func:`toolkit.ensemble.estimate.estimate_parts`:
the study's folds, or parts of the validation clips grouped like the split), so no
group straddles them. The estimate is nested: for each part, the regularisation
strength is chosen by cross-validation over the other parts, the model fitted on
them and scored on the part; the held-out predictions of every part together are
scored once. The level-2 model that predicts the test clips is chosen and fitted
the same way on every validation clip, then applied to the level-1 models' test
probabilities.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from toolkit.ensemble.estimate import SelectionEstimate
from toolkit.metrics import accuracy, get_metric

STACK_C = (0.01, 0.1, 1.0, 10.0)
"""Inverse regularisation strengths the level-2 model chooses among, most regularised first
(a tie goes to the stronger regularisation)."""

Strength = Callable[[np.ndarray, np.ndarray, Sequence[np.ndarray]], float]
"""Chooses the level-2 strength from the rows it will be fitted on and their parts."""

DEFAULT_C = 1.0
"""The strength used when there are too few parts to choose one by cross-validation."""

FLOOR = 1e-6
"""The least probability the level-2 model gives a class (one its training rows lacked)."""


def level_one(probs: Mapping[str, np.ndarray], ids: Sequence[str]) -> np.ndarray:
    """The level-2 model's inputs: each model's probabilities, side by side
    (``[N, len(ids) * K]``)."""
    return np.concatenate([np.asarray(probs[cid], dtype=np.float64) for cid in ids], axis=1)


@dataclass
class StackModel:
    """A fitted level-2 model: the probabilities of all ``n_classes`` from level-1 inputs."""

    c: float
    n_classes: int
    model: LogisticRegression | None
    """``None``: the training rows had one class, always predicted (``constant``)."""
    constant: int = 0

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``[N, n_classes]`` probabilities (a class unseen in training gets almost none)."""
        if self.model is None:
            out = np.full((len(x), self.n_classes), FLOOR)
            out[:, self.constant] = 1.0
            return out / out.sum(axis=1, keepdims=True)
        return _probabilities(self.model, x, self.n_classes)

    def as_dict(self) -> dict[str, Any]:
        """What :meth:`from_dict` rebuilds it from (JSON: floats written in full)."""
        fitted = self.model
        return {
            "C": self.c,
            "n_classes": self.n_classes,
            "constant": self.constant,
            "classes": None if fitted is None else fitted.classes_.tolist(),
            "coef": None if fitted is None else fitted.coef_.tolist(),
            "intercept": None if fitted is None else fitted.intercept_.tolist(),
        }

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> StackModel:
        """The fitted model :meth:`as_dict` wrote: it predicts as the one that wrote it."""
        c, n_classes = float(saved["C"]), int(saved["n_classes"])
        if saved["coef"] is None:
            return cls(c, n_classes, None, int(saved["constant"]))
        fitted = LogisticRegression(C=c, max_iter=500)
        fitted.classes_ = np.asarray(saved["classes"])
        fitted.coef_ = np.asarray(saved["coef"], dtype=np.float64)
        fitted.intercept_ = np.asarray(saved["intercept"], dtype=np.float64)
        fitted.n_features_in_ = fitted.coef_.shape[1]
        return cls(c, n_classes, fitted)

    def input_weights(self, n_inputs: int) -> np.ndarray:
        """Each level-1 model's share of the coefficients' magnitude (sums to 1)."""
        if self.model is None:
            return np.full(n_inputs, 1.0 / n_inputs)
        blocks = np.split(np.abs(self.model.coef_), n_inputs, axis=1)
        sizes = np.array([float(np.linalg.norm(b)) for b in blocks])
        total = sizes.sum()
        return sizes / total if total > 0 else np.full(n_inputs, 1.0 / n_inputs)


@threadpool_limits.wrap(limits=1)  # the one thread count every caller predicts with
def stacked_probabilities(
    model: StackModel, probs: Mapping[str, np.ndarray], inputs: Sequence[str]
) -> np.ndarray:
    """The level-2 model's probabilities of some clips, from its inputs' (level-1 model id ->
    ``[N, K]``, the ``inputs`` in its order)."""
    return model.predict(level_one(probs, inputs))


def _probabilities(model: LogisticRegression, x: np.ndarray, n_classes: int) -> np.ndarray:
    """A fitted model's ``[N, n_classes]`` probabilities, classes it never saw at ``FLOOR``."""
    out = np.full((len(x), n_classes), FLOOR)
    out[:, model.classes_] += model.predict_proba(x)
    return out / out.sum(axis=1, keepdims=True)


def _fit(model: LogisticRegression, x: np.ndarray, labels: np.ndarray) -> LogisticRegression:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x, labels)


def fit_stack(x: np.ndarray, labels: np.ndarray, n_classes: int, c: float) -> StackModel:
    """The level-2 logistic regression of strength ``c`` fitted on ``x`` and ``labels``."""
    present = np.unique(labels)
    if len(present) < 2:
        return StackModel(c, n_classes, None, int(present[0]) if len(present) else 0)
    return StackModel(c, n_classes, _fit(LogisticRegression(C=c, max_iter=500), x, labels))


def choose_c(
    x: np.ndarray,
    labels: np.ndarray,
    parts: Sequence[np.ndarray],
    metric: str,
    n_classes: int,
) -> float:
    """The strength of :data:`STACK_C` whose model, fitted without each part in turn, scores
    best on the parts held out together; :data:`DEFAULT_C` with fewer than two parts."""
    if len(parts) < 2:
        return DEFAULT_C
    held = {c: np.full((len(labels), n_classes), np.nan) for c in STACK_C}
    every = np.arange(len(labels))
    for part in parts:
        rest = np.setdiff1d(every, part)
        if len(np.unique(labels[rest])) < 2:  # one class: every strength predicts it alike
            for c in STACK_C:
                held[c][part] = fit_stack(x[rest], labels[rest], n_classes, c).predict(x[part])
            continue
        model = LogisticRegression(max_iter=500, warm_start=True)  # each strength from the last
        for c in STACK_C:
            _fit(model.set_params(C=c), x[rest], labels[rest])
            held[c][part] = _probabilities(model, x[part], n_classes)
    rule = get_metric(metric)
    scores = [(c, rule.fn(held[c], labels)) for c in STACK_C]
    best = rule.best(score for _, score in scores)
    return next(c for c, score in scores if score == best)


def held_out(
    x: np.ndarray,
    labels: np.ndarray,
    parts: Sequence[np.ndarray],
    n_classes: int,
    strength: Strength,
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray, float]]]:
    """Each part predicted by a model fitted on the other parts alone, with the strength
    ``strength(x_rest, labels_rest, rest_parts)`` gives; returns every row's held-out
    probabilities and, per part, the rows fitted on, the rows predicted and the strength."""
    every = np.arange(len(labels))
    held = np.full((len(labels), n_classes), np.nan)
    fits: list[tuple[np.ndarray, np.ndarray, float]] = []
    for i, part in enumerate(parts):
        rest = np.setdiff1d(every, part)
        position = {int(row): j for j, row in enumerate(rest)}  # rows of rest, renumbered
        inner = [np.array([position[int(r)] for r in p]) for j, p in enumerate(parts) if j != i]
        c = strength(x[rest], labels[rest], inner)
        held[part] = fit_stack(x[rest], labels[rest], n_classes, c).predict(x[part])
        fits.append((rest, np.asarray(part), c))
    if np.isnan(held).any():
        raise ValueError("the stack's parts do not cover every validation clip")
    return held, fits


@dataclass
class StackedEnsemble:
    """The stacked ensemble of some level-1 models: its inputs, its level-2 model, its
    validation and test probabilities and its nested estimate."""

    inputs: list[str]
    """The level-1 models' ids, in the order of the level-2 model's input blocks."""
    model: StackModel
    val: np.ndarray
    """The level-2 model's probabilities of the validation clips it was fitted on."""
    test: np.ndarray
    estimate: SelectionEstimate
    held_out: np.ndarray
    """Every validation clip's probabilities from a level-2 model fitted without its part."""
    fits: list[tuple[np.ndarray, np.ndarray, float]] = field(default_factory=list)
    """Per part of the estimate: the validation rows its level-2 model was fitted on, the
    rows it predicted, and its strength."""
    bags: dict[str, list[str]] = field(default_factory=dict)
    """The inputs that are bags, and their models (an input's probabilities are their mean)."""

    @property
    def weights(self) -> dict[str, float]:
        """Each input's share of the level-2 coefficients' magnitude, largest first."""
        shares = self.model.input_weights(len(self.inputs))
        pairs = sorted(zip(self.inputs, shares.tolist(), strict=True), key=lambda p: -p[1])
        return {cid: share for cid, share in pairs if share > 0}


@threadpool_limits.wrap(limits=1)  # the fits are small: threads waiting on each other cost 10x
def stack_ensemble(
    val_probs: Mapping[str, np.ndarray],
    test_probs: Mapping[str, np.ndarray],
    labels: np.ndarray,
    parts: Sequence[np.ndarray],
    *,
    metric: str,
) -> StackedEnsemble:
    """Stack the models of ``val_probs`` (id -> ``[N, K]`` held-out probabilities of the
    validation clips; ``test_probs`` the same ids' test probabilities) with folds ``parts``
    (row numbers, together every row once)."""
    inputs = sorted(val_probs)
    n_classes = next(iter(val_probs.values())).shape[1]
    x = level_one(val_probs, inputs)

    def chosen(xs: np.ndarray, ys: np.ndarray, inner: Sequence[np.ndarray]) -> float:
        return choose_c(xs, ys, inner, metric, n_classes)

    rule = get_metric(metric)
    if len(parts) < 2:  # nothing to hold out: the fit's own score
        model = fit_stack(x, labels, n_classes, DEFAULT_C)
        held, fits = model.predict(x), []
        values = [rule.fn(held, labels)]
    else:
        held, fits = held_out(x, labels, parts, n_classes, chosen)
        values = [rule.fn(held[part], labels[part]) for part in parts]
        model = fit_stack(x, labels, n_classes, chosen(x, labels, parts))
    estimate = SelectionEstimate(
        metric, rule.fn(held, labels), values, accuracy(held, labels), procedure="stack"
    )
    test = stacked_probabilities(model, test_probs, inputs)
    return StackedEnsemble(inputs, model, model.predict(x), test, estimate, held, fits)
