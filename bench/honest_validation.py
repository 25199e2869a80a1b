"""Benchmark: does the number the toolkit shows track the held-out test accuracy?

On a demo competition whose clips share songs and singers (several clips per
song and per singer; the test clips from songs and singers no train clip uses,
as in real contests), the same recipe (default ``recipes/strong.yaml``'s frozen-head
profile alone, with fewer trials) side by side in one run as

1. its single train/validation split, as written;
2. random 5-fold cross-validation;
3. ``split.groups: auto`` 5-fold: the folds keep the clips of each found group
   (same song, from the accompaniment) together;
4. for reference, 5-fold grouped by the demo's true songs (a group column no
   real contest gives), the most song grouping can do.

For each: the validation accuracy of the best trial and of the ensemble (what
the toolkit showed before this bench existed), the ensemble's estimate (its
selection cross-validated), the test accuracy of the best trial's and of the
ensemble's submission on ``test_labels.csv``, the gap between the estimate and
the test accuracy, and wall time. Usage:

    python bench/honest_validation.py [--recipe recipes/strong.yaml] [--trials 12]
        [--train 600] [--test 400] [--songs 60] [--work runs/bench-honest]
        [--only single random auto songs] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from toolkit.demo import submission_accuracy
from toolkit.leaderboard.store import Leaderboard
from toolkit.recipe.loading import load_recipe
from toolkit.workflow import run_study

ROOT = Path(__file__).resolve().parent.parent
STRONG = ROOT / "recipes" / "strong.yaml"
HEAD_ONLY = (
    "search.profiles.cnn=null",
    "search.profiles.finetune=null",
    "search.budget=sampler",
    "ensemble.method=greedy",
)
"""strong.yaml's frozen-head profile alone, greedy ensemble (strong.yaml before profiles)."""
SONG_CSV = "train_with_songs.csv"
"""The demo's train CSV with each clip's true song (written for configuration 4)."""


def main() -> None:
    """Run the configurations; print a table (markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=STRONG)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--train", type=int, default=600)
    parser.add_argument("--test", type=int, default=400)
    parser.add_argument("--songs", type=int, default=60)
    parser.add_argument("--singers", type=int, default=15)
    parser.add_argument("--test-share", type=float, default=0.3)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only", nargs="*", help="configuration folders to run")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-honest"))
    parser.add_argument("--set", nargs="*", default=[], help="more recipe overrides KEY=VALUE")
    args = parser.parse_args()
    work = args.work.resolve()
    demo = work / "demo"
    common = (
        f"data.demo.folder={demo}",
        f"data.demo.n_train={args.train}",
        f"data.demo.n_test={args.test}",
        f"data.demo.songs={args.songs}",
        f"data.demo.singers={args.singers}",
        f"data.demo.test_share={args.test_share}",
        f"search.n_trials={args.trials}",
        "search.timeout=null",
        "ensemble.seeds=1",  # seed copies cost K-fold retraining; the same in every column
        f"output.leaderboard={work / 'leaderboard.db'}",
        *(HEAD_ONLY if args.recipe.resolve() == STRONG else ()),
        *args.set,
    )
    k = args.folds
    configs = {
        "single": ("single split (as written)", ()),
        "random": (f"random {k}-fold", (f"split.folds={k}",)),
        "auto": (f"split.groups: auto, {k}-fold", (f"split.folds={k}", "split.groups=auto")),
        "songs": (
            f"true songs, {k}-fold (reference)",
            (f"split.folds={k}", f"data.train_csv={SONG_CSV}", "data.group_column=song"),
        ),
    }
    print(
        "| configuration | best trial val acc | ensemble val acc | estimate (acc) "
        "| best trial test acc | ensemble test acc | estimate − test | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for folder, (name, overrides) in configs.items():
        if args.only and folder not in args.only:
            continue
        if folder == "songs":
            write_song_csv(demo)
        loaded = load_recipe(args.recipe, (*common, *overrides), output=work / folder)
        started = time.perf_counter()
        result = run_study(loaded)
        seconds = time.perf_counter() - started
        summary = json.loads((result.run_dir / "ensemble.json").read_text())
        board = Leaderboard(work / "leaderboard.db")
        best = board.get(summary["best_trial"])
        assert best is not None and best.submission is not None
        test = submission_accuracy(result.submission, demo)
        best_test = submission_accuracy(Path(best.submission), demo)
        estimate = float(summary["estimate"]["accuracy"])
        print(
            f"| {name} | {best.val_accuracy:.3f} | {summary['val_accuracy']:.3f} "
            f"| {estimate:.3f} | {best_test:.3f} | {test:.3f} "
            f"| {100 * (estimate - test):+.1f} pts | {seconds:.0f} |",
            flush=True,
        )


def write_song_csv(demo: Path) -> None:
    """The demo's train CSV with a ``song`` column from ``train_sources.csv``."""
    train = pd.read_csv(demo / "train.csv", dtype=str)
    sources = pd.read_csv(demo / "train_sources.csv", dtype=str)
    train.merge(sources[["id", "song"]], on="id").to_csv(demo / SONG_CSV, index=False)


if __name__ == "__main__":
    main()
