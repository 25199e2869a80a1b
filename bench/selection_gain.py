"""Benchmark: what each change of issue 29 does to the number a competitor gets.

On the demo with sources (the test clips' songs and singers unseen by the train
clips; ``test_labels.csv`` never seen by training or selection), for each demo
seed, ``recipes/strong.yaml`` runs as a study under each configuration, side by
side in one run:

* ``before``: the selection of main before issue 29 (every change below off);
* ``calibration``: each model's held-out probabilities calibrated by a
  temperature per fold before log loss chooses its epoch, the trials and the
  ensemble (``train.calibration``);
* ``time``: no trial started that its profile's trials say would end well past
  ``search.timeout`` (``search.overrun``);
* ``groups``: auto grouping's link threshold calibrated on the unlabelled test
  clips (``split.group_threshold``);
* ``all``: every change (the shipped defaults), time shared by ``search.budget:
  shares``; ``all, improvement``: the same with ``search.budget: improvement``.

For each study: the trials, the epochs kept (mean best epoch per profile of its
complete trials), the estimate (the ensemble's procedure cross-validated), the
test accuracy of its submission, the gap (estimate - test, points), the best
single profile's test accuracy (each profile's best trial by the study's metric,
on the test) and the wall seconds (trials and ensemble). Then per configuration
the mean over the seeds with its standard error (of the seeds' figures; one
seed's own standard error on its test clips is sqrt(p(1-p)/n) beside it).
Stems and features are computed once per seed before any configuration. Usage:

    python bench/selection_gain.py [--work runs/bench-selection] [--seeds 0 1 2]
        [--train 300 --test 150 --songs 40] [--timeout 90] [--trials N]
        [--only before all ...] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.demo import submission_accuracy
from toolkit.metrics import get_metric
from toolkit.recipe.loading import LoadedRecipe, load_recipe
from toolkit.runs.records import read_model
from toolkit.study import StudyRun
from toolkit.study.profiles import PROFILE
from toolkit.workflow import run_study

ROOT = Path(__file__).resolve().parent.parent
STRONG = ROOT / "recipes" / "strong.yaml"

OFF = {
    "calibration": "train.calibration=none",
    "time": "search.overrun=allow",
    "groups": "split.group_threshold=z",
}
"""Each change of the issue, switched off (its default is on)."""

CONFIGURATIONS: dict[str, tuple[str, ...]] = {
    "before": tuple(OFF.values()),
    "calibration": tuple(v for k, v in OFF.items() if k != "calibration"),
    "time": tuple(v for k, v in OFF.items() if k != "time"),
    "groups": tuple(v for k, v in OFF.items() if k != "groups"),
    "all": ("search.budget=shares",),
    "all, improvement": ("search.budget=improvement",),
}


def shared(args: argparse.Namespace, seed: int, work: Path) -> tuple[str, ...]:
    """What every configuration of one demo seed shares."""
    root = work / f"demo-songs-{seed}"
    return (
        f"data.demo.folder={root}",
        f"data.demo.seed={seed}",
        f"data.demo.n_train={args.train}",
        f"data.demo.n_test={args.test}",
        f"data.demo.songs={args.songs}",
        "data.demo.test_share=0.3",
        f"search.timeout={args.timeout}",
        *([f"search.n_trials={args.trials}"] if args.trials else []),
        f"output.leaderboard={work / 'leaderboard.db'}",
        *args.set,
    )


def load(common: tuple[str, ...], name: str, work: Path, *more: str) -> LoadedRecipe:
    """strong.yaml with the shared overrides and ``more``, run as ``name`` into ``work``."""
    return load_recipe(STRONG, (*common, f"name={name}", *more), output=work / name)


def trial_figures(run: StudyRun, root: Path) -> tuple[str, str, float]:
    """The trials (``12 (10 complete, 2 pruned): head 8, cnn 4``), the mean kept epoch per
    profile, and the best single profile's test accuracy (its best trial by the metric)."""
    rule = get_metric(run.recipe.search.metric if run.recipe.search else "log_loss")
    trials = run.handle.trials()
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    complete = [t for t in finished if t.state.name == "COMPLETE" and t.value is not None]
    per: dict[str, int] = defaultdict(int)
    for t in finished:
        per[str(t.params.get(PROFILE))] += 1
    counts = run.handle.counts()
    summary = f"{len(finished)} ({counts['complete']} complete, {counts['pruned']} pruned): " + (
        ", ".join(f"{p} {n}" for p, n in per.items())
    )
    epochs: dict[str, list[int]] = defaultdict(list)
    best: dict[str, object] = {}
    for t in complete:
        profile = str(t.params.get(PROFILE))
        record = read_model(run.folder.model(run.models.trial_key(t.number)))
        if record is not None and record.best_epoch is not None:
            epochs[profile].append(record.best_epoch)
        held = best.get(profile)
        if held is None or rule.better(float(t.value), float(held.value)):  # type: ignore[attr-defined]
            best[profile] = t
    kept = ", ".join(f"{p} {statistics.mean(e):.1f}" for p, e in epochs.items())
    competition = run.views.inputs().competition
    truth = pd.read_csv(root / "test_labels.csv", dtype=str).set_index("id")["category"]
    labels = truth.loc[competition.test_ids].to_numpy()
    scores = []
    for t in best.values():
        folder = run.folder.model(run.models.trial_key(t.number))  # type: ignore[attr-defined]
        probs = np.load(folder.probabilities_file("test"))
        predicted = np.asarray(competition.classes)[probs.argmax(axis=1)]
        scores.append(float((predicted == labels).mean()))
    return summary, kept, max(scores) if scores else float("nan")


def one_study(loaded: LoadedRecipe, root: Path) -> dict[str, object]:
    """Run one configuration's study; its figures."""
    started = time.perf_counter()
    result = run_study(loaded)
    seconds = time.perf_counter() - started
    trials_seconds = seconds - result.ensemble.seconds
    run = StudyRun(loaded)
    trials, kept, best_profile = trial_figures(run, root)
    outcome = result.ensemble
    estimate = outcome.estimate.accuracy if outcome.estimate is not None else float("nan")
    test = submission_accuracy(outcome.submission, root)
    return {
        "trials": trials,
        "kept epochs": kept,
        "method": outcome.method,
        "estimate": estimate,
        "test": test,
        "gap": 100 * (estimate - test),
        "best profile": best_profile,
        "seconds": seconds,
        "trials seconds": trials_seconds,
    }


def mean_se(values: list[float]) -> str:
    """``0.812 ± 0.014`` (standard error of the mean over seeds)."""
    if len(values) < 2:
        return f"{values[0]:.3f}"
    spread = statistics.stdev(values) / math.sqrt(len(values))
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


def column_of(figures: list[dict[str, object]]) -> Callable[[str], list[float]]:
    """A function giving one figure of every seed's study, as floats."""
    return lambda key: [float(f[key]) for f in figures]  # type: ignore[arg-type]


def main() -> None:
    """Run every configuration on every seed; print the markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-selection")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--test", type=int, default=150)
    parser.add_argument("--songs", type=int, default=40)
    parser.add_argument("--timeout", type=float, default=90)
    parser.add_argument("--trials", type=int, help="search.n_trials (default: the recipe's)")
    parser.add_argument("--only", nargs="*", help="configurations to run (default: all)")
    parser.add_argument("--set", nargs="*", default=[], help="more overrides KEY=VALUE")
    args = parser.parse_args()
    work = args.work.resolve()
    chosen = {k: v for k, v in CONFIGURATIONS.items() if not args.only or k in args.only}
    rows: dict[str, list[dict[str, object]]] = defaultdict(list)
    print("| seed | configuration | trials | kept epochs | method | estimate acc | test acc "
          "| gap (pts) | best profile test | seconds (trials) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        common = shared(args, seed, work)
        root = work / f"demo-songs-{seed}"
        started = time.perf_counter()
        StudyRun(load(common, f"s{seed}-prep", work)).prepare_views()
        print(f"<!-- seed {seed}: stems and features {time.perf_counter() - started:.0f} s -->")
        for name, more in chosen.items():
            slug = name.replace(", ", "-")
            figures = one_study(load(common, f"s{seed}-{slug}", work, *more), root)
            rows[name].append(figures)
            se = math.sqrt(figures["test"] * (1 - figures["test"]) / args.test)  # type: ignore[operator]
            print(
                f"| {seed} | {name} | {figures['trials']} | {figures['kept epochs']} "
                f"| {figures['method']} | {figures['estimate']:.3f} "
                f"| {figures['test']:.3f} ± {se:.3f} | {figures['gap']:+.1f} "
                f"| {figures['best profile']:.3f} | {figures['seconds']:.0f} "
                f"({figures['trials seconds']:.0f}) |",
                flush=True,
            )
    print()
    print("| configuration | estimate acc | test acc | gap (pts) | best profile test "
          "| study - best profile (pts) | seconds (trials) |")
    print("|---|---|---|---|---|---|---|")
    for name, figures in rows.items():
        col = column_of(figures)
        diff = [100 * (t - b) for t, b in zip(col("test"), col("best profile"), strict=True)]
        print(
            f"| {name} | {mean_se(col('estimate'))} | {mean_se(col('test'))} "
            f"| {statistics.mean(col('gap')):+.1f} | {mean_se(col('best profile'))} "
            f"| {statistics.mean(diff):+.1f} | {statistics.mean(col('seconds')):.0f} "
            f"({statistics.mean(col('trials seconds')):.0f}) |"
        )


if __name__ == "__main__":
    main()
