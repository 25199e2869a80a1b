"""Feature arrays as the trainer reads them: resident on the device, or a batch at a time.

Resident arrays are copied to the device once per array and device: seed copies
and folds that pass the same numpy array reuse its device tensor (a small cache
keyed by the array's identity, whose entry goes when the array is freed). On
the CPU a resident tensor shares the array's memory: nothing is copied.
Otherwise each batch is gathered in host memory and copied (on CUDA through
pinned memory, without waiting) one batch ahead of the step that uses it.

Batches come out as float32 on the device, whatever the array's dtype (the
feature cache stores float16).
"""

from __future__ import annotations

import warnings
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch

from toolkit.devices import to_device

T = TypeVar("T")


class DeviceArrays:
    """The device copies of the last few numpy arrays placed, each copied once.

    On the CPU nothing is copied: the tensor shares the array's memory. Elsewhere
    an entry lives while its array does and among the ``size`` most recently
    used (it never keeps the array alive); ``placed`` counts the copies made.
    The arrays must not be changed in place while they are in use.
    """

    def __init__(self, size: int = 4) -> None:
        """Keep at most ``size`` arrays' copies."""
        self.size = size
        self.placed = 0
        self._entries: OrderedDict[tuple[int, str], tuple[weakref.ref[np.ndarray], torch.Tensor]]
        self._entries = OrderedDict()

    def get(
        self, array: np.ndarray, device: torch.device, dtype: np.dtype | None = None
    ) -> torch.Tensor:
        """``array`` (converted to ``dtype`` if given) as a tensor on ``device``."""
        if device.type == "cpu":
            return host_tensor(np.asarray(array, dtype=dtype))
        key = (id(array), f"{device}:{dtype}")
        entry = self._entries.get(key)
        if entry is not None and entry[0]() is array:
            self._entries.move_to_end(key)
            return entry[1]
        # one plain copy: pinning a whole array would cost a host copy and keep it pinned
        tensor = host_tensor(np.asarray(array, dtype=dtype)).to(device)
        self.placed += 1
        entries = self._entries
        self._entries[key] = (weakref.ref(array, lambda _: entries.pop(key, None)), tensor)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return tensor

    def __len__(self) -> int:
        """Number of arrays whose copies are kept."""
        return len(self._entries)

    def clear(self) -> None:
        """Forget every copy (its device memory is freed with the last reference)."""
        self._entries.clear()


DEVICE_ARRAYS = DeviceArrays()
"""The process's resident arrays, shared by every training run in it."""


def host_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``array``'s memory (a contiguous copy if it is strided).

    A read-only array (a memory-mapped split) is shared too: tensors made from
    it are only read.
    """
    array = np.ascontiguousarray(array)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def prefetched(items: Iterator[T]) -> Iterator[T]:
    """``items``, each made one item ahead of its use (so its copy overlaps the step before)."""
    done = object()
    following = next(items, done)
    while following is not done:
        current, following = following, next(items, done)
        yield current  # type: ignore[misc]


class Features:
    """A feature array and its labels, read as float32 batches on ``device``.

    ``resident`` keeps both on the device for the whole run (through
    :data:`DEVICE_ARRAYS`); otherwise batches are gathered from host memory.
    """

    def __init__(
        self,
        x: np.ndarray,
        device: torch.device,
        *,
        resident: bool,
        labels: np.ndarray | None = None,
    ) -> None:
        """Read ``x`` (and ``labels``, if given: integer classes ``[N]``, or soft targets
        ``[N, K]`` read as float32) on ``device``."""
        self.x = x
        self.labels = labels
        self.device = device
        self.resident = resident
        self.label_dtype = np.dtype(np.int64 if labels is None or labels.ndim == 1 else np.float32)
        if resident:
            self.x_dev = DEVICE_ARRAYS.get(x, device)
            if labels is not None:
                self.labels_dev = DEVICE_ARRAYS.get(labels, device, self.label_dtype)

    def __len__(self) -> int:
        """Number of rows."""
        return len(self.x)

    def batches(self, index: Sequence[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """For each array of row numbers in ``index``, those rows and their labels."""
        if self.labels is None:
            raise ValueError("these features have no labels")
        if not self.resident:
            return prefetched(self._gathered(index))
        return self._selected(index)

    def chunks(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Every row in order, ``batch_size`` at a time."""
        starts = range(0, len(self.x), batch_size)
        if self.resident:
            return (self.x_dev[s : s + batch_size].float() for s in starts)
        return prefetched(
            to_device(host_tensor(np.asarray(self.x[s : s + batch_size], np.float32)), self.device)
            for s in starts
        )

    def _selected(self, index: Sequence[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not index:
            return
        # the epoch's row numbers cross to the device in one copy
        rows = to_device(torch.from_numpy(np.concatenate(index).astype(np.int64)), self.device)
        offset = 0
        for part in index:
            picked = rows[offset : offset + len(part)]
            offset += len(part)
            yield (
                self.x_dev.index_select(0, picked).float(),
                self.labels_dev.index_select(0, picked),
            )

    def _gathered(self, index: Sequence[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        assert self.labels is not None
        for part in index:
            x = host_tensor(np.asarray(self.x[part], dtype=np.float32))
            labels = torch.from_numpy(np.asarray(self.labels[part], dtype=self.label_dtype))
            yield to_device(x, self.device), to_device(labels, self.device)
