"""Several feature streams per model: recipe checks, caching per stream, stacking and fusion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import held_out_accuracy, write_recipe
from toolkit.demo import DemoCompetition, make_demo_competition
from toolkit.errors import RecipeError
from toolkit.fusion import fuse, pooled
from toolkit.leaderboard.store import Leaderboard
from toolkit.loading import load_recipe
from toolkit.pipeline import materialize, prepare, train_recipe
from toolkit.plugin_loader import load_plugins
from toolkit.recipe import Search
from toolkit.study.space import validate_space
from toolkit.trainer import Standardized
from toolkit.workflow import run

MEL = "name: mel, n_fft: 512, hop_length: 256"  # the tiny recipe's mel settings
TWO_MELS = f"features: [{{{MEL}, n_mels: 32}}, {{{MEL}, n_mels: 32, input: mixture}}]\n"
UNLIKE = f"features: [{{{MEL}, n_mels: 32}}, {{{MEL}, n_mels: 16, input: mixture}}]\n"


def recipe_with(directory: Path, root: Path, features: str, backbone: str = "") -> Path:
    """The tiny recipe with its features (and backbone) replaced."""
    path = write_recipe(directory, root)
    text = path.read_text()
    lines = [line for line in text.splitlines() if not line.startswith("features:")]
    if backbone:
        lines = [line for line in lines if not line.startswith("model:")]
        lines.append(f"model: {{backbone: {backbone}}}")
    path.write_text("\n".join(lines) + "\n" + features)
    return path


def test_feature_streams_validate_with_their_input(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    recipe = load_recipe(recipe_with(tmp_path, tiny_competition.root, TWO_MELS)).recipe
    assert [b.get("input", "separated") for b in recipe.feature_streams] == [
        "separated",
        "mixture",
    ]
    assert recipe.feature_streams[1]["f_min"] == 0.0  # plugin defaults filled in
    bad = recipe_with(tmp_path, tiny_competition.root, "features: [{name: mel, input: vocals}]\n")
    with pytest.raises(RecipeError, match=r"features\[0\]\.input: 'vocals' is not one of"):
        load_recipe(bad)
    empty = recipe_with(tmp_path, tiny_competition.root, "features: []\n")
    with pytest.raises(RecipeError, match="features: an empty list"):
        load_recipe(empty)


def test_a_convolutional_backbone_refuses_unlike_streams_at_recipe_time(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    path = recipe_with(tmp_path, tiny_competition.root, UNLIKE)
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    message = str(caught.value)
    assert "mel, mel(mixture)" in message and "'resnet18'" in message and "head" in message
    head = recipe_with(tmp_path, tiny_competition.root, UNLIKE, backbone="{name: head}")
    assert load_recipe(head).recipe.model.backbone["name"] == "head"


def test_an_extra_stream_can_be_switched_off(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    extra = f"features: [{{{MEL}}}, {{{MEL}, input: mixture, enabled: false}}]\n"
    recipe = load_recipe(recipe_with(tmp_path, tiny_competition.root, extra)).recipe
    assert [b.get("input", "separated") for b in recipe.feature_streams] == ["separated"]
    none = f"features: [{{{MEL}, enabled: false}}]\n"
    with pytest.raises(RecipeError, match="every stream is enabled: false"):
        load_recipe(recipe_with(tmp_path, tiny_competition.root, none))
    bad = f"features: [{{{MEL}, enabled: maybe}}]\n"
    with pytest.raises(RecipeError, match=r"features\[0\]\.enabled: expected true or false"):
        load_recipe(recipe_with(tmp_path, tiny_competition.root, bad))


def test_streams_of_a_list_are_searchable_by_position() -> None:
    registry = load_plugins()
    raw = {
        "name": "x",
        "data": {"root": "."},
        "features": [{"name": "mel"}, {"name": "mel", "input": "mixture"}],
        "model": {"backbone": {"name": "head"}},
    }
    good = Search(
        space={
            "features.1.n_mels": {"low": 16, "high": 64},
            "features.1.enabled": {"choices": [True, False]},
            "features.0.input": {"choices": ["separated", "mixture"]},
        }
    ).space
    validate_space(raw, registry, good)
    typo = Search(space={"features.1.n_melz": {"low": 16, "high": 64}}).space
    with pytest.raises(RecipeError, match=r"features.1.n_melz.*did you mean 'n_mels'"):
        validate_space(raw, registry, typo)


def test_fusion_stacks_like_streams_and_pools_unlike_ones() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 1, 8, 10)).astype(np.float16)
    b = rng.normal(size=(5, 1, 8, 10)).astype(np.float16)
    stacked = fuse([a, b], "stack", ["a", "b"])
    assert stacked.shape == (5, 2, 8, 10)
    np.testing.assert_array_equal(stacked[:, 1], b[:, 0])
    c = rng.normal(size=(5, 1, 3, 4)).astype(np.float32)
    vector = fuse([a, c], "concat", ["a", "c"])
    assert vector.shape == (5, 1, 2 * 8 + 2 * 3, 1)
    np.testing.assert_allclose(vector[:, 0, 16:19, 0], c[:, 0].mean(axis=2), rtol=1e-6)
    np.testing.assert_allclose(pooled(c)[:, 0, 3:, 0], c[:, 0].std(axis=2), rtol=1e-5)


@pytest.mark.slow
def test_two_streams_are_cached_apart_and_stacked_as_channels(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    loaded = load_recipe(recipe_with(tmp_path, tiny_competition.root, TWO_MELS))
    data = prepare(loaded.recipe, loaded.registry)
    assert data.train_x.shape[:2] == (32, 2) and data.test_x.shape[:2] == (10, 2)
    # with no separator, the separated clip is the mixture: the second stream reuses it all
    assert data.stats.features_computed == 42 and data.stats.features_reused == 42
    np.testing.assert_array_equal(data.train_x[:, 0], data.train_x[:, 1])
    single = load_recipe(write_recipe(tmp_path / "one", tiny_competition.root))
    one = prepare(single.recipe, single.registry)
    np.testing.assert_array_equal(np.asarray(one.train_x)[:, 0], np.asarray(data.train_x)[:, 0])


@pytest.mark.slow
def test_a_head_trains_on_fused_streams_and_the_row_names_them(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    path = recipe_with(tmp_path, tiny_competition.root, UNLIKE, backbone="{name: head, hidden: 32}")
    loaded = load_recipe(path, ["augmenters=[]", "train.epochs=3"], output=tmp_path / "r")
    result = run(loaded)
    assert result.best_epoch >= 1 and np.isfinite(result.val_loss)
    row = Leaderboard(tmp_path / "leaderboard.db").get(result.leaderboard_id)
    assert row.backbone == "head" and row.params["features"] == "mel+mel(mixture)"
    assert set(row.provenance["plugins"]) >= {"feature_extractors/mel", "backbones/head"}
    # each stream reaches the trained head: blanking either one changes its output
    data = prepare(loaded.recipe, loaded.registry)
    x = np.asarray(data.test_x, dtype=np.float32)
    assert x.shape[1:] == (1, 2 * 32 + 2 * 16, 1)  # mean and spread of 32 and of 16 mel bands
    net = Standardized(
        loaded.registry.create(
            "backbones", loaded.recipe.model.backbone, num_classes=4, in_channels=1
        ),
        0.0,
        1.0,
    )
    materialize(net.backbone, x.shape[1:])
    net.load_state_dict(torch.load(tmp_path / "r" / "best.pt", weights_only=True)["state_dict"])
    net.eval()

    def logits(features: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(features)).numpy()

    whole = logits(x)
    for name, rows in (("mel", slice(0, 64)), ("mel(mixture)", slice(64, 96))):
        blank = x.copy()
        blank[:, :, rows] = 0.0
        assert np.abs(logits(blank) - whole).max() > 1e-3, f"{name} does not reach the head"


@pytest.fixture(scope="module")
def learnable(tmp_path_factory: pytest.TempPathFactory) -> DemoCompetition:
    """A demo competition of 3 s clips, large enough to learn from."""
    root = tmp_path_factory.mktemp("learn3s") / "competition"
    return make_demo_competition(root, n_train=200, n_test=60, seed=11, duration=3.0)


@pytest.mark.slow
def test_a_head_on_musicnn_features_beats_chance_on_held_out_clips(
    learnable: DemoCompetition, tmp_path: Path
) -> None:
    path = recipe_with(
        tmp_path,
        learnable.root,
        "features: {name: musicnn, model: MSD_musicnn, output: penultimate}\n",
        backbone="{name: head, hidden: 128, dropout: 0.2}",
    )
    loaded = load_recipe(
        path,
        (
            "data.duration=3.0",
            "augmenters=[{name: mixup, alpha: 0.2}]",
            "train.epochs=30",
            "train.optimizer={name: adamw, lr: 0.001, weight_decay: 0.01}",
        ),
    )
    data = prepare(loaded.recipe, loaded.registry)
    assert data.train_x.shape[1:] == (1, 200, 1)  # one 3 s window of the 200-d embedding
    result = train_recipe(loaded.recipe, loaded.registry, data)
    held_out, majority = held_out_accuracy(learnable.root, data.competition, result.test_probs)
    # chance is 0.25 over four classes; the majority class is about 0.3
    assert held_out > max(0.45, majority + 0.1), (held_out, result.history[-1])
