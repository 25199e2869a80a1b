"""The built-in feature, augmenter and backbone plugins, on real synthesised audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolkit.demo import synthesize_clip
from toolkit.errors import RecipeError
from toolkit.plugins.augmenters.masks import FreqMask, TimeMask
from toolkit.plugins.augmenters.mixup import Mixup
from toolkit.plugins.augmenters.oversample import Oversample
from toolkit.plugins.backbones.resnet import BasicBlock, resnet18
from toolkit.plugins.features.mel import MelFeatures
from toolkit.registry.loader import load_plugins
from toolkit.registry.table import Registry

SAMPLE_RATE = 16000
DURATION = 1.5
LABELS = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 2])
NUM_CLASSES = 4


@pytest.fixture(scope="module")
def registry() -> Registry:
    """The built-in plugins (the spleeter separator is not under test here)."""
    return load_plugins(blocked=["toolkit.plugins.separators.spleeter"])


@pytest.fixture(scope="module")
def waves() -> torch.Tensor:
    """Mono mixtures ``[B, T]`` of one synthesised clip per label of LABELS."""
    rng = np.random.default_rng(7)
    clips = [
        synthesize_clip(int(label), rng, sample_rate=SAMPLE_RATE, duration=DURATION, channels=1)[0]
        for label in LABELS
    ]
    return torch.from_numpy(np.stack([clip.mean(axis=0) for clip in clips]).astype(np.float32))


@pytest.fixture(scope="module")
def mel_batch(waves: torch.Tensor) -> np.ndarray:
    """A small mel-feature array ``[N, 1, 64, frames]`` of the clips, as the engine stores it."""
    mel = MelFeatures(n_fft=512, hop_length=256, n_mels=64)
    return mel.extract(waves, SAMPLE_RATE).numpy()


# --- loading -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("feature_extractors", "mel"),
        ("augmenters", "oversample"),
        ("augmenters", "time_mask"),
        ("augmenters", "freq_mask"),
        ("augmenters", "mixup"),
        ("backbones", "resnet18"),
        ("backbones", "resnet10"),
        ("backbones", "timm"),
    ],
)
def test_builtin_plugin_is_registered_as_builtin(registry: Registry, kind: str, name: str) -> None:
    assert name in registry.list_names(kind)
    entry = registry.get_info(kind, name)
    assert entry.source == "builtin"
    assert entry.description


def test_engine_context_is_not_a_recipe_parameter(registry: Registry) -> None:
    for name in ("resnet18", "timm"):
        fields = registry.get_info("backbones", name).params.model_fields
        assert "num_classes" not in fields and "in_channels" not in fields
    assert "pretrained" not in registry.get_info("backbones", "timm").params.model_fields


# --- mel -----------------------------------------------------------------------------------


def test_mel_defaults_on_real_clips(registry: Registry, waves: torch.Tensor) -> None:
    mel = registry.create("feature_extractors", {"name": "mel"}, "features")
    assert isinstance(mel, MelFeatures)
    out = mel.extract(waves, SAMPLE_RATE)
    n_samples = waves.shape[1]
    assert out.shape == (len(LABELS), 1, 128, 1 + n_samples // 512)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # Amplitude to dB with top_db=80, per clip.
    span = out.amax(dim=(1, 2, 3)) - out.amin(dim=(1, 2, 3))
    assert (span <= 80.0 + 1e-3).all()
    assert (span > 20.0).all(), "real audio has a wide dynamic range"
    # A clip's features do not depend on the rest of its batch, even beside a loud clip.
    alone = mel.extract(waves[3:4], SAMPLE_RATE)
    torch.testing.assert_close(alone[0], out[3], rtol=1e-5, atol=1e-4)
    beside_loud = mel.extract(torch.cat([waves[3:4], 1000 * waves[0:1]]), SAMPLE_RATE)
    torch.testing.assert_close(beside_loud[0], alone[0], rtol=1e-5, atol=1e-4)


def test_mel_is_deterministic(waves: torch.Tensor) -> None:
    first = MelFeatures(n_mels=64).extract(waves, SAMPLE_RATE)
    again = MelFeatures(n_mels=64).extract(waves, SAMPLE_RATE)
    assert torch.equal(first, again)
    different_clips = first[LABELS == 0]
    assert not torch.equal(different_clips[0], different_clips[1])


def test_mel_parameters_reach_the_transform(waves: torch.Tensor) -> None:
    n_samples = waves.shape[1]
    out = MelFeatures(n_mels=40, hop_length=256).extract(waves, SAMPLE_RATE)
    assert out.shape == (len(LABELS), 1, 40, 1 + n_samples // 256)
    not_centred = MelFeatures(n_fft=512, hop_length=128, n_mels=64, center=False).extract(
        waves, SAMPLE_RATE
    )
    assert not_centred.shape[-1] == 1 + (n_samples - 512) // 128
    no_floor = MelFeatures(top_db=None).extract(waves, SAMPLE_RATE)
    floored = MelFeatures(top_db=30.0).extract(waves, SAMPLE_RATE)
    assert (no_floor.amax(dim=(1, 2, 3)) - no_floor.amin(dim=(1, 2, 3)) > 30.0).all()
    torch.testing.assert_close(floored.amax(dim=(1, 2, 3)), no_floor.amax(dim=(1, 2, 3)))
    assert (floored.amax(dim=(1, 2, 3)) - floored.amin(dim=(1, 2, 3)) <= 30.0 + 1e-3).all()
    low_band = MelFeatures(n_mels=32, f_max=2000.0).extract(waves, SAMPLE_RATE)
    full_band = MelFeatures(n_mels=32).extract(waves, SAMPLE_RATE)
    assert not torch.allclose(low_band, full_band)
    normalized = MelFeatures(normalize=True).extract(waves, SAMPLE_RATE)
    means = normalized.mean(dim=(1, 2, 3))
    stds = normalized.std(dim=(1, 2, 3))
    torch.testing.assert_close(means, torch.zeros_like(means), atol=1e-4, rtol=0)
    torch.testing.assert_close(stds, torch.ones_like(stds), atol=1e-3, rtol=0)


def test_mel_rejects_f_max_above_nyquist(waves: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="Nyquist"):
        MelFeatures(f_max=12000.0).extract(waves, SAMPLE_RATE)


# --- recipe validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "spec", "key", "expected"),
    [
        ("feature_extractors", {"name": "mel", "n_melz": 64}, "features", "features.n_melz"),
        ("feature_extractors", {"name": "mel", "n_melz": 64}, "features", "'n_mels'"),
        ("feature_extractors", {"name": "mel", "n_mels": 0}, "features", "features.n_mels"),
        ("feature_extractors", {"name": "mel", "power": 3}, "features", "features.power"),
        (
            "feature_extractors",
            {"name": "mel", "n_fft": 256, "win_length": 512},
            "features",
            "win_length 512 exceeds n_fft 256",
        ),
        ("augmenters", {"name": "mixup", "alpha": 0}, "augmenters[2]", "augmenters[2].alpha"),
        ("augmenters", {"name": "mixup", "p": 1.5}, "augmenters[2]", "augmenters[2].p"),
        ("augmenters", {"name": "time_mask"}, "augmenters[1]", "augmenters[1].max_width"),
        (
            "augmenters",
            {"name": "time_mask", "max_width": 8, "mask_value": "median"},
            "augmenters[1]",
            "augmenters[1].mask_value",
        ),
        (
            "augmenters",
            {"name": "oversample", "copies": {0: -1}},
            "augmenters[0]",
            "augmenters[0].copies",
        ),
        ("backbones", {"name": "resnet18", "widht": 32}, "model.backbone", "'width'"),
        ("backbones", {"name": "resnet18", "dropout": 1.0}, "model.backbone", "dropout"),
        (
            "backbones",
            {"name": "timm", "model": "resnet_18"},
            "model.backbone",
            "model.backbone.model",
        ),
        ("backbones", {"name": "timm", "model": "resnet_18"}, "model.backbone", "'resnet18'"),
        ("backbones", {"name": "timm", "model": "efficientnet_b00"}, "b", "'efficientnet_b0'"),
        (
            "backbones",
            {"name": "timm", "model": "resnet18", "kwargs": {"pretrained": True}},
            "model.backbone",
            "pretrained",
        ),
        (
            "backbones",
            {"name": "timm", "model": "resnet18", "pretrained": True},
            "b",
            "b.pretrained",
        ),
        ("backbones", {"name": "resnet18", "num_classes": 3}, "b", "b.num_classes"),
    ],
)
def test_bad_recipe_parameters_name_the_key(
    registry: Registry, kind: str, spec: dict, key: str, expected: str
) -> None:
    with pytest.raises(RecipeError) as info:
        registry.validate(kind, spec, key)
    assert expected in str(info.value)


def test_good_recipe_parameters_validate(registry: Registry) -> None:
    params = registry.validate("augmenters", {"name": "oversample", "copies": {"0": 3}}, "a")
    assert params.model_dump() == {"copies": {"0": 3}, "rarest": 0}  # labels as written
    params = registry.validate("augmenters", {"name": "time_mask", "max_width": 20}, "a")
    assert params.model_dump() == {"copies": 1, "max_width": 20, "count": 1, "mask_value": "mean"}
    params = registry.validate("backbones", {"name": "timm", "model": "resnet34"}, "b")
    assert params.model_dump()["model"] == "resnet34"


# --- oversample ----------------------------------------------------------------------------


def test_oversample_appends_exact_copies(registry: Registry, mel_batch: np.ndarray) -> None:
    spec = {"name": "oversample", "copies": {0: 3, 2: 1}}
    aug = registry.create("augmenters", spec, classes=[str(c) for c in range(NUM_CLASSES)])
    assert isinstance(aug, Oversample)
    before = mel_batch.copy()
    extra, extra_labels = aug.expand(mel_batch, LABELS, np.random.default_rng(0))
    assert np.array_equal(mel_batch, before)
    counts = np.bincount(LABELS, minlength=NUM_CLASSES)
    assert np.bincount(extra_labels, minlength=NUM_CLASSES).tolist() == [
        3 * counts[0],
        0,
        counts[2],
        0,
    ]
    assert extra.shape == (len(extra_labels), *mel_batch.shape[1:])
    # Every example of class 0 appears exactly three more times, unchanged.
    for row in np.nonzero(LABELS == 0)[0]:
        same = [np.array_equal(e, mel_batch[row]) for e in extra]
        assert sum(same) == 3
    for features, label in zip(extra, extra_labels, strict=True):
        matches = [i for i in range(len(mel_batch)) if np.array_equal(features, mel_batch[i])]
        assert matches and all(LABELS[i] == label for i in matches)


def test_oversample_with_nothing_to_copy(mel_batch: np.ndarray) -> None:
    extra, labels = Oversample(copies={0: 0, 7: 2}).expand(
        mel_batch, LABELS, np.random.default_rng(0)
    )
    assert extra.shape == (0, *mel_batch.shape[1:]) and labels.shape == (0,)


# --- masks ---------------------------------------------------------------------------------


def _masked_bands(original: np.ndarray, masked: np.ndarray, axis: int) -> list[np.ndarray]:
    """For each example, the indices along ``axis`` where the copy differs from the original."""
    other = tuple(a for a in (1, 2, 3) if a != axis)
    differs = (original != masked).any(axis=other)
    return [np.nonzero(row)[0] for row in differs]


@pytest.mark.parametrize(("cls", "axis"), [(TimeMask, 3), (FreqMask, 2)])
def test_mask_copies_have_one_band_of_the_mean(mel_batch: np.ndarray, cls: type, axis: int) -> None:
    before = mel_batch.copy()
    aug = cls(max_width=12)
    extra, labels = aug.expand(mel_batch, LABELS, np.random.default_rng(1))
    assert np.array_equal(mel_batch, before), "originals must never change"
    assert extra.shape == mel_batch.shape and extra.dtype == mel_batch.dtype
    assert np.array_equal(labels, LABELS)
    widths = []
    for i, band in enumerate(_masked_bands(mel_batch, extra, axis)):
        assert 1 <= len(band) <= 12
        assert np.array_equal(band, np.arange(band[0], band[0] + len(band))), "one contiguous band"
        region = np.take(extra[i], band, axis=axis - 1)
        np.testing.assert_allclose(region, mel_batch[i].mean(), rtol=1e-5, atol=1e-4)
        outside = np.delete(extra[i], band, axis=axis - 1)
        assert np.array_equal(outside, np.delete(mel_batch[i], band, axis=axis - 1))
        widths.append(len(band))
    assert len(set(widths)) > 1, "widths are drawn per example"


def test_time_mask_number_value_and_several_copies(mel_batch: np.ndarray) -> None:
    aug = TimeMask(copies=2, max_width=5, count=3, mask_value=-100.0)
    extra, labels = aug.expand(mel_batch, LABELS, np.random.default_rng(2))
    n = len(mel_batch)
    assert extra.shape == (2 * n, *mel_batch.shape[1:])
    assert np.array_equal(labels, np.concatenate([LABELS, LABELS]))
    for copy in (extra[:n], extra[n:]):
        for i, band in enumerate(_masked_bands(mel_batch, copy, 3)):
            assert 1 <= len(band) <= 15
            assert (copy[i][..., band] == -100.0).all()
    assert not np.array_equal(extra[:n], extra[n:]), "each copy gets its own masks"


def test_masks_are_deterministic_under_a_seed(mel_batch: np.ndarray) -> None:
    for cls in (TimeMask, FreqMask):
        aug = cls(max_width=10, count=2)
        first, _ = aug.expand(mel_batch, LABELS, np.random.default_rng(5))
        again, _ = aug.expand(mel_batch, LABELS, np.random.default_rng(5))
        other, _ = aug.expand(mel_batch, LABELS, np.random.default_rng(6))
        assert np.array_equal(first, again)
        assert not np.array_equal(first, other)


def test_masks_keep_float16_and_handle_wide_masks(mel_batch: np.ndarray) -> None:
    half = mel_batch.astype(np.float16)
    extra, _ = FreqMask(max_width=1000).expand(half, LABELS, np.random.default_rng(3))
    assert extra.dtype == np.float16
    assert np.isfinite(extra).all()


# --- mixup ---------------------------------------------------------------------------------


def _one_hot(labels: np.ndarray) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.from_numpy(labels), NUM_CLASSES).float()


def _recover_partners(x: torch.Tensor, mixed: torch.Tensor) -> tuple[list[int], list[float | None]]:
    """For each mixed row, the partner j and lam with ``mixed_i = lam x_i + (1 - lam) x_j``."""
    flat = x.flatten(1).double()
    out = mixed.flatten(1).double()
    partners: list[int] = []
    lams: list[float | None] = []
    for i in range(len(x)):
        if torch.allclose(out[i], flat[i], atol=1e-4):
            partners.append(i)
            lams.append(None)
            continue
        best = None
        for j in range(len(x)):
            if j == i:
                continue
            diff = flat[i] - flat[j]
            lam = float(torch.dot(out[i] - flat[j], diff) / torch.dot(diff, diff))
            residual = (out[i] - flat[j] - lam * diff).abs().max().item()
            if residual < 1e-3 and (best is None or residual < best[2]):
                best = (j, lam, residual)
        assert best is not None, f"row {i} is not a mix of two examples"
        partners.append(best[0])
        lams.append(best[1])
    return partners, lams


def test_mixup_mixes_inputs_and_targets_convexly(registry: Registry, mel_batch: np.ndarray) -> None:
    aug = registry.create("augmenters", {"name": "mixup", "alpha": 1.0})
    assert isinstance(aug, Mixup)
    x = torch.from_numpy(mel_batch)
    y = _one_hot(LABELS)
    x_before, y_before = x.clone(), y.clone()
    mixed_x, mixed_y = aug(x, y, torch.Generator().manual_seed(3))
    assert torch.equal(x, x_before) and torch.equal(y, y_before)
    assert mixed_x.shape == x.shape and mixed_y.shape == y.shape
    assert mixed_x.dtype == x.dtype
    torch.testing.assert_close(mixed_y.sum(dim=1), torch.ones(len(y)))
    assert (mixed_y >= 0).all() and (mixed_y <= 1).all()
    partners, lams = _recover_partners(x, mixed_x)
    assert sorted(partners) == list(range(len(x))), "partners form a permutation"
    known = [lam for lam in lams if lam is not None]
    assert known, "alpha=1 mixes a batch with probability one"
    assert all(0.0 <= lam <= 1.0 for lam in known)
    assert max(known) - min(known) < 1e-3, "one lambda per batch"
    lam = known[0]
    for i, j in enumerate(partners):
        expected = lam * y[i] + (1 - lam) * y[j] if j != i else y[i]
        torch.testing.assert_close(mixed_y[i], expected, atol=1e-3, rtol=0)


def test_mixup_per_example_lambdas_differ(mel_batch: np.ndarray) -> None:
    x = torch.from_numpy(mel_batch)
    mixed_x, mixed_y = Mixup(alpha=1.0, per_example=True)(
        x, _one_hot(LABELS), torch.Generator().manual_seed(4)
    )
    torch.testing.assert_close(mixed_y.sum(dim=1), torch.ones(len(x)))
    _, lams = _recover_partners(x, mixed_x)
    known = [lam for lam in lams if lam is not None]
    assert len(known) >= 2 and max(known) - min(known) > 1e-2


def test_mixup_is_deterministic_under_a_seeded_generator(mel_batch: np.ndarray) -> None:
    x, y = torch.from_numpy(mel_batch), _one_hot(LABELS)
    aug = Mixup(alpha=0.2)
    first = aug(x, y, torch.Generator().manual_seed(11))
    again = aug(x, y, torch.Generator().manual_seed(11))
    other = aug(x, y, torch.Generator().manual_seed(12))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


def test_mixup_lambda_follows_beta_and_p(mel_batch: np.ndarray) -> None:
    generator = torch.Generator().manual_seed(0)
    aug = Mixup(alpha=0.2)
    lams = np.concatenate([aug.draw(4, generator)[1] for _ in range(4000)])
    # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)).
    assert abs(lams.mean() - 0.5) < 0.03
    assert abs(lams.var() - 1 / (4 * 1.4)) < 0.015
    never = Mixup(p=0.0)
    x, y = torch.from_numpy(mel_batch), _one_hot(LABELS)
    out_x, out_y = never(x, y, torch.Generator().manual_seed(1))
    assert torch.equal(out_x, x) and torch.equal(out_y, y)
    half = Mixup(p=0.5)
    applied = [half.draw(4, generator)[0] for _ in range(2000)]
    assert 0.45 < np.mean(applied) < 0.55


# --- backbones -----------------------------------------------------------------------------


def _train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    model.train()
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    return logits


def test_resnet18_parameter_count_matches_resnet18() -> None:
    model = resnet18(num_classes=4, in_channels=1)
    count = sum(p.numel() for p in model.parameters())
    # torchvision's 11.69M, minus two input channels of the stem and 996 classes of the fc.
    assert 11_150_000 < count < 11_200_000
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sum(c.kernel_size == (3, 3) for c in convs) == 16


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "resnet18", "width": 16, "dropout": 0.2},
        {"name": "resnet10", "width": 8},
        {"name": "timm", "model": "resnet18", "drop_rate": 0.1},
        {"name": "timm", "model": "efficientnet_b0"},
    ],
)
def test_backbones_forward_and_backward_on_mel(
    registry: Registry, mel_batch: np.ndarray, spec: dict
) -> None:
    torch.manual_seed(0)
    model = registry.create("backbones", spec, "model.backbone", num_classes=4, in_channels=1)
    x = torch.from_numpy(mel_batch)
    y = torch.from_numpy(LABELS)
    logits = _train_step(model, x, y)
    assert logits.shape == (len(x), NUM_CLASSES) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads if g is not None)
    model.eval()
    with torch.no_grad():
        assert model(x[:2]).shape == (2, NUM_CLASSES)


def test_resnet_options_take_effect(mel_batch: np.ndarray) -> None:
    model = resnet18(num_classes=3, in_channels=2, width=8, zero_init_residual=True)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert all(torch.equal(b.bn2.weight, torch.zeros_like(b.bn2.weight)) for b in blocks)
    two_channels = torch.from_numpy(np.repeat(mel_batch[:4], 2, axis=1))
    assert model(two_channels).shape == (4, 3)
    with pytest.raises(ValueError, match="num_classes"):
        resnet18(num_classes=0, in_channels=1)


def test_timm_parameters_reach_the_model(registry: Registry) -> None:
    model = registry.create(
        "backbones",
        {"name": "timm", "model": "resnet18", "drop_rate": 0.25, "kwargs": {"global_pool": "max"}},
        num_classes=5,
        in_channels=3,
    )
    assert model.drop_rate == 0.25
    assert model.num_classes == 5
    assert model.conv1.in_channels == 3
    assert "max" in str(model.global_pool).lower()
