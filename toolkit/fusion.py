"""Several feature streams made into one array per clip, as the backbone takes them.

A convolutional backbone (``streams: stack``, the default) gets the streams
stacked as channels, so they must share one ``[F, T]`` shape (e.g. mel
spectrograms of the vocals and of the mixture). An embedding head
(``streams: concat``) gets each stream pooled over its windows, mean and
standard deviation, concatenated into one vector per clip: ``[N, 1, D, 1]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from toolkit.errors import DataError


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
    return np.concatenate([pooled(a) for a in arrays], axis=2)


def pooled(features: np.ndarray) -> np.ndarray:
    """``[N, C, F, T]`` as its mean and spread over the windows ``T``: ``[N, 1, 2*C*F, 1]``."""
    x = np.asarray(features, dtype=np.float32).reshape(len(features), -1, features.shape[-1])
    stats = np.concatenate([x.mean(axis=2), x.std(axis=2)], axis=1)
    return stats[:, None, :, None]
