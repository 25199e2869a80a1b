"""Benchmark: does ``split.groups: auto`` find the songs that exist, and only those?

Groups only, no training. On two demo competitions, with the recipe's separator
(Spleeter in ``recipes/strong.yaml``), each link rule of ``split.group_threshold``:

1. the default demo (``songs: 0``, every clip a song of its own): how many train
   clips the rule leaves alone (all of them is right);
2. the demo with shared sources (``songs: N``, test songs and singers apart from
   the train ones): the share of same-song pairs of train clips the grouped K-fold
   split puts on both sides of a split (lower is better; the ungrouped split's for
   reference) and the adjusted Rand index of the found groups against
   ``train_sources.csv``.

The signatures of the train and test clips are cached under ``cache.dir``
(``--set cache.dir=...`` to share a cache). Usage:

    python bench/grouping_recovery.py [--recipe recipes/strong.yaml] [--work runs/bench-groups]
        [--plain 200 100] [--sourced 300 150] [--songs 40] [--seed 0] [--folds 5]
        [--only plain songs] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import pandas as pd
from sklearn.metrics import adjusted_rand_score

from toolkit.data.checks import check_inputs
from toolkit.recipe.loading import load_recipe
from toolkit.recipe.schema import Recipe
from toolkit.registry.table import Registry
from toolkit.validation.grouping import find_groups, straddling_pairs
from toolkit.validation.split import split_folds

ROOT = Path(__file__).resolve().parent.parent
RULES = ("z", "test")
"""The values of ``split.group_threshold`` compared: the old rule, then the calibrated one."""


def main() -> None:
    """Find the groups of each demo under each rule; print a table (markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "strong.yaml")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-groups"))
    parser.add_argument("--plain", type=int, nargs=2, default=[200, 100], metavar=("TRAIN", "TEST"))
    parser.add_argument(
        "--sourced", type=int, nargs=2, default=[300, 150], metavar=("TRAIN", "TEST")
    )
    parser.add_argument("--songs", type=int, default=40)
    parser.add_argument("--test-share", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only", nargs="*", choices=("plain", "songs"), help="demos to run")
    parser.add_argument("--set", nargs="*", default=[], help="more recipe overrides KEY=VALUE")
    args = parser.parse_args()
    work = args.work.resolve()
    demos = {
        "plain": (
            f"every clip its own song ({args.plain[0]} train, {args.plain[1]} test)",
            work / f"demo-plain-{args.seed}",
            (f"data.demo.n_train={args.plain[0]}", f"data.demo.n_test={args.plain[1]}"),
        ),
        "songs": (
            f"{args.songs} songs ({args.sourced[0]} train, {args.sourced[1]} test)",
            work / f"demo-songs-{args.seed}",
            (
                f"data.demo.n_train={args.sourced[0]}",
                f"data.demo.n_test={args.sourced[1]}",
                f"data.demo.songs={args.songs}",
                f"data.demo.test_share={args.test_share}",
            ),
        ),
    }
    print(
        "| demo | split.group_threshold | link threshold | groups | largest | clips alone "
        "| same-song pairs split (grouped / ungrouped) | ARI vs songs | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for key, (name, folder, overrides) in demos.items():
        if args.only and key not in args.only:
            continue
        for rule in RULES:
            sets = (
                f"data.demo.folder={folder}",
                f"data.demo.seed={args.seed}",
                *overrides,
                "split.groups=auto",
                f"split.folds={args.folds}",
                f"split.group_threshold={rule}",
                *args.set,
            )
            loaded = load_recipe(args.recipe, sets, output=work / "out")
            print(row(name, rule, loaded.recipe, loaded.registry), flush=True)


def row(name: str, rule: str, recipe: Recipe, registry: Registry) -> str:
    """One line of the table: the groups ``rule`` finds and how they match the true songs."""
    competition = check_inputs(recipe, registry).competition
    started = time.perf_counter()
    found = find_groups(recipe, registry, competition)
    seconds = time.perf_counter() - started
    threshold = ", ".join(f"{k} {v:.3f}" for k, v in found.thresholds.items()) or "z > 1.5"
    clips = len(found.labels)
    recovery, ari = "—", "—"
    sources = competition.root / "train_sources.csv"
    if sources.is_file():
        table = pd.read_csv(sources, dtype=str).set_index("id")
        songs = pd.factorize(table.loc[competition.train_ids, "song"])[0]
        grouped = split_folds(dataclasses.replace(competition, groups=found.labels), recipe.split)
        ungrouped = split_folds(dataclasses.replace(competition, groups=None), recipe.split)
        split, pairs = straddling_pairs(songs, grouped)
        open_split, _ = straddling_pairs(songs, ungrouped)
        recovery = f"{split / pairs:.1%} / {open_split / pairs:.1%} of {pairs}"
        ari = f"{adjusted_rand_score(songs, found.labels):.3f}"
    return (
        f"| {name} | {rule} | {threshold} | {found.count} | {found.largest} "
        f"| {found.singletons} ({found.singletons / clips:.0%}) | {recovery} | {ari} "
        f"| {seconds:.0f} |"
    )


if __name__ == "__main__":
    main()
