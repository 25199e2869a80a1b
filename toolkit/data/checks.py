"""Every check that the recipe and the CSV files allow, made before any audio work."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from toolkit.data.dataset import Competition, load_competition
from toolkit.errors import DataError, error_at
from toolkit.progress import console
from toolkit.recipe.class_keys import check_class_keys
from toolkit.recipe.schema import Recipe
from toolkit.recipe.validation import class_keyed_settings
from toolkit.registry.table import Registry
from toolkit.validation.source_links import FoundSources
from toolkit.validation.split import Fold, split_folds


@dataclass(frozen=True)
class CheckedInputs:
    """The competition as read and checked, and the folds of its clips (one for one split)."""

    competition: Competition
    folds: tuple[Fold, ...]
    sources: FoundSources | None = None
    """The groups ``split.groups: auto`` found (then the competition's ``groups``)."""


def check_writable(path: Path, key: str) -> None:
    """A one-line error unless ``path`` is, or can be made, a folder this process may write."""
    existing = Path(path).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(f"{key} {path}: {existing} is a file, not a folder; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(f"{key} {path}: {existing} is not writable; choose another path")


def check_outputs(recipe: Recipe) -> None:
    """The run directory, the cache and the leaderboard's folder can be written."""
    check_writable(recipe.run_dir, "output.dir (--output)")
    check_writable(recipe.cache.dir, "cache.dir")
    board = Path(recipe.output.leaderboard)
    if board.is_dir():
        raise DataError(f"output.leaderboard {board}: is a folder; name a database file")
    check_writable(board.parent, "output.leaderboard")


def ensure_data(recipe: Recipe) -> None:
    """Create the demo competition when the recipe asks for it and the folder is missing."""
    demo = recipe.data.demo
    if demo is None:
        return
    from toolkit.demo import MARKER_NAME, ensure_demo_competition

    root = Path(recipe.data.root)
    if not (root / MARKER_NAME).is_file():
        console.print(f"creating the demo competition in {root} ...")
    try:
        ensure_demo_competition(
            root,
            n_train=demo.n_train,
            n_test=demo.n_test,
            seed=demo.seed,
            duration=demo.duration,
            songs=demo.songs,
            singers=demo.singers,
            test_share=demo.test_share,
            progress=True,
        )
    except (FileExistsError, ValueError) as exc:
        raise DataError(error_at("data.demo", exc)) from None


def check_inputs(recipe: Recipe, registry: Registry) -> CheckedInputs:
    """Outputs writable, the competition's CSVs and files consistent, every setting that
    names a class naming a label, the split possible."""
    check_outputs(recipe)
    ensure_data(recipe)
    competition = load_competition(recipe.data)
    named = class_keyed_settings(recipe, registry)
    check_class_keys(named, competition.classes, competition.train_csv)
    return CheckedInputs(competition, split_folds(competition, recipe.split))
