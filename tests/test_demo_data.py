"""The embedded demo competition: labels, folder layout, determinism and the audio itself."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from toolkit.demo import (
    CLASS_NAMES,
    CLASS_PROBABILITIES,
    DemoCompetition,
    clip_rng,
    competition,
    draw_labels,
    ensure_demo_competition,
    make_demo_competition,
    sound,
    synthesize_clip,
)

SR = 44100
DURATION = 1.0
N_TRAIN = 16
N_TEST = 8
FORMATS = ("mp3", "ogg", "wav")
PARAMS = dict(n_train=N_TRAIN, n_test=N_TEST, seed=3, duration=DURATION, workers=2)


@pytest.fixture(scope="module")
def comp(tmp_path_factory: pytest.TempPathFactory) -> DemoCompetition:
    """A small demo competition (16 train, 8 test clips of 1 s) with seed 3."""
    return make_demo_competition(tmp_path_factory.mktemp("a") / "demo", **PARAMS)


@pytest.fixture(scope="module")
def comp_more(tmp_path_factory: pytest.TempPathFactory) -> DemoCompetition:
    """The same seed with four more train clips."""
    params = {**PARAMS, "n_train": N_TRAIN + 4}
    return make_demo_competition(tmp_path_factory.mktemp("b") / "demo", **params)


@pytest.fixture(scope="module")
def comp_other(tmp_path_factory: pytest.TempPathFactory) -> DemoCompetition:
    """The same sizes with another seed."""
    params = {**PARAMS, "seed": 4}
    return make_demo_competition(tmp_path_factory.mktemp("c") / "demo", **params)


def _files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in folder.iterdir()}


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


def _db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64))))


# ----------------------------------------------------------------------------- labels


def test_no_voice_is_the_rare_class() -> None:
    labels = draw_labels(4000, seed=0, split="test")
    freq = np.bincount(labels, minlength=4) / len(labels)
    assert freq[0] == pytest.approx(CLASS_PROBABILITIES[0], abs=0.02)
    for c in (1, 2, 3):
        assert freq[c] == pytest.approx(CLASS_PROBABILITIES[c], abs=0.03)
    assert freq[0] < 0.5 * freq[1:].min()


@pytest.mark.parametrize("seed", [0, 1, 2, 17])
def test_first_train_clips_hold_every_class_twice(seed: int) -> None:
    labels = draw_labels(8, seed)
    assert sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_labels_do_not_depend_on_count() -> None:
    np.testing.assert_array_equal(draw_labels(50, seed=5)[:20], draw_labels(20, seed=5))
    assert not np.array_equal(draw_labels(50, seed=5), draw_labels(50, seed=6))


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
        assert _db(mix) > -40


def test_voice_level_against_accompaniment() -> None:
    ratios, shares = [], []
    for i in range(12):
        mix, voice = synthesize_clip(1 + i % 3, clip_rng(1, "test", i), duration=1.0)
        accomp = mix - voice
        assert _db(accomp) > -45  # there always is an accompaniment
        ratios.append(_db(voice) - _db(accomp))
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
    real = sound._sing

    def counting(singer: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        calls.append(singer.gender)
        return real(singer, *args, **kwargs)

    monkeypatch.setattr(sound, "_sing", counting)
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


# ----------------------------------------------------------------------------- the folder


def test_layout_and_csvs(comp: DemoCompetition) -> None:
    root = comp.root
    assert (comp.n_train, comp.n_test) == (N_TRAIN, N_TEST)
    assert comp.train_csv == root / "train.csv" and comp.sample_submission.parent == root
    assert not root.with_name(root.name + ".partial").exists()
    train = pd.read_csv(comp.train_csv)
    assert list(train.columns) == ["id", "category"]
    assert train["id"].tolist() == [f"tr_{i:05d}" for i in range(N_TRAIN)]
    assert train["category"].dtype.kind == "i"
    assert np.bincount(train["category"], minlength=4).min() >= 2
    np.testing.assert_array_equal(train["category"], draw_labels(N_TRAIN, 3))
    train_files = _files(comp.train_audio)
    assert sorted(train_files) == train["id"].tolist()
    for i, name in enumerate(train["id"]):
        assert train_files[name].suffix == "." + FORMATS[i % 3]

    sub = pd.read_csv(comp.sample_submission)
    assert list(sub.columns) == ["id", "category"]
    test_files = _files(comp.test_audio)
    assert sorted(sub["id"]) == sorted(test_files) == [f"te_{i:05d}" for i in range(N_TEST)]
    assert sub["id"].tolist() != sorted(sub["id"])  # shuffled, so order handling is exercised
    assert (sub["category"] == 0).all()
    truth = pd.read_csv(comp.test_labels)
    assert list(truth.columns) == ["id", "category"]
    assert truth["id"].tolist() == sorted(test_files)
    assert truth["category"].between(0, 3).all()

    marker = json.loads((root / ".demo.json").read_text())
    assert marker["n_train"] == N_TRAIN and marker["seed"] == 3 and marker["sample_rate"] == SR


def test_every_file_decodes(comp: DemoCompetition) -> None:
    paths = [*comp.train_audio.iterdir(), *comp.test_audio.iterdir()]
    assert {p.suffix for p in paths} == {".mp3", ".ogg", ".wav"}
    for path in paths:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        assert rate == SR and data.shape[1] == 2, path
        slack = int(0.05 * SR) if path.suffix == ".mp3" else 0  # encoder padding
        assert abs(data.shape[0] - int(DURATION * SR)) <= slack, (path, data.shape)
        assert np.isfinite(data).all()
        assert np.abs(data).max() <= 1.0
        assert _db(data) > -40, path  # not silent


def _same_audio(a: Path, b: Path) -> bool:
    if a.suffix == ".ogg":  # libsndfile picks a random Ogg stream serial: compare samples
        return np.array_equal(sf.read(str(a))[0], sf.read(str(b))[0])
    return a.read_bytes() == b.read_bytes()


def test_same_seed_gives_same_files_whatever_the_count(
    comp: DemoCompetition, comp_more: DemoCompetition
) -> None:
    more_train = pd.read_csv(comp_more.train_csv)
    assert len(more_train) == N_TRAIN + 4
    pd.testing.assert_frame_equal(more_train.head(N_TRAIN), pd.read_csv(comp.train_csv))
    for folder in ("train", "test"):
        for path in (comp.root / folder).iterdir():
            assert _same_audio(path, comp_more.root / folder / path.name), path.name
    for name in ("sample_submission.csv", "test_labels.csv"):
        assert (comp.root / name).read_bytes() == (comp_more.root / name).read_bytes()


def test_other_seed_gives_other_clips(comp: DemoCompetition, comp_other: DemoCompetition) -> None:
    for folder in ("train", "test"):
        for path in (comp.root / folder).iterdir():
            assert not _same_audio(path, comp_other.root / folder / path.name), path.name


def test_existing_folder_is_kept(comp: DemoCompetition) -> None:
    before = {p: p.stat().st_mtime_ns for p in comp.root.rglob("*")}
    with pytest.raises(FileExistsError):
        make_demo_competition(comp.root, **PARAMS)
    params = {k: v for k, v in PARAMS.items() if k != "workers"}
    assert ensure_demo_competition(comp.root, **params) == comp
    assert {p: p.stat().st_mtime_ns for p in comp.root.rglob("*")} == before
    with pytest.raises(FileExistsError, match="seed"):
        ensure_demo_competition(comp.root, **{**params, "seed": 9})


def test_ensure_creates_a_missing_folder(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    made = ensure_demo_competition(root, n_train=8, n_test=2, duration=0.3, formats=("wav",))
    assert (root / ".demo.json").is_file() and len(list(made.train_audio.iterdir())) == 8
    again = ensure_demo_competition(root, n_train=8, n_test=2, duration=0.3, formats=("wav",))
    assert again == made


def test_interrupted_build_leaves_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "demo"
    partial = tmp_path / "demo.partial"
    real = competition._write_clips
    written: list[int] = []

    def failing(tasks: Any) -> int:  # fails after the first chunk
        if written:
            raise KeyboardInterrupt
        written.append(real(tasks))
        return written[-1]

    monkeypatch.setattr(competition, "_write_clips", failing)
    with pytest.raises(KeyboardInterrupt):
        make_demo_competition(root, n_train=8, n_test=4, duration=0.3, workers=1)
    assert written and not root.exists() and not partial.exists()
    monkeypatch.undo()

    # a run killed outright leaves its .partial folder: the next run starts over
    (partial / "train").mkdir(parents=True)
    (partial / "train" / "tr_00000.wav").write_bytes(b"junk")
    made = make_demo_competition(root, n_train=8, n_test=4, duration=0.3, workers=1)
    assert not partial.exists()
    assert sf.info(str(made.train_audio / "tr_00000.mp3")).samplerate == SR


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_train"):
        make_demo_competition(tmp_path / "x", n_train=7)
    with pytest.raises(ValueError, match="formats"):
        make_demo_competition(tmp_path / "x", formats=("aac",))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        make_demo_competition(tmp_path / "busy", n_train=8, n_test=1, duration=0.2)
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    assert not os.path.exists(tmp_path / "x")
