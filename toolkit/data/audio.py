"""Decoding clips into fixed-length float waveforms at a chosen rate and channel count."""

from __future__ import annotations

import os
import re
import struct
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import soundfile as sf

from toolkit.errors import DataError, error_line

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".oga", ".opus", ".aiff", ".aif")
"""File extensions an id may map to, in order of preference."""


CHATTY_EXTENSIONS = (".mp3",)
"""Formats whose decoder (libmpg123 inside libsndfile) prints notes to stderr itself."""

DECODER_CHATTER = re.compile(r"^(Note: |Warning: |\[src/libmpg123/)")
"""Lines the MP3 decoder writes to stderr on its own; every other captured line is passed on."""

_stderr_lock = threading.Lock()

_listed_in: dict[Path, Path] = {}
"""The CSV that names each clip found through one (see :func:`note_listing`)."""


def note_listing(files: list[Path], csv_path: Path) -> None:
    """Remember that ``csv_path`` names each of ``files``, so that a clip which cannot be used
    is reported with the row to remove as well."""
    _listed_in.update(dict.fromkeys(files, csv_path))


def remedy(path: Path) -> str:
    """What to do about a clip that cannot be used: replace it or, if a CSV names it, remove
    it and its row (removing the file alone only makes its id miss an audio file)."""
    listing = _listed_in.get(Path(path))
    if listing is None:
        return "replace or remove the file"
    shown = listing.name if listing.parent == Path(path).parent.parent else str(listing)
    return f"replace the file, or remove it and its row from {shown}"


@contextmanager
def decoder_notes() -> Iterator[list[str]]:
    """Capture what C code writes to stderr meanwhile; yields the decoder's notes, passes the rest.

    One thread at a time: file descriptor 2 is the whole process's.
    """
    notes: list[str] = []
    with _stderr_lock, tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            yield notes
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            other = []
            for line in capture.read().decode(errors="replace").splitlines(keepends=True):
                (notes if DECODER_CHATTER.match(line) else other).append(line.strip())
            if other:  # e.g. a progress line written by another thread meanwhile
                os.write(2, ("\n".join(other) + "\n").encode())


def _reason(exc: Exception, path: Path, notes: list[str]) -> str:
    """What is wrong with a file libsndfile could not read, in words about the file."""
    message = error_line(exc)
    if "does not exist or is not a regular file" in message or "Format not recognised" in message:
        return "not an audio file in a known format, or a damaged one"
    damage = next((n for n in notes if "Illegal Audio-MPEG-Header" in n or "error:" in n), None)
    if damage is not None:
        note = damage.removeprefix("Note: ").rstrip(".")
        return f"damaged {path.suffix.lstrip('.').upper()} stream ({note})"
    return message.removeprefix(f"Error opening {str(path)!r}: ")


def wav_promised_frames(path: Path) -> int | None:
    """The frames a RIFF WAV file's header says its data chunk holds (``None``: not such a
    file, or a header that leaves the length open). Reads the header only."""
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = 0
        while chunk := handle.read(8):
            if len(chunk) < 8:
                return None
            name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if name == b"data":
                if block_align == 0 or size in (0, 0xFFFFFFFF):  # streamed: length unknown
                    return None
                return size // block_align
            body = handle.read(size + size % 2)
            if name == b"fmt " and len(body) >= 14:
                block_align = struct.unpack("<H", body[12:14])[0]
    return None


def _warn_if_cut(path: Path, promised: int | None, found: int, rate: int) -> None:
    """A warning line when the clip's data ends before its header says (it is zero-padded)."""
    if promised is None or found >= promised:
        return
    from toolkit.progress import warn  # here: decoding needs no console until it warns

    warn(
        f"{path}: audio ends early: its header promises {promised / rate:.2f} s "
        f"({promised} frames), the file holds {found / rate:.2f} s ({found} frames); "
        "the rest is taken as silence"
    )


def decode(path: Path) -> tuple[np.ndarray, int]:
    """The clip's samples as float32 ``[channels, samples]`` and its sample rate.

    A file that cannot be decoded is a one-line DataError saying what is wrong
    with it; the decoder's own notes on stderr are silenced. A file whose data
    ends before its header says is decoded as it is, with a warning.
    """
    path = Path(path)
    quiet = decoder_notes() if path.suffix.lower() in CHATTY_EXTENSIONS else nullcontext([])
    try:
        with quiet as notes, sf.SoundFile(str(path)) as sound:
            data = sound.read(dtype="float32", always_2d=True)
            rate = sound.samplerate
            promised: int | None = sound.frames
            if sound.format in ("WAV", "WAVEX"):  # libsndfile counts a cut WAV's frames by size
                promised = wav_promised_frames(path) or promised
            elif path.suffix.lower() in CHATTY_EXTENSIONS:  # an MP3's count is an estimate
                promised = None
    except Exception as exc:  # noqa: BLE001 - libsndfile reports every failure as its own type
        if not path.is_file():
            raise DataError(f"{path}: audio file not found") from None
        reason = _reason(exc, path, notes).rstrip(". ")
        raise DataError(f"{path}: cannot decode audio: {reason}; {remedy(path)}") from None
    if data.shape[0] == 0:
        raise DataError(f"{path}: empty audio clip (0 samples); {remedy(path)}")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: audio holds NaN or infinite samples; {remedy(path)}")
    _warn_if_cut(path, promised, data.shape[0], int(rate))
    return np.ascontiguousarray(data.T), int(rate)


def resample(wave: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """``wave [C, T]`` resampled from ``rate`` to ``target_rate`` (torchaudio, sinc)."""
    if rate == target_rate:
        return wave
    import torch  # here: reading a competition's files needs no torch
    import torchaudio.functional as AF

    divisor = np.gcd(rate, target_rate)
    out = AF.resample(torch.from_numpy(wave), rate // divisor, target_rate // divisor)
    return out.numpy()


def fix_channels(wave: np.ndarray, channels: int) -> np.ndarray:
    """``wave [C, T]`` with ``channels`` channels: mono is duplicated, extra channels averaged."""
    have = wave.shape[0]
    if have == channels:
        return wave
    if channels == 1:
        return wave.mean(axis=0, keepdims=True)
    if have == 1:
        return np.repeat(wave, channels, axis=0)
    mono = wave.mean(axis=0, keepdims=True)
    return np.repeat(mono, channels, axis=0)


def fix_length(wave: np.ndarray, length: int, crop: str = "start") -> np.ndarray:
    """``wave [C, T]`` cropped or zero-padded at the end to ``length`` samples."""
    have = wave.shape[-1]
    if have == length:
        return wave
    if have > length:
        start = (have - length) // 2 if crop == "center" else 0
        return wave[..., start : start + length]
    return np.pad(wave, ((0, 0), (0, length - have)))


def load_clip(
    path: Path, sample_rate: int, channels: int, duration: float, crop: str = "start"
) -> np.ndarray:
    """The clip decoded, resampled, channel-fixed and cut to ``duration`` seconds, float32."""
    wave, rate = decode(path)
    # Crop before resampling so long files cost only what is kept.
    keep = int(np.ceil(duration * rate)) + 64
    if wave.shape[-1] > keep:
        wave = fix_length(wave, keep, crop)
    wave = resample(fix_channels(wave, channels), rate, sample_rate)
    return fix_length(wave, int(round(duration * sample_rate)), crop).astype(np.float32)
