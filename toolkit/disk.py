"""A full disk, said in one line: which folder, how much room is left, what to do."""

from __future__ import annotations

import contextlib
import errno
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from toolkit.errors import ToolkitError

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
"""The errors a write gives when its file system (or the user's quota) has no room left."""

FULL_MESSAGES = ("database or disk is full", "no space left on device")
"""How libraries that wrap the error (SQLite, SQLAlchemy) say the same."""

SHORT_WRITE = re.compile(r"^\d+ requested and \d+ written$")
"""numpy's ``tofile`` (under ``np.save``) on a full disk: an OSError without an errno."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says a write found no room left on its file system."""
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        return True
    if isinstance(exc, OSError) and exc.errno is None and SHORT_WRITE.match(str(exc)):
        return True
    return any(text in str(exc).lower() for text in FULL_MESSAGES)


def format_bytes(n: float) -> str:
    """``1536`` -> ``1.5 KB``: sizes for people."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # unreachable, for the type checker


class DiskFullError(ToolkitError):
    """A write found no room left; the message names the folder and what to do."""

    exit_code = 1

    def __init__(self, folder: Path | str | None, needed: int | None = None) -> None:
        self.folder = None if folder is None else Path(folder)
        self.needed = needed
        super().__init__(self._message())

    def _message(self) -> str:
        if self.folder is None:  # a library's write, somewhere this run writes to
            return (
                "no space left on a disk this run writes to; free some space, or point "
                "cache.dir (stems and features) or --output (the run's files) at a disk with "
                "room, then run again: finished work is kept"
            )
        existing = self.folder.absolute()
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        try:
            free = f"{format_bytes(shutil.disk_usage(existing).free)} free"
        except OSError:
            free = "free space unknown"
        need = f", about {format_bytes(self.needed)} more needed" if self.needed else ""
        return (
            f"no space left under {self.folder.absolute()} ({free}{need}); free some space there, "
            "or point cache.dir (stems and features) or --output (the run's files) at a disk "
            "with room, then run again: finished work is kept"
        )

    def needing(self, needed: int) -> DiskFullError:
        """The same error, saying how many more bytes the stage needs."""
        return DiskFullError(self.folder, needed)


@contextlib.contextmanager
def disk_errors(folder: Path | str | None) -> Iterator[None]:
    """Turn a "no space left" failure of the writes inside into a :class:`DiskFullError`."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        if is_disk_full(exc):
            raise DiskFullError(folder) from None
        raise
