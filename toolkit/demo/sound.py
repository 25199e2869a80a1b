"""Synthetic song snippets in the report's four classes, as numpy arrays.

Every clip is a few seconds of a made-up song: chords, a bass line and drums in a
random key and tempo, with zero, one or several sung melodies on top. The voices are
source-filter models (a glottal-like harmonic series following a melody with
portamento and vibrato, shaped by vowel formants that change from note to note, plus
breath and consonant noise), so "male", "female" and "several voices" differ the
way they do in real songs: by pitch, formants and the number of simultaneous
melodies, all under an accompaniment loud enough to make the task non-trivial.

Everything is numpy and everything random comes from the generator passed in; nothing
here touches files. Changing what a clip draws changes the demo competition's files,
so bump ``GENERATOR_VERSION`` in :mod:`toolkit.demo.competition` along with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DEFAULT_SAMPLE_RATE = 44100
"""Default sample rate of the clips (and the demo files), as in the report's competition."""

CLASS_NAMES = ("no voice", "male voice", "female voice", "several voices")
"""Class names by label index."""

# Vowel formants F1-F3 (Hz), after Peterson & Barney's averages, for a, e, i, o, u.
_MALE_FORMANTS = np.array(
    [[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]],
    dtype=np.float64,
)
_FEMALE_FORMANTS = np.array(
    [[850, 1220, 2810], [610, 2330, 2990], [310, 2790, 3310], [590, 920, 2710], [370, 950, 2670]],
    dtype=np.float64,
)
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
_TABLE_SIZE = 4096


# ----------------------------------------------------------------------------- building blocks


def _midi_to_hz(midi: np.ndarray | float) -> np.ndarray:
    """Frequency in Hz of (fractional) MIDI note numbers."""
    return 440.0 * np.exp((np.asarray(midi, dtype=np.float64) - 69.0) * (np.log(2.0) / 12.0))


def _harmonic_table(amps: np.ndarray, phases: np.ndarray | None = None) -> np.ndarray:
    """One period of ``sum_k amps[k-1] sin(2 pi k x + phase_k)``, unit peak, wrap sample."""
    spec = np.zeros(_TABLE_SIZE // 2 + 1, dtype=np.complex128)
    ph = np.zeros(len(amps)) if phases is None else phases
    spec[1 : len(amps) + 1] = amps * np.exp(1j * (ph - np.pi / 2))
    table = np.fft.irfft(spec, n=_TABLE_SIZE)
    table /= np.abs(table).max() + 1e-12
    return np.append(table, table[0]).astype(np.float32)


def _timbre_table(
    kind: str,
    freqs: np.ndarray,
    bright_hz: float,
    sample_rate: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """A wavetable for an instrument timbre playing ``freqs`` (Hz), band-limited below
    Nyquist and rolled off above ``bright_hz`` at the instrument's typical pitch."""
    n_harm = max(1, min(80, int(0.45 * sample_rate / (float(freqs.max()) * 1.01))))
    k = np.arange(1, n_harm + 1, dtype=np.float64)
    if kind == "saw":
        amps = 1.0 / k
    elif kind == "square":
        amps = np.where(k % 2 == 1, 1.0 / k, 0.0)
    elif kind == "triangle":
        amps = np.where(k % 2 == 1, 1.0 / k**2, 0.0)
    elif kind == "pulse":
        duty = rng.uniform(0.15, 0.35)
        amps = np.abs(np.sin(np.pi * k * duty)) / k
    elif kind == "organ":
        amps = np.zeros(n_harm)
        for h, a in ((1, 1.0), (2, 0.7), (3, 0.5), (4, 0.35), (6, 0.2), (8, 0.15)):
            if h <= n_harm:
                amps[h - 1] = a * rng.uniform(0.6, 1.2)
    elif kind == "bell":
        amps = k ** -rng.uniform(2.0, 3.0)
    else:  # pragma: no cover - internal names only
        raise ValueError(kind)
    amps = amps / np.sqrt(1.0 + (k * float(np.median(freqs)) / bright_hz) ** 4)
    return _harmonic_table(amps, rng.uniform(0, 2 * np.pi, n_harm))


@dataclass(frozen=True)
class _Clock:
    """A clip's sample grid, with a coarser control grid for envelopes and pitch contours."""

    sample_rate: int
    n: int
    step: int
    tc: np.ndarray  # control-point times (s), one every `step` samples

    @classmethod
    def make(cls, sample_rate: int, n: int) -> _Clock:
        """The grid of ``n`` samples at ``sample_rate``, controls at about 2 kHz."""
        step = max(1, round(sample_rate / 2000))
        m = -(-n // step)
        return cls(sample_rate, n, step, np.arange(m) * (step / sample_rate))

    def up(self, x: np.ndarray) -> np.ndarray:
        """Control-rate ``x [..., m]`` held over each step to sample rate ``[..., n]``."""
        return np.repeat(x, self.step, axis=-1)[..., : self.n]


def _oscillate(
    table: np.ndarray, freqs: np.ndarray, clock: _Clock, rng: np.random.Generator
) -> np.ndarray:
    """Wavetable oscillators: control-rate ``freqs [V, m]`` (Hz) to float32 ``[V, n]``.

    The phase is accumulated (float64) and wrapped at control rate, then ramped
    linearly over each control step in float32.
    """
    size = _TABLE_SIZE
    inc = freqs * (size / clock.sample_rate)  # table positions per sample, per control step
    start = np.cumsum(inc * clock.step, axis=-1) - inc * clock.step
    start += rng.uniform(0, size, (freqs.shape[0], 1))
    start -= np.floor(start / size) * size
    ramp = np.arange(clock.step, dtype=np.float32)
    pos = start.astype(np.float32)[..., None] + inc.astype(np.float32)[..., None] * ramp
    pos = pos.reshape(freqs.shape[0], -1)[:, : clock.n]
    floor = np.floor(pos)
    frac = pos - floor
    i0 = floor.astype(np.intp) & (size - 1)
    a = table[i0]
    return a + frac * (table[i0 + 1] - a)


def _note_envelope(
    tc: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    gains: np.ndarray,
    attack: float,
    decay: float,
    sustain: float,
    release: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Note index and attack/decay/sustain/release envelope at each time of ``tc``."""
    idx = np.searchsorted(starts, tc, side="right") - 1
    valid = idx >= 0
    idx = np.clip(idx, 0, len(starts) - 1)
    since = tc - starts[idx]
    until = ends[idx] - tc
    env = np.minimum(since / attack, 1.0)
    env *= sustain + (1.0 - sustain) * np.exp(-since / decay)
    env *= np.clip(until / release, 0.0, 1.0)
    env *= gains[idx] * valid
    return idx, env.astype(np.float32)


def _moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Trailing moving average of ``x`` over ``width`` samples (edge-padded)."""
    if width <= 1:
        return x
    c = np.cumsum(np.concatenate([np.full(width, x[0]), x]))
    return (c[width:] - c[:-width]) / width


def _pan(mono: np.ndarray, position: float) -> np.ndarray:
    """Equal-power pan of ``mono [n]`` to stereo ``[2, n]``; position in -1 (left)..1."""
    angle = (position + 1.0) * np.pi / 4.0
    out = np.empty((2, len(mono)), dtype=np.float32)
    np.multiply(mono, np.float32(np.cos(angle)), out=out[0])
    np.multiply(mono, np.float32(np.sin(angle)), out=out[1])
    return out


def _rms(x: np.ndarray) -> float:
    """Root mean square of ``x``."""
    flat = np.ascontiguousarray(x).ravel()
    return float(np.sqrt(np.dot(flat, flat) / max(flat.size, 1)))


# ----------------------------------------------------------------------------- the song


@dataclass
class _Song:
    """The musical frame one clip shares between its accompaniment and its singers."""

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


def _draw_song(rng: np.random.Generator, duration: float) -> _Song:
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
    return _Song(beat, t0, key, scale, starts, starts + chord_len, pcs, duration)


def _draw_melody(
    song: _Song, rng: np.random.Generator, low: float, high: float, rest_prob: float
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


# ----------------------------------------------------------------------------- voices


@dataclass
class _Singer:
    """A singer: gender and the MIDI range (and centre) of the notes they sing."""

    gender: str
    low: float
    high: float
    center: float


def _draw_singer(gender: str, rng: np.random.Generator) -> _Singer:
    """A singer of ``gender`` with a random tessitura inside that gender's f0 range."""
    if gender == "male":  # f0 roughly 90-200 Hz (MIDI 42-56)
        center = rng.uniform(47.5, 51.0)
        lo, hi = 42.5, 55.5
    else:  # f0 roughly 180-400 Hz (MIDI 54-67)
        center = rng.uniform(59.0, 62.5)
        lo, hi = 54.0, 67.5
    half = rng.uniform(4.0, 6.0)
    return _Singer(gender, max(lo, center - half), min(hi, center + half), center)


def _formant_filter(
    x: np.ndarray,
    sample_rate: int,
    frame_formants: Callable[[np.ndarray], np.ndarray],
    bandwidths: np.ndarray,
) -> np.ndarray:
    """Time-varying formant filtering of ``x [n]`` by short-time spectral shaping.

    ``frame_formants(times)`` gives the formant frequencies ``[frames, F]`` at frame
    centres; each formant is a second-order resonance (unit gain at DC).
    """
    n_fft = 2048 if sample_rate > 32000 else 1024
    hop = n_fft // 2
    n = len(x)
    n_frames = int(np.ceil((n + n_fft) / hop)) + 1
    padded = np.zeros(hop * (n_frames - 1) + n_fft, dtype=np.float32)
    padded[n_fft // 2 : n_fft // 2 + n] = x
    window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop] * window
    spec = np.fft.rfft(frames, axis=-1)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate).astype(np.float32)
    centres = (np.arange(n_frames) * hop) / sample_rate  # frame centre, in clip time
    formants = frame_formants(centres).astype(np.float32)  # [frames, F]
    f2 = freqs[None, :] ** 2
    gain = np.ones((n_frames, len(freqs)), dtype=np.float32)
    for j in range(formants.shape[1]):
        fj2 = formants[:, j : j + 1] ** 2
        damping = (np.float32(bandwidths[j]) * freqs[None, :]) ** 2
        gain *= fj2 / np.sqrt(np.square(fj2 - f2) + damping)
    out_frames = np.fft.irfft(spec * gain, n=n_fft, axis=-1).astype(np.float32) * window
    out = np.zeros_like(padded)
    per = n_fft // hop  # frames r, r+per, ... tile the output without overlapping
    # (sqrt-Hann analysis x synthesis is a Hann window; at half-frame hops they sum to 1)
    for r in range(per):
        chunk = out_frames[r::per].reshape(-1)
        out[r * hop : r * hop + len(chunk)] += chunk
    return out[n_fft // 2 : n_fft // 2 + n]


def _sing(
    singer: _Singer,
    melody: tuple[np.ndarray, np.ndarray, np.ndarray],
    clock: _Clock,
    rng: np.random.Generator,
) -> np.ndarray:
    """One singer's dry mono stem ``[n]`` (unit RMS) singing ``melody``."""
    starts, ends, pitch = melody
    n, sample_rate, tc = clock.n, clock.sample_rate, clock.tc
    sung = ~np.isnan(pitch)
    # Rests keep the previous pitch so the f0 contour stays continuous.
    filled = pitch.copy()
    for i in range(len(filled)):
        if np.isnan(filled[i]):
            filled[i] = filled[i - 1] if i > 0 else np.nanmean(pitch)
    note_gain = np.where(sung, 10 ** (rng.uniform(-3, 1, len(pitch)) / 20), 0.0)
    idx, env = _note_envelope(
        tc,
        starts,
        ends,
        note_gain,
        attack=rng.uniform(0.02, 0.07),
        decay=rng.uniform(0.3, 1.5),
        sustain=rng.uniform(0.6, 0.95),
        release=rng.uniform(0.04, 0.1),
    )
    # f0: notes with portamento, vibrato that swells in after each onset, slow drift.
    control_rate = sample_rate / clock.step
    midi = _moving_average(filled[idx], int(rng.uniform(0.03, 0.1) * control_rate))
    since = tc - starts[idx]
    wobble = np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * tc + rng.uniform(0, 6))
    vib_rate = rng.uniform(5.0, 6.0) * (1 + 0.03 * wobble)
    vib_phase = np.cumsum(vib_rate) * (2 * np.pi / control_rate)
    vib_depth = rng.uniform(15, 60) * np.clip((since - rng.uniform(0.08, 0.25)) / 0.25, 0, 1)
    cents = vib_depth * np.sin(vib_phase)
    knots = np.arange(0, tc[-1] + 0.1, 0.05)
    cents += np.interp(tc, knots, rng.normal(0, 6, len(knots)))
    f0 = _midi_to_hz(midi + cents / 100.0)
    # Glottal-like source: a harmonic series with a random spectral tilt.
    f0_max = float(f0.max()) * 1.02
    n_harm = max(1, min(120, int(0.45 * sample_rate / f0_max)))
    k = np.arange(1, n_harm + 1)
    table = _harmonic_table(k ** -rng.uniform(0.9, 1.4), rng.normal(0, 0.3, n_harm))
    env = clock.up(env)
    source = _oscillate(table, f0[None, :], clock, rng)[0] * env
    breath = rng.standard_normal(n, dtype=np.float32)
    source += breath * (rng.uniform(0.02, 0.06) * (0.2 + env))
    # Vowel formants per note, gliding between notes; F1 rises to stay above f0.
    table_f = _MALE_FORMANTS if singer.gender == "male" else _FEMALE_FORMANTS
    tract = rng.uniform(0.94, 1.06)
    vowels = rng.integers(0, len(table_f), len(pitch))
    per_note = table_f[vowels] * tract * rng.uniform(0.96, 1.04, (len(pitch), 3))
    per_note[:, 0] = np.maximum(per_note[:, 0], 1.1 * _midi_to_hz(filled))
    f4 = (3400.0 if singer.gender == "male" else 4000.0) * tract
    per_note = np.column_stack([per_note, np.full(len(pitch), f4)])
    per_note = np.minimum(per_note, 0.45 * sample_rate)
    glide = rng.uniform(0.03, 0.08)

    def frame_formants(times: np.ndarray) -> np.ndarray:
        # Linear glide from the previous note's vowel over `glide` seconds after an onset.
        j = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(starts) - 1)
        w = np.clip((times - starts[j]) / glide, 0, 1)[:, None]
        return per_note[np.maximum(j - 1, 0)] * (1 - w) + per_note[j] * w

    bandwidths = np.array([70.0, 90.0, 130.0, 180.0]) * rng.uniform(0.8, 1.3)
    voice = _formant_filter(source, sample_rate, frame_formants, bandwidths)
    # Consonants: short high-passed noise bursts at some note onsets.
    voice /= _rms(voice) + 1e-9
    for s in starts[sung]:
        if rng.random() < 0.5:
            a = int(max(s, 0.0) * sample_rate)
            width = int(rng.uniform(0.02, 0.06) * sample_rate)
            if a >= n or width < 2:
                continue
            b = min(n, a + width)
            burst = np.diff(rng.standard_normal(width + 1, dtype=np.float32)) * np.hanning(width)
            voice[a:b] += burst[: b - a] * (0.5 * rng.uniform(0.2, 0.6))
    return voice / (_rms(voice) + 1e-9)


def _harmony(
    melody: tuple[np.ndarray, np.ndarray, np.ndarray],
    song: _Song,
    singer: _Singer,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A harmony line on ``melody``'s rhythm, a third, sixth or fifth away, near ``singer``."""
    starts, ends, pitch = melody
    step = int(rng.choice([-5, -2, 2, 4, 5]))
    out = np.full_like(pitch, np.nan)
    for i, m in enumerate(pitch):
        if np.isnan(m):
            continue
        rel = (int(m) - song.key) % 12
        deg = int(np.argmin(np.abs(song.scale - rel)))
        octave = (int(m) - song.key - rel) // 12
        new_deg = deg + step
        h = song.key + 12 * (octave + new_deg // 7) + song.scale[new_deg % 7]
        out[i] = h + 12 * np.round((singer.center - h) / 12.0)
    shift = rng.normal(0, 0.015, len(starts))
    return starts + shift, ends + shift, out


def _voices(label: int, song: _Song, clock: _Clock, rng: np.random.Generator) -> np.ndarray:
    """The dry stereo voice stem ``[2, n]`` for ``label`` (zeros for class 0)."""
    n = clock.n
    if label == 0:
        return np.zeros((2, n), dtype=np.float32)
    if label == 1:
        genders = ["male"]
    elif label == 2:
        genders = ["female"]
    else:
        count = 2 if rng.random() < 0.65 else 3
        genders = [("male", "female")[int(rng.integers(2))] for _ in range(count)]
    out = np.zeros((2, n), dtype=np.float32)
    lead_melody = None
    for i, gender in enumerate(genders):
        singer = _draw_singer(gender, rng)
        if lead_melody is None:
            melody = lead_melody = _draw_melody(song, rng, singer.low, singer.high, 0.12)
        elif rng.random() < 0.6:
            melody = _harmony(lead_melody, song, singer, rng)
        else:
            melody = _draw_melody(song, rng, singer.low, singer.high, 0.15)
        stem = _sing(singer, melody, clock, rng)
        level = 1.0 if i == 0 else 10 ** (rng.uniform(-4, 0) / 20)
        position = rng.uniform(-0.15, 0.15) if i == 0 else rng.uniform(-0.6, 0.6)
        out += _pan(stem * level, position)
    return out


# ----------------------------------------------------------------------------- accompaniment


def _chord_instrument(song: _Song, clock: _Clock, rng: np.random.Generator) -> np.ndarray:
    """Chords as a pad, strummed comping or an arpeggio, in one random timbre."""
    style = str(rng.choice(["pad", "strum", "arp"], p=[0.35, 0.4, 0.25]))
    kind = str(rng.choice(["saw", "square", "pulse", "organ", "bell", "triangle"]))
    center = rng.uniform(52, 62)
    voicings = []
    for pcs in song.chord_pcs:
        notes = center - 6 + (pcs - (center - 6)) % 12
        voicings.append(np.sort(notes))
    n_voices = max(len(v) for v in voicings)
    voiced = np.array([np.resize(v, n_voices) for v in voicings])  # [chords, V]
    beat = song.beat
    if style == "pad":
        starts, ends, midi = song.chord_starts, song.chord_ends, voiced
        env_args = dict(attack=rng.uniform(0.05, 0.3), decay=1.0, sustain=0.8, release=0.1)
    else:
        sub = beat / (2 if style == "strum" else rng.choice([2, 4]))
        times = np.arange(song.t0, song.duration + sub, sub)
        if style == "strum":
            times = times[rng.random(len(times)) < 0.75]
        chord_of = np.clip(np.searchsorted(song.chord_starts, times, side="right") - 1, 0, None)
        chord_of = np.minimum(chord_of, len(voiced) - 1)
        starts, ends = times, np.append(times[1:], times[-1] + sub)
        midi = voiced[chord_of]
        if style == "arp":
            order = np.arange(len(times)) % n_voices
            if rng.random() < 0.5:
                order = n_voices - 1 - order
            midi = midi[np.arange(len(times)), order][:, None]
        env_args = dict(
            attack=0.005, decay=rng.uniform(0.1, 0.4), sustain=rng.uniform(0, 0.3), release=0.03
        )
    gains = 10 ** (rng.uniform(-3, 0, len(starts)) / 20)
    idx, env = _note_envelope(clock.tc, starts, ends, gains, **env_args)
    freqs = _midi_to_hz(midi[idx].T)  # [V, m]
    freqs *= 2 ** (rng.uniform(-8, 8, (freqs.shape[0], 1)) / 1200)  # loose tuning, chorus
    table = _timbre_table(kind, freqs, rng.uniform(1500, 6000), clock.sample_rate, rng)
    mono = _oscillate(table, freqs, clock, rng).sum(0) * clock.up(env)
    stereo = _pan(mono, rng.uniform(-0.5, 0.5))
    delay = int(rng.uniform(0.0, 0.015) * clock.sample_rate)  # Haas widening
    if delay:
        stereo[1, delay:] = stereo[1, :-delay].copy()
    return stereo


def _bass(song: _Song, clock: _Clock, rng: np.random.Generator) -> np.ndarray:
    """A plucked bass line on the chord roots (some fifths and octaves), in 16th-note patterns."""
    pattern = [
        [0, 8],
        [0, 4, 8, 12],
        [0, 6, 8, 14],
        [0, 2, 4, 6, 8, 10, 12, 14],
        [0, 3, 8, 11],
    ][int(rng.integers(5))]
    step = song.beat / 4
    bars = int(np.ceil((song.duration - song.t0) / (16 * step))) + 1
    times = (song.t0 + step * (16 * np.arange(bars)[:, None] + np.array(pattern)[None, :])).ravel()
    chord_of = np.clip(np.searchsorted(song.chord_starts, times, side="right") - 1, 0, None)
    chord_of = np.minimum(chord_of, len(song.chord_pcs) - 1)
    roots = np.array([song.chord_pcs[c][0] for c in chord_of])
    base = rng.uniform(31, 38)
    midi = base + (roots - base) % 12
    fifth = rng.random(len(times)) < 0.15
    midi = np.where(fifth, midi + 7, midi)
    midi = np.where(rng.random(len(times)) < 0.1, midi + 12, midi)
    ends = np.append(times[1:], times[-1] + 4 * step)
    gains = 10 ** (rng.uniform(-2, 0, len(times)) / 20)
    idx, env = _note_envelope(
        clock.tc, times, ends, gains, 0.005, rng.uniform(0.15, 0.6), rng.uniform(0.2, 0.6), 0.03
    )
    freqs = _midi_to_hz(midi[idx])[None, :]
    kind = str(rng.choice(["saw", "square", "triangle"]))
    table = _timbre_table(kind, freqs, rng.uniform(300, 1500), clock.sample_rate, rng)
    mono = _oscillate(table, freqs, clock, rng)[0] * clock.up(env)
    return _pan(mono, rng.uniform(-0.1, 0.1))


def _lead(song: _Song, clock: _Clock, rng: np.random.Generator) -> np.ndarray:
    """A melodic instrument in the voices' register (no formants), so melody alone is no tell."""
    low = rng.uniform(50, 64)
    starts, ends, pitch = _draw_melody(song, rng, low, low + 12, 0.2)
    sung = ~np.isnan(pitch)
    filled = np.where(sung, pitch, np.nanmean(pitch) if sung.any() else 60.0)
    gains = np.where(sung, 1.0, 0.0)
    tc = clock.tc
    idx, env = _note_envelope(
        tc, starts, ends, gains, rng.uniform(0.005, 0.05), 0.5, rng.uniform(0.3, 0.9), 0.05
    )
    midi = _moving_average(filled[idx], int(0.02 * clock.sample_rate / clock.step))
    if rng.random() < 0.5:
        midi = midi + rng.uniform(0.1, 0.4) * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * tc)
    freqs = _midi_to_hz(midi)[None, :]
    kind = str(rng.choice(["square", "saw", "pulse", "triangle", "bell"]))
    table = _timbre_table(kind, freqs, rng.uniform(2000, 7000), clock.sample_rate, rng)
    mono = _oscillate(table, freqs, clock, rng)[0] * clock.up(env)
    return _pan(mono, rng.uniform(-0.6, 0.6))


def _drums(song: _Song, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Kick, snare and hi-hat one-shots on a 16th-note grid, slightly humanised."""
    out = np.zeros((2, n), dtype=np.float32)
    sr = sample_rate
    tk = np.arange(int(0.35 * sr)) / sr
    sweep = rng.uniform(40, 60) + rng.uniform(60, 120) * np.exp(-tk / rng.uniform(0.02, 0.05))
    kick = np.sin(2 * np.pi * np.cumsum(sweep) / sr) * np.exp(-tk / rng.uniform(0.06, 0.15))
    ts = np.arange(int(0.25 * sr)) / sr
    snare = np.diff(rng.standard_normal(len(ts) + 1)) * 0.5 * np.exp(-ts / rng.uniform(0.06, 0.14))
    snare += np.sin(2 * np.pi * rng.uniform(170, 230) * ts) * np.exp(-ts / 0.04)
    th = np.arange(int(0.2 * sr)) / sr
    hat_noise = np.diff(rng.standard_normal(len(th) + 2), n=2) * 0.3
    hat = hat_noise * np.exp(-th / rng.uniform(0.015, 0.04))
    kick_steps = [[0, 8], [0, 8, 10], [0, 6, 8], [0, 3, 8, 11], [0, 10]][int(rng.integers(5))]
    snare_steps = [4, 12] if rng.random() < 0.8 else [8]
    hat_every = int(rng.choice([1, 2, 2, 4]))
    step = song.beat / 4
    bars = int(np.ceil((song.duration - song.t0) / (16 * step))) + 1
    bar_starts = song.t0 + 16 * step * np.arange(bars)
    hits = [
        (kick, kick_steps, 0.0, 1.0),
        (snare, snare_steps, rng.uniform(-0.1, 0.1), 0.8),
        (hat, list(range(0, 16, hat_every)), rng.uniform(-0.5, 0.5), 0.35),
    ]
    for shot, steps, position, level in hits:
        shot = shot.astype(np.float32)
        stereo = _pan(shot, position)
        times = (bar_starts[:, None] + step * np.array(steps)[None, :]).ravel()
        times = times + rng.normal(0, 0.004, len(times))
        for time in times:
            i = int(round(time * sr))
            a, b = max(i, 0), min(i + len(shot), n)
            if b > a:
                out[:, a:b] += stereo[:, a - i : b - i] * level * rng.uniform(0.6, 1.0)
    return out


def _fast_len(n: int) -> int:
    """The smallest 5-smooth length (2^a 3^b 5^c) of at least ``n``, fast for the FFT."""
    best = 1 << int(np.ceil(np.log2(n)))
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def _reverb(
    stems: np.ndarray, sample_rate: int, rng: np.random.Generator, wet: np.ndarray
) -> np.ndarray:
    """Stereo stems ``[S, 2, n]`` plus a shared noise-tail room, wet level per stem ``[S]``.

    The room hears each stem's mid signal; the right return is the left one delayed.
    The room runs at about 11 kHz (its tail is dark anyway) and is interpolated back.
    """
    n = stems.shape[-1]
    out = stems.astype(np.float32)
    mids = stems.mean(axis=1)  # [S, n]
    active = np.abs(mids).max(axis=-1) > 0
    if not active.any():
        return out
    factor = max(1, sample_rate // 11025)
    rate = sample_rate / factor
    rt60 = rng.uniform(0.3, 1.2)
    length = int(min(rt60, 0.6) * rate)
    predelay = int(rng.uniform(0.005, 0.03) * rate)
    spread = int(rng.uniform(0.007, 0.02) * sample_rate)
    ir = rng.standard_normal(length) * np.exp(-6.9 * (np.arange(length) / rate) / rt60)
    ir /= np.sqrt((ir**2).sum())
    dry = mids[active]
    if factor > 1:  # box-car average down
        dry = np.pad(dry, ((0, 0), (0, -n % factor)))
        dry = dry.reshape(dry.shape[0], -1, factor).mean(axis=-1)
    m = dry.shape[-1]
    n_fft = _fast_len(m + length + predelay)
    ir_full = np.zeros(n_fft)
    ir_full[predelay : predelay + length] = ir
    spec = np.fft.rfft(dry, n=n_fft, axis=-1) * np.fft.rfft(ir_full)[None]
    low = np.fft.irfft(spec, n=n_fft, axis=-1)[:, : m + 1].astype(np.float32)
    if factor > 1:  # linear interpolation back to the full rate
        ramp = np.arange(factor, dtype=np.float32) / factor
        low = low[:, :m, None] + (low[:, 1:, None] - low[:, :m, None]) * ramp
        low = low.reshape(low.shape[0], -1)
    wet_sig = low[:, :n] * wet[active, None].astype(np.float32)
    out[active, 0] += wet_sig
    out[active, 1, spread:] += wet_sig[:, : n - spread]
    return out


# ----------------------------------------------------------------------------- the clip


def synthesize_clip(
    label: int,
    rng: np.random.Generator,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    duration: float = 3.0,
    channels: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (mixture, voice) float32 arrays shaped [channels, samples].

    ``voice`` is the sum of the voice stems as mixed in (zeros for class 0), so
    ``mixture - voice`` is the accompaniment. The voice-to-accompaniment ratio is drawn
    from -6..+3 dB; the mixture peaks between -6 and -1 dBFS.
    """
    if label not in range(len(CLASS_NAMES)):
        raise ValueError(f"label must be 0..{len(CLASS_NAMES) - 1}, got {label}")
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, got {channels}")
    n = int(round(duration * sample_rate))
    if n < 1:
        raise ValueError(f"duration {duration} s is shorter than one sample")
    clock = _Clock.make(sample_rate, n)
    song = _draw_song(rng, duration)
    voice = _voices(label, song, clock, rng)
    parts = [(_chord_instrument(song, clock, rng), 0.0)]
    if rng.random() < 0.4:
        parts.append((_chord_instrument(song, clock, rng), rng.uniform(-6, -1)))
    if rng.random() < 0.9:
        parts.append((_bass(song, clock, rng), rng.uniform(-3, 2)))
    if rng.random() < 0.3:
        parts.append((_lead(song, clock, rng), rng.uniform(-6, 0)))
    if rng.random() < 0.8:
        parts.append((_drums(song, n, sample_rate, rng), rng.uniform(-4, 2)))
    accomp = np.zeros((2, n), dtype=np.float32)
    for part, gain_db in parts:
        accomp += part / (_rms(part) + 1e-9) * 10 ** (gain_db / 20)
    wet = np.array([rng.uniform(0.15, 0.5), rng.uniform(0.1, 0.35)])
    voice, accomp = _reverb(np.stack([voice, accomp]), sample_rate, rng, wet)
    if channels == 1:
        voice = voice.mean(0, keepdims=True)
        accomp = accomp.mean(0, keepdims=True)
    ratio_db = rng.uniform(-6.0, 3.0)
    if label != 0:
        voice *= _rms(accomp) / (_rms(voice) + 1e-12) * 10 ** (ratio_db / 20)
    else:
        voice[:] = 0.0
    mixture = voice + accomp
    scale = 10 ** (rng.uniform(-6.0, -1.0) / 20) / (float(np.abs(mixture).max()) + 1e-12)
    return (mixture * scale).astype(np.float32), (voice * scale).astype(np.float32)
