"""A damaged cache is repaired, not fatal: unreadable entries are computed again and counted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli, write_recipe
from toolkit.data.cache import ClipStore, SplitStore
from toolkit.demo import DemoCompetition
from toolkit.recipe.loading import load_recipe
from toolkit.training.pipeline import prepare


def _prepare(recipe_path: Path):  # noqa: ANN202 - PreparedData
    loaded = load_recipe(recipe_path)
    return prepare(loaded.recipe, loaded.registry)


def _truncate(path: Path, keep: int) -> None:
    """Cut ``path`` to its first ``keep`` bytes (as a disk error or a broken copy would)."""
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def _entries(store: Path) -> list[Path]:
    return sorted(store.rglob("*.npy"))


@pytest.fixture
def cached(tmp_path: Path, tiny_competition: DemoCompetition) -> tuple[Path, np.ndarray]:
    """A recipe whose stems, features and splits are all in its cache; its train features."""
    recipe = write_recipe(tmp_path, tiny_competition.root)
    first = _prepare(recipe)
    return recipe, np.asarray(first.train_x).copy()


def test_truncated_feature_is_computed_again(
    cached: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe, before = cached
    damaged = _entries(tmp_path / "cache" / "features")[5]
    _truncate(damaged, 100)  # inside the data: the header still reads
    shutil.rmtree(tmp_path / "cache" / "splits")
    data = _prepare(recipe)
    assert data.stats.features_repaired == 1
    assert data.stats.features_computed == 1 and data.stats.stems_computed == 0
    np.testing.assert_array_equal(np.asarray(data.train_x), before)
    assert f"damaged cache entry {damaged}" in capsys.readouterr().err
    assert np.load(damaged).dtype == np.float16  # written again, whole


def test_feature_with_a_header_cut_short_is_computed_again(
    cached: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    recipe, before = cached
    _truncate(_entries(tmp_path / "cache" / "features")[0], 20)
    shutil.rmtree(tmp_path / "cache" / "splits")
    data = _prepare(recipe)
    assert data.stats.features_repaired == 1
    np.testing.assert_array_equal(np.asarray(data.train_x), before)


def test_feature_of_the_wrong_shape_is_computed_again(
    cached: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    recipe, before = cached
    odd = _entries(tmp_path / "cache" / "features")[3]
    np.save(odd, np.zeros((1, 4, 4), dtype=np.float16))  # readable, but not what its key made
    shutil.rmtree(tmp_path / "cache" / "splits")
    data = _prepare(recipe)
    assert data.stats.features_repaired == 1
    np.testing.assert_array_equal(np.asarray(data.train_x), before)


def test_truncated_stem_is_separated_again(cached: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    recipe, before = cached
    cache = tmp_path / "cache"
    stem = _entries(cache / "stems")[7]
    _truncate(stem, 300)
    # the stem is read only when its clip's features are computed again
    shutil.rmtree(cache / "features")
    shutil.rmtree(cache / "splits")
    data = _prepare(recipe)
    assert data.stats.stems_repaired == 1 and data.stats.stems_computed == 1
    np.testing.assert_array_equal(np.asarray(data.train_x), before)


def test_truncated_split_is_assembled_again(
    cached: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    recipe, before = cached
    split = max(
        (tmp_path / "cache" / "splits").glob("*/features.npy"), key=lambda p: p.stat().st_size
    )
    _truncate(split, split.stat().st_size // 2)
    data = _prepare(recipe)
    assert data.stats.splits_repaired == 1
    assert data.stats.splits_assembled == 1 and data.stats.splits_reused == 1
    assert data.stats.features_computed == 0  # the clips' features were sound
    np.testing.assert_array_equal(np.asarray(data.train_x), before)


def test_split_whose_index_is_garbage_is_assembled_again(
    cached: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    recipe, before = cached
    for index in (tmp_path / "cache" / "splits").glob("*/index.json"):
        index.write_text('{"ids": [')
    data = _prepare(recipe)
    assert data.stats.splits_repaired == 2 and data.stats.splits_assembled == 2
    np.testing.assert_array_equal(np.asarray(data.train_x), before)


def test_damaged_content_hashes_are_rebuilt(
    cached: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    recipe, before = cached
    hashes = tmp_path / "cache" / "content_hashes.json"
    _truncate(hashes, hashes.stat().st_size // 3)
    data = _prepare(recipe)
    # one memo file per stream's preprocessor: the first finds it damaged and rebuilds it
    assert data.stats.hashes_repaired == 1
    assert data.stats.splits_reused == 2 and data.stats.features_computed == 0
    assert isinstance(json.loads(hashes.read_text()), dict)
    np.testing.assert_array_equal(np.asarray(data.train_x), before)


def test_a_run_on_a_damaged_cache_succeeds_and_counts_the_repair(
    tmp_path: Path, tiny_competition: DemoCompetition
) -> None:
    """The issue's case: one truncated feature, splits removed, then `toolkit run`."""
    recipe = write_recipe(tmp_path, tiny_competition.root)
    first = run_cli("run", recipe, "--output", tmp_path / "run1", "--no-report")
    assert first.returncode == 0, first.stderr
    _truncate(_entries(tmp_path / "cache" / "features")[2], 64)
    shutil.rmtree(tmp_path / "cache" / "splits")
    again = run_cli("run", recipe, "--output", tmp_path / "run2", "--no-report")
    assert again.returncode == 0, again.stderr
    assert "warning: damaged cache entry" in again.stderr and "Traceback" not in again.stderr
    stats = json.loads((tmp_path / "run2" / "stats.json").read_text())
    assert stats["features_repaired"] == 1 and stats["features_computed"] == 1
    assert ClipStore(tmp_path / "cache" / "features").count() == 42
    # the repaired run trains on the same features, so it gives the same numbers
    for name in ("val_probs.npy", "test_probs.npy"):
        np.testing.assert_array_equal(
            np.load(tmp_path / "run1" / name), np.load(tmp_path / "run2" / name)
        )


def test_store_api_reports_and_discards(tmp_path: Path) -> None:
    seen: list[tuple[Path, str]] = []
    store = ClipStore(tmp_path / "clips", lambda path, why: seen.append((path, why)))
    store.put("ab12", np.arange(6, dtype=np.float16))
    assert store.header("ab12") == ((6,), np.dtype(np.float16))
    _truncate(tmp_path / "clips" / "ab" / "ab12.npy", 90)
    assert store.load("ab12") is None and not store.has("ab12")
    assert seen and "ab12.npy" in str(seen[0][0]) and "ValueError" in seen[0][1]
    splits = SplitStore(tmp_path / "splits", lambda path, why: seen.append((path, why)))
    key = splits.key(["k1", "k2"])
    arrays = [np.ones((1, 2, 3)), np.zeros((1, 2, 3))]
    splits.assemble(key, ["a", "b"], ["k1", "k2"], arrays)
    assert splits.load(key, ["k1", "k2"]) is not None
    assert splits.load(key, ["k2", "k1"]) is None  # an index that names other clips
    assert not (tmp_path / "splits" / key).exists()
