"""Benchmark: what K-fold cross-validation gains on the demo competition's held-out test labels.

Side by side in one run, the same recipe (default ``recipes/demo-search.yaml``:
a small search and its greedy ensemble) as

1. its single train/validation split, as written;
2. ``split.folds: K`` (default 5): every trial trained on K folds, the ensemble
   selected on out-of-fold predictions of every train clip, the test
   prediction the fold models' mean (a bag of K);
3. the same study with ``ensemble.refit: true``: each chosen trial retrained
   once on every train clip for its mean best epoch count (only the refits
   are trained; the study of 2 is reused).

Prints each one's test accuracy (``test_labels.csv``, which no training or
selection sees), its selection metric and wall time. Usage:

    python bench/cv_gain.py [--recipe recipes/demo-search.yaml] [--folds 5]
        [--work runs/bench-cv]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from toolkit.demo import submission_accuracy
from toolkit.recipe.loading import load_recipe
from toolkit.workflow import run_study

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    """Run the three configurations; print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "demo-search.yaml")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("runs/bench-cv"))
    args = parser.parse_args()
    common = ("search.timeout=null",)  # the same number of trials in every configuration
    configs = {
        "single split (as written)": ((), "single"),
        f"{args.folds}-fold, OOF ensemble, fold bag": ((f"split.folds={args.folds}",), "cv"),
        f"{args.folds}-fold, OOF ensemble, refit": (
            (f"split.folds={args.folds}", "ensemble.refit=true"),
            "cv",
        ),
    }
    print(f"{'configuration':38} {'trials':>6} {'sel. metric':>11} {'test acc':>9} {'seconds':>8}")
    for name, (overrides, folder) in configs.items():
        loaded = load_recipe(args.recipe, (*common, *overrides), output=args.work / folder)
        started = time.perf_counter()
        result = run_study(loaded)
        seconds = time.perf_counter() - started
        summary = json.loads((result.run_dir / "ensemble.json").read_text())
        root = Path(loaded.recipe.data.root)
        print(
            f"{name:38} {result.worker.counts['complete']:>6} {summary['val_metric']:11.4f} "
            f"{submission_accuracy(result.submission, root):9.4f} {seconds:8.0f}"
        )


if __name__ == "__main__":
    main()
