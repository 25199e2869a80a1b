"""Run the official musicnn package on audio files; for its reference virtualenv.

Imports nothing from the toolkit, so the reference venv (TensorFlow, musicnn,
librosa; see docs/musicnn.md) runs it as a script::

    python musicnn_reference.py OUT.npz MODEL WINDOW HOP FILE [FILE ...]

``HOP`` ``none`` means musicnn's default (windows without overlap). For each file it
stores ``taggram_<i>`` ``[windows, tags]`` (musicnn's ``extractor``); for musicnn
models also ``penultimate_<i>``, ``max_pool_<i>`` and ``mean_pool_<i>``.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Sequence

import numpy as np

PYTHON_ENV = "TOOLKIT_MUSICNN_PYTHON"
"""The reference virtualenv's Python (official musicnn, TensorFlow, librosa)."""


def reference_python() -> tuple[str | None, str]:
    """The reference venv's Python, or None and why it cannot be used."""
    python = os.environ.get(PYTHON_ENV)
    if not python:
        return None, f"{PYTHON_ENV} is not set (the official musicnn venv; see docs/musicnn.md)"
    if not os.access(python, os.X_OK):
        return None, f"{PYTHON_ENV}={python} is not an executable"
    return python, ""


def run_official(
    python: str,
    out: str | os.PathLike[str],
    model: str,
    files: Sequence[str | os.PathLike[str]],
    window: float = 3.0,
    hop: float | None = None,
) -> list[dict[str, np.ndarray]]:
    """The official package's outputs for each of ``files``, run in the venv of ``python``."""
    args = [python, os.path.abspath(__file__), os.fspath(out), model, repr(window)]
    args += ["none" if hop is None else repr(hop), *map(os.fspath, files)]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"official musicnn failed (exit {done.returncode}): {tail}")
    with np.load(out) as data:
        return [
            {k.rsplit("_", 1)[0]: data[k] for k in data.files if k.endswith(f"_{i}")}
            for i in range(len(files))
        ]


def main(argv: list[str]) -> None:
    """Write the official outputs of every file named in ``argv`` to one ``.npz``."""
    out, model, window, hop, *files = argv
    # This file's folder holds the toolkit's own musicnn.py: keep it off the path.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    from musicnn.extractor import extractor  # noqa: PLC0415 - only in the reference venv

    arrays: dict[str, np.ndarray] = {}
    for i, path in enumerate(files):
        overlap = False if hop == "none" else float(hop)
        with contextlib.redirect_stdout(io.StringIO()):
            taggram, _, features = extractor(
                path, model=model, input_length=float(window), input_overlap=overlap
            )
        arrays[f"taggram_{i}"] = np.asarray(taggram, dtype=np.float32)
        if "vgg" not in model:
            for key in ("penultimate", "max_pool", "mean_pool"):
                arrays[f"{key}_{i}"] = np.asarray(features[key], dtype=np.float32)
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1:])
