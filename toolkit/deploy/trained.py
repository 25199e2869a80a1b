"""A trained model found again in its folder: its recipe, its networks with their kept
weights, and its probabilities of new features.

A model folder (:mod:`toolkit.runs.run_dir`) holds its resolved ``recipe.yaml`` and its
``best.pt``; a cross-validated model holds a ``best.pt`` in each ``foldK/``
instead and predicts with its fold models' mean, as it made its test
probabilities (:func:`toolkit.training.cross_validation.fold_mean`). Each network is
rebuilt by the backbone factory through the registry, behind the trainer's
standardisation, and evaluated by the trainer's own path
(:func:`toolkit.training.trainer.trained_probabilities`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from toolkit.errors import ModelError, error_line
from toolkit.recipe.schema import Recipe
from toolkit.recipe.validation import validate_recipe
from toolkit.registry.loader import load_plugins
from toolkit.registry.table import Registry
from toolkit.runs.provenance import version_changes
from toolkit.runs.run_dir import RECIPE, WEIGHTS, RunDir

if TYPE_CHECKING:
    from toolkit.training.pipeline import ClipFeatures  # torch: imported only when predicting

PLUGINS = "plugins"
"""The folder of an export (or run directory) where the recipes' plugin files are found when
they are not at the paths the recipes name."""

VERSIONS_COMPARED = ("toolkit", "torch", "torchaudio", "timm", "numpy")
"""The libraries whose versions, recorded in ``best.pt`` at training, predict compares with
the installed ones (a change may change the numbers)."""


@dataclass
class TrainedModel:
    """A model's recipe (and the registry it was validated with) and its weight files."""

    folder: RunDir
    recipe: Recipe
    registry: Registry
    weight_files: tuple[Path, ...]
    """``best.pt``, or each fold's."""

    @classmethod
    def load(
        cls, folder: RunDir, *, cache_dir: Path | None = None, plugin_dirs: Sequence[Path] = ()
    ) -> TrainedModel:
        """The model in ``folder``: its recipe validated (its cache in ``cache_dir`` if given;
        plugin files it names that are gone are looked for in ``plugin_dirs``), its weight
        files found. A missing file is a one-line ModelError naming it."""
        recipe, registry = load_model_recipe(folder, cache_dir, plugin_dirs)
        return cls(folder, recipe, registry, weight_files(folder, recipe))

    def states(self) -> list[dict[str, Any]]:
        """Each network's ``best.pt`` as saved (one, or one per fold)."""
        return [read_state(path) for path in self.weight_files]

    def probabilities(
        self, features: ClipFeatures, device: Any, states: Sequence[dict[str, Any]] | None = None
    ) -> np.ndarray:
        """Class probabilities ``[N, K]`` of ``features`` (made by this model's recipe): its
        network's, or its fold networks' mean, each calibrated by the temperature its
        ``best.pt`` saved (none saved: 1, as before calibration existed)."""
        from toolkit.training.calibration import apply_temperature
        from toolkit.training.cross_validation import fold_mean
        from toolkit.training.pipeline import build_test_time_augmenters
        from toolkit.training.trainer import trained_probabilities

        states = states or self.states()
        tta = build_test_time_augmenters(self.recipe, self.registry, states[0]["classes"])
        probs = [
            apply_temperature(
                trained_probabilities(
                    self.network(state, path, features),
                    features.x,
                    self.recipe.train,
                    device,
                    tta,
                ),
                float(state.get("temperature", 1.0)),
            )
            for state, path in zip(states, self.weight_files, strict=True)
        ]
        return probs[0] if len(probs) == 1 else fold_mean(probs)

    def network(self, state: dict[str, Any], path: Path, features: ClipFeatures) -> Any:
        """The network ``state`` (read from ``path``) holds, for clips featured as
        ``features``: the recipe's backbone behind its standardisation, with the kept
        weights."""
        from toolkit.training.pipeline import build_backbone
        from toolkit.training.trainer import Standardized

        classes = [str(c) for c in state["classes"]]
        backbone = build_backbone(self.recipe, self.registry, len(classes), features, classes)
        model = Standardized(backbone, 0.0, 1.0)
        try:
            model.load_state_dict(state["state_dict"])
        except RuntimeError as exc:
            reason = error_line(exc)
            raise ModelError(
                f"{path}: its weights do not fit the network of {self.folder.file(RECIPE)} "
                f"({reason}); the file belongs to another model"
            ) from None
        return model


def load_model_recipe(
    folder: RunDir, cache_dir: Path | None = None, plugin_dirs: Sequence[Path] = ()
) -> tuple[Recipe, Registry]:
    """A model folder's ``recipe.yaml``, its plugins loaded and the recipe validated."""
    path = folder.file(RECIPE)
    if not path.is_file():
        raise ModelError(f"{path}: recipe file missing; the model cannot be rebuilt without it")
    raw = folder.read_recipe()
    raw["plugins"] = [str(_plugin_file(Path(p), plugin_dirs)) for p in raw.get("plugins") or []]
    if cache_dir is not None:
        raw["cache"] = {**(raw.get("cache") or {}), "dir": str(cache_dir)}
    registry = load_plugins([Path(p) for p in raw["plugins"]])
    return validate_recipe(raw, registry, path), registry


def _plugin_file(path: Path, plugin_dirs: Sequence[Path]) -> Path:
    """A recipe's plugin file where it is, else the file of that name in ``plugin_dirs``."""
    if path.is_file():
        return path
    found = next((d / path.name for d in plugin_dirs if (d / path.name).is_file()), None)
    return found or path


def weight_files(folder: RunDir, recipe: Recipe) -> tuple[Path, ...]:
    """The model's ``best.pt``, or, cross-validated, its folds'; a missing one is a ModelError."""
    single = folder.file(WEIGHTS)
    folds = recipe.split.folds
    if single.is_file() or folds < 2:
        files: tuple[Path, ...] = (single,)
    else:
        files = tuple(folder.fold(k).file(WEIGHTS) for k in range(1, folds + 1))
    for path in files:
        if not path.is_file():
            raise ModelError(
                f"{path}: model file missing; the run's submission needs it (copy or export "
                "the whole run directory again)"
            )
    return files


def read_state(path: Path) -> dict[str, Any]:
    """A ``best.pt`` as saved (no code is run); a damaged one is a one-line ModelError."""
    try:
        state = RunDir(path.parent).read_weights()
    except FileNotFoundError:
        raise ModelError(f"{path}: model file missing") from None
    except Exception as exc:  # noqa: BLE001 - torch reports a damaged file many ways
        reason = error_line(exc)
        raise ModelError(
            f"{path}: damaged model file ({reason}); copy it again from the run, or train the "
            "model again"
        ) from None
    if not isinstance(state, dict) or not {"state_dict", "classes"} <= set(state):
        raise ModelError(f"{path}: not a model file of this toolkit (no weights and classes)")
    return state


def recorded_version_changes(states: Sequence[dict[str, Any]]) -> list[str]:
    """``library then -> now`` for each library whose version, recorded when a model was
    trained, differs from the installed one (each change once). A library not installed now
    is left out: the models do not use it (an export ships timm only for the models that do),
    or they would fail to build, saying so."""
    changes: list[str] = []
    for state in states:
        recorded = state.get("versions") or {}
        compared = {k: v for k, v in recorded.items() if k in VERSIONS_COMPARED}
        for change in version_changes(compared):
            if not change.endswith("-> not installed") and change not in changes:
                changes.append(change)
    return changes
