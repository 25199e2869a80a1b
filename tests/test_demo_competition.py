"""The demo competition folder: labels, layout, determinism, the marker and interruptions;
clips cut from shared songs and singers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from tests.test_demo_sound import db
from toolkit.demo import (
    CLASS_PROBABILITIES,
    DemoCompetition,
    clip_rng,
    competition,
    draw_labels,
    ensure_demo_competition,
    make_demo_competition,
    submission_accuracy,
    synthesize_clip,
)
from toolkit.demo.sources import GENDERS, SourcePools

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
        assert db(data) > -40, path  # not silent


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


def test_submission_accuracy_scores_on_the_held_out_labels(
    comp: DemoCompetition, tmp_path: Path
) -> None:
    truth = pd.read_csv(comp.test_labels, dtype=str)
    guess = truth.copy()
    wrong = guess["category"] == guess["category"].iloc[0]
    guess.loc[wrong, "category"] = "nobody"  # every clip of the first clip's class is wrong
    path = tmp_path / "submission.csv"
    guess.sample(frac=1.0, random_state=0).to_csv(path, index=False)  # any row order
    assert submission_accuracy(path, comp.root) == pytest.approx(1 - wrong.mean())
    guess.iloc[1:].to_csv(path, index=False)
    with pytest.raises(ValueError, match=f"{len(truth) - 1} of {len(truth)} test ids"):
        submission_accuracy(path, comp.root)


def test_default_demo_is_made_of_independent_clips(comp: DemoCompetition, tmp_path: Path) -> None:
    """Without songs every clip is synthesize_clip's song of its own, as before songs could
    be shared, and the folder has no sources files."""
    labels = {"train": pd.read_csv(comp.train_csv), "test": pd.read_csv(comp.test_labels)}
    for split, table in labels.items():
        for i, label in enumerate(table["category"][:6]):
            path = comp.root / split / f"{table['id'][i]}.wav"
            if not path.exists():
                continue
            mixture, _ = synthesize_clip(int(label), clip_rng(3, split, i), SR, DURATION)
            sf.write(str(tmp_path / "again.wav"), mixture.T, SR, subtype="PCM_16")
            assert (tmp_path / "again.wav").read_bytes() == path.read_bytes(), path.name
    assert not comp.sources("train").exists() and not comp.sources("test").exists()
    assert "sources" not in json.loads((comp.root / ".demo.json").read_text())


# ----------------------------------------------------------------------------- shared sources

SOURCED = dict(
    n_train=24, n_test=8, seed=5, duration=0.5, formats=("wav",), songs=6, singers=4, workers=2
)


@pytest.fixture(scope="module")
def sourced(tmp_path_factory: pytest.TempPathFactory) -> DemoCompetition:
    """24 train and 8 test clips of 0.5 s cut from 6 songs, sung by 4 singers per gender."""
    return make_demo_competition(tmp_path_factory.mktemp("s") / "demo", **SOURCED)


def _sources(comp: DemoCompetition, split: str) -> pd.DataFrame:
    return pd.read_csv(comp.sources(split), dtype=str, keep_default_na=False)


def test_sourced_demo_writes_its_true_sources(sourced: DemoCompetition) -> None:
    train, test = pd.read_csv(sourced.train_csv), pd.read_csv(sourced.test_labels)
    np.testing.assert_array_equal(train["category"], draw_labels(24, 5, "train"))
    np.testing.assert_array_equal(test["category"], draw_labels(8, 5, "test"))
    found = {"train": _sources(sourced, "train"), "test": _sources(sourced, "test")}
    for split, labels in (("train", train), ("test", test)):
        table = found[split]
        assert list(table.columns) == ["id", "song", "singers"]
        assert table["id"].tolist() == labels["id"].tolist()
        for label, names in zip(labels["category"], table["singers"], strict=True):
            genders = [name[0] for name in names.split("+") if name]
            expected = {0: [], 1: ["m"], 2: ["f"]}.get(label)
            assert (
                genders == expected
                if expected is not None
                else len(set(names.split("+"))) in (2, 3)
            )
    songs = {split: set(table["song"]) for split, table in found.items()}
    singers = {
        split: {name for names in table["singers"] for name in names.split("+") if name}
        for split, table in found.items()
    }
    assert not songs["train"] & songs["test"] and not singers["train"] & singers["test"]
    assert found["train"]["song"].value_counts().max() >= 3  # siblings share a song
    sung = found["train"]["singers"].str.split("+").explode()
    assert sung[sung != ""].value_counts().max() >= 3  # and a singer
    marker = json.loads((sourced.root / ".demo.json").read_text())
    assert marker["sources"] == {"songs": 6, "singers": 4, "test_share": 0.2}


def test_sourced_clips_do_not_depend_on_the_count(sourced: DemoCompetition, tmp_path: Path) -> None:
    more = make_demo_competition(tmp_path / "more", **{**SOURCED, "n_train": 28})
    assert _sources(more, "train").head(24).equals(_sources(sourced, "train"))
    assert _sources(more, "test").equals(_sources(sourced, "test"))
    for folder in ("train", "test"):
        for path in (sourced.root / folder).iterdir():
            assert path.read_bytes() == (more.root / folder / path.name).read_bytes(), path.name
    other = make_demo_competition(tmp_path / "other", **{**SOURCED, "n_train": 8, "seed": 6})
    assert not _sources(other, "train").equals(_sources(sourced, "train").head(8))


def test_sourced_folder_is_refused_for_other_knobs(sourced: DemoCompetition) -> None:
    asked = {k: v for k, v in SOURCED.items() if k != "workers"}
    assert ensure_demo_competition(sourced.root, **asked) == sourced
    for change in ({"songs": 0}, {"songs": 7}, {"singers": 5}, {"test_share": 0.3}):
        with pytest.raises(FileExistsError, match="sources"):
            ensure_demo_competition(sourced.root, **{**asked, **change})


def test_song_casts_and_segments() -> None:
    """Many clips' sources (no audio): verses by a song's lead, choruses with its backing
    singers, each song's stretches distinct, test sources apart from train's."""
    pools = SourcePools(seed=0, songs=50, singers=15, test_share=0.2)
    assert len(pools.songs_of("train")) == 40 and len(pools.singers_of("test", "male")) == 3
    seen: dict[str, set[str]] = {}
    for split in ("train", "test"):
        labels = draw_labels(600, seed=0, split=split)
        clips = pools.clips(split, labels, duration=3.0)
        allowed = {s.name for g in GENDERS for s in pools.singers_of(split, g)}
        by_song: dict[str, list[tuple[int, Any]]] = {}
        for label, clip in zip(labels, clips, strict=True):
            by_song.setdefault(clip.song.name, []).append((int(label), clip))
            assert {s.name for s in clip.singers} <= allowed
        seen[split] = set(by_song)
        for song_clips in by_song.values():
            cast = pools.cast(split, song_clips[0][1].song)
            for label, clip in song_clips:
                if label in (1, 2):
                    assert clip.singers == (cast.lead,) and cast.lead.gender == GENDERS[label - 1]
                elif label == 3:
                    assert clip.singers[0] == cast.lead and set(clip.singers[1:]) <= set(
                        cast.backing
                    )
            offsets = [clip.offset for _, clip in song_clips]
            assert len(set(offsets)) == min(len(offsets), 60)  # 60 stretches of 3 s a song
            assert all(0 <= o <= 177 and o % 3 == 0 for o in offsets)
        assert len(by_song) == len(pools.songs_of(split))  # every song has clips
    assert not seen["train"] & seen["test"]


def test_sourced_knobs_out_of_range(tmp_path: Path) -> None:
    for knobs, name in (
        ({"songs": 3}, "songs"),
        ({"songs": 10, "singers": 1}, "singers"),
        ({"songs": 10, "test_share": 1.0}, "test_share"),
        ({"songs": 10, "duration": 200.0}, "duration"),
        ({"songs": -1}, "songs"),
    ):
        with pytest.raises(ValueError, match=name):
            make_demo_competition(tmp_path / "x", n_train=8, n_test=2, **knobs)
    assert not (tmp_path / "x").exists()
