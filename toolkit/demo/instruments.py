"""The accompaniment of a demo song: chords, bass, a melodic lead and drums.

Each part draws its pattern and timbre from the generator passed in and plays on the
song's frame, as stereo ``[2, n]`` float32.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from toolkit.demo.oscillators import (
    Clock,
    midi_to_hz,
    moving_average,
    note_envelope,
    oscillate,
    pan,
    rms,
    timbre_table,
)
from toolkit.demo.song import Song, draw_melody


def chord_instrument(song: Song, clock: Clock, rng: np.random.Generator) -> np.ndarray:
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
    idx, env = note_envelope(clock.tc, starts, ends, gains, **env_args)
    freqs = midi_to_hz(midi[idx].T)  # [V, m]
    freqs *= 2 ** (rng.uniform(-8, 8, (freqs.shape[0], 1)) / 1200)  # loose tuning, chorus
    table = timbre_table(kind, freqs, rng.uniform(1500, 6000), clock.sample_rate, rng)
    mono = oscillate(table, freqs, clock, rng).sum(0) * clock.up(env)
    stereo = pan(mono, rng.uniform(-0.5, 0.5))
    delay = int(rng.uniform(0.0, 0.015) * clock.sample_rate)  # Haas widening
    if delay:
        stereo[1, delay:] = stereo[1, :-delay].copy()
    return stereo


def bass(song: Song, clock: Clock, rng: np.random.Generator) -> np.ndarray:
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
    idx, env = note_envelope(
        clock.tc, times, ends, gains, 0.005, rng.uniform(0.15, 0.6), rng.uniform(0.2, 0.6), 0.03
    )
    freqs = midi_to_hz(midi[idx])[None, :]
    kind = str(rng.choice(["saw", "square", "triangle"]))
    table = timbre_table(kind, freqs, rng.uniform(300, 1500), clock.sample_rate, rng)
    mono = oscillate(table, freqs, clock, rng)[0] * clock.up(env)
    return pan(mono, rng.uniform(-0.1, 0.1))


def lead(song: Song, clock: Clock, rng: np.random.Generator) -> np.ndarray:
    """A melodic instrument in the voices' register (no formants), so melody alone is no tell."""
    low = rng.uniform(50, 64)
    starts, ends, pitch = draw_melody(song, rng, low, low + 12, 0.2)
    sung = ~np.isnan(pitch)
    filled = np.where(sung, pitch, np.nanmean(pitch) if sung.any() else 60.0)
    gains = np.where(sung, 1.0, 0.0)
    tc = clock.tc
    idx, env = note_envelope(
        tc, starts, ends, gains, rng.uniform(0.005, 0.05), 0.5, rng.uniform(0.3, 0.9), 0.05
    )
    midi = moving_average(filled[idx], int(0.02 * clock.sample_rate / clock.step))
    if rng.random() < 0.5:
        midi = midi + rng.uniform(0.1, 0.4) * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * tc)
    freqs = midi_to_hz(midi)[None, :]
    kind = str(rng.choice(["square", "saw", "pulse", "triangle", "bell"]))
    table = timbre_table(kind, freqs, rng.uniform(2000, 7000), clock.sample_rate, rng)
    mono = oscillate(table, freqs, clock, rng)[0] * clock.up(env)
    return pan(mono, rng.uniform(-0.6, 0.6))


def drums(song: Song, clock: Clock, rng: np.random.Generator) -> np.ndarray:
    """Kick, snare and hi-hat one-shots on a 16th-note grid, slightly humanised."""
    n, sr = clock.n, clock.sample_rate
    out = np.zeros((2, n), dtype=np.float32)
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
        stereo = pan(shot, position)
        times = (bar_starts[:, None] + step * np.array(steps)[None, :]).ravel()
        times = times + rng.normal(0, 0.004, len(times))
        for time in times:
            i = int(round((time - clock.start) * sr))
            a, b = max(i, 0), min(i + len(shot), n)
            if b > a:
                out[:, a:b] += stereo[:, a - i : b - i] * level * rng.uniform(0.6, 1.0)
    return out


def accompaniment(
    song: Song,
    clock: Clock,
    rng: np.random.Generator,
    part_rng: Callable[[int], np.random.Generator] | None = None,
) -> np.ndarray:
    """The accompaniment ``[2, n]``: one or two chord instruments, often bass and drums,
    sometimes a lead, each at unit RMS times its drawn level.

    ``rng`` draws which parts play and their levels; part ``i`` draws its notes and
    timbre from ``part_rng(i)``, or from ``rng`` too when that is None. With a generator
    of its own per part, the parts a song draws do not depend on the stretch played.
    """
    own = (lambda _: rng) if part_rng is None else part_rng
    parts = [(chord_instrument(song, clock, own(0)), 0.0)]
    if rng.random() < 0.4:
        parts.append((chord_instrument(song, clock, own(1)), rng.uniform(-6, -1)))
    if rng.random() < 0.9:
        parts.append((bass(song, clock, own(2)), rng.uniform(-3, 2)))
    if rng.random() < 0.3:
        parts.append((lead(song, clock, own(3)), rng.uniform(-6, 0)))
    if rng.random() < 0.8:
        parts.append((drums(song, clock, own(4)), rng.uniform(-4, 2)))
    accomp = np.zeros((2, clock.n), dtype=np.float32)
    for part, gain_db in parts:
        accomp += part / (rms(part) + 1e-9) * 10 ** (gain_db / 20)
    return accomp
