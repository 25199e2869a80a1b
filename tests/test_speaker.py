"""Resemblyzer's speaker encoder in PyTorch: safe weights, windows, shapes, determinism, parity.

The parity test at the end needs a virtualenv with resemblyzer and its
dependencies (``TOOLKIT_RESEMBLYZER_PYTHON``, see docs/speaker.md) and is skipped
with the reason when it is absent.
"""

from __future__ import annotations

import builtins
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import reference
from toolkit.demo import synthesize_clip
from toolkit.errors import RecipeError
from toolkit.plugins.features.speaker import SpeakerFeatures
from toolkit.pretrained import speaker as sp
from toolkit.recipe.loading import load_recipe
from toolkit.registry.loader import load_plugins

RECIPE = """
name: t
data: {root: data/x, sample_rate: 22050, duration: 3.0}
features: {name: speaker}
model: {backbone: {name: resnet18, width: 8}}
train: {epochs: 1, optimizer: {name: sgd, lr: 0.01}}
"""


@pytest.fixture(autouse=True)
def private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Converted weights go to a folder of this test session, not the user's cache."""
    folder = tmp_path_factory.getbasetemp() / "speaker-cache"
    monkeypatch.setenv(sp.CACHE_ENV, str(folder))
    return folder


@pytest.fixture(scope="module")
def extractor() -> SpeakerFeatures:
    """The ``speaker`` extractor with its default settings, built through the registry."""
    registry = load_plugins([])
    return registry.create("feature_extractors", {"name": "speaker"}, "features")


def voice(label: int, seed: int, duration: float, sample_rate: int = 22050) -> np.ndarray:
    """The mono voice stem of a generated demo clip (1: male, 2: female), float32 ``[T]``."""
    _, stem = synthesize_clip(
        label, np.random.default_rng(seed), sample_rate=sample_rate, duration=duration, channels=1
    )
    return stem[0]


# -- weights -------------------------------------------------------------------------


def test_installed_weights_have_the_pinned_digest() -> None:
    path = sp.weights_path()
    sp.verify_weights(path)
    state = sp.read_checkpoint(path)
    assert set(state) == set(sp.SpeakerEncoder().state_dict())


def test_checkpoint_loading_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple:
            return (builtins.exec, (f"open({str(marker)!r}, 'w').close()",))

    evil = tmp_path / "evil.pt"
    torch.save({"model_state": Payload()}, evil)
    with pytest.raises(sp.SpeakerWeightsError, match="safely") as info:
        sp.read_checkpoint(evil)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_missing_weight_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(sp.SpeakerWeightsError) as info:
        sp.load_state_dict(tmp_path / "pretrained.pt")
    message = str(info.value)
    assert "\n" not in message
    assert "pip install --no-deps resemblyzer==0.1.4" in message


def test_altered_weight_file_is_refused(tmp_path: Path) -> None:
    altered = tmp_path / "pretrained.pt"
    shutil.copyfile(sp.weights_path(), altered)
    data = bytearray(altered.read_bytes())
    data[-100] ^= 0xFF
    altered.write_bytes(bytes(data))
    with pytest.raises(sp.SpeakerWeightsError, match="sha256") as info:
        sp.load_state_dict(altered)
    assert "\n" not in str(info.value)
    assert "--force-reinstall" in str(info.value)


def test_converted_weights_are_cached_and_a_bad_entry_is_rebuilt(private_cache: Path) -> None:
    original = sp.read_checkpoint(sp.weights_path())
    cached = sp.cached_weights_path()
    assert cached.parent == private_cache
    cached.unlink(missing_ok=True)
    sp.load_state_dict()
    assert cached.is_file()
    again = torch.load(cached, weights_only=True)
    assert all(torch.equal(again[k], original[k]) for k in original)
    cached.write_bytes(b"not a tensor file")
    state = sp.load_state_dict()
    assert all(torch.equal(state[k], original[k]) for k in original)
    assert torch.load(cached, weights_only=True).keys() == original.keys()


# -- windows, shapes, determinism ---------------------------------------------------


@pytest.mark.parametrize(
    ("n_samples", "starts"),
    [
        (8000, [0]),  # shorter than a window: one, zero-padded
        (25600, [0]),  # one window exactly; a second would be half padding
        (40000, [0, 77]),  # resemblyzer's partials of 2.5 s
        (48000, [0, 77, 154]),
        (64000, [0, 77, 154, 231]),  # a 5th would cover 57 % < min_coverage
    ],
)
def test_windows_follow_resemblyzer(n_samples: int, starts: list[int]) -> None:
    assert sp.partial_starts(n_samples) == starts


def test_too_low_a_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="rate at least 0.625"):
        sp.partial_starts(16000, rate=0.5)


@pytest.mark.parametrize(("duration", "windows"), [(0.5, 1), (1.6, 1), (3.0, 3), (4.0, 4)])
def test_output_shape_and_unit_norm(
    extractor: SpeakerFeatures, duration: float, windows: int
) -> None:
    waves = torch.from_numpy(np.stack([voice(1, 1, duration), voice(2, 2, duration)]))
    features = extractor.extract(waves, 22050)
    assert features.shape == (2, 1, 256, windows)
    assert features.dtype == torch.float32
    assert torch.isfinite(features).all()
    assert (features >= 0).all()
    torch.testing.assert_close(features.norm(dim=2), torch.ones(2, 1, windows))


def test_deterministic_and_independent_of_the_batch(extractor: SpeakerFeatures) -> None:
    waves = torch.from_numpy(np.stack([voice(1, 3, 3.0), voice(2, 4, 3.0), voice(3, 5, 3.0)]))
    first = extractor.extract(waves, 22050)
    assert torch.equal(first, extractor.extract(waves, 22050))
    alone = extractor.extract(waves[1:2], 22050)
    torch.testing.assert_close(alone[0], first[1], atol=1e-6, rtol=0)


def test_silence_gives_finite_unit_embeddings(extractor: SpeakerFeatures) -> None:
    features = extractor.extract(torch.zeros(1, 16000 * 2), 16000)
    assert torch.isfinite(features).all()
    torch.testing.assert_close(features.norm(dim=2), torch.ones(1, 1, features.shape[-1]))


def test_volume_normalisation_only_raises_quiet_clips() -> None:
    quiet = torch.full((1, 1000), 0.001)
    loud = torch.full((1, 1000), 0.5)
    target = 10 ** (sp.TARGET_DBFS / 20)
    torch.testing.assert_close(sp.normalize_volume(quiet), torch.full((1, 1000), target))
    assert torch.equal(sp.normalize_volume(loud), loud)
    assert torch.equal(sp.normalize_volume(torch.zeros(1, 10)), torch.zeros(1, 10))


def test_recipe_with_speaker_features_validates(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE)
    loaded = load_recipe(path)
    assert loaded.recipe.features == {
        "name": "speaker",
        "window": 1.6,
        "rate": 1.3,
        "min_coverage": 0.75,
        "normalize_volume": True,
    }
    with pytest.raises(RecipeError, match="rate at least") as info:
        load_recipe(path, ("features.rate=0.3",))
    assert "\n" not in str(info.value)


def test_male_and_female_voices_differ_more_than_one_voice_over_time(
    extractor: SpeakerFeatures,
) -> None:
    """The two halves of a sung clip are closer than a male and a female clip, on average.

    Not for every single pair: the generated singers vary (per-pair margins overlap
    for some seeds), so the test compares mean cosine distances over four pairs.
    """

    def clip_embedding(wave: np.ndarray) -> torch.Tensor:
        mean = extractor.extract(torch.from_numpy(wave)[None], 16000)[0, 0].mean(dim=-1)
        return mean / mean.norm()

    within, between = [], []
    for seed in range(4):
        halves = {}
        for label in (1, 2):
            wave = voice(label, seed * 7 + label, 6.0, sample_rate=16000)
            half = len(wave) // 2
            halves[label] = (clip_embedding(wave[:half]), clip_embedding(wave[half:]))
            within.append(1 - float(halves[label][0] @ halves[label][1]))
        between += [1 - float(m @ f) for m in halves[1] for f in halves[2]]
    assert np.mean(within) < 0.8 * np.mean(between), (within, between)


# -- resemblyzer's outputs, stored in tests/reference/ (no venv needed) -------------------

STORED_TOLERANCE = 1e-4
"""Max abs difference allowed from resemblyzer's stored partial embeddings (measured: 4.2e-7)."""


def stored_gap(extractor: SpeakerFeatures) -> float:
    """Max abs difference of ``extractor``'s embeddings of the stored clips from resemblyzer's."""
    clips = torch.from_numpy(reference.load("inputs")["mono_16k"])
    official = reference.load("speaker")["partials"]  # [clip, window, 256]
    ours = extractor.extract(clips, sp.SAMPLE_RATE)[:, 0].transpose(1, 2).numpy()
    assert ours.shape == official.shape
    return float(np.abs(ours - official).max())


def test_partial_embeddings_match_the_stored_resemblyzer_ones(extractor: SpeakerFeatures) -> None:
    """Every entry of every window's embedding within 1e-4 of resemblyzer's, same 16 kHz audio."""
    gap = stored_gap(extractor)
    print(f"max abs diff from resemblyzer's stored partial embeddings: {gap:.2e}")
    assert gap <= STORED_TOLERANCE


def _gates_swapped(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The input and forget gates' rows exchanged in every LSTM tensor (a gate-order slip)."""
    n = sp.HIDDEN_SIZE  # PyTorch stacks the gates' rows as input, forget, cell, output
    order = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n), torch.arange(2 * n, 4 * n)])
    return {k: v[order] if k.startswith("lstm.") else v for k, v in state.items()}


def _layers_swapped(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The second and third LSTM layers' recurrent weights exchanged (same shape)."""
    first, second = "lstm.weight_hh_l1", "lstm.weight_hh_l2"
    return {**state, first: state[second], second: state[first]}


@pytest.mark.parametrize("mistake", [_layers_swapped, _gates_swapped])
def test_a_wrong_weight_mapping_fails_the_stored_comparison(
    mistake: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
) -> None:
    """The loaded encoder's weights remapped wrongly: the embeddings leave the tolerance."""
    extractor = SpeakerFeatures(window=1.6, rate=1.3, min_coverage=0.75, normalize_volume=True)
    encoder = extractor.embedder.encoder
    # Copies: a state dict shares the encoder's tensors, which loading overwrites.
    encoder.load_state_dict(mistake({k: v.clone() for k, v in encoder.state_dict().items()}))
    gap = stored_gap(extractor)
    print(f"{mistake.__name__}: max abs diff {gap:.2e}")
    assert gap > 10 * STORED_TOLERANCE


# -- parity with resemblyzer ------------------------------------------------------------

PARITY_TOLERANCE = 1e-4
"""Max abs difference of partial embeddings (entries in [0, 1]) allowed against resemblyzer.

Both sides given the same 16 kHz audio, float32 rounding through the STFT and 160
LSTM steps measures 2e-7 to 5e-6 (the most on real Spleeter vocals); the smallest
front-end slip (reflect instead of zero padding at the clip edges) gives 1e-2, the
HTK mel scale 0.3.
"""

RESAMPLED_TOLERANCE = 5e-3
"""The same from 44.1 kHz clips, which resemblyzer resamples with librosa (soxr) and we
with torchaudio: measured up to 2e-3; torchaudio's default filter gives 2e-2."""


def reference_python() -> str:
    """The reference virtualenv's Python, or skip with how to make one."""
    python = os.environ.get(sp.REFERENCE_ENV)
    if not python:
        pytest.skip(f"{sp.REFERENCE_ENV} is unset: no resemblyzer virtualenv (see docs/speaker.md)")
    if not Path(python).is_file():
        pytest.skip(f"{sp.REFERENCE_ENV}={python} is not a file")
    return python


@pytest.mark.slow
def test_partial_embeddings_match_resemblyzer() -> None:
    python = reference_python()
    lengths = [0.7, 1.6, 2.5, 4.0, 7.3]
    clips = [voice(1 + i % 3, 10 + i, d, sample_rate=16000) for i, d in enumerate(lengths)]
    clips.append(0.003 * clips[0])  # a quiet clip: volume normalisation raises it
    embedder = sp.SpeakerEmbedder()
    worst = 0.0
    for clip, theirs in zip(clips, sp.reference_partials(python, clips), strict=True):
        ours = embedder.embed(torch.from_numpy(clip)[None])[0].numpy()
        assert ours.shape == theirs.shape
        worst = max(worst, float(np.abs(ours - theirs).max()))
    print(f"max abs diff of partial embeddings vs resemblyzer: {worst:.2e}")
    assert worst < PARITY_TOLERANCE


@pytest.mark.slow
def test_resampled_embeddings_match_resemblyzer(extractor: SpeakerFeatures) -> None:
    python = reference_python()
    clips = [voice(1 + i % 3, 20 + i, d, sample_rate=44100) for i, d in enumerate([1.2, 3.0, 5.0])]
    worst = 0.0
    for clip, theirs in zip(clips, sp.reference_partials(python, clips, 44100), strict=True):
        ours = extractor.extract(torch.from_numpy(clip)[None], 44100)[0, 0].T.numpy()
        assert ours.shape == theirs.shape
        worst = max(worst, float(np.abs(ours - theirs).max()))
    print(f"max abs diff of partial embeddings of 44.1 kHz clips vs resemblyzer: {worst:.2e}")
    assert worst < RESAMPLED_TOLERANCE
