"""The singers of a demo song: source-filter voices singing melodies and harmonies.

A voice is a glottal-like harmonic series following a melody with portamento and
vibrato, shaped by vowel formants that change from note to note, plus breath and
consonant noise, so "male", "female" and "several voices" differ the way they do in
real songs: by pitch, formants and the number of simultaneous melodies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from toolkit.demo.oscillators import (
    Clock,
    harmonic_table,
    midi_to_hz,
    moving_average,
    note_envelope,
    oscillate,
    pan,
    rms,
)
from toolkit.demo.song import Song, draw_melody

# Vowel formants F1-F3 (Hz), after Peterson & Barney's averages, for a, e, i, o, u.
_MALE_FORMANTS = np.array(
    [[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]],
    dtype=np.float64,
)
_FEMALE_FORMANTS = np.array(
    [[850, 1220, 2810], [610, 2330, 2990], [310, 2790, 3310], [590, 920, 2710], [370, 950, 2670]],
    dtype=np.float64,
)


@dataclass
class Singer:
    """A singer: gender and the MIDI range (and centre) of the notes they sing.

    ``traits`` draws the voice's traits (envelope, portamento, vibrato, spectral tilt,
    breathiness, vocal tract, formant glide and bandwidths) when the singer has a
    generator of their own; a singer without one draws them from the clip's.
    """

    gender: str
    low: float
    high: float
    center: float
    traits: np.random.Generator | None = None


def draw_singer(gender: str, rng: np.random.Generator) -> Singer:
    """A singer of ``gender`` with a random tessitura inside that gender's f0 range."""
    if gender == "male":  # f0 roughly 90-200 Hz (MIDI 42-56)
        center = rng.uniform(47.5, 51.0)
        lo, hi = 42.5, 55.5
    else:  # f0 roughly 180-400 Hz (MIDI 54-67)
        center = rng.uniform(59.0, 62.5)
        lo, hi = 54.0, 67.5
    half = rng.uniform(4.0, 6.0)
    return Singer(gender, max(lo, center - half), min(hi, center + half), center)


def fixed_singer(gender: str, rng: np.random.Generator) -> Singer:
    """A singer of ``gender`` whose tessitura and voice traits all come from ``rng``, their
    own generator: a new generator of the same seed sings in the same voice."""
    singer = draw_singer(gender, rng)
    singer.traits = rng
    return singer


def formant_filter(
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


def sing(
    singer: Singer,
    melody: tuple[np.ndarray, np.ndarray, np.ndarray],
    clock: Clock,
    rng: np.random.Generator,
) -> np.ndarray:
    """One singer's dry mono stem ``[n]`` (unit RMS) singing ``melody``.

    The voice's traits come from ``singer.traits`` when set, the performance (note
    levels, drift, vowels, breath noise, consonants) from ``rng``.
    """
    trait = rng if singer.traits is None else singer.traits
    starts, ends, pitch = melody
    n, sample_rate, tc = clock.n, clock.sample_rate, clock.tc
    sung = ~np.isnan(pitch)
    # Rests keep the previous pitch so the f0 contour stays continuous.
    filled = pitch.copy()
    for i in range(len(filled)):
        if np.isnan(filled[i]):
            filled[i] = filled[i - 1] if i > 0 else np.nanmean(pitch)
    note_gain = np.where(sung, 10 ** (rng.uniform(-3, 1, len(pitch)) / 20), 0.0)
    idx, env = note_envelope(
        tc,
        starts,
        ends,
        note_gain,
        attack=trait.uniform(0.02, 0.07),
        decay=trait.uniform(0.3, 1.5),
        sustain=trait.uniform(0.6, 0.95),
        release=trait.uniform(0.04, 0.1),
    )
    # f0: notes with portamento, vibrato that swells in after each onset, slow drift.
    control_rate = sample_rate / clock.step
    midi = moving_average(filled[idx], int(trait.uniform(0.03, 0.1) * control_rate))
    since = tc - starts[idx]
    wobble = np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * tc + rng.uniform(0, 6))
    vib_rate = trait.uniform(5.0, 6.0) * (1 + 0.03 * wobble)
    vib_phase = np.cumsum(vib_rate) * (2 * np.pi / control_rate)
    vib_depth = trait.uniform(15, 60) * np.clip((since - trait.uniform(0.08, 0.25)) / 0.25, 0, 1)
    cents = vib_depth * np.sin(vib_phase)
    knots = np.arange(0, tc[-1] + 0.1, 0.05)
    cents += np.interp(tc, knots, rng.normal(0, 6, len(knots)))
    f0 = midi_to_hz(midi + cents / 100.0)
    # Glottal-like source: a harmonic series with a random spectral tilt.
    f0_max = float(f0.max()) * 1.02
    n_harm = max(1, min(120, int(0.45 * sample_rate / f0_max)))
    k = np.arange(1, n_harm + 1)
    table = harmonic_table(k ** -trait.uniform(0.9, 1.4), rng.normal(0, 0.3, n_harm))
    env = clock.up(env)
    source = oscillate(table, f0[None, :], clock, rng)[0] * env
    breath = rng.standard_normal(n, dtype=np.float32)
    source += breath * (trait.uniform(0.02, 0.06) * (0.2 + env))
    # Vowel formants per note, gliding between notes; F1 rises to stay above f0.
    table_f = _MALE_FORMANTS if singer.gender == "male" else _FEMALE_FORMANTS
    tract = trait.uniform(0.94, 1.06)
    vowels = rng.integers(0, len(table_f), len(pitch))
    per_note = table_f[vowels] * tract * rng.uniform(0.96, 1.04, (len(pitch), 3))
    per_note[:, 0] = np.maximum(per_note[:, 0], 1.1 * midi_to_hz(filled))
    f4 = (3400.0 if singer.gender == "male" else 4000.0) * tract
    per_note = np.column_stack([per_note, np.full(len(pitch), f4)])
    per_note = np.minimum(per_note, 0.45 * sample_rate)
    glide = trait.uniform(0.03, 0.08)

    def frame_formants(times: np.ndarray) -> np.ndarray:
        # Linear glide from the previous note's vowel over `glide` seconds after an onset.
        j = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(starts) - 1)
        w = np.clip((times - starts[j]) / glide, 0, 1)[:, None]
        return per_note[np.maximum(j - 1, 0)] * (1 - w) + per_note[j] * w

    bandwidths = np.array([70.0, 90.0, 130.0, 180.0]) * trait.uniform(0.8, 1.3)
    voice = formant_filter(source, sample_rate, frame_formants, bandwidths)
    # Consonants: short high-passed noise bursts at some note onsets.
    voice /= rms(voice) + 1e-9
    for s in starts[sung]:
        if rng.random() < 0.5:
            a = int(max(s, 0.0) * sample_rate)
            width = int(rng.uniform(0.02, 0.06) * sample_rate)
            if a >= n or width < 2:
                continue
            b = min(n, a + width)
            burst = np.diff(rng.standard_normal(width + 1, dtype=np.float32)) * np.hanning(width)
            voice[a:b] += burst[: b - a] * (0.5 * rng.uniform(0.2, 0.6))
    return voice / (rms(voice) + 1e-9)


def harmony(
    melody: tuple[np.ndarray, np.ndarray, np.ndarray],
    song: Song,
    singer: Singer,
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


def voice_stem(
    label: int,
    song: Song,
    clock: Clock,
    rng: np.random.Generator,
    cast: Sequence[Singer] | None = None,
) -> np.ndarray:
    """The dry stereo voice stem ``[2, n]`` for ``label`` (zeros for class 0).

    ``cast`` are the singers, the lead first; when None they are drawn from ``rng``
    (for class 3, two or three of random genders).
    """
    n = clock.n
    if label == 0:
        return np.zeros((2, n), dtype=np.float32)
    singers: Sequence[Singer | str]
    if cast is not None:
        singers = cast
    elif label == 1:
        singers = ["male"]
    elif label == 2:
        singers = ["female"]
    else:
        count = 2 if rng.random() < 0.65 else 3
        singers = [("male", "female")[int(rng.integers(2))] for _ in range(count)]
    out = np.zeros((2, n), dtype=np.float32)
    lead_melody = None
    for i, who in enumerate(singers):
        singer = draw_singer(who, rng) if isinstance(who, str) else who
        if lead_melody is None:
            melody = lead_melody = draw_melody(song, rng, singer.low, singer.high, 0.12)
        elif rng.random() < 0.6:
            melody = harmony(lead_melody, song, singer, rng)
        else:
            melody = draw_melody(song, rng, singer.low, singer.high, 0.15)
        stem = sing(singer, melody, clock, rng)
        level = 1.0 if i == 0 else 10 ** (rng.uniform(-4, 0) / 20)
        position = rng.uniform(-0.15, 0.15) if i == 0 else rng.uniform(-0.6, 0.6)
        out += pan(stem * level, position)
    return out
