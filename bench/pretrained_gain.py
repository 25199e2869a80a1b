"""Benchmark: what pretrained feature streams gain on the demo competition's held-out test labels.

Side by side in one run, on one demo competition (its ``test_labels.csv`` are
never seen by training or selection), each a plain run of ``recipes/demo.yaml``
with other features and backbone:

1. mel + resnet18 (the demo recipe as written);
2. musicnn on the vocals + head;
3. musicnn on the mixture + head;
4. speaker encoder on the vocals + head;
5. the streams fused (musicnn vocals, speaker vocals, musicnn mixture) + head;
6. the greedy ensemble over 1-5, selected on the validation split.

Prints test accuracy and wall time of each (features included; the stem cache
is shared, so Spleeter runs once). With ``--recipes``, it instead runs whole
recipes side by side (``recipes/strong.yaml``, the toolkit's recommendation, and
``recipes/final.yaml``, the report's pipeline, both pointed at the demo folder)
and scores each one's submission on the same test labels. ``--final-seeds N``
trains N of final.yaml's 8 seed copies (8 x 24 epochs of a width-64 ResNet18
take hours on a laptop CPU); the table says how many ran. Usage:

    python bench/pretrained_gain.py [--root data/demo] [--work runs/bench-pretrained]
    python bench/pretrained_gain.py --recipes [--final-seeds 8]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.demo import MARKER_NAME, submission_accuracy
from toolkit.ensemble.selection import blend, select_ensemble
from toolkit.metrics import accuracy
from toolkit.recipe.loading import load_recipe
from toolkit.runs.run_dir import RunDir
from toolkit.workflow import run, run_study

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
RECIPE = RECIPES / "demo.yaml"
HEAD = "model.backbone={name: head, hidden: 256, dropout: 0.3}"
HEAD_TRAIN = (
    "augmenters=[{name: mixup, alpha: 0.2}]",
    "train.epochs=30",
    "train.batch_size=32",
    "train.optimizer={name: adamw, lr: 0.001, weight_decay: 0.01}",
    "train.scheduler={name: cosine}",
)
MUSICNN = "{name: musicnn, model: MSD_musicnn, output: pooled}"
SPEAKER = "{name: speaker}"
CONFIGS: dict[str, tuple[str, ...]] = {
    "mel + resnet18 (demo recipe)": (),
    "musicnn (vocals) + head": (f"features={MUSICNN}", HEAD, *HEAD_TRAIN),
    "musicnn (mixture) + head": (
        f"features=[{MUSICNN[:-1]}, input: mixture}}]",
        HEAD,
        *HEAD_TRAIN,
    ),
    "speaker (vocals) + head": (f"features={SPEAKER}", HEAD, *HEAD_TRAIN),
    "fused streams + head": (
        f"features=[{MUSICNN}, {SPEAKER}, {MUSICNN[:-1]}, input: mixture}}]",
        HEAD,
        *HEAD_TRAIN,
    ),
}


def test_labels(root: Path, test_ids: list[str], classes: list[str]) -> np.ndarray:
    """The class index of every test clip, from the demo's held-out ``test_labels.csv``."""
    truth = pd.read_csv(root / "test_labels.csv", dtype=str).set_index("id")
    return np.array([classes.index(c) for c in truth.loc[test_ids, "category"]])


def compare_recipes(root: Path, work: Path, final_seeds: int, only: list[str] | None) -> None:
    """Run strong.yaml and final.yaml on the demo folder; print test accuracy and wall time."""
    demo = read_demo_duration(root)
    runs = {
        "strong.yaml": (RECIPES / "strong.yaml", (f"data.root={root}",)),
        f"final.yaml ({final_seeds} of 8 seed copies)": (
            RECIPES / "final.yaml",
            (f"data.root={root}", f"data.duration={demo}", f"ensemble.seeds={final_seeds}"),
        ),
    }
    print(f"{'recipe':34} {'test acc':>9} {'seconds':>8}")
    for i, (name, (path, overrides)) in enumerate(runs.items()):
        if only and not any(o in name for o in only):
            continue
        loaded = load_recipe(path, overrides, output=work / f"recipe{i}")
        started = time.perf_counter()
        result = run_study(loaded)
        seconds = time.perf_counter() - started
        print(f"{name:34} {submission_accuracy(result.submission, root):9.4f} {seconds:8.0f}")


def read_demo_duration(root: Path) -> float:
    """The clip length of the demo folder (its marker file records how it was made)."""
    import json

    return float(json.loads((root / MARKER_NAME).read_text())["duration"])


def main() -> None:
    """Run every configuration and the ensemble (or the whole recipes); print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("data/demo"))
    parser.add_argument("--work", type=Path, default=Path("runs/bench-pretrained"))
    parser.add_argument("--only", nargs="*", help="configurations to run (default: all)")
    parser.add_argument("--recipes", action="store_true", help="compare strong.yaml, final.yaml")
    parser.add_argument("--final-seeds", type=int, default=8)
    args = parser.parse_args()
    if args.recipes:
        compare_recipes(args.root, args.work, args.final_seeds, args.only)
        return
    rows = []
    val: dict[str, np.ndarray] = {}
    test: dict[str, np.ndarray] = {}
    for i, (name, overrides) in enumerate(CONFIGS.items()):
        if args.only and not any(o in name for o in args.only):
            continue
        loaded = load_recipe(
            RECIPE,
            (f"data.root={args.root}", f"name=bench{i}", *overrides),
            output=args.work / f"c{i}",
        )
        started = time.perf_counter()
        result = run(loaded)
        seconds = time.perf_counter() - started
        out = RunDir(result.run_dir)
        val[name], test[name] = out.read_probabilities("val"), out.read_probabilities("test")
        rows.append((name, seconds))
    data_dir = args.work / "c0"
    frame = pd.read_csv(RunDir(data_dir).probabilities_file("val", ".csv"), dtype={"id": str})
    classes = [c.removeprefix("p_") for c in frame.columns if c.startswith("p_")]
    val_labels = np.array([classes.index(c) for c in frame["label"].astype(str)])
    test_ids = list(
        pd.read_csv(RunDir(data_dir).probabilities_file("test", ".csv"), dtype={"id": str})["id"]
    )
    truth = test_labels(args.root, test_ids, classes)
    print(f"{'configuration':34} {'test acc':>9} {'seconds':>8}")
    for name, seconds in rows:
        print(f"{name:34} {accuracy(test[name], truth):9.4f} {seconds:8.0f}")
    if len(val) > 1:
        chosen = select_ensemble(val, val_labels, metric="accuracy", size=20)
        mixed = blend(test, chosen.members)
        members = ", ".join(f"{k} x{w:.2f}" for k, w in chosen.members.items())
        print(f"{'greedy ensemble of the above':34} {accuracy(mixed, truth):9.4f}        -")
        print(f"  members: {members}")


if __name__ == "__main__":
    main()
