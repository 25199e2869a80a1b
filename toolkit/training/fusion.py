"""Several feature streams made into one array per clip, as the backbone takes them.

A convolutional backbone (``streams: stack``, the default) gets the streams
stacked as channels, so they must share one ``[F, T]`` shape (e.g. mel
spectrograms of the vocals and of the mixture). An embedding head
(``streams: concat``) gets each stream pooled over its windows, mean and
standard deviation, concatenated into one vector per clip: ``[N, 1, D, 1]``.
A backbone that takes each stream as it is (``streams: pack``: a fine-tuned
network on the clip's waveform beside frozen embeddings) gets every stream
flattened and the results concatenated: ``[N, 1, 1, D1 + D2 + ...]``; the
:class:`Layout` it is given says where each stream lies, and cuts a batch back
into the streams.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from toolkit.errors import DataError

if TYPE_CHECKING:
    import torch

MODES = ("stack", "concat", "pack")
"""How a backbone takes several streams (its registration's ``streams``)."""


def fuse(arrays: Sequence[np.ndarray], mode: str, labels: Sequence[str]) -> np.ndarray:
    """One ``[N, C, F, T]`` array from the streams' arrays (one stream is returned as is)."""
    if len(arrays) == 1:
        return arrays[0]
    if mode == "stack":
        shapes = {a.shape[2:] for a in arrays}
        if len(shapes) > 1:
            found = ", ".join(f"{n} {a.shape[1:]}" for n, a in zip(labels, arrays, strict=True))
            raise DataError(f"features: streams of different shapes cannot be stacked: {found}")
        return np.concatenate([np.asarray(a) for a in arrays], axis=1)
    if mode == "pack":
        return np.concatenate([np.asarray(a).reshape(len(a), 1, 1, -1) for a in arrays], axis=3)
    return np.concatenate([pooled(a) for a in arrays], axis=2)


def pooled(features: np.ndarray) -> np.ndarray:
    """``[N, C, F, T]`` as its mean and spread over the windows ``T``: ``[N, 1, 2*C*F, 1]``."""
    x = np.asarray(features, dtype=np.float32).reshape(len(features), -1, features.shape[-1])
    stats = np.concatenate([x.mean(axis=2), x.std(axis=2)], axis=1)
    return stats[:, None, :, None]


def pooled_batch(features: torch.Tensor) -> torch.Tensor:
    """A batch ``[B, C, F, T]`` as :func:`pooled` makes it, flat: ``[B, 2*C*F]`` (for a
    backbone that pools the streams it is given packed)."""
    import torch  # noqa: PLC0415 - numpy-only callers never get here

    x = features.float().reshape(len(features), -1, features.shape[-1])
    return torch.cat([x.mean(dim=2), x.std(dim=2, correction=0)], dim=1)


@dataclass(frozen=True)
class Stream:
    """One feature stream as it reaches the backbone: its recipe block and its shape per clip."""

    block: Mapping[str, Any]
    """The stream's resolved feature block (plugin ``name``, its parameters, ``input``)."""
    shape: tuple[int, ...]
    """``(C, F, T)`` of one clip's features."""

    @property
    def name(self) -> str:
        """The feature plugin's name."""
        return str(self.block["name"])

    @property
    def input(self) -> str:
        """What the stream reads: ``separated`` (the separator's output) or ``mixture``."""
        return str(self.block.get("input", "separated"))

    @property
    def size(self) -> int:
        """Values per clip."""
        return math.prod(self.shape)


@dataclass(frozen=True)
class Layout:
    """Where each feature stream lies in the array :func:`fuse` made (one row per clip).

    ``stack``: stream ``i`` is a run of channels; ``pack`` (and a single stream): a
    run of the flattened row. ``concat`` pools the streams, so they cannot be cut
    back out (:meth:`part` refuses).
    """

    mode: str
    streams: tuple[Stream, ...]
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown stream mode {self.mode!r}; expected one of {MODES}")
        unit = (lambda s: s.shape[0]) if self.stacked else (lambda s: s.size)
        starts = np.cumsum([0, *(unit(s) for s in self.streams)]).tolist()
        object.__setattr__(self, "_starts", tuple(int(v) for v in starts))

    @classmethod
    def of(
        cls, mode: str, blocks: Sequence[Mapping[str, Any]], arrays: Sequence[np.ndarray]
    ) -> Layout:
        """The layout of ``arrays`` (each ``[N, C, F, T]``, one per block) fused by ``mode``."""
        streams = tuple(
            Stream(dict(b), tuple(int(v) for v in a.shape[1:]))
            for b, a in zip(blocks, arrays, strict=True)
        )
        return cls(mode, streams)

    @property
    def stacked(self) -> bool:
        """Whether the streams are channels of one map (several streams, ``stack``)."""
        return self.mode == "stack" and len(self.streams) > 1

    def find(self, name: str, input: str | None = None) -> list[int]:
        """Indices of the streams of feature plugin ``name`` (reading ``input``, if given)."""
        return [
            i
            for i, s in enumerate(self.streams)
            if s.name == name and (input is None or s.input == input)
        ]

    def part(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """Stream ``index`` of a batch ``x`` laid out so: ``[B, C, F, T]``, as it was cached."""
        stream = self.streams[index]
        start, stop = self._span(index)
        if self.stacked:
            return x[:, start:stop]
        return x.flatten(1)[:, start:stop].reshape(len(x), *stream.shape)

    def parts(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stream of a batch ``x``, in order."""
        return [self.part(x, i) for i in range(len(self.streams))]

    def replace(self, x: torch.Tensor, new: Mapping[int, torch.Tensor]) -> torch.Tensor:
        """A batch like ``x`` whose streams ``new`` (index -> ``[B, C, F, T]``) are replaced."""
        import torch  # noqa: PLC0415 - numpy-only callers never get here

        for index in new:
            self._span(index)
        pieces = [new.get(i, self.part(x, i)) for i in range(len(self.streams))]
        if self.stacked:
            return torch.cat(pieces, dim=1)
        flat = torch.cat([p.reshape(len(x), -1) for p in pieces], dim=1)
        return flat.reshape(x.shape)

    def _span(self, index: int) -> tuple[int, int]:
        if self.mode == "concat" and len(self.streams) > 1:
            raise ValueError("streams fused by 'concat' are pooled: none can be cut back out")
        if not 0 <= index < len(self.streams):
            raise IndexError(f"no stream {index}: the layout has {len(self.streams)}")
        return self._starts[index], self._starts[index + 1]
