"""A leaderboard row: one trained model or one ensemble, its kinds and its states."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from toolkit.errors import ToolkitError
from toolkit.runs.model_key import KINDS

MODEL_KINDS = tuple(k for k in KINDS if k != "ensemble")
"""Kinds of rows that are one trained model (see :mod:`toolkit.runs.model_key`)."""
STATES = ("running", "complete", "pruned", "interrupted", "failed")
"""``interrupted``: stopped by Ctrl-C or SIGTERM, or its process killed (a row left
``running`` by a dead plain run, found by the next run of its folder)."""


class LeaderboardError(ToolkitError):
    """A leaderboard problem the user can act on (unknown id, bad column, missing db)."""


@dataclass
class Row:
    """One leaderboard row: a trained model or an ensemble (its ``kind``: see
    :mod:`toolkit.runs.model_key`)."""

    id: str
    kind: str
    recipe: str
    run_dir: str
    state: str
    backbone: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    val_accuracy: float | None = None
    val_loss: float | None = None
    metric: str | None = None
    metric_value: float | None = None
    epochs: int | None = None
    seconds: float | None = None
    submission: str | None = None
    members: list[dict[str, Any]] = field(default_factory=list)
    trial_number: int | None = None
    created_at: str = ""
    public_score: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    """What reproduces a trained model: resolved recipe, metric, plugins, versions."""
    folds: int | None = None
    """K of a cross-validated model (its metric is then out-of-fold); None: one split."""
    fold_mean: float | None = None
    """Mean of the metric over the folds' held-out parts."""
    fold_std: float | None = None
    """Standard deviation of the metric over the folds."""
    best_epoch: int | None = None
    """The epoch whose weights a trained model kept (a cross-validated one: its folds'
    mean, as its refit trains for)."""
    estimate: float | None = None
    """An ensemble's expected metric on new clips: its selection cross-validated (its own
    ``metric_value`` was measured on the predictions that chose it)."""
    profile: str | None = None
    """The profile (``search.profiles``) a model's trial drew; an ensemble's: its members',
    joined by ``+``."""
    data: dict[str, Any] = field(default_factory=dict)
    """The data it was trained on: its competition folder (``root``) and the digest of its
    train CSV and sample submission (``digest``), see :mod:`toolkit.runs.data_identity`."""
    replaced_by: str | None = None
    """The row whose run replaced this one's files (its ``submission`` is then cleared: the
    file is the later row's)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        """Build a row from a mapping of field names (unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """All fields as a plain dict (copies of ``params`` and ``members``)."""
        return dataclasses.asdict(self)

    def member_weights(self) -> dict[str, float | None]:
        """Member id -> weight for an ensemble (empty for a trial)."""
        out: dict[str, float | None] = {}
        for m in self.members:
            weight = m.get("weight")
            out[str(m["id"])] = float(weight) if isinstance(weight, int | float) else None
        return out


COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Row))
"""Row field names, in order: also the store's columns and the valid sort keys."""
