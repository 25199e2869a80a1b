"""Where a model is right and wrong on validation: confusion matrix and per-class scores."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn import metrics as sk_metrics

from toolkit.metrics import validation_scores
from toolkit.report.collect import Predictions


@dataclass(frozen=True)
class ClassScores:
    """A model's validation predictions scored: the confusion matrix and each class's scores."""

    name: str
    classes: list[str]
    """The classes as shown (their names where the recipe gives them), in label order."""
    confusion: np.ndarray
    """``[K, K]`` counts: row = true class, column = predicted class."""
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    """Clips of each true class."""
    metrics: dict[str, float]
    """Every metric of :data:`toolkit.metrics.METRICS`, by its history column (``val_accuracy``)."""


def score(predictions: Predictions, class_name: Callable[[str], str] = str) -> ClassScores:
    """The confusion matrix and per-class precision, recall and F1 of arg-max predictions;
    ``class_name`` says how each label is shown."""
    classes = [class_name(c) for c in predictions.classes]
    indices = list(range(len(classes)))
    predicted = predictions.probs.argmax(axis=1)
    confusion = sk_metrics.confusion_matrix(predictions.labels, predicted, labels=indices)
    precision, recall, f1, support = sk_metrics.precision_recall_fscore_support(
        predictions.labels, predicted, labels=indices, zero_division=0
    )
    return ClassScores(
        name=predictions.name,
        classes=classes,
        confusion=confusion,
        precision=np.asarray(precision, dtype=np.float64),
        recall=np.asarray(recall, dtype=np.float64),
        f1=np.asarray(f1, dtype=np.float64),
        support=np.asarray(support, dtype=np.int64),
        metrics=validation_scores(predictions.probs, predictions.labels),
    )
