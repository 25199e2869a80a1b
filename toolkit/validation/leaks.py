"""``toolkit leaks``: how much an ungrouped split leaks, seen before any training.

The groups are the recipe's ``data.group_column`` when it has one, else the ones
``split.groups: auto`` finds (:mod:`toolkit.validation.grouping`), whatever the recipe's
``split.groups`` says. The report counts the pairs of clips of one group that
the recipe's split without groups puts on both sides, and (unless asked not to)
scores a linear probe (logistic regression on the recipe's features pooled over
time) with the ungrouped and the grouped folds: the difference is how much a
validation score of this recipe is inflated by siblings on both sides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from toolkit.data.checks import check_inputs
from toolkit.recipe.schema import Recipe
from toolkit.registry.table import Registry
from toolkit.validation.grouping import find_groups, link_rule, straddling_pairs
from toolkit.validation.split import Fold, split_folds
from toolkit.wording import count

PROBE_PARTS = 5
"""Folds of the linear probe when the recipe has a single split."""


@dataclass(frozen=True)
class LeakReport:
    """What grouping the recipe's train clips changes."""

    clips: int
    source: str
    """Where the groups come from: ``auto`` or ``data.group_column NAME``."""
    groups: int
    largest: int
    alone: int
    straddled: int
    """Pairs of clips of one group the ungrouped split puts on both sides."""
    pairs: int
    """Pairs of clips of one group."""
    cap: int | None = None
    refused: int = 0
    rule: str | None = None
    """What a pair of clips had to pass to link (found groups only)."""
    thresholds: dict[str, float | None] | None = None
    """The similarity a pair had to reach per signal, when calibrated on the test clips
    (None: no similarity was high enough to link)."""
    probe: dict[str, float] | None = None
    """Linear-probe accuracy with ungrouped and grouped folds (keys ``ungrouped``,
    ``grouped``), when computed."""

    def as_dict(self) -> dict[str, Any]:
        """The report as ``--json`` prints it."""
        return dataclasses.asdict(self)

    def lines(self) -> list[str]:
        """The report in a few lines of text."""
        found = (
            f"groups ({self.source}): {self.groups} among {count(self.clips, 'clip')}, the largest "
            f"{self.largest}, {self.alone} alone"
        )
        if self.cap is not None:
            found += f"; cap {count(self.cap, 'clip')}"
            if self.refused:
                found += f", {self.refused} link(s) not followed because of it"
        if self.rule is not None:
            found += f"; {self.rule}"
        share = self.straddled / self.pairs if self.pairs else 0.0
        out = [
            found,
            f"pairs of clips in one group: {self.pairs}; the split without groups puts "
            f"{self.straddled} of them ({share:.0%}) on both sides",
        ]
        if self.probe is not None:
            open_, grouped = self.probe["ungrouped"], self.probe["grouped"]
            out.append(
                f"linear probe on the recipe's features, out-of-fold accuracy: without groups "
                f"{open_:.3f}, grouped {grouped:.3f} ({100 * (open_ - grouped):+.1f} points "
                "of leak)"
            )
        return out


def leak_report(recipe: Recipe, registry: Registry, *, probe: bool = True) -> LeakReport:
    """Find the recipe's groups and measure what an ungrouped split leaks."""
    inputs = check_inputs(recipe, registry)
    competition = inputs.competition
    ungrouped = dataclasses.replace(competition, groups=None)
    open_folds = split_folds(ungrouped, recipe.split)
    cap, refused, rule, thresholds = None, 0, None, None
    if competition.groups is not None:
        labels = np.unique(np.asarray(competition.groups).astype(str), return_inverse=True)[1]
        source = f"data.group_column {recipe.data.group_column}"
    else:
        found = find_groups(recipe, registry, competition)
        labels, cap, refused = found.labels, found.cap, found.refused
        rule = link_rule(found)
        thresholds = {k: v if np.isfinite(v) else None for k, v in found.thresholds.items()}
        source = "auto"
    sizes = np.bincount(labels)
    straddled, pairs = straddling_pairs(labels, open_folds)
    scores = None
    if probe:
        from toolkit.training.pipeline import prepare

        features = pooled_features(prepare(recipe, registry, inputs).train_x)
        grouped = dataclasses.replace(competition, groups=labels)
        parts = recipe.split.folds if recipe.split.folds > 1 else PROBE_PARTS
        probe_split = recipe.split.model_copy(update={"folds": parts})
        scores = {
            name: probe_accuracy(features, comp.train_labels, split_folds(comp, probe_split))
            for name, comp in (("ungrouped", ungrouped), ("grouped", grouped))
        }
    return LeakReport(
        clips=len(labels),
        source=source,
        groups=len(sizes),
        largest=int(sizes.max()),
        alone=int((sizes == 1).sum()),
        straddled=straddled,
        pairs=pairs,
        cap=cap,
        refused=refused,
        rule=rule,
        thresholds=thresholds,
        probe=scores,
    )


def pooled_features(train_x: np.ndarray) -> np.ndarray:
    """``[N, 2 * C * F]``: each clip's features ``[C, F, T]`` as mean and spread over time."""
    x = np.asarray(train_x, dtype=np.float32)
    x = x.reshape(len(x), -1, x.shape[-1])
    return np.concatenate([x.mean(-1), x.std(-1)], axis=1)


def probe_accuracy(features: np.ndarray, labels: np.ndarray, folds: Sequence[Fold]) -> float:
    """Out-of-fold accuracy of a standardised, L2-regularised logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    predicted = np.empty_like(labels)
    for fold in folds:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        model.fit(features[fold.train_idx], labels[fold.train_idx])
        predicted[fold.val_idx] = model.predict(features[fold.val_idx])
    return float((predicted == labels).mean())
