"""What misses the cache: a changed clip, a changed setting, a changed plugin version.

Reuse is tested elsewhere (a second run does no audio work); here each kind of
change must recompute exactly what it affects, and nothing more.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from toolkit.data.dataset import load_competition
from toolkit.data.preprocess import Preprocessor
from toolkit.demo import DemoCompetition
from toolkit.recipe.schema import Recipe
from toolkit.recipe.validation import validate_recipe
from toolkit.registry.loader import load_plugins
from toolkit.registry.table import Registry


def recipe_for(root: Path, cache: Path, registry: Registry, **changes: Any) -> Recipe:
    """A recipe over ``root`` with mel features; ``changes`` replace top-level blocks."""
    raw: dict[str, Any] = {
        "name": "keys",
        "data": {"root": str(root), "sample_rate": 16000, "duration": 1.0},
        "separator": {"name": "none"},
        "features": {"name": "mel", "n_fft": 512, "hop_length": 256, "n_mels": 32},
        "cache": {"dir": str(cache)},
        **changes,
    }
    return validate_recipe(raw, registry)


@pytest.fixture
def competition(tiny_competition: DemoCompetition, tmp_path: Path) -> Path:
    """A private copy of the tiny competition (a test rewrites one of its clips)."""
    return Path(shutil.copytree(tiny_competition.root, tmp_path / "comp"))


def features(recipe: Recipe, registry: Registry) -> tuple[np.ndarray, Preprocessor]:
    """The train features of ``recipe``, and the preprocessor (its stats) that made them."""
    comp = load_competition(recipe.data)
    pre = Preprocessor(recipe, registry)
    x = np.asarray(pre.features(comp.train_files, comp.train_ids, "train")).copy()
    return x, pre


def test_a_changed_clip_recomputes_that_clip_only(competition: Path, tmp_path: Path) -> None:
    registry = load_plugins()
    recipe = recipe_for(competition, tmp_path / "cache", registry)
    before, _ = features(recipe, registry)
    victim = sorted((competition / "train").glob("*.wav"))[0]
    audio, rate = sf.read(victim)
    sf.write(victim, audio[::-1], rate)  # same length, other content
    after, pre = features(recipe, registry)
    assert (pre.stats.stems_computed, pre.stats.features_computed) == (1, 1)
    assert pre.stats.features_reused == 31 and pre.stats.splits_assembled == 1
    changed = [i for i in range(len(before)) if not np.array_equal(before[i], after[i])]
    ids = load_competition(recipe.data).train_ids
    assert [ids[i] for i in changed] == [victim.stem]


@pytest.mark.parametrize(
    "setting",
    [{"f_min": 60.0}, {"top_db": 50.0}, {"normalize": True}, {"norm": "slaney"}],
    ids=["f_min", "top_db", "normalize", "norm"],
)
def test_a_feature_setting_of_the_same_shape_misses_features_not_stems(
    setting: dict[str, Any], tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    registry = load_plugins()
    cache = tmp_path / "cache"
    base = recipe_for(tiny_competition.root, cache, registry)
    before, _ = features(base, registry)
    changed = recipe_for(
        tiny_competition.root, cache, registry, features={**base.features, **setting}
    )
    after, pre = features(changed, registry)
    assert after.shape == before.shape and not np.array_equal(after, before)
    assert pre.stats.features_computed == 32 and pre.stats.features_reused == 0
    assert pre.stats.stems_computed == 0  # the stems do not depend on the features


def _bumped(registry: Registry, kind: str, name: str, **fields: str) -> Registry:
    """``registry`` with plugin ``name``'s entry changed as a new release would change it."""
    entries = {k: dict(v) for k, v in registry.entries.items()}
    entries[kind][name] = dataclasses.replace(entries[kind][name], **fields)
    return Registry(entries)


@pytest.mark.parametrize(
    ("kind", "name", "fields", "stems_computed"),
    [
        ("feature_extractors", "mel", {"version": "2"}, 0),
        ("feature_extractors", "mel", {"source_version": "toolkit-9"}, 0),
        ("separators", "none", {"version": "2"}, 32),
    ],
    ids=["feature-version", "feature-source-version", "separator-version"],
)
def test_a_new_plugin_version_misses_what_it_computes(
    kind: str,
    name: str,
    fields: dict[str, str],
    stems_computed: int,
    tiny_competition: DemoCompetition,
    tmp_path: Path,
) -> None:
    registry = load_plugins()
    cache = tmp_path / "cache"
    before, _ = features(recipe_for(tiny_competition.root, cache, registry), registry)
    bumped = _bumped(registry, kind, name, **fields)
    after, pre = features(recipe_for(tiny_competition.root, cache, bumped), bumped)
    assert pre.stats.features_computed == 32 and pre.stats.stems_computed == stems_computed
    np.testing.assert_array_equal(after, before)  # same code: same numbers, newly cached


def test_a_new_clip_length_misses_the_stems(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    registry = load_plugins()
    cache = tmp_path / "cache"
    features(recipe_for(tiny_competition.root, cache, registry), registry)
    longer = recipe_for(
        tiny_competition.root,
        cache,
        registry,
        data={"root": str(tiny_competition.root), "sample_rate": 16000, "duration": 1.25},
    )
    after, pre = features(longer, registry)
    assert pre.stats.stems_computed == 32 and pre.stats.features_computed == 32
    assert after.shape[-1] > 63  # 1.25 s of frames, not 1 s
