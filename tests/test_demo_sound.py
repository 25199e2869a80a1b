"""The demo clip synthesis: shapes, levels, determinism, the voices, shared songs and singers,
and no file access."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import reference
from tests.reference import make_reference
from toolkit.demo import CLASS_NAMES, clip_rng, synthesize_clip, synthesize_song_clip, voices
from toolkit.demo.sources import SingerSource, SongSource

SR = 44100


def _median_f0(wave: np.ndarray, sample_rate: int) -> float:
    """Median f0 (Hz) over the voiced frames of ``wave [T]``, by normalised autocorrelation."""
    size, hop = 2048, 1024
    frames = np.lib.stride_tricks.sliding_window_view(wave, size)[::hop]
    energy = (frames**2).mean(axis=1)
    lo, hi = int(sample_rate / 500), int(sample_rate / 70)
    estimates = []
    for frame in frames[energy > 0.1 * energy.max()]:
        spec = np.fft.rfft((frame - frame.mean()) * np.hanning(size), 2 * size)
        corr = np.fft.irfft(np.abs(spec) ** 2)[:size]
        seg = corr[lo:hi] / corr[0]
        if seg.max() < 0.3:
            continue
        # the first local peak near the maximum, which avoids picking a multiple of the period
        peaks = (seg[1:-1] >= seg[:-2]) & (seg[1:-1] >= seg[2:]) & (seg[1:-1] >= 0.85 * seg.max())
        estimates.append(sample_rate / (lo + 1 + int(np.flatnonzero(peaks)[0])))
    return float(np.median(estimates))


def db(x: np.ndarray) -> float:
    """Mean power of ``x`` in dB."""
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64))))


# ----------------------------------------------------------------------------- the audio


@pytest.mark.parametrize("label", range(len(CLASS_NAMES)))
def test_clip_shapes_levels_and_determinism(label: int) -> None:
    mix, voice = synthesize_clip(label, np.random.default_rng(11), duration=0.8)
    assert mix.shape == voice.shape == (2, int(0.8 * SR))
    assert mix.dtype == voice.dtype == np.float32
    assert 10 ** (-6.05 / 20) <= np.abs(mix).max() <= 10 ** (-0.95 / 20)  # normalised, no clip
    again, _ = synthesize_clip(label, np.random.default_rng(11), duration=0.8)
    np.testing.assert_array_equal(mix, again)
    other, _ = synthesize_clip(label, np.random.default_rng(12), duration=0.8)
    assert not np.allclose(mix, other)
    mono, mono_voice = synthesize_clip(label, np.random.default_rng(11), 16000, 0.5, channels=1)
    assert mono.shape == mono_voice.shape == (1, 8000)


def test_no_voice_clips_have_a_silent_voice_stem() -> None:
    for i in range(4):
        mix, voice = synthesize_clip(0, clip_rng(0, "train", i), duration=0.8)
        assert not voice.any()
        np.testing.assert_array_equal(mix - voice, mix)
        assert db(mix) > -40


def test_voice_level_against_accompaniment() -> None:
    ratios, shares = [], []
    for i in range(12):
        mix, voice = synthesize_clip(1 + i % 3, clip_rng(1, "test", i), duration=1.0)
        accomp = mix - voice
        assert db(accomp) > -45  # there always is an accompaniment
        ratios.append(db(voice) - db(accomp))
        shares.append(np.sum(voice.astype(np.float64) ** 2) / np.sum(mix.astype(np.float64) ** 2))
    ratios_arr = np.array(ratios)
    assert ratios_arr.min() >= -6.05 and ratios_arr.max() <= 3.05
    assert ratios_arr.max() - ratios_arr.min() > 2.0  # drawn, not fixed
    # voice and accompaniment are not correlated, so the voice's share of the energy
    # follows the ratio: 1/(1+10^0.6) = 0.20 up to 1/(1+10^-0.3) = 0.67
    assert min(shares) > 0.1 and max(shares) < 0.8


def test_male_voices_sing_lower_than_female_voices() -> None:
    f0: dict[int, list[float]] = {}
    for label in (1, 2):
        f0[label] = [
            _median_f0(synthesize_clip(label, clip_rng(2, "train", i), duration=2.0)[1][0], SR)
            for i in range(8)
        ]
    male, female = np.array(f0[1]), np.array(f0[2])
    assert male.min() >= 90 * 0.9 and male.max() <= 200 * 1.15
    assert female.min() >= 180 * 0.9 and female.max() <= 400 * 1.1
    assert female.mean() > 1.5 * male.mean()
    assert np.median(male) < np.median(female)


def test_several_voices_have_more_than_one_singer(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = voices.sing

    def counting(singer: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        calls.append(singer.gender)
        return real(singer, *args, **kwargs)

    monkeypatch.setattr(voices, "sing", counting)
    counts: dict[int, list[list[str]]] = {}
    for label in range(4):
        for i in range(6):
            calls.clear()
            synthesize_clip(label, clip_rng(3, "train", i), duration=0.5)
            counts.setdefault(label, []).append(list(calls))
    assert all(c == [] for c in counts[0])
    assert all(c == ["male"] for c in counts[1])
    assert all(c == ["female"] for c in counts[2])
    assert all(len(c) in (2, 3) for c in counts[3])


# ----------------------------------------------------------------------------- isolation


def test_synthesis_writes_no_files_and_needs_no_folder_writer(tmp_path: Path) -> None:
    """The synthesis module, used alone, loads no file writer and opens nothing for writing."""
    script = textwrap.dedent(
        """
        import os, sys

        writes = []

        def audit(event, args):
            if event == "open":
                mode, flags = args[1], args[2]
                if (mode and set(mode) & set("wax+")) or (
                    flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND)
                ):
                    writes.append(args[0])

        import toolkit.demo.sound as sound
        import numpy as np

        sys.addaudithook(audit)
        for label in range(4):
            sound.synthesize_clip(label, np.random.default_rng(label), 16000, 0.3)
        loaded = [
            m for m in ("toolkit.demo.competition", "soundfile", "pandas") if m in sys.modules
        ]
        print(loaded, writes, sorted(os.listdir(".")))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[] [] []", result.stderr


# ----------------------------------------------------------------------------- the default


def test_default_clips_are_those_the_reference_inputs_were_made_from() -> None:
    """The committed reference input (made by the synthesis before songs could be shared)
    is still what a lone clip of that seed gives."""
    stored = reference.load("inputs")["mono_16k"][1]  # float16, rounded from float32
    rng = np.random.default_rng(make_reference.DEMO_SEED)
    mixture, _ = synthesize_clip(2, rng, sample_rate=16000, duration=4.0, channels=1)
    np.testing.assert_allclose(mixture[0], stored, rtol=0, atol=5e-4)


# ----------------------------------------------------------------------------- shared sources


def band_levels(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Long-term average spectrum of ``x [C, T]``: log power in 40 log-spaced bands."""
    frames = np.lib.stride_tricks.sliding_window_view(x.mean(0), 1024)[::512] * np.hanning(1024)
    power = (np.abs(np.fft.rfft(frames)) ** 2).mean(0)
    freqs = np.fft.rfftfreq(1024, 1 / sample_rate)
    edges = np.geomspace(40, sample_rate / 2, 41)
    bands = [power[(freqs >= a) & (freqs < b)].sum() for a, b in pairwise(edges)]
    return np.log(np.array(bands) + 1e-10)


def same_and_other(features: np.ndarray, owners: list[Any]) -> tuple[float, float]:
    """Mean correlation of the centred ``features`` between rows of one owner, of others."""
    corr = np.corrcoef(features - features.mean(0))
    pairs = [(i, j) for i in range(len(owners)) for j in range(i + 1, len(owners))]
    same = [corr[i, j] for i, j in pairs if owners[i] == owners[j]]
    other = [corr[i, j] for i, j in pairs if owners[i] != owners[j]]
    return float(np.mean(same)), float(np.mean(other))


def test_clips_of_one_song_share_its_accompaniment() -> None:
    rate, duration = 16000, 1.5
    levels, owners, accomps = [], [], []
    for index in range(3):
        song = SongSource(seed=4, index=index)
        for visit in range(3):
            singer = SingerSource(4, "female", visit)
            rng = np.random.default_rng([index, visit])
            offset = song.offset(visit, duration)
            mix, voice = synthesize_song_clip(2, song, offset, [singer], rng, rate, duration)
            accomp = mix - voice
            levels.append(band_levels(accomp, rate))
            owners.append(index)
            accomps.append(accomp)
    same, other = same_and_other(np.array(levels), owners)
    assert same > other + 0.4, (same, other)  # one instrumentation, key, mix and room
    offsets = {SongSource(4, 0).offset(v, duration) for v in range(3)}
    assert len(offsets) == 3  # each clip its own stretch of the song
    assert not np.allclose(accomps[0], accomps[1], atol=1e-3)


def test_a_singer_sings_in_one_voice_in_every_clip(monkeypatch: pytest.MonkeyPatch) -> None:
    heard: list[tuple[str, tuple[float, ...]]] = []
    real = voices.sing

    def listening(singer: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        upcoming = copy.deepcopy(singer.traits).uniform(size=4)  # the voice's next traits
        heard.append((singer.gender, (singer.low, singer.high, singer.center, *upcoming)))
        return real(singer, *args, **kwargs)

    monkeypatch.setattr(voices, "sing", listening)
    who = [SingerSource(1, "male", 0), SingerSource(1, "male", 1), SingerSource(1, "female", 0)]
    for index in range(2):
        song = SongSource(1, index)
        for label, singer in ((1, who[0]), (1, who[1]), (2, who[2])):
            rng = np.random.default_rng([index, label])
            synthesize_song_clip(label, song, song.offset(index, 0.4), [singer], rng, 16000, 0.4)
    assert heard[0] == heard[3] and heard[1] == heard[4] and heard[2] == heard[5]
    assert len({voice for _, voice in heard}) == 3
    assert [gender for gender, _ in heard[:3]] == ["male", "male", "female"]


def test_song_clips_check_their_singers_and_stretch() -> None:
    song, rng = SongSource(0, 0), np.random.default_rng(0)
    male, female = SingerSource(0, "male", 0), SingerSource(0, "female", 0)
    with pytest.raises(ValueError, match="do not fit label 2"):
        synthesize_song_clip(2, song, 0.0, [male], rng, 16000, 0.3)
    with pytest.raises(ValueError, match="do not fit label 3"):
        synthesize_song_clip(3, song, 0.0, [female], rng, 16000, 0.3)
    with pytest.raises(ValueError, match="do not fit label 0"):
        synthesize_song_clip(0, song, 0.0, [female], rng, 16000, 0.3)
    with pytest.raises(ValueError, match="outside"):
        synthesize_song_clip(0, song, song.length - 0.1, [], rng, 16000, 0.3)
    mix, voice = synthesize_song_clip(3, song, 30.0, [male, female], rng, 16000, 0.3, channels=1)
    assert mix.shape == voice.shape == (1, 4800) and voice.any()
