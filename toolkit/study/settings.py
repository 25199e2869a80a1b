"""Which study a recipe runs: its search settings, storage URL and name."""

from __future__ import annotations

from toolkit.recipe import Pruner, Recipe, Search
from toolkit.run_dir import RunDir


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
