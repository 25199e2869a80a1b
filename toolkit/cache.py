"""The on-disk cache: content hashes, per-clip arrays, and contiguous per-split arrays.

Every entry is keyed by a hash of what produced it, so a key names its content:
a clip's stem by (file content, decode settings, separator settings and
version), its features by (stem key, feature settings and version), and a
split's array by the ordered list of its clips' feature keys. Writes go to a
temporary file renamed into place, so a killed run leaves no half entry and
loses no finished one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def settings_key(*parts: Any) -> str:
    """A stable hex digest of JSON-serialisable parts."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def file_digest(path: Path) -> str:
    """The sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: Path, write: Any) -> None:
    """Write ``path`` through ``write(handle)`` into a temporary file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ContentHashes:
    """Content digests of files, remembered by (path, size, mtime) between runs."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._memo: dict[str, str] = {}
        if self.path.is_file():
            try:
                self._memo = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self._memo = {}
        self._dirty = False

    def digest(self, file: Path) -> str:
        """The content digest of ``file``."""
        stat = Path(file).stat()
        memo_key = f"{Path(file).resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        found = self._memo.get(memo_key)
        if found is None:
            found = file_digest(Path(file))
            self._memo[memo_key] = found
            self._dirty = True
        return found

    def save(self) -> None:
        """Persist the memo (merging with entries other processes wrote meanwhile)."""
        if not self._dirty:
            return
        merged = dict(self._memo)
        if self.path.is_file():
            with contextlib.suppress(OSError, ValueError):
                merged = {**json.loads(self.path.read_text()), **self._memo}
        payload = json.dumps(merged).encode()
        atomic_write(self.path, lambda h: h.write(payload))
        self._dirty = False


class ClipStore:
    """One array per key in a folder; the key is the content's name."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def has(self, key: str) -> bool:
        """Whether ``key`` is stored."""
        return self._path(key).is_file()

    def get(self, key: str) -> np.ndarray:
        """The array stored under ``key``."""
        return np.load(self._path(key))

    def put(self, key: str, array: np.ndarray) -> None:
        """Store ``array`` under ``key``, atomically."""
        atomic_write(self._path(key), lambda h: np.save(h, array))

    def count(self) -> int:
        """How many arrays are stored."""
        return sum(1 for _ in self.folder.glob("*/*.npy")) if self.folder.is_dir() else 0


class SplitStore:
    """Contiguous feature arrays of whole splits (one memmap per split) with their index."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def key(self, clip_keys: Sequence[str]) -> str:
        """The key of the split made of these clips, in this order."""
        return settings_key(list(clip_keys))

    def has(self, key: str) -> bool:
        """Whether the split ``key`` is assembled."""
        return (self.folder / key / "index.json").is_file()

    def open(self, key: str) -> np.ndarray:
        """The split's features, memory-mapped read-only, ``[N, C, F, T]``."""
        return np.load(self.folder / key / "features.npy", mmap_mode="r")

    def index(self, key: str) -> dict[str, Any]:
        """The split's index: ids, clip keys, shape, dtype."""
        return json.loads((self.folder / key / "index.json").read_text())

    def assemble(
        self, key: str, ids: Sequence[str], clip_keys: Sequence[str], arrays: Iterable[np.ndarray]
    ) -> np.ndarray:
        """Write the per-clip arrays into one contiguous float16 array and index it."""
        target = self.folder / key
        target.mkdir(parents=True, exist_ok=True)
        tmp = target / f".features.{os.getpid()}.npy"
        out: np.memmap | None = None
        for i, array in enumerate(arrays):
            if out is None:
                shape = (len(ids), *array.shape)
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
            out[i] = array
        if out is None:
            raise ValueError("cannot assemble an empty split")
        out.flush()
        shape = list(out.shape)
        del out
        os.replace(tmp, target / "features.npy")
        index = {"ids": list(ids), "clip_keys": list(clip_keys), "shape": shape, "dtype": "float16"}
        payload = json.dumps(index).encode()
        atomic_write(target / "index.json", lambda h: h.write(payload))
        return self.open(key)
