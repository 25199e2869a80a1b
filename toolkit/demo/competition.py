"""The demo competition folder: synthetic song snippets laid out like a Kaggle competition.

Labels are drawn per clip, each clip's audio comes from :mod:`toolkit.demo.sound`, and
soundfile writes it as mp3, ogg, wav or flac. Each clip comes from its own random
generator derived from ``(seed, split, index)``, so a clip never depends on how many
clips are made. By default every clip is a song of its own; with ``songs`` set, clips
are cut from a limited set of songs and sung by a limited set of singers
(:mod:`toolkit.demo.sources`), the test clips' sources apart from the train clips'.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

from toolkit.demo.sound import (
    CLASS_NAMES,
    DEFAULT_SAMPLE_RATE,
    synthesize_clip,
    synthesize_song_clip,
)
from toolkit.demo.sources import SONG_LENGTH, SPLITS, ClipSources, SourcePools
from toolkit.progress import progress_bar

CLASS_PROBABILITIES = (0.1, 0.3, 0.3, 0.3)
"""Probability of each label; "no voice" is the rare class, as in the report."""

GENERATOR_VERSION = 1
"""Bump when the synthesised audio (:mod:`toolkit.demo.sound`) changes; stored in the marker."""

MARKER_NAME = ".demo.json"
"""The file, written last, whose presence marks a complete demo folder."""

MIN_TRAIN = 8
"""Fewest train clips: the first eight hold every class twice, so stratified splits work."""

_FORMAT_SUBTYPES = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}


# ----------------------------------------------------------------------------- random streams


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator of clip ``index`` of ``split`` ("train" or "test") for ``seed``."""
    return np.random.default_rng([seed, SPLITS[split], index, 1])


def draw_label(seed: int, split: str, index: int) -> int:
    """The label of clip ``index`` of ``split``: i.i.d. from CLASS_PROBABILITIES.

    The first MIN_TRAIN train clips are the exception: they hold each class exactly
    twice, in a seed-dependent order, so every class can be stratified.
    """
    if split == "train" and index < MIN_TRAIN:
        base = np.repeat(np.arange(len(CLASS_NAMES)), MIN_TRAIN // len(CLASS_NAMES))
        order = np.random.default_rng([seed, SPLITS[split], 2**31]).permutation(base)
        return int(order[index])
    rng = np.random.default_rng([seed, SPLITS[split], index, 0])
    return int(rng.choice(len(CLASS_NAMES), p=CLASS_PROBABILITIES))


def draw_labels(n: int, seed: int, split: str = "train") -> np.ndarray:
    """Labels (int64) of the first ``n`` clips of ``split``; clip i's label ignores ``n``."""
    return np.array([draw_label(seed, split, i) for i in range(n)], dtype=np.int64)


# ----------------------------------------------------------------------------- the folder


@dataclass(frozen=True)
class DemoCompetition:
    """Paths and sizes of a demo competition folder laid out like a Kaggle one."""

    root: Path
    train_csv: Path
    train_audio: Path
    test_audio: Path
    sample_submission: Path
    n_train: int
    n_test: int

    @property
    def test_labels(self) -> Path:
        """CSV (``id,category``) of the true test labels, for local evaluation."""
        return self.root / "test_labels.csv"

    def sources(self, split: str) -> Path:
        """CSV (``id,song,singers``, singers joined by ``+``) of the true sources of the
        clips of ``split``; only a demo made with songs has it."""
        return self.root / f"{split}_sources.csv"

    @classmethod
    def at(cls, root: Path, n_train: int, n_test: int) -> DemoCompetition:
        """The competition whose folder is ``root``."""
        root = Path(root)
        return cls(
            root=root,
            train_csv=root / "train.csv",
            train_audio=root / "train",
            test_audio=root / "test",
            sample_submission=root / "sample_submission.csv",
            n_train=n_train,
            n_test=n_test,
        )


def _clip_id(split: str, index: int) -> str:
    """The id of clip ``index`` of ``split``: ``tr_00000`` or ``te_00000``."""
    return f"{'tr' if split == 'train' else 'te'}_{index:05d}"


@dataclass(frozen=True)
class _Settings:
    """The parameters that define a demo folder's content."""

    n_train: int
    n_test: int
    seed: int
    sample_rate: int
    duration: float
    formats: tuple[str, ...]
    pools: SourcePools | None  # None: every clip a song of its own

    @classmethod
    def of(cls, args: dict[str, Any]) -> _Settings:
        """The settings of make_demo_competition's arguments ``args``; a ValueError
        naming the argument when one is out of range."""
        if args["n_train"] < MIN_TRAIN:
            raise ValueError(f"n_train must be at least {MIN_TRAIN} (two clips per class)")
        if args["n_test"] < 1:
            raise ValueError("n_test must be at least 1")
        formats = tuple(args["formats"])
        unknown = [f for f in formats if f not in _FORMAT_SUBTYPES]
        if not formats or unknown:
            raise ValueError(f"formats must be among {sorted(_FORMAT_SUBTYPES)}, got {formats}")
        if args["songs"] < 0:
            raise ValueError(f"songs must be 0 (a song per clip) or more, got {args['songs']}")
        pools = None
        if args["songs"]:
            if args["duration"] > SONG_LENGTH:
                raise ValueError(f"duration must be at most {SONG_LENGTH:g} s, a song's length")
            pools = SourcePools(args["seed"], args["songs"], args["singers"], args["test_share"])
        return cls(
            int(args["n_train"]),
            int(args["n_test"]),
            int(args["seed"]),
            int(args["sample_rate"]),
            float(args["duration"]),
            formats,
            pools,
        )

    def marker(self) -> dict[str, Any]:
        """The settings as stored in the folder's marker (and compared with it)."""
        params: dict[str, Any] = {
            "generator_version": GENERATOR_VERSION,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "seed": self.seed,
            "sample_rate": self.sample_rate,
            "duration": self.duration,
            "formats": list(self.formats),
            "class_names": list(CLASS_NAMES),
        }
        if self.pools is not None:
            params["sources"] = {
                "songs": self.pools.songs,
                "singers": self.pools.singers,
                "test_share": self.pools.test_share,
            }
        return params


@dataclass(frozen=True)
class _Clip:
    """One clip to write, and where it comes from (None: a song of its own)."""

    path: Path
    split: str
    index: int
    label: int
    seed: int
    sample_rate: int
    duration: float
    fmt: str
    sources: ClipSources | None


def _write_clips(clips: Sequence[_Clip]) -> int:
    """Synthesise and write each clip."""
    for clip in clips:
        rng = clip_rng(clip.seed, clip.split, clip.index)
        rate, duration, src = clip.sample_rate, clip.duration, clip.sources
        if src is None:
            mixture, _ = synthesize_clip(clip.label, rng, rate, duration)
        else:
            mixture, _ = synthesize_song_clip(
                clip.label, src.song, src.offset, src.singers, rng, rate, duration
            )
        major, subtype = _FORMAT_SUBTYPES[clip.fmt]
        sf.write(str(clip.path), mixture.T, rate, format=major, subtype=subtype)
    return len(clips)


def _read_marker(root: Path) -> dict[str, Any] | None:
    """The parameters in ``root``'s marker file, or None when it is missing or unreadable."""
    try:
        return json.loads((Path(root) / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None


def _default_workers() -> int:
    """The number of CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _build(partial: Path, settings: _Settings, progress: bool, workers: int | None) -> None:
    """Write the whole competition into ``partial``, the marker file last."""
    (partial / "train").mkdir(parents=True)
    (partial / "test").mkdir()
    s, pools = settings, settings.pools
    labels = {"train": draw_labels(s.n_train, s.seed, "train")}
    labels["test"] = draw_labels(s.n_test, s.seed, "test")
    ids = {split: [_clip_id(split, i) for i in range(len(labels[split]))] for split in labels}
    clips: list[_Clip] = []
    for split, split_labels in labels.items():
        sources = None if pools is None else pools.clips(split, split_labels, s.duration)
        for i, label in enumerate(split_labels):
            fmt = s.formats[i % len(s.formats)]
            path = partial / split / f"{ids[split][i]}.{fmt}"
            src = None if sources is None else sources[i]
            clips.append(
                _Clip(path, split, i, int(label), s.seed, s.sample_rate, s.duration, fmt, src)
            )
    _run_tasks(clips, workers or _default_workers(), progress)

    pd.DataFrame({"id": ids["train"], "category": labels["train"]}).to_csv(
        partial / "train.csv", index=False
    )
    pd.DataFrame({"id": ids["test"], "category": labels["test"]}).to_csv(
        partial / "test_labels.csv", index=False
    )
    order = np.random.default_rng([s.seed, 7]).permutation(s.n_test)
    if s.n_test > 1 and np.all(order == np.arange(s.n_test)):
        order = order[::-1]
    pd.DataFrame({"id": [ids["test"][i] for i in order], "category": 0}).to_csv(
        partial / "sample_submission.csv", index=False
    )
    if pools is not None:
        for split in labels:
            sources = [c.sources for c in clips if c.split == split and c.sources is not None]
            pd.DataFrame(
                {
                    "id": ids[split],
                    "song": [src.song.name for src in sources],
                    "singers": [src.singer_names for src in sources],
                }
            ).to_csv(partial / f"{split}_sources.csv", index=False)
    (partial / MARKER_NAME).write_text(json.dumps(s.marker(), indent=2) + "\n")


def submission_accuracy(submission: Path, root: Path) -> float:
    """Accuracy of a submission file (``id,category``) on the demo folder's held-out
    ``test_labels.csv``; a ValueError when it misses test ids."""
    predicted = pd.read_csv(submission, dtype=str)
    truth = pd.read_csv(Path(root) / "test_labels.csv", dtype=str)
    merged = predicted.merge(truth, on="id", suffixes=("", "_true"))
    if len(merged) != len(truth):
        raise ValueError(f"{submission}: {len(merged)} of {len(truth)} test ids")
    return float((merged["category"] == merged["category_true"]).mean())


def make_demo_competition(
    root: Path,
    n_train: int = 400,
    n_test: int = 100,
    seed: int = 0,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    duration: float = 3.0,
    formats: tuple[str, ...] = ("mp3", "ogg", "wav"),
    songs: int = 0,
    singers: int = 15,
    test_share: float = 0.2,
    progress: bool = False,
    workers: int | None = None,
) -> DemoCompetition:
    """Write a Kaggle-style folder of synthetic song snippets and return its paths.

    Layout: ``train.csv`` and ``sample_submission.csv`` (``id,category``),
    ``train/<id>.<ext>`` and ``test/<id>.<ext>`` (stereo, ``sample_rate``), the true
    ``test_labels.csv`` and a ``.demo.json`` marker with the parameters. File formats
    cycle through ``formats`` by clip index. The folder is built next to ``root`` and
    renamed into place when complete, so an interrupted run leaves no half folder.
    ``workers`` processes synthesise in parallel (default: the usable CPUs).

    ``songs=0`` makes every clip a song of its own. ``songs=N`` cuts the clips from N
    songs (three minutes each, with one frame, accompaniment and cast per song) sung
    by ``singers`` singers of each gender (:mod:`toolkit.demo.sources`);
    ``test_share`` of the songs and of each gender's singers are the test clips'
    alone, so train and test share no source. The true sources go to
    ``train_sources.csv`` and ``test_sources.csv`` (``id,song,singers``), which the
    toolkit never reads.
    Raises FileExistsError when ``root`` already exists and is not empty, a ValueError
    naming the argument that is out of range.
    """
    root = Path(root)
    settings = _Settings.of(locals())
    if root.exists():
        if _read_marker(root) is not None:
            raise FileExistsError(f"{root} already holds a complete demo competition")
        if not root.is_dir() or any(root.iterdir()):
            raise FileExistsError(f"{root} exists and is not an empty folder; choose another")
    partial = root.with_name(root.name + ".partial")
    if partial.exists():  # left over by an interrupted run
        shutil.rmtree(partial)
    try:
        _build(partial, settings, progress, workers)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if root.exists():  # an empty folder, checked above
        root.rmdir()
    partial.rename(root)
    return DemoCompetition.at(root, n_train, n_test)


def _run_tasks(tasks: list[_Clip], workers: int, progress: bool) -> None:
    """Write every clip, in ``workers`` processes, optionally under a progress bar."""
    chunk = 4
    chunks = [tasks[i : i + chunk] for i in range(0, len(tasks), chunk)]
    workers = max(1, min(workers, len(chunks)))
    bar = (
        progress_bar("synthesising demo clips", len(tasks))
        if progress
        else contextlib.nullcontext(lambda n=1, **fields: None)
    )
    with bar as advance:
        if workers == 1:
            for c in chunks:
                advance(_write_clips(c))
            return
        # fork is cheap here (workers need only numpy and soundfile); spawn elsewhere.
        method = "fork" if "fork" in get_all_start_methods() else None
        with ProcessPoolExecutor(workers, mp_context=get_context(method)) as pool:
            futures = [pool.submit(_write_clips, c) for c in chunks]
            try:
                for fut in as_completed(futures):
                    advance(fut.result())
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise


def ensure_demo_competition(root: Path, **kwargs: Any) -> DemoCompetition:
    """Return the demo competition at ``root``, creating it first if it is missing.

    ``kwargs`` are make_demo_competition's. An existing complete folder (one with a
    ``.demo.json`` marker) is returned as is when its parameters match; a complete
    folder made with other parameters raises FileExistsError naming the differences.
    """
    root = Path(root)
    bound = inspect.signature(make_demo_competition).bind(root, **kwargs)
    bound.apply_defaults()
    args = bound.arguments
    wanted = _Settings.of(args).marker()
    found = _read_marker(root)
    if found is None:
        try:
            return make_demo_competition(**args)
        except FileExistsError:
            found = _read_marker(root)  # made meanwhile by another process?
            if found is None:
                raise
    if found != wanted:
        diff = ", ".join(
            f"{k}: {found.get(k)!r} there, {wanted.get(k)!r} asked"
            for k in {**wanted, **found}
            if found.get(k) != wanted.get(k)
        )
        raise FileExistsError(
            f"{root} holds a demo competition made with other parameters ({diff}); "
            "delete it or choose another folder"
        )
    return DemoCompetition.at(root, found["n_train"], found["n_test"])
