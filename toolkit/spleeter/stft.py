"""Spleeter's framing of a waveform, exactly as ``spleeter.model.EstimatorSpecBuilder``.

The original prepends one frame of zeros (``frame_length`` samples) to the waveform,
takes ``tf.signal.stft`` with a periodic Hann window and ``pad_end=True`` (frames
every ``frame_step`` samples while a frame starts inside the signal, the last ones
zero-padded), and inverts with ``tf.signal.inverse_stft`` (inverse real FFT, the
same window, overlap-add, no normalisation) times a window compensation of 2/3,
keeping samples ``frame_length .. frame_length + length``.

Here any run of frames can be computed on its own from the waveform, and its inverse
overlap-added into an output buffer, so a long clip is processed a piece at a time
with the same result as all at once. Frame ``k`` of a clip covers samples
``k * step - frame_length .. k * step`` of the original waveform.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from toolkit.spleeter.config import TWO_STEMS, SpleeterConfig


def frame_count(n_samples: int, cfg: SpleeterConfig = TWO_STEMS) -> int:
    """Frames of a clip of ``n_samples``: ``ceil((n_samples + frame_length) / frame_step)``."""
    return math.ceil((n_samples + cfg.frame_length) / cfg.frame_step)


def output_length(n_frames: int, cfg: SpleeterConfig = TWO_STEMS) -> int:
    """Samples of the overlap-added inverse of ``n_frames`` frames."""
    return (n_frames - 1) * cfg.frame_step + cfg.frame_length


def window(cfg: SpleeterConfig = TWO_STEMS, device: torch.device | str = "cpu") -> torch.Tensor:
    """The periodic Hann window of ``frame_length`` samples."""
    return torch.hann_window(cfg.frame_length, periodic=True, dtype=torch.float32, device=device)


def frame_samples(
    wave: torch.Tensor, first: int, count: int, cfg: SpleeterConfig = TWO_STEMS
) -> torch.Tensor:
    """The samples under frames ``first .. first + count`` of ``wave [C, L]``.

    Returns ``[C, (count - 1) * step + frame_length]``: the waveform with the
    original's leading frame of zeros and trailing zero padding, cut to those frames.
    """
    start = first * cfg.frame_step - cfg.frame_length
    total = output_length(count, cfg)
    length = wave.shape[-1]
    lo = min(max(start, 0), length)
    hi = max(min(start + total, length), lo)
    before = min(max(lo - start, 0), total)
    after = total - before - (hi - lo)
    piece = wave[..., lo:hi]
    return F.pad(piece, (before, after)) if before or after else piece


def stft(
    samples: torch.Tensor, win: torch.Tensor, n_bins: int, cfg: SpleeterConfig = TWO_STEMS
) -> torch.Tensor:
    """Complex STFT ``[C, frames, n_bins]`` of framed ``samples [C, S]`` (no centring)."""
    spec = torch.stft(
        samples,
        n_fft=cfg.frame_length,
        hop_length=cfg.frame_step,
        window=win,
        center=False,
        onesided=True,
        return_complex=True,
    )
    return spec[..., :n_bins, :].transpose(-1, -2)


def inverse_frames(
    spec: torch.Tensor, win: torch.Tensor, cfg: SpleeterConfig = TWO_STEMS
) -> torch.Tensor:
    """Windowed inverse FFT of each frame: ``[C, frames, bins]`` complex to ``[C, frames, N]``.

    Bins above those given are zero, as the original's zero mask extension makes them.
    """
    return torch.fft.irfft(spec, n=cfg.frame_length, dim=-1) * win


def overlap_add(
    out: torch.Tensor, frames: torch.Tensor, first: int, cfg: SpleeterConfig = TWO_STEMS
) -> None:
    """Add ``frames [C, k, N]`` into ``out [C, S]`` at frame position ``first``, in place.

    ``out`` is in the padded coordinates of :func:`frame_samples` (sample 0 is the
    start of frame 0, i.e. ``frame_length`` samples before the clip).
    """
    step = cfg.frame_step
    ratio = cfg.frame_length // step
    count = frames.shape[-2]
    if cfg.frame_length % step:
        for k in range(count):
            start = (first + k) * step
            out[..., start : start + cfg.frame_length] += frames[..., k, :]
        return
    # With frame_length = ratio * step, frame k's j-th block of `step` samples lands
    # on block first + k + j: sum the shifted block sequences.
    blocks = frames.reshape(*frames.shape[:-2], count, ratio, step)
    acc = out[..., first * step : (first + count + ratio - 1) * step]
    acc = acc.view(*acc.shape[:-1], count + ratio - 1, step)
    for j in range(ratio):
        acc[..., j : j + count, :] += blocks[..., :, j, :]
