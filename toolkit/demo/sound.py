"""Synthetic song snippets in the report's four classes, as numpy arrays.

Every clip is a few seconds of a made-up song: chords, a bass line and drums in a
random key and tempo (:mod:`toolkit.demo.song`, :mod:`toolkit.demo.instruments`),
with zero, one or several sung melodies on top (:mod:`toolkit.demo.voices`), in a
shared room and mixed so the accompaniment is loud enough to make the task
non-trivial. This module holds the room, the mix, :func:`synthesize_clip` (a song
of its own per clip) and :func:`synthesize_song_clip` (a stretch of a song shared
between clips, sung by singers shared between clips: :mod:`toolkit.demo.sources`).

Everything is numpy and everything random comes from the generator passed in; nothing
here touches files. Changing what a clip draws changes the demo competition's files,
so bump ``GENERATOR_VERSION`` in :mod:`toolkit.demo.competition` along with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from toolkit.demo.instruments import accompaniment
from toolkit.demo.oscillators import Clock, rms
from toolkit.demo.song import draw_song
from toolkit.demo.sources import SingerSource, SongSource
from toolkit.demo.voices import fixed_singer, voice_stem

DEFAULT_SAMPLE_RATE = 44100
"""Default sample rate of the clips (and the demo files), as in the report's competition."""

CLASS_NAMES = ("no voice", "male voice", "female voice", "several voices")
"""Class names by label index."""


# ----------------------------------------------------------------------------- the room


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


def _samples(label: int, sample_rate: int, duration: float, channels: int) -> int:
    """The number of samples of a clip; a ValueError for a bad label, duration or channels."""
    if label not in range(len(CLASS_NAMES)):
        raise ValueError(f"label must be 0..{len(CLASS_NAMES) - 1}, got {label}")
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, got {channels}")
    n = int(round(duration * sample_rate))
    if n < 1:
        raise ValueError(f"duration {duration} s is shorter than one sample")
    return n


def _mix(
    label: int,
    voice: np.ndarray,
    accomp: np.ndarray,
    sample_rate: int,
    channels: int,
    room: np.random.Generator,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(mixture, voice) of the dry stems ``[2, n]``: in the room (its wet levels and
    reverb drawn from ``room``), at a voice-to-accompaniment ratio and peak level drawn
    from ``rng``."""
    wet = np.array([room.uniform(0.15, 0.5), room.uniform(0.1, 0.35)])
    voice, accomp = _reverb(np.stack([voice, accomp]), sample_rate, room, wet)
    if channels == 1:
        voice = voice.mean(0, keepdims=True)
        accomp = accomp.mean(0, keepdims=True)
    ratio_db = rng.uniform(-6.0, 3.0)
    if label != 0:
        voice *= rms(accomp) / (rms(voice) + 1e-12) * 10 ** (ratio_db / 20)
    else:
        voice[:] = 0.0
    mixture = voice + accomp
    scale = 10 ** (rng.uniform(-6.0, -1.0) / 20) / (float(np.abs(mixture).max()) + 1e-12)
    return (mixture * scale).astype(np.float32), (voice * scale).astype(np.float32)


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
    from -6..+3 dB; the mixture peaks between -6 and -1 dBFS. Everything, the song and
    its singers included, is drawn from ``rng``.
    """
    n = _samples(label, sample_rate, duration, channels)
    clock = Clock.make(sample_rate, n)
    song = draw_song(rng, duration)
    voice = voice_stem(label, song, clock, rng)
    accomp = accompaniment(song, clock, rng)
    return _mix(label, voice, accomp, sample_rate, channels, rng, rng)


def synthesize_song_clip(
    label: int,
    song: SongSource,
    offset: float,
    singers: Sequence[SingerSource],
    rng: np.random.Generator,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    duration: float = 3.0,
    channels: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """(mixture, voice) like :func:`synthesize_clip`, of the stretch of ``song`` from
    ``offset`` seconds on, sung by ``singers`` (the lead first; none for class 0).

    The song's frame, accompaniment and room, and each singer's voice, come from their
    own generators, so clips of one song share them; ``rng`` draws the rest (melodies,
    the performance, levels). A ValueError when ``singers`` do not fit ``label``.
    """
    n = _samples(label, sample_rate, duration, channels)
    genders = [s.gender for s in singers]
    fits = {0: genders == [], 1: genders == ["male"], 2: genders == ["female"]}
    if not fits.get(label, len(genders) >= 2):
        raise ValueError(f"singers {genders} do not fit label {label} ({CLASS_NAMES[label]})")
    if not 0 <= offset <= song.length - duration:
        raise ValueError(f"offset {offset} s is outside the {song.length:g} s song")
    song_rng = song.rng()
    frame = draw_song(song_rng, song.length)
    accomp = accompaniment(frame, Clock.make(sample_rate, n, offset), song_rng, song.part_rng)
    cast = [fixed_singer(s.gender, s.rng()) for s in singers]
    voice = voice_stem(label, frame.window(offset, duration), Clock.make(sample_rate, n), rng, cast)
    return _mix(label, voice, accomp, sample_rate, channels, song_rng, rng)
