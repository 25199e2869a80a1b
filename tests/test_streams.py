"""Several feature streams per model: recipe checks, caching per stream, stacking and fusion."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.conftest import held_out_accuracy, write_recipe
from toolkit.data.preprocess import StageStats
from toolkit.demo import DemoCompetition, make_demo_competition
from toolkit.errors import RecipeError
from toolkit.leaderboard.store import Leaderboard
from toolkit.recipe.loading import load_recipe
from toolkit.recipe.schema import Recipe
from toolkit.recipe.search import Search
from toolkit.registry.loader import load_plugins
from toolkit.study.space import validate_space
from toolkit.training.fusion import Layout, fuse, pooled, pooled_batch
from toolkit.training.pipeline import (
    PreparedData,
    build_backbone,
    materialize,
    prepare,
    train_recipe,
)
from toolkit.training.trainer import Standardized
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


def test_packed_streams_are_cut_back_out_and_replaced() -> None:
    rng = np.random.default_rng(1)
    wave = rng.normal(size=(4, 1, 1, 30)).astype(np.float16)
    embedding = rng.normal(size=(4, 1, 6, 2)).astype(np.float16)
    blocks = [{"name": "waveform"}, {"name": "speaker", "input": "mixture"}]
    packed = fuse([wave, embedding], "pack", ["waveform", "speaker(mixture)"])
    assert packed.shape == (4, 1, 1, 30 + 12)
    layout = Layout.of("pack", blocks, [wave, embedding])
    assert layout.find("waveform") == [0] and layout.find("speaker", "separated") == []
    x = torch.from_numpy(packed.astype(np.float32))
    np.testing.assert_array_equal(layout.part(x, 0).numpy(), wave.astype(np.float32))
    np.testing.assert_array_equal(layout.part(x, 1).numpy(), embedding.astype(np.float32))
    louder = layout.replace(x, {0: layout.part(x, 0) * 2})
    assert louder.shape == x.shape
    np.testing.assert_array_equal(layout.part(louder, 0).numpy(), 2 * wave.astype(np.float32))
    np.testing.assert_array_equal(layout.part(louder, 1).numpy(), embedding.astype(np.float32))
    # stacked streams are runs of channels; pooled ones cannot be cut back out
    a, b = wave, rng.normal(size=(4, 1, 1, 30)).astype(np.float16)
    stacked = Layout.of("stack", blocks, [a, b])
    both = torch.from_numpy(fuse([a, b], "stack", ["a", "b"]).astype(np.float32))
    np.testing.assert_array_equal(stacked.part(both, 1).numpy(), b.astype(np.float32))
    swapped = stacked.replace(both, {0: stacked.part(both, 1), 1: stacked.part(both, 0)})
    np.testing.assert_array_equal(swapped.numpy()[:, 0], b[:, 0].astype(np.float32))
    with pytest.raises(ValueError, match="pooled"):
        Layout.of("concat", blocks, [wave, embedding]).part(x, 0)
    # the torch pooling of a packed stream is the numpy one of concat
    np.testing.assert_allclose(
        pooled_batch(layout.part(x, 1)).numpy(), pooled(embedding)[:, 0, :, 0], rtol=1e-5
    )


def test_the_layout_reaches_only_a_backbone_factory_that_names_it(tmp_path: Path) -> None:
    plugin = tmp_path / "packed_nets.py"
    plugin.write_text(
        "from torch import nn\n"
        "from toolkit import hookimpl\n"
        "def packed(num_classes, in_channels, layout, width: int = 4):\n"
        "    net = nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))\n"
        "    net.layout = layout\n"
        "    return net\n"
        "def plain(num_classes, in_channels):\n"
        "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))\n"
        "@hookimpl\n"
        "def register_backbones(register):\n"
        "    register('packed', packed, streams='pack')\n"
        "    register('plain', plain)\n"
    )
    registry = load_plugins([plugin])
    assert registry.get_info("backbones", "packed").streams == "pack"
    # the engine's argument is never a recipe parameter
    assert set(registry.get_info("backbones", "packed").params.model_fields) == {"width"}
    a = np.zeros((6, 1, 2, 3), np.float16)
    layout = Layout.of("pack", [{"name": "mel"}], [a])
    competition = SimpleNamespace(num_classes=3)
    data = PreparedData(competition, a, a, (), StageStats(), layout)  # type: ignore[arg-type]
    for name in ("packed", "plain"):
        raw = {"name": "x", "data": {"root": "."}, "features": {"name": "mel"}}
        raw["model"] = {"backbone": {"name": name}}
        net = build_backbone(
            Recipe.model_validate(raw), registry, data.competition.num_classes, data.train
        )
        assert net(torch.zeros(2, 1, 2, 3)).shape == (2, 3)
        assert getattr(net, "layout", None) is (layout if name == "packed" else None)


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
    result = train_recipe(loaded.recipe, loaded.registry, data, select_by="accuracy")
    held_out, majority = held_out_accuracy(learnable.root, data.competition, result.test_probs)
    # chance is 0.25 over four classes; the majority class is about 0.3
    assert held_out > max(0.45, majority + 0.1), (held_out, result.history[-1])
