"""Running one leaderboard row again from what it recorded, and comparing the numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from toolkit.errors import ToolkitError
from toolkit.leaderboard.store import Leaderboard, Row
from toolkit.recipe.loading import LoadedRecipe, check_devices
from toolkit.recipe.validation import validate_recipe
from toolkit.registry.loader import load_plugins
from toolkit.runs.model_key import ModelKey
from toolkit.runs.provenance import version_changes
from toolkit.runs.records import read_model
from toolkit.runs.run_dir import MODEL_FILES, RunDir
from toolkit.wording import count
from toolkit.workflow import RunResult, run


@dataclass
class Reproduction:
    """A row run again: where, as which row, and how its numbers compare."""

    original: Row
    result: RunResult
    differences: list[str] = field(default_factory=list)
    """One line per file or value that differs; empty when everything matches."""
    compared: list[str] = field(default_factory=list)
    """What was compared (file names, or row values when the original files are gone)."""
    version_changes: list[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        """Whether every compared number is the same."""
        return not self.differences


def reproducible_row(board: Leaderboard, row_id: str) -> Row:
    """The complete trained-model row ``row_id``, or a one-line error saying why it is not."""
    row = board.get(row_id)
    if row.kind in ("ensemble", "bag"):
        members = ", ".join(row.member_weights()) or "none"
        raise ToolkitError(
            f"{row_id} is {'an ensemble' if row.kind == 'ensemble' else 'a bag'}; "
            f"reproduce its members one by one: {members}"
        )
    if row.kind in ("refit", "pseudo"):
        trial = ModelKey.parse(row.id).trial_key().id
        what = "a refit on every train clip" if row.kind == "refit" else "pseudo-labelled"
        raise ToolkitError(f"{row_id} is {what}, made by the ensemble; reproduce {trial}")
    if row.state != "complete":
        raise ToolkitError(f"{row_id} is {row.state}; only complete rows can be reproduced")
    if not row.provenance.get("recipe"):
        raise ToolkitError(
            f"{row_id} was recorded by an older toolkit without its resolved recipe; "
            "run its recipe again instead"
        )
    return row


def next_reproduction(board: Leaderboard, row: Row) -> ModelKey:
    """The key of the next reproduction of ``row``: its folder and its id are both new."""
    original = ModelKey.parse(row.id)
    count = 1
    while True:
        key = original.reproduction(count)
        if not key.folder(row.run_dir).exists() and key.id not in set(board.ids()):
            return key
        count += 1


def reproduce(board: Leaderboard, row_id: str, output: Path | None = None) -> Reproduction:
    """Train row ``row_id`` again from its stored recipe into a new folder and compare.

    The new folder is ``--output``, else the reproduction's own in the original's run
    directory (``RUN_DIR/reproduce/NAME-againN``, see :mod:`toolkit.runs.model_key`).
    """
    row = reproducible_row(board, row_id)
    provenance: dict[str, Any] = row.provenance
    raw = {k: v for k, v in provenance["recipe"].items() if k not in ("search", "ensemble")}
    key = next_reproduction(board, row)
    out_dir = Path(output) if output is not None else key.folder(row.run_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ToolkitError(f"--output {out_dir}: folder is not empty; choose a new one")
    raw["output"] = {**raw.get("output", {}), "dir": str(out_dir)}
    source = f"leaderboard row {row_id}"
    registry = load_plugins([Path(p) for p in raw.get("plugins", [])])
    recipe = validate_recipe(raw, registry, source)
    check_devices(raw, lambda key: f"{source} trained on it; reproduce it on a machine with it")
    result = run(
        LoadedRecipe(recipe, registry, Path(source), raw),
        metric=provenance["metric"],
        key=key,
        params={"reproduces": row_id},
    )
    outcome = Reproduction(row, result, version_changes=version_changes(provenance["versions"]))
    original, again = RunDir(provenance["dir"]), RunDir(result.run_dir)
    recorded = read_model(original)
    if recorded is not None and recorded.keeps(original, MODEL_FILES):
        for name in MODEL_FILES:
            outcome.compared.append(name)
            difference = _compare_file(original.file(name), again.file(name))
            if difference:
                outcome.differences.append(f"{name}: {difference}")
    else:  # the original files are gone: compare what the row kept
        outcome.compared.append(f"row values (no files left in {original.path})")
        new = board.get(result.leaderboard_id)
        for name in ("val_accuracy", "val_loss", "metric_value", "epochs"):
            old_value, new_value = getattr(row, name), getattr(new, name)
            if old_value != new_value:
                outcome.differences.append(f"{name}: {old_value} then, {new_value} now")
    return outcome


def _compare_file(old: Path, new: Path) -> str:
    """'' when the two files hold the same numbers, else what differs, in a few words."""
    if old.suffix == ".npy":
        a, b = np.load(old), np.load(new)
        if a.shape != b.shape:
            return f"shape {a.shape} then, {b.shape} now"
        if np.array_equal(a, b):
            return ""
        return f"largest difference {np.abs(a - b).max():.3g}"
    then, now = pd.read_csv(old), pd.read_csv(new)
    if then.shape != now.shape:
        return f"{count(len(then), 'epoch')} then, {len(now)} now"
    for column in then.columns:
        unequal = ~np.isclose(then[column], now[column], rtol=0, atol=0)
        if unequal.any():
            epoch = int(np.argmax(unequal.to_numpy())) + 1
            return (
                f"epoch {epoch} {column} {then[column].iloc[epoch - 1]} then, "
                f"{now[column].iloc[epoch - 1]} now"
            )
    return ""
