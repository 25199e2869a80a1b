"""The built-in separators' and feature extractors' outputs on fixed inputs, pinned.

A separator's or feature extractor's ``version`` (``register(..., version=...)``)
enters the cache keys of what it computes: a change to its computation that
keeps the version would silently reuse features computed the old way. So the
outputs of every built-in, on the fixed clips of ``inputs.npz``, are kept in
``builtins.npz`` with the version that made them, and
``tests/test_builtin_versions.py`` fails when an output changes while its
version stays (bump the version) or when a version changes without the file
(remake it). Remake it, from the repository root, with::

    python -m tests.reference.builtin_outputs

Large outputs are kept at a stride (every ``STRIDE``-th value of their last axis),
which still catches any change to the computation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from tests.reference import FOLDER, load
from toolkit.registry.loader import load_plugins
from toolkit.registry.table import Registry

FILE = FOLDER / "builtins.npz"

CASES: dict[str, tuple[str, dict[str, Any], str, int]] = {
    # case: (kind, recipe block, input of inputs.npz, sample rate)
    "none": ("separators", {"name": "none"}, "stereo_44k", 44100),
    "spleeter": ("separators", {"name": "spleeter", "stem": "vocals"}, "stereo_44k", 44100),
    "mel": ("feature_extractors", {"name": "mel", "n_mels": 64}, "mono_16k", 16000),
    "mel-slaney-normalized": (
        "feature_extractors",
        {"name": "mel", "n_mels": 40, "norm": "slaney", "mel_scale": "slaney", "normalize": True},
        "mono_16k",
        16000,
    ),
    "musicnn-msd-penultimate": (
        "feature_extractors",
        {"name": "musicnn", "model": "MSD_musicnn", "output": "penultimate", "hop": 1.0},
        "mono_16k",
        16000,
    ),
    "musicnn-mtt-taggram": (
        "feature_extractors",
        {"name": "musicnn", "model": "MTT_musicnn", "output": "taggram"},
        "mono_16k",
        16000,
    ),
    "speaker": ("feature_extractors", {"name": "speaker"}, "mono_16k", 16000),
    "waveform": ("feature_extractors", {"name": "waveform"}, "mono_16k", 16000),
    # the same clip taken for 22.05 kHz audio: the resampling to 16 kHz is pinned too
    "waveform-resampled": ("feature_extractors", {"name": "waveform"}, "mono_16k", 22050),
}
"""Every built-in separator and feature extractor, some in a second setting."""

STRIDE = 50
"""Outputs longer than this on their last axis are kept every ``STRIDE``-th value."""


def compute(case: str, registry: Registry, block: dict[str, Any] | None = None) -> np.ndarray:
    """The output of one case (or of its input through ``block`` instead), as pinned
    (float32, large last axes strided)."""
    import torch

    kind, pinned_block, source, rate = CASES[case]
    block = pinned_block if block is None else block
    clips = load("inputs")[source]
    plugin = registry.create(kind, block, case)
    if kind == "separators":
        out = plugin.separate(clips[None].astype(np.float32))  # one stereo clip
    else:
        with torch.inference_mode():
            out = plugin.extract(torch.from_numpy(clips.astype(np.float32)), rate).numpy()
    out = np.asarray(out, dtype=np.float32)
    return out[..., ::STRIDE] if out.shape[-1] > 4 * STRIDE else out


def versions(registry: Registry) -> dict[str, str]:
    """The version each case's plugin registers now."""
    return {
        case: registry.get_info(kind, block["name"]).version
        for case, (kind, block, *_) in CASES.items()
    }


def pinned() -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The stored outputs, and the plugin versions that made them."""
    stored = load("builtins")
    made_by = json.loads(str(stored.pop("versions")))
    return stored, made_by


def _outputs(registry: Registry) -> Iterator[tuple[str, np.ndarray]]:
    for case in CASES:
        yield case, compute(case, registry)


def main() -> None:
    """Compute every case and write ``builtins.npz``."""
    registry = load_plugins()
    arrays = dict(_outputs(registry))
    np.savez_compressed(FILE, versions=np.array(json.dumps(versions(registry))), **arrays)
    for case, array in arrays.items():
        print(f"{case}: {array.shape}")
    print(f"wrote {FILE} ({FILE.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
