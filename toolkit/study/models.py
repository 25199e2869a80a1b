"""The models of a study: each trial's recipe and model run, and the variants made of a trial.

A trial is the recipe with its values applied (:mod:`toolkit.study.space`). A
*variant* is a model made from a trial's recipe by the one factory here,
:meth:`StudyModels.variant`: a seed copy (``train.seed + index``), a refit
(trained on every clip for the trial's best epoch count) or a pseudo-labelled
copy (the trial's recipe, trained with the pseudo-labels :meth:`StudyModels.ensure`
is given). Whether a variant is
already done is :meth:`toolkit.runs.run_dir.RunDir.holds`; the ensemble asks for
variants here and never edits a recipe itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from toolkit.leaderboard.store import Leaderboard
from toolkit.recipe.loading import LoadedRecipe
from toolkit.recipe.schema import Recipe
from toolkit.recipe.validation import validate_recipe
from toolkit.runs.model_key import ModelKey
from toolkit.runs.run_dir import RunDir
from toolkit.study.profiles import base_raw, without_profile
from toolkit.study.settings import StudySettings
from toolkit.study.space import apply_values
from toolkit.training.data_views import DataViews
from toolkit.training.model_run import ModelRun
from toolkit.training.pseudo_labels import PseudoLabelSet
from toolkit.wording import count


@dataclass(frozen=True)
class Variant:
    """A model made from a trial: its key, its recipe and what its row shows of it."""

    key: ModelKey
    recipe: Recipe
    values: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    temperature: float | None = None
    """A refit's: its trial's temperature (it holds nothing out to fit its own)."""


@dataclass
class StudyModels:
    """Makes the study's model runs: trials from their values, variants from trials."""

    loaded: LoadedRecipe
    settings: StudySettings
    views: DataViews
    board: Leaderboard

    @property
    def folder(self) -> RunDir:
        """The run directory."""
        return RunDir(self.settings.run_dir)

    def trial_key(self, number: int) -> ModelKey:
        """The key of trial ``number``."""
        return ModelKey.of_trial(self.settings.run, number)

    def trial_recipe(self, values: dict[str, Any]) -> Recipe:
        """The validated recipe of a trial's values (with a profile: its profile's recipe
        with the other values applied).

        It has no ``semi_supervised``: a study's pseudo-label round follows its ensemble
        (:mod:`toolkit.ensemble.pseudo_round`), so adding one to a finished study's recipe
        leaves its trials and seed copies done.
        """
        base = base_raw(self.loaded.raw, self.settings.search, values)
        raw = apply_values(base, without_profile(values), self.loaded.registry)
        source = f"{self.loaded.path} (trial values {values})"
        recipe = validate_recipe(raw, self.loaded.registry, source)
        return recipe.model_copy(update={"semi_supervised": None})

    def run(
        self, key: ModelKey, recipe: Recipe, values: dict[str, Any], **options: Any
    ) -> ModelRun:
        """The model run of ``key`` (a trial or a variant) into its folder of the run.

        ``options`` are :class:`~toolkit.training.model_run.ModelRun`'s (description,
        on_epoch, ...).
        """
        return ModelRun(
            key=key,
            recipe=recipe,
            registry=self.loaded.registry,
            load_data=lambda: self.views.view(recipe),
            run_dir=self.settings.run_dir,
            board=self.board,
            metric=self.settings.metric,
            values=values,
            **options,
        )

    # ------------------------------------------------------------- variants
    def variant(
        self,
        key: ModelKey,
        values: dict[str, Any],
        best_epoch: int | None = None,
        temperature: float | None = None,
    ) -> Variant:
        """The variant ``key`` names (a seed copy, a refit or a pseudo-labelled copy of its
        trial), from the trial's ``values`` (and, for a refit, the epoch the trial kept: how
        long a refit trains, and the trial's temperature: what calibrates it)."""
        base = self.trial_recipe(values)
        number = key.trial
        if key.kind == "seed":
            assert key.seed is not None
            seed = base.train.seed + key.seed
            recipe = _with_train(base, seed=seed)
            return Variant(key, recipe, dict(values), f"trial {number} seed {seed}")
        if key.kind == "refit":
            epochs = int(best_epoch) if best_epoch else base.train.epochs
            recipe = _with_train(base, epochs=epochs)
            shown = {**values, "refit_epochs": epochs}
            description = f"trial {number} refit ({count(epochs, 'epoch')}, every clip)"
            return Variant(key, recipe, shown, description, temperature)
        if key.kind == "pseudo":
            return Variant(key, base, dict(values), f"trial {number} with pseudo-labels")
        raise ValueError(f"{key.id}: no variant of kind {key.kind!r} is made by training")

    def ensure(self, variant: Variant, pseudo: PseudoLabelSet | None = None) -> RunDir:
        """The variant's folder, holding its finished model (trained with ``pseudo``'s
        test clips, when given): trained now unless it already holds it
        (:meth:`~toolkit.runs.run_dir.RunDir.holds`)."""
        out = self.folder.model(variant.key)
        digest = None if pseudo is None else pseudo.digest()
        if not out.holds(
            variant.recipe, validated=variant.key.kind != "refit", pseudo_labels=digest
        ):
            out.clear()  # cut short, or made by another recipe or other pseudo-labels
            values = variant.values
            if pseudo is not None:
                values = {**values, "pseudo_labels": sum(pseudo.clips)}
            self.run(
                variant.key,
                variant.recipe,
                values,
                description=variant.description,
                pseudo=pseudo,
                temperature=variant.temperature,
            ).execute()
        return out


def _with_train(recipe: Recipe, **changes: Any) -> Recipe:
    """``recipe`` with some ``train`` settings changed."""
    return recipe.model_copy(update={"train": recipe.train.model_copy(update=changes)})
