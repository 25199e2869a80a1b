"""A full disk is one line that says where and what to do, and leaves nothing half-written.

The cache (or the run's folder) is put on a small tmpfs mounted in a private
mount namespace of the command's own (``unshare``), so nothing outside the test
sees it. Where no namespace can be made, the writes of the cache go to
``/dev/full``, which fails every write with ENOSPC, as a full disk does.
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import one_error_line, write_recipe
from toolkit.data.cache import ClipStore, SplitStore, atomic_write
from toolkit.demo import DemoCompetition
from toolkit.disk import DiskFullError
from toolkit.leaderboard.store import Leaderboard

pytestmark = pytest.mark.slow


def _unshare() -> list[str] | None:
    """A command prefix that runs a shell where a tmpfs can be mounted privately, if any."""
    if shutil.which("unshare") is None:
        return None
    for prefix in (
        ["unshare", "--mount", "--propagation", "private"],  # root
        ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"],
    ):
        probe = subprocess.run(
            [*prefix, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /tmp"],
            capture_output=True,
        )
        if probe.returncode == 0:
            return prefix
    return None


UNSHARE = _unshare()


def run_on_small_disk(folder: Path, size: str, *args: object) -> tuple[int, str, list[str]]:
    """``toolkit ARGS`` with a ``size`` tmpfs mounted on ``folder``; its exit code, stderr,
    and the files left in ``folder`` (listed before the tmpfs goes)."""
    assert UNSHARE is not None
    folder.mkdir(parents=True, exist_ok=True)
    command = " ".join(shlex.quote(str(a)) for a in (sys.executable, "-m", "toolkit", *args))
    script = (
        f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(folder))} || exit 99\n"
        f"{command}\n"
        "code=$?\n"
        f"find {shlex.quote(str(folder))} -type f | sed 's/^/left: /'\n"
        "exit $code\n"
    )
    env = {**os.environ, "TOOLKIT_NO_PROGRESS": "1", "TOOLKIT_LOAD_PLUGINS": ""}
    done = subprocess.run(
        [*UNSHARE, "sh", "-c", script], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode != 99, done.stderr
    left = [
        line.removeprefix("left: ")
        for line in done.stdout.splitlines()
        if line.startswith("left: ")
    ]
    return done.returncode, done.stderr, left


@pytest.mark.skipif(UNSHARE is None, reason="no private mount namespace here (unshare)")
def test_cache_on_a_full_disk(tmp_path: Path, tiny_competition: DemoCompetition) -> None:
    cache = tmp_path / "cache"
    recipe = write_recipe(tmp_path, tiny_competition.root)
    code, stderr, left = run_on_small_disk(
        cache, "256k", "run", recipe, "--output", tmp_path / "out", "--no-report"
    )
    assert code != 0
    line = one_error_line(stderr, "error: no space left under ")
    assert str(cache / "stems") in line and "more needed" in line and "cache.dir" in line
    # only whole entries stay: no temporary file, and every stem kept reads back whole
    assert left and not [f for f in left if f.endswith(".tmp") or "/." in f]
    assert all(f.endswith(".npy") or f.endswith("content_hashes.json") for f in left), left
    assert not (tmp_path / "out").exists()  # the run never started: no folder...
    assert not Leaderboard(tmp_path / "leaderboard.db").rows()  # ...and no row


@pytest.mark.skipif(UNSHARE is None, reason="no private mount namespace here (unshare)")
def test_run_folder_on_a_full_disk(tmp_path: Path, tiny_competition: DemoCompetition) -> None:
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path, tiny_competition.root)
    code, stderr, left = run_on_small_disk(out, "8k", "run", recipe, "--output", out)
    assert code != 0
    line = one_error_line(stderr, "error: no space left under ")
    assert str(out) in line and "--output" in line
    assert not [f for f in left if f.endswith(".tmp")], left
    # the run folder (a disk of its own) got nothing: the run was staged in its .partial/
    assert all(f.startswith(f"{out}/.partial/") for f in left), left
    rows = Leaderboard(tmp_path / "leaderboard.db").rows()
    assert [r.state for r in rows] == ["failed"]  # it trained, then could not save
    assert "no space left" in rows[0].params["error"]


def test_a_full_disk_in_the_stores_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everywhere: writes that fail with ENOSPC (to /dev/full) leave nothing and say so."""
    real_mkstemp = __import__("tempfile").mkstemp

    def full_mkstemp(*args: object, **kwargs: object) -> tuple[int, str]:
        fd, name = real_mkstemp(*args, **kwargs)  # type: ignore[arg-type]
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), name

    monkeypatch.setattr("toolkit.files.tempfile.mkstemp", full_mkstemp)
    store = ClipStore(tmp_path / "clips")
    with pytest.raises(DiskFullError, match="no space left under") as caught:
        store.put("ab12", np.ones(50_000, dtype=np.float16))
    assert caught.value.folder == tmp_path / "clips"
    with pytest.raises(DiskFullError):
        atomic_write(tmp_path / "x.json", lambda h: h.write(b"{}"))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_split_that_does_not_fit_says_how_much_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_room(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("toolkit.data.cache.os.posix_fallocate", no_room)
    splits = SplitStore(tmp_path / "splits")
    arrays = [np.ones((1, 64, 100)) for _ in range(10)]
    with pytest.raises(DiskFullError, match=r"about 125\.0 KB more needed"):
        splits.assemble(
            splits.key(list("abcdefghij")), list("abcdefghij"), list("abcdefghij"), arrays
        )
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
