"""Temporary files and folders that become the user's: made private, as :mod:`tempfile` makes
them (0600, 0700), then given the mode the umask gives a new file or folder (0644 and 0755
under umask 022), as any tool's would have, before they are renamed into place."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

_UMASK_LINE = re.compile(r"^Umask:\s*([0-7]+)$", re.MULTILINE)


def umask() -> int:
    """This process's umask (read from ``/proc`` where it can be, so no thread ever sees
    the umask changed to read it)."""
    try:
        found = _UMASK_LINE.search(Path("/proc/self/status").read_text())
    except OSError:
        found = None
    if found is not None:
        return int(found.group(1), 8)
    current = os.umask(0o022)
    os.umask(current)
    return current


def temporary_file(folder: Path, prefix: str, suffix: str = "") -> tuple[int, Path]:
    """A new file in ``folder`` (open descriptor and path), with a new file's mode."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
    try:
        os.chmod(name, 0o666 & ~umask())
    except BaseException:
        os.close(fd)
        Path(name).unlink(missing_ok=True)
        raise
    return fd, Path(name)


def temporary_folder(parent: Path, prefix: str) -> Path:
    """A new folder in ``parent``, with a new folder's mode."""
    folder = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    folder.chmod(0o777 & ~umask())
    return folder
