"""The musical frame of a demo song: tempo, key, chord progression, and melodies on it.

Accompaniment and singers share one frame, so the voices sing in the song's key and
follow its chords.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
_MINOR = np.array([0, 2, 3, 5, 7, 8, 10])
_PROGRESSIONS = (
    (0, 4, 5, 3),
    (0, 5, 3, 4),
    (5, 3, 0, 4),
    (0, 3, 4, 0),
    (1, 4, 0, 5),
    (0, 3, 0, 4),
    (5, 4, 3, 4),
    (0, 2, 3, 4),
)


@dataclass
class Song:
    """The musical frame a song's accompaniment and singers share: times in seconds from
    the start of the clip (or of the whole song), the first bar starting at ``t0 <= 0``."""

    beat: float
    t0: float
    key: int
    scale: np.ndarray
    chord_starts: np.ndarray
    chord_ends: np.ndarray
    chord_pcs: list[np.ndarray]
    duration: float

    def chord_at(self, time: float) -> np.ndarray:
        """Pitch classes of the chord sounding at ``time``."""
        i = int(np.clip(np.searchsorted(self.chord_starts, time, side="right") - 1, 0, None))
        return self.chord_pcs[min(i, len(self.chord_pcs) - 1)]

    def scale_notes(self, low: float, high: float) -> np.ndarray:
        """MIDI notes of the key's scale within ``[low, high]``."""
        notes = np.arange(int(np.ceil(low)), int(np.floor(high)) + 1)
        return notes[np.isin((notes - self.key) % 12, self.scale)]

    def window(self, start: float, duration: float) -> Song:
        """The stretch of ``duration`` seconds from ``start`` on, as a frame of its own."""
        bar = 4 * self.beat
        t0 = self.t0 + bar * np.floor((start - self.t0) / bar) - start
        return Song(
            self.beat,
            float(t0),
            self.key,
            self.scale,
            self.chord_starts - start,
            self.chord_ends - start,
            self.chord_pcs,
            duration,
        )


def draw_song(rng: np.random.Generator, duration: float) -> Song:
    """A random tempo, key, mode and chord progression covering ``duration`` seconds."""
    bpm = rng.uniform(76, 150)
    beat = 60.0 / bpm
    bar = 4 * beat
    t0 = -rng.uniform(0, bar)  # the snippet starts anywhere in a bar
    key = int(rng.integers(12))
    scale = _MAJOR if rng.random() < 0.6 else _MINOR
    chord_len = bar if rng.random() < 0.7 else bar / 2
    progression = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
    n_chords = int(np.ceil((duration - t0) / chord_len)) + 1
    start_at = int(rng.integers(len(progression)))
    starts = t0 + chord_len * np.arange(n_chords)
    pcs = []
    seventh = rng.random() < 0.3
    for j in range(n_chords):
        degree = progression[(start_at + j) % len(progression)]
        steps = [0, 2, 4, 6] if seventh else [0, 2, 4]
        pcs.append(np.array([(key + scale[(degree + s) % 7]) % 12 for s in steps]))
    return Song(beat, t0, key, scale, starts, starts + chord_len, pcs, duration)


def draw_melody(
    song: Song, rng: np.random.Generator, low: float, high: float, rest_prob: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A melody ``(starts, ends, midi)`` in ``[low, high]``; rests have midi NaN."""
    notes = song.scale_notes(low, high)
    durations = np.array([0.5, 1.0, 1.5, 2.0, 3.0])
    dur_p = np.array([0.25, 0.35, 0.15, 0.2, 0.05])
    time = song.t0 + song.beat * 0.5 * int(rng.integers(0, 4))
    while time > 0:  # the snippet starts inside the melody
        time -= 4 * song.beat
    pos = int(rng.integers(len(notes)))
    starts, ends, pitches = [], [], []
    prev_rest = True
    while time < song.duration:
        length = song.beat * rng.choice(durations, p=dur_p)
        if not prev_rest and rng.random() < rest_prob:
            starts.append(time)
            ends.append(time + song.beat * rng.choice([0.5, 1.0]))
            pitches.append(np.nan)
            time = ends[-1]
            prev_rest = True
            continue
        chord = song.chord_at(time)
        cand = np.arange(max(0, pos - 4), min(len(notes), pos + 5))
        weights = np.exp(-0.5 * np.abs(cand - pos)) * np.where(np.abs(cand - pos) == 0, 0.5, 1.0)
        weights *= np.where(np.isin(notes[cand] % 12, chord), 3.0, 1.0)
        pos = int(rng.choice(cand, p=weights / weights.sum()))
        starts.append(time)
        ends.append(time + length)
        pitches.append(float(notes[pos]))
        time += length
        prev_rest = False
    s, e, p = np.array(starts), np.array(ends), np.array(pitches)
    # Keep the voice audible for most of the clip: drop rests if they cover too much.
    rest = np.isnan(p)
    covered = np.clip(np.minimum(e, song.duration) - np.maximum(s, 0.0), 0.0, None)
    if covered[rest].sum() > 0.35 * song.duration:
        keep = ~rest
        s, p = s[keep], p[keep]
        e = np.append(s[1:], max(e[-1], song.duration + 0.1))
    return s, e, p
