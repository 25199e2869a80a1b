"""The on-disk cache: content hashes, per-clip arrays, and contiguous per-split arrays.

Every entry is keyed by a hash of what produced it, so a key names its content:
a clip's stem by (file content, decode settings, separator settings and
version), its features by (stem key, feature settings and version), and a
split's array by the ordered list of its clips' feature keys. Writes go to a
temporary file renamed into place, so a killed run leaves no half entry and
loses no finished one; a write that finds the disk full is a
:class:`~toolkit.disk.DiskFullError` and leaves nothing behind.

A cache is a cache: an entry that cannot be read (truncated by a disk error or
an interrupted copy, say) or whose shape or dtype is not what its key promises
is discarded, reported through the store's ``on_damaged`` callback, and
computed again by its caller.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.disk import DiskFullError, is_disk_full
from toolkit.errors import error_line
from toolkit.files import temporary_file

OnDamaged = Callable[[Path, str], None]
"""Told of every discarded cache entry: its path and what was wrong with it."""

READ_ERRORS = (OSError, ValueError, EOFError)
"""What reading a damaged ``.npy`` or JSON file raises (numpy and json say ValueError)."""


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
    """Write ``path`` through ``write(handle)`` into a temporary file renamed into place.

    The file has a new file's mode (the umask's, :mod:`toolkit.files`). A full disk is a
    :class:`~toolkit.disk.DiskFullError` naming the folder; the temporary file is removed
    whatever happens.
    """
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temporary_file(path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if not isinstance(exc, DiskFullError) and is_disk_full(exc):
            raise DiskFullError(path.parent) from None
        raise


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a ``.npy`` file declares; a ValueError when its size disagrees
    (a truncated or padded file)."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise ValueError(f".npy format version {version} is not one numpy.save writes here")
        expected = handle.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        size = os.fstat(handle.fileno()).st_size
    if dtype.hasobject:
        raise ValueError("holds Python objects")
    if size != expected:
        raise ValueError(f"{size} bytes where its header promises {expected}")
    return tuple(shape), dtype


def _read_memo(path: Path) -> dict[str, str]:
    """A content-hash memo file's mapping; a ValueError when it is not one."""
    memo = json.loads(path.read_text())
    if not isinstance(memo, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in memo.items()
    ):
        raise ValueError("not a mapping of file keys to digests")
    return memo


class ContentHashes:
    """Content digests of files, remembered by (path, size, mtime) between runs.

    A memo file that cannot be read is discarded (``on_damaged``) and rebuilt.
    """

    def __init__(self, path: Path, on_damaged: OnDamaged | None = None) -> None:
        self.path = Path(path)
        self._memo: dict[str, str] = {}
        self._dirty = False
        if self.path.is_file():
            try:
                self._memo = _read_memo(self.path)
            except READ_ERRORS as exc:
                self.path.unlink(missing_ok=True)
                self._dirty = True
                if on_damaged is not None:
                    on_damaged(self.path, error_line(exc, typed=True))

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
            with contextlib.suppress(*READ_ERRORS):
                merged = {**_read_memo(self.path), **self._memo}
        payload = json.dumps(merged).encode()
        atomic_write(self.path, lambda h: h.write(payload))
        self._dirty = False


class ClipStore:
    """One array per key in a folder; the key is the content's name.

    An entry that cannot be read is removed and reported to ``on_damaged``.
    """

    def __init__(self, folder: Path, on_damaged: OnDamaged | None = None) -> None:
        self.folder = Path(folder)
        self.on_damaged = on_damaged

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def has(self, key: str) -> bool:
        """Whether ``key`` is stored (readable or not: see :meth:`header`)."""
        return self._path(key).is_file()

    def header(self, key: str) -> tuple[tuple[int, ...], np.dtype] | None:
        """The shape and dtype of the array under ``key``; ``None`` when it is missing or
        damaged (a damaged entry is discarded)."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return npy_header(path)
        except READ_ERRORS as exc:
            self.discard(key, error_line(exc, typed=True))
            return None

    def get(self, key: str) -> np.ndarray:
        """The array stored under ``key``."""
        return np.load(self._path(key))

    def load(self, key: str) -> np.ndarray | None:
        """The array under ``key``; ``None`` when it is missing or cannot be read (a damaged
        entry is discarded)."""
        try:
            return self.get(key)
        except FileNotFoundError:
            return None
        except READ_ERRORS as exc:
            self.discard(key, error_line(exc, typed=True))
            return None

    def discard(self, key: str, reason: str) -> None:
        """Remove the entry under ``key``, telling ``on_damaged`` why."""
        path = self._path(key)
        path.unlink(missing_ok=True)
        if self.on_damaged is not None:
            self.on_damaged(path, reason)

    def put(self, key: str, array: np.ndarray) -> None:
        """Store ``array`` under ``key``, atomically (a full disk names the store's folder)."""
        try:
            atomic_write(self._path(key), lambda h: np.save(h, array))
        except DiskFullError:
            raise DiskFullError(self.folder) from None

    def count(self) -> int:
        """How many arrays are stored."""
        return sum(1 for _ in self.folder.glob("*/*.npy")) if self.folder.is_dir() else 0


class SplitStore:
    """Contiguous feature arrays of whole splits (one memmap per split) with their index.

    A split whose files cannot be read, or disagree with its index, is removed
    and reported to ``on_damaged``.
    """

    def __init__(self, folder: Path, on_damaged: OnDamaged | None = None) -> None:
        self.folder = Path(folder)
        self.on_damaged = on_damaged

    def key(self, clip_keys: Sequence[str]) -> str:
        """The key of the split made of these clips, in this order."""
        return settings_key(list(clip_keys))

    def has(self, key: str) -> bool:
        """Whether the split ``key`` is assembled (readable or not: see :meth:`load`)."""
        return (self.folder / key / "index.json").is_file()

    def open(self, key: str) -> np.ndarray:
        """The split's features, memory-mapped read-only, ``[N, C, F, T]``."""
        return np.load(self.folder / key / "features.npy", mmap_mode="r")

    def load(self, key: str, clip_keys: Sequence[str]) -> np.ndarray | None:
        """The split's features if assembled and sound (its index names ``clip_keys`` and
        the array matches it); ``None`` otherwise (a damaged split is discarded)."""
        if not self.has(key):
            return None
        try:
            index = self.index(key)
            if not isinstance(index, dict) or index.get("clip_keys") != list(clip_keys):
                raise ValueError("its index does not list the split's clips")
            array = self.open(key)
            if list(array.shape) != index.get("shape") or array.dtype != np.float16:
                raise ValueError(
                    f"array {list(array.shape)} {array.dtype}, index {index.get('shape')}"
                )
            return array
        except READ_ERRORS as exc:
            self.discard(key, error_line(exc, typed=True))
            return None

    def discard(self, key: str, reason: str) -> None:
        """Remove split ``key``'s folder, telling ``on_damaged`` why."""
        shutil.rmtree(self.folder / key, ignore_errors=True)
        if self.on_damaged is not None:
            self.on_damaged(self.folder / key, reason)

    def index(self, key: str) -> dict[str, Any]:
        """The split's index: ids, clip keys, shape, dtype."""
        return json.loads((self.folder / key / "index.json").read_text())

    def assemble(
        self, key: str, ids: Sequence[str], clip_keys: Sequence[str], arrays: Iterable[np.ndarray]
    ) -> np.ndarray:
        """Write the per-clip arrays into one contiguous float16 array and index it.

        The array's room is reserved on disk first, so a full disk is a
        :class:`~toolkit.disk.DiskFullError` saying how much it needs, and a
        failed assembly leaves no file behind.
        """
        target = self.folder / key
        tmp = target / f".features.{os.getpid()}.npy"
        out: np.memmap | None = None
        try:
            target.mkdir(parents=True, exist_ok=True)
            for i, array in enumerate(arrays):
                if out is None:
                    shape = (len(ids), *array.shape)
                    _reserve(tmp, shape)
                    out = np.lib.format.open_memmap(tmp, mode="r+")
                out[i] = array
            if out is None:
                raise ValueError("cannot assemble an empty split")
            out.flush()
            shape = list(out.shape)
            del out
            os.replace(tmp, target / "features.npy")
            index = {
                "ids": list(ids),
                "clip_keys": list(clip_keys),
                "shape": shape,
                "dtype": "float16",
            }
            payload = json.dumps(index).encode()
            atomic_write(target / "index.json", lambda h: h.write(payload))
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if not (target / "index.json").is_file():
                shutil.rmtree(target, ignore_errors=True)
            if not isinstance(exc, DiskFullError) and is_disk_full(exc):
                raise DiskFullError(self.folder) from None
            raise
        return self.open(key)


def _reserve(path: Path, shape: tuple[int, ...]) -> None:
    """Create ``path`` as a float16 ``.npy`` of ``shape`` whose blocks are allocated now.

    A memory-mapped write to a sparse file on a full disk kills the process
    (SIGBUS); allocating first turns that into an error at the start.
    """
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)), "fortran_order": False}
    nbytes = int(np.prod(shape, dtype=np.int64)) * 2
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {**header, "shape": shape})
        offset = handle.tell()
        handle.flush()
        try:
            os.posix_fallocate(handle.fileno(), offset, max(nbytes, 1))
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFullError(path.parent.parent, needed=nbytes) from None
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            handle.truncate(offset + nbytes)  # no fallocate here: a sparse file, as before
