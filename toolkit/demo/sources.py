"""Songs and singers shared between demo clips, as in real contests.

A sourced demo cuts its clips from a limited set of songs, sung by a limited set of
singers. A song is a fixed frame and accompaniment (tempo, key, chords, instruments
and their timbres, drum pattern, mix levels, room) three minutes long, with a fixed
cast: a lead singer and two backing singers. A singer is a fixed voice (gender,
tessitura, vocal tract, vibrato, tilt...) who sings in several songs. A clip is a
stretch of one song: instrumental (class 0), a verse by its lead (classes 1 and 2,
from songs whose lead has that gender) or a chorus with backing singers (class 3).
The test clips use songs and singers that no train clip uses, so a validation split
that puts siblings on both of its sides scores higher than the test, as in real
contests.

Everything comes from generators derived from the seed: a song's and a singer's from
their index alone, a clip's sources from ``(split, index)`` and the clips before it,
never from how many clips follow. Nothing here touches files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SONG_LENGTH = 180.0
"""Seconds in a song: its clips are cut from this stretch."""

GENDERS = ("male", "female")
"""The singers' genders, in pool order."""

SPLITS = {"train": 0, "test": 1}
"""Split names and the code each mixes into its clips' random seeds."""

_SONG_CODE, _SINGER_CODE = 2, 3  # in that same place for a song's and a singer's seeds


@dataclass(frozen=True)
class SongSource:
    """One song of a sourced demo: all but its singers fixed by ``(seed, index)``."""

    seed: int
    index: int
    length: float = SONG_LENGTH

    @property
    def name(self) -> str:
        """The song's name in the sources files, e.g. ``s007``."""
        return f"s{self.index:03d}"

    def rng(self) -> np.random.Generator:
        """A new generator of the song's frame, which parts play, their levels and its room."""
        return np.random.default_rng([self.seed, _SONG_CODE, self.index, 0])

    def part_rng(self, part: int) -> np.random.Generator:
        """A new generator of accompaniment part ``part``'s notes and timbre."""
        return np.random.default_rng([self.seed, _SONG_CODE, self.index, 10 + part])

    def offset(self, visit: int, duration: float) -> float:
        """Start (s) of the song's ``visit``-th clip of ``duration`` seconds.

        The song is cut into clip-long segments, taken in a fixed random order: clips
        of one song do not overlap until the song has more clips than segments.
        """
        segments = int(self.length // duration)
        if segments < 1:
            raise ValueError(f"duration must be at most {self.length:g} s, a song's length")
        order = np.random.default_rng([self.seed, _SONG_CODE, self.index, 1]).permutation(segments)
        return float(order[visit % segments] * duration)


@dataclass(frozen=True)
class SingerSource:
    """One singer of a sourced demo: a fixed voice of ``gender``, by ``(seed, index)``."""

    seed: int
    gender: str
    index: int

    @property
    def name(self) -> str:
        """The singer's name in the sources files, e.g. ``m03`` or ``f11``."""
        return f"{self.gender[0]}{self.index:02d}"

    def rng(self) -> np.random.Generator:
        """A new generator of the singer's tessitura and voice traits."""
        code = GENDERS.index(self.gender)
        return np.random.default_rng([self.seed, _SINGER_CODE, code, self.index])


@dataclass(frozen=True)
class ClipSources:
    """Where one clip comes from: a song, the start of its stretch, its singers."""

    song: SongSource
    offset: float
    singers: tuple[SingerSource, ...]

    @property
    def singer_names(self) -> str:
        """The singers' names joined by ``+`` (empty for no voice), lead singer first."""
        return "+".join(s.name for s in self.singers)


@dataclass(frozen=True)
class Cast:
    """Who sings in a song: its lead singer, alone in its verses, and the backing singers
    who join the lead in its choruses."""

    lead: SingerSource
    backing: tuple[SingerSource, ...]


def _held_out(total: int, share: float, least: int) -> int:
    """How many of ``total`` sources go to the test clips: ``share`` of them, at least
    ``least``."""
    return max(least, round(total * share))


@dataclass(frozen=True)
class SourcePools:
    """The songs and singers (per gender) of a sourced demo, split between train and test.

    ``test_share`` of the songs (at least two) and of each gender's singers (at least
    one) are the test clips' and no train clip's. Songs alternate between a male and a
    female lead singer; each song has its cast from the singers of its side.
    """

    seed: int
    songs: int
    singers: int
    test_share: float

    def __post_init__(self) -> None:
        if not 0 < self.test_share < 1:
            raise ValueError(f"test_share must be between 0 and 1, got {self.test_share}")
        for knob, total, least in (("songs", self.songs, 2), ("singers", self.singers, 1)):
            if total - _held_out(total, self.test_share, least) < least:
                raise ValueError(
                    f"{knob} must leave {least} or more for the train clips and for the test "
                    f"clips (test_share {self.test_share} of them); got {total}"
                )

    def _range(self, split: str, total: int, least: int) -> range:
        """Indices of the sources of ``split`` among ``total``: train first, test last."""
        first_test = total - _held_out(total, self.test_share, least)
        return range(first_test) if split == "train" else range(first_test, total)

    def songs_of(self, split: str) -> list[SongSource]:
        """The songs the clips of ``split`` are cut from."""
        return [SongSource(self.seed, i) for i in self._range(split, self.songs, 2)]

    def singers_of(self, split: str, gender: str) -> list[SingerSource]:
        """The singers of ``gender`` who sing in the clips of ``split``."""
        indices = self._range(split, self.singers, 1)
        return [SingerSource(self.seed, gender, i) for i in indices]

    def cast(self, split: str, song: SongSource) -> Cast:
        """The singers of ``song``, one of ``split``'s songs: a lead of the song's gender
        (male for even song numbers) and two backing singers of any gender."""
        rng = np.random.default_rng([self.seed, _SONG_CODE, song.index, 2])
        leads = self.singers_of(split, GENDERS[song.index % 2])
        lead = leads[int(rng.integers(len(leads)))]
        others = [s for g in GENDERS for s in self.singers_of(split, g) if s != lead]
        backing = rng.choice(len(others), min(2, len(others)), replace=False)
        return Cast(lead, tuple(others[i] for i in backing))

    def clips(self, split: str, labels: Sequence[int], duration: float) -> list[ClipSources]:
        """The sources of the clips of ``split`` with ``labels`` (0-3), clips ``duration``
        seconds long.

        A clip comes from one of the songs that have its label: a verse of a song whose
        lead has the clip's gender (classes 1 and 2), a chorus of any song with its lead
        and one or two backing singers (class 3), an instrumental stretch of any song
        (class 0). A song's clips take its segments in a fixed order, so they do not
        overlap. Clip i depends on the clips before it, not on how many follow.
        """
        songs = self.songs_of(split)
        casts = [self.cast(split, song) for song in songs]
        visits = [0] * len(songs)
        out = []
        for index, label in enumerate(labels):
            rng = np.random.default_rng([self.seed, SPLITS[split], index, 2])
            fits = [
                j
                for j, cast in enumerate(casts)
                if label in (0, 3) or cast.lead.gender == GENDERS[label - 1]
            ]
            j = fits[int(rng.integers(len(fits)))]
            singers: tuple[SingerSource, ...] = ()
            if label in (1, 2):
                singers = (casts[j].lead,)
            elif label == 3:
                backing = casts[j].backing
                count = min(1 if rng.random() < 0.65 else 2, len(backing))
                chosen = sorted(rng.choice(len(backing), count, replace=False))
                singers = (casts[j].lead, *(backing[i] for i in chosen))
            out.append(ClipSources(songs[j], songs[j].offset(visits[j], duration), singers))
            visits[j] += 1
        return out
