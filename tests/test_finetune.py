"""Pretrained networks trained end to end on the waveform stream: their weights, their
freezing schedule, their fusion with frozen streams, the waveform augmenters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import held_out_accuracy
from tests.reference import load
from toolkit.demo import DemoCompetition, make_demo_competition
from toolkit.errors import RecipeError
from toolkit.recipe.loading import load_recipe
from toolkit.registry.loader import load_plugins
from toolkit.registry.table import Registry
from toolkit.training.finetuning import BodyLayer, FineTuneSettings, LayerSchedule
from toolkit.training.fusion import Layout, fuse
from toolkit.training.pipeline import build_backbone, materialize, prepare, train_recipe
from toolkit.training.trainer import train

RATE = 16000


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_plugins()


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    """Two real 4 s clips at 16 kHz (a sung excerpt, a demo song), as stored: float16 values."""
    return torch.from_numpy(load("inputs")["mono_16k"])


def waveform_layout(registry: Registry, *others: tuple[dict, np.ndarray], n: int = 2) -> Layout:
    """The layout of a waveform stream of 4 s clips, then ``others`` (block, array)."""
    block = registry.resolve("feature_extractors", {"name": "waveform"}, "features")
    blocks = [block, *(b for b, _ in others)]
    arrays = [np.zeros((n, 1, 1, 4 * RATE), np.float16), *(a for _, a in others)]
    return Layout.of("pack", blocks, arrays)


def backbone(registry: Registry, layout: Layout, **params: object) -> nn.Module:
    net = registry.create(
        "backbones", {**params}, "model.backbone", num_classes=4, in_channels=1, layout=layout
    )
    materialize(net, (1, 1, sum(s.size for s in layout.streams)))
    return net.eval()


@pytest.mark.parametrize(
    ("backbone_block", "feature_block"),
    [
        (
            {"name": "musicnn_finetune", "model": "MSD_musicnn"},
            {"name": "musicnn", "model": "MSD_musicnn", "output": "penultimate", "hop": 3.0},
        ),
        (
            {"name": "musicnn_finetune", "model": "MTT_musicnn", "embedding": "pooled"},
            {"name": "musicnn", "model": "MTT_musicnn", "output": "pooled"},
        ),
        ({"name": "speaker_finetune"}, {"name": "speaker"}),
    ],
)
def test_the_shipped_weights_give_the_frozen_extractors_embeddings(
    registry: Registry, clips: torch.Tensor, backbone_block: dict, feature_block: dict
) -> None:
    net = backbone(registry, waveform_layout(registry), **backbone_block)
    with torch.no_grad():
        ours = net.body.window_embeddings(clips)  # [B, windows, D]
    extractor = registry.create("feature_extractors", feature_block, "features")
    with torch.inference_mode():
        frozen = extractor.extract(clips, RATE)[:, 0].transpose(1, 2)
    assert ours.shape == frozen.shape and ours.shape[1] >= 1
    np.testing.assert_allclose(ours.numpy(), frozen.numpy(), rtol=1e-4, atol=1e-4)
    # the clip's embedding is the mean of its windows'
    with torch.no_grad():
        pooled = net.body(clips)
    np.testing.assert_allclose(pooled.numpy(), frozen.mean(dim=1).numpy(), rtol=1e-4, atol=1e-4)


def test_float16_storage_leaves_the_networks_embeddings_as_they_were(
    registry: Registry, clips: torch.Tensor
) -> None:
    """The cache stores waveforms as float16: about 66 dB of signal to rounding noise,
    far below what moves a pretrained network's embedding."""
    exact = clips.double() + 1e-5 * torch.randn(clips.shape, dtype=torch.float64)  # off-grid
    stored = exact.to(torch.float16).double()
    snr = 10 * torch.log10(exact.square().sum() / (stored - exact).square().sum())
    assert snr > 60
    for name in ("musicnn_finetune", "speaker_finetune"):
        net = backbone(registry, waveform_layout(registry), name=name)
        with torch.no_grad():
            a, b = net.body(exact.float()), net.body(stored.float())
        cosine = nn.functional.cosine_similarity(a, b).min()
        assert cosine > 0.999, (name, float(cosine))


def test_the_schedule_freezes_the_body_then_trains_it_gently() -> None:
    layers = [nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)) for _ in range(3)]
    body = [BodyLayer.of(f"l{i}", [m]) for i, m in enumerate(layers)]
    settings = FineTuneSettings(head_epochs=2, frozen_layers=1, body_lr=0.1, layer_decay=0.5)
    schedule = LayerSchedule(body, settings)
    head = nn.Linear(3, 2)
    groups = schedule.parameter_groups(head.parameters(), 1e-2)
    # the head at the rate, then the layers that ever train, the top one fastest
    assert [g["lr"] for g in groups] == pytest.approx([1e-2, 1e-2 * 0.1 * 0.5, 1e-2 * 0.1])
    assert not any(p.requires_grad for m in layers for p in m.parameters())  # as in epoch 1
    for epoch, trains in ((1, [False] * 3), (2, [False] * 3), (3, [False, True, True])):
        for m in layers:
            m.train()
        schedule.on_epoch_start(epoch)
        assert [m[0].weight.requires_grad for m in layers] == trains
        assert [m[1].training for m in layers] == [False] * 3  # pretrained statistics kept
    trained_norms = LayerSchedule(body, settings.model_copy(update={"train_norms": True}))
    trained_norms.on_epoch_start(3)
    assert [m[1].training for m in layers] == [False, True, True]
    with pytest.raises(ValueError, match="frozen_layers 4 exceeds the body's 3 layers"):
        LayerSchedule(body, settings.model_copy(update={"frozen_layers": 4}))


def test_musicnn_s_front_end_stays_pretrained_and_its_mid_end_trains_after_the_head(
    registry: Registry,
) -> None:
    net = backbone(
        registry, waveform_layout(registry), name="musicnn_finetune", head_epochs=1,
        frozen_layers=2, body_lr=0.1, layer_decay=0.5,
    )  # fmt: skip
    body = net.body.net
    groups = net.parameter_groups(1e-3)
    # the head, then mid-end 1-3 and the back-end, each layer down half as fast
    assert [g["lr"] for g in groups] == pytest.approx(
        [1e-3, *(1e-4 * 0.5**d for d in (3, 2, 1, 0))]
    )
    head_params = {id(p) for p in net.head.parameters()}
    assert {id(p) for p in groups[0]["params"]} == head_params
    front = [body.input_norm, body.timbral[0], body.temporal_norm[0]]
    for epoch, body_trains in ((1, False), (2, True)):
        net.train()
        net.on_epoch_start(epoch)
        assert not any(p.requires_grad for m in front for p in m.parameters())
        assert all(p.requires_grad == body_trains for p in body.midend.parameters())
        assert all(p.requires_grad == body_trains for p in body.dense.parameters())
        norms = [m for m in body.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        assert len(norms) > 6 and not any(m.training for m in norms)  # pretrained statistics
        assert all(p.requires_grad for p in net.head.parameters())


def test_the_packed_fusion_reaches_the_head_from_every_stream(registry: Registry) -> None:
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.normal(size=(3, 1, 1, 4 * RATE))).astype(np.float16)
    musicnn = rng.normal(size=(3, 1, 200, 1)).astype(np.float16)
    speaker = np.abs(rng.normal(size=(3, 1, 256, 3))).astype(np.float16)
    mixture = (0.1 * rng.normal(size=(3, 1, 1, 4 * RATE))).astype(np.float16)
    blocks = [
        registry.resolve("feature_extractors", {"name": "waveform"}, "f"),
        {"name": "musicnn"},
        {"name": "speaker", "input": "mixture"},
        {**registry.resolve("feature_extractors", {"name": "waveform"}, "f"), "input": "mixture"},
    ]
    arrays = [wave, musicnn, speaker, mixture]
    layout = Layout.of("pack", blocks, arrays)
    x = torch.from_numpy(fuse(arrays, "pack", ["w", "m", "s", "w(mixture)"]).astype(np.float32))
    net = backbone(registry, layout, name="speaker_finetune", head_epochs=0, dropout=0.0)
    with torch.no_grad():
        whole = net(x)
        for i, stream in enumerate(layout.streams):
            blank = layout.replace(x, {i: torch.zeros_like(layout.part(x, i))})
            moved = (net(blank) - whole).abs().max().item()
            if i == 3:  # the mixture's waveform is there for augmenters; the network reads vocals
                assert moved == 0.0
            else:
                assert moved > 1e-4, f"{stream.name} does not reach the head"


def test_a_fine_tuned_backbone_says_which_stream_it_lacks(registry: Registry) -> None:
    speaker = ({"name": "speaker"}, np.zeros((2, 1, 256, 3), np.float16))
    only_speaker = Layout.of("pack", [speaker[0]], [speaker[1]])
    with pytest.raises(RecipeError, match=r"speaker_finetune trains on a waveform stream.*"):
        backbone(registry, only_speaker, name="speaker_finetune")
    with pytest.raises(RecipeError, match="reading 'mixture'.*input: mixture"):
        backbone(registry, waveform_layout(registry), name="musicnn_finetune", audio="mixture")
    fast = {"name": "waveform", "sample_rate": 22050}
    at_22k = Layout.of("pack", [fast], [np.zeros((2, 1, 1, 100), np.float16)])
    with pytest.raises(RecipeError, match="takes 16 kHz audio.*sample_rate 22050"):
        backbone(registry, at_22k, name="speaker_finetune")
    with pytest.raises(RecipeError, match=r"frozen_layers 6 exceeds the body's 5 layers"):
        backbone(
            registry,
            waveform_layout(registry),
            name="musicnn_finetune",
            embedding="pooled",
            frozen_layers=6,
        )


def test_the_finetune_recipe_s_backbones_and_augmenters_find_their_streams(
    registry: Registry,
) -> None:
    loaded = load_recipe(Path(__file__).parent.parent / "recipes" / "finetune.yaml")
    recipe = loaded.recipe
    shapes = {"waveform": (1, 1, 3 * RATE), "musicnn": (1, 200, 1)}
    arrays = [np.zeros((2, *shapes[b["name"]]), np.float16) for b in recipe.feature_streams]
    layout = Layout.of("pack", recipe.feature_streams, arrays)
    assert layout.find("waveform", "separated") and layout.find("waveform", "mixture")
    for name in ("speaker_finetune", "musicnn_finetune"):
        net = backbone(loaded.registry, layout, **{**loaded.raw["model"]["backbone"], "name": name})
        assert net.audio_index == layout.find("waveform", "separated")[0]
        assert len(net.frozen_indices) == 2  # musicnn of the vocals and of the mixture
    for block in recipe.augmenters:
        made = loaded.registry.create("augmenters", block, "augmenters")
        if hasattr(made, "set_layout"):
            made.set_layout(layout)


def batch_of(registry: Registry, n: int = 6, length: int = 400) -> tuple[Layout, torch.Tensor]:
    """A packed batch: vocals, a frozen embedding, the mixture (vocals + accompaniment)."""
    rng = np.random.default_rng(5)
    vocals = rng.normal(size=(n, 1, 1, length)).astype(np.float32)
    accompaniment = rng.normal(size=(n, 1, 1, length)).astype(np.float32)
    embedding = rng.normal(size=(n, 1, 8, 2)).astype(np.float32)
    wave = registry.resolve("feature_extractors", {"name": "waveform"}, "f")
    blocks = [wave, {"name": "speaker"}, {**wave, "input": "mixture"}]
    arrays = [vocals, embedding, vocals + accompaniment]
    layout = Layout.of("pack", blocks, arrays)
    return layout, torch.from_numpy(fuse(arrays, "pack", ["v", "e", "m"]))


def augmenter(registry: Registry, layout: Layout | None, **block: object):  # type: ignore[no-untyped-def]
    made = registry.create("augmenters", block, "augmenters[0]")
    if layout is not None:
        made.set_layout(layout)
    return made


def test_gain_scales_each_clip_s_waveforms_alike_and_nothing_else(registry: Registry) -> None:
    layout, x = batch_of(registry)
    y = torch.eye(4)[[0, 1, 2, 3, 0, 1]]
    gain = augmenter(registry, layout, name="gain", min_db=-12.0, max_db=12.0)
    out, targets = gain(x, y, torch.Generator().manual_seed(0))
    again, _ = gain(x, y, torch.Generator().manual_seed(0))
    assert torch.equal(out, again) and torch.equal(targets, y)  # seeded draws
    vocal_ratio = layout.part(out, 0).flatten(1) / layout.part(x, 0).flatten(1)
    mixture_ratio = layout.part(out, 2).flatten(1) / layout.part(x, 2).flatten(1)
    torch.testing.assert_close(vocal_ratio, vocal_ratio[:, :1].expand_as(vocal_ratio))
    torch.testing.assert_close(mixture_ratio, vocal_ratio)
    db = 20 * torch.log10(vocal_ratio[:, 0])
    assert ((db >= -12 - 1e-4) & (db <= 12 + 1e-4)).all() and db.std() > 1
    assert torch.equal(layout.part(out, 1), layout.part(x, 1))  # the frozen stream as it was
    # a batch that is one waveform stream needs no layout
    alone = torch.from_numpy(np.ones((2, 1, 1, 50), np.float32))
    louder, _ = augmenter(registry, None, name="gain", min_db=6.0, max_db=6.0)(
        alone, y[:2], torch.Generator().manual_seed(1)
    )
    torch.testing.assert_close(louder, alone * 10 ** (6 / 20))


def test_time_roll_rolls_each_clip_s_waveforms_by_one_offset(registry: Registry) -> None:
    layout, x = batch_of(registry)
    roll = augmenter(registry, layout, name="time_roll", max_fraction=0.5)
    out, _ = roll(x, torch.eye(6), torch.Generator().manual_seed(3))
    vocals, mixture = layout.part(x, 0).flatten(1), layout.part(x, 2).flatten(1)
    rolled_v, rolled_m = layout.part(out, 0).flatten(1), layout.part(out, 2).flatten(1)
    offsets = []
    for i in range(len(x)):
        found = [s for s in range(-200, 201) if torch.equal(torch.roll(vocals[i], s), rolled_v[i])]
        assert len(found) == 1, i
        offsets.append(found[0])
        assert torch.equal(torch.roll(mixture[i], found[0]), rolled_m[i])
    assert len(set(offsets)) > 1
    assert torch.equal(layout.part(out, 1), layout.part(x, 1))


def test_remix_puts_another_clip_s_accompaniment_under_the_vocals(registry: Registry) -> None:
    layout, x = batch_of(registry)
    y = torch.eye(4)[[0, 1, 2, 3, 0, 1]]
    remix = augmenter(registry, layout, name="remix", p=1.0, min_db=0.0, max_db=0.0)
    out, targets = remix(x, y, torch.Generator().manual_seed(2))
    assert torch.equal(targets, y)
    vocals = layout.part(x, 0).flatten(1)
    accompaniment = layout.part(x, 2).flatten(1) - vocals
    assert torch.equal(layout.part(out, 0).flatten(1), vocals)  # no bleed: vocals kept
    new = layout.part(out, 2).flatten(1) - vocals
    partners = [
        next(j for j in range(len(x)) if torch.allclose(new[i], accompaniment[j], atol=1e-5))
        for i in range(len(x))
    ]
    assert sorted(partners) == list(range(len(x))) and partners != list(range(len(x)))
    leaky = augmenter(registry, layout, name="remix", p=1.0, min_db=0.0, max_db=0.0, bleed=0.5)
    leaked, _ = leaky(x, y, torch.Generator().manual_seed(2))
    torch.testing.assert_close(
        layout.part(leaked, 0).flatten(1), vocals + 0.5 * accompaniment[partners]
    )
    none = augmenter(registry, layout, name="remix", p=0.0)
    assert torch.equal(none(x, y, torch.Generator().manual_seed(2))[0], x)


def test_waveform_augmenters_say_which_streams_they_lack(registry: Registry) -> None:
    wave = registry.resolve("feature_extractors", {"name": "waveform"}, "f")
    vocals_only = Layout.of("pack", [wave], [np.zeros((2, 1, 1, 10), np.float16)])
    with pytest.raises(RecipeError, match=r"remix needs .*input: mixture"):
        augmenter(registry, vocals_only, name="remix")
    embeddings = Layout.of("pack", [{"name": "speaker"}], [np.zeros((2, 1, 4, 1), np.float16)])
    with pytest.raises(RecipeError, match="gain changes waveform streams.*none \\(speaker\\)"):
        augmenter(registry, embeddings, name="gain")


def test_feature_map_augmenters_are_refused_beside_packed_streams(tmp_path: Path) -> None:
    recipe = finetune_recipe(tmp_path, tmp_path, "{name: speaker_finetune}")
    for override, key in (
        (
            "augmenters=[{name: gain}, {name: time_mask, copies: 1, max_width: 4}]",
            "augmenters\\[1\\]",
        ),
        ("augmenters=[{name: freq_mask, copies: 1, max_width: 4}]", "augmenters\\[0\\]"),
        ("predict.tta=[{name: time_shift}]", "predict.tta\\[0\\]"),
    ):
        with pytest.raises(RecipeError, match=f"{key}: .* takes its streams packed"):
            load_recipe(recipe, [override])
    # the same augmenters stay allowed for a backbone of feature maps
    mask = "augmenters=[{name: time_mask, copies: 1, max_width: 4}]"
    mel = load_recipe(recipe, ["features={name: mel}", "model.backbone={name: resnet18}", mask])
    assert mel.recipe.augmenters[0]["name"] == "time_mask"


def test_mixup_mixes_waveform_batches_as_any_other(registry: Registry) -> None:
    layout, x = batch_of(registry)
    y = torch.eye(4)[[0, 1, 2, 3, 0, 1]]
    mixup = augmenter(registry, layout, name="mixup", alpha=0.4)
    out, soft = mixup(x, y, torch.Generator().manual_seed(4))
    assert out.shape == x.shape and not torch.equal(out, x)
    # each row is lam * its own + (1 - lam) * a partner's, the targets likewise
    lam = soft.max(dim=1).values
    assert ((lam >= 0.5 - 1e-6) & (lam <= 1 + 1e-6)).all()


@pytest.fixture(scope="module")
def learnable(tmp_path_factory: pytest.TempPathFactory) -> DemoCompetition:
    """Generated 2 s clips, enough to learn from in a short fine-tune."""
    root = tmp_path_factory.mktemp("finetune") / "competition"
    return make_demo_competition(root, n_train=160, n_test=60, seed=7, duration=2.0)


def finetune_recipe(directory: Path, root: Path, backbone_block: str) -> Path:
    path = directory / "recipe.yaml"
    path.write_text(
        f"""
name: finetune-test
data: {{root: {root}, sample_rate: 16000, duration: 2.0}}
separator: {{name: none}}
features: [{{name: waveform}}, {{name: waveform, input: mixture}}]
augmenters: [{{name: gain, min_db: -3.0, max_db: 3.0}}, {{name: remix, p: 0.3}}]
split: {{test_size: 0.25, random_state: 0, stratify: true}}
model: {{backbone: {backbone_block}}}
train:
  epochs: 5
  batch_size: 16
  eval_batch_size: 32
  optimizer: {{name: adamw, lr: 0.003, weight_decay: 0.01}}
  scheduler: {{name: cosine}}
cache: {{dir: {directory / "cache"}}}
output: {{leaderboard: {directory / "leaderboard.db"}}}
"""
    )
    return path


def state_of(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


@pytest.mark.slow
def test_frozen_layers_stay_and_the_others_move_once_unfrozen(
    learnable: DemoCompetition, tmp_path: Path
) -> None:
    block = "{name: speaker_finetune, head_epochs: 1, frozen_layers: 1, rate: 0.7}"
    loaded = load_recipe(finetune_recipe(tmp_path, learnable.root, block), ["train.epochs=2"])
    data = prepare(loaded.recipe, loaded.registry)
    net = build_backbone(loaded.recipe, loaded.registry, data.competition.num_classes, data.train)
    start, snapshots = state_of(net), []
    x, y = np.asarray(data.train_x[:40]), data.labels[:40]
    train(
        net, x[:32], y[:32], x[32:], y[32:], loaded.recipe.train, 4,
        select_by="accuracy", on_epoch=lambda epoch, record: snapshots.append(state_of(net)),
    )  # fmt: skip
    after_head, after_body = snapshots

    def moved(state: dict[str, torch.Tensor], prefix: str) -> bool:
        keys = [k for k in start if k.startswith(prefix)]
        assert keys, prefix
        return any(not torch.equal(state[k], start[k]) for k in keys)

    assert moved(after_head, "head.") and not moved(after_head, "body.encoder.")
    assert not moved(after_body, "body.encoder.lstm.weight_ih_l0")  # frozen throughout
    assert not moved(after_body, "body.encoder.lstm.bias_hh_l0")
    for prefix in ("body.encoder.lstm.weight_ih_l1", "body.encoder.lstm.weight_hh_l2"):
        assert moved(after_body, prefix), prefix
    assert moved(after_body, "body.encoder.linear.")


@pytest.mark.slow
def test_a_short_fine_tune_beats_chance_on_held_out_clips(
    learnable: DemoCompetition, tmp_path: Path
) -> None:
    block = "{name: speaker_finetune, head_epochs: 1, rate: 0.7, hidden: 64, dropout: 0.1}"
    loaded = load_recipe(finetune_recipe(tmp_path, learnable.root, block))
    data = prepare(loaded.recipe, loaded.registry)
    assert data.train_x.shape[1:] == (1, 1, 2 * 2 * RATE)  # the vocals and the mixture, packed
    result = train_recipe(loaded.recipe, loaded.registry, data, select_by="accuracy")
    held_out, majority = held_out_accuracy(learnable.root, data.competition, result.test_probs)
    assert held_out > max(0.45, majority + 0.1), (held_out, majority, result.history[-1])
