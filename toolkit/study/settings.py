"""Which study a recipe runs: its search settings, storage URL, name and run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from toolkit.recipe.schema import Recipe
from toolkit.recipe.search import Distribution, Pruner, Search
from toolkit.runs.run_dir import RunDir


def search_settings(recipe: Recipe) -> Search:
    """The recipe's search, or a one-trial study without pruning when it only has an ensemble."""
    if recipe.search is not None:
        return recipe.search
    return Search(n_trials=1, pruner=Pruner(name="none"))


def has_study(recipe: Recipe) -> bool:
    """Whether ``toolkit run`` runs a study: the recipe has a ``search`` or ``ensemble``."""
    return recipe.search is not None or recipe.ensemble is not None


def storage_url(recipe: Recipe, override: str | None = None) -> str:
    """The study's storage URL: ``--storage``, else ``search.storage``, else the default."""
    url = override or search_settings(recipe).storage
    return url if url else RunDir(recipe.run_dir).study_storage()


def study_name(recipe: Recipe) -> str:
    """The study's name in its storage: ``search.study_name``, else the recipe name."""
    return search_settings(recipe).study_name or recipe.name


@dataclass(frozen=True)
class StudySettings:
    """Which study a recipe runs and where: its name, storage, search, metric and run."""

    name: str
    storage: str
    search: Search
    run_dir: Path
    recipe_name: str
    max_steps: int
    """The most steps a trial reports to the pruner: its epochs (the most the space allows),
    times its folds when cross-validated."""

    @property
    def metric(self) -> str:
        """The metric trials, best epochs and the ensemble optimise."""
        return self.search.metric

    @property
    def run(self) -> str:
        """The run's name, the first part of its models' ids: the run directory's name."""
        return self.run_dir.resolve().name

    @classmethod
    def of(cls, recipe: Recipe, storage: str | None = None) -> StudySettings:
        """The study of ``recipe`` (``storage``: the ``--storage`` URL, if given)."""
        search = search_settings(recipe)
        return cls(
            name=study_name(recipe),
            storage=storage_url(recipe, storage),
            search=search,
            run_dir=Path(recipe.run_dir),
            recipe_name=recipe.name,
            max_steps=_max_epochs(search, recipe) * recipe.split.folds,
        )


def _max_epochs(search: Search, recipe: Recipe) -> int:
    """The most epochs a trial trains: the recipe's, or the most its space allows (with
    profiles, the most of any profile)."""
    if search.profiles:
        return max(
            _most_epochs(p.space, int((p.train or {}).get("epochs", recipe.train.epochs)))
            for p in search.profiles.values()
        )
    return _most_epochs(search.space, recipe.train.epochs)


def _most_epochs(space: Mapping[str, Distribution], epochs: int) -> int:
    """The most epochs a space allows, or ``epochs`` when it does not search them."""
    dist = space.get("train.epochs")
    if dist is None:
        return epochs
    high = getattr(dist, "high", None)
    if high is None:
        high = max(int(c) for c in getattr(dist, "choices", [epochs]))
    return int(high)
