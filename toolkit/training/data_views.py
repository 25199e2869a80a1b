"""A recipe's data views in one process: its inputs checked once, each feature setting
prepared once, and what the cached stages did for them all."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from toolkit.data.checks import CheckedInputs
from toolkit.data.preprocess import StageStats
from toolkit.recipe.schema import Recipe
from toolkit.registry.table import Registry
from toolkit.training.pipeline import PreparedData, prepare
from toolkit.validation.grouping import grouped_inputs

VIEW_KEYS = {"data", "separator", "features", "cache"}
"""The recipe sections a data view depends on: recipes equal in these share one."""


class DataViews:
    """The data views of one recipe and its variations (a study's trials), made once each.

    The inputs (the competition and its folds) are the recipe's: variations cannot
    change them. A variation with other feature settings gets a view of its own.
    """

    def __init__(self, recipe: Recipe, registry: Registry) -> None:
        self.recipe = recipe
        self.registry = registry
        self._inputs: CheckedInputs | None = None
        self._views: dict[str, PreparedData] = {}

    def inputs(self) -> CheckedInputs:
        """The competition and its folds, checked once (before any audio work but the
        grouping's, with ``split.groups: auto``)."""
        if self._inputs is None:
            self._inputs = grouped_inputs(self.recipe, self.registry)
        return self._inputs

    def view(self, recipe: Recipe | None = None) -> PreparedData:
        """The features and folds of ``recipe`` (default: the recipe's own), computed on
        first use; later calls give the same arrays, their stats saying no stage ran."""
        recipe = recipe or self.recipe
        key = json.dumps(recipe.model_dump(mode="json", include=VIEW_KEYS), sort_keys=True)
        if key not in self._views:
            self._views[key] = prepare(recipe, self.registry, self.inputs())
            return self._views[key]
        return self._views[key].reused()

    def stats(self) -> StageStats:
        """What the cached stages did for every view this process prepared."""
        total = StageStats()
        for data in self._views.values():
            total.add(data.stats)
        return total


def validation_digest(data: PreparedData) -> str:
    """A digest of the clips and labels models of ``data`` are validated on: the same for
    every model whose validation predictions compare (and their folds, when cross-validated)."""
    comp = data.competition
    ids = [comp.train_ids[i] for i in data.val_idx]
    parts: list[Any] = [ids, data.labels[data.val_idx].tolist(), comp.classes]
    if data.cross_validated:  # which fold holds out each clip matters too
        parts.append([[comp.train_ids[i] for i in f.val_idx] for f in data.folds])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]
