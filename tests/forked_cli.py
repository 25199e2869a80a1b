"""``python -m toolkit ARGS`` in a process of its own, forked from one that imported the heavy
libraries once.

Most of a CLI test's time is spent importing torch, scikit-learn and pandas (about 4 s
a command on 2 cores); the suite runs about a hundred commands. A forkserver
(:mod:`multiprocessing`) imports those third-party libraries once and forks a child
for each command. The child is a real process: its own working directory,
environment, arguments, standard output and error (files, as a pipe would be: not a
terminal) and exit code. Nothing of the toolkit is imported before the child has
its environment, so whatever the toolkit reads at import sees the command's.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import runpy
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path

PRELOAD = ["numpy", "pandas", "torch", "torchaudio", "sklearn.model_selection", "optuna"]
"""Third-party libraries the forkserver imports once (none reads a setting a test changes)."""

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PRELOAD)


def run_toolkit(
    args: Sequence[str],
    *,
    cwd: Path | None,
    env: Mapping[str, str],
    timeout: float,
    umask: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m toolkit ARGS`` in a forked child (with ``umask``, when given); its
    output and exit code, as :func:`subprocess.run` with ``capture_output=True, text=True``
    gives them."""
    with tempfile.TemporaryDirectory(prefix="toolkit-cli-") as scratch:
        out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
        child = _context.Process(
            target=_child,
            args=(list(args), str(cwd or os.getcwd()), dict(env), out, err, umask),
        )
        child.start()
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()
            raise subprocess.TimeoutExpired(["toolkit", *args], timeout)
        code = child.exitcode if child.exitcode is not None else -1
        return subprocess.CompletedProcess(
            [sys.executable, "-m", "toolkit", *args],
            code,
            out.read_text(errors="replace") if out.exists() else "",
            err.read_text(errors="replace") if err.exists() else "",
        )


def _child(
    args: list[str], cwd: str, env: dict[str, str], out: Path, err: Path, umask: int | None
) -> None:
    """The command, in the forked child: its directory, environment, umask, output files,
    argv."""
    os.chdir(cwd)
    if umask is not None:
        os.umask(umask)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, out), (2, err)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(handle, fd)
        os.close(handle)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - the child's, closed at exit
    sys.argv = [str(Path(sys.executable)), *args]
    code: int | str | None = 0
    try:
        runpy.run_module("toolkit", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        traceback.print_exc()
        code = 1
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    # what the interpreter does at exit, which a forked child skips: wait for the threads
    # the command left running, run its exit functions, flush
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
