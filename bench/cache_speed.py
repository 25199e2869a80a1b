"""Benchmark: what the stage cache saves, measured side by side in one run.

1. Preparing a competition's features cold (decode, separate, extract) versus
   warm (every clip cached: hashes checked, the split memmap reopened).
2. Reading one epoch of shuffled batches from the contiguous split memmap
   versus loading the same clips from one file each.

Usage: python bench/cache_speed.py [--train 200] [--duration 3.0]
Prints the times and their ratios.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from toolkit.data.cache import ClipStore
from toolkit.demo import make_demo_competition
from toolkit.recipe.loading import load_recipe
from toolkit.training.pipeline import prepare

RECIPE = """
name: bench
data: {{root: {root}, sample_rate: 16000, duration: {duration}}}
separator: {{name: none}}
features: {{name: mel, n_fft: 1024, hop_length: 256, n_mels: 64}}
cache: {{dir: {cache}}}
output: {{leaderboard: {work}/leaderboard.db}}
"""


def timed(func):  # type: ignore[no-untyped-def]
    """Run ``func`` once; return (seconds, result)."""
    start = time.perf_counter()
    result = func()
    return time.perf_counter() - start, result


def main() -> None:
    """Run both comparisons and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=200)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        comp = make_demo_competition(
            work / "comp",
            n_train=args.train,
            n_test=max(8, args.train // 4),
            duration=args.duration,
        )
        recipe_path = work / "recipe.yaml"
        recipe_path.write_text(
            RECIPE.format(root=comp.root, duration=args.duration, cache=work / "cache", work=work)
        )
        loaded = load_recipe(recipe_path)
        cold, data = timed(lambda: prepare(loaded.recipe, loaded.registry))
        warm, data2 = timed(lambda: prepare(loaded.recipe, loaded.registry))
        assert data2.stats.features_computed == 0
        n = len(data.competition.train_ids) + len(data.competition.test_ids)
        print(
            f"prepare {n} clips of {args.duration} s: cold {cold:.2f} s, warm {warm:.3f} s, "
            f"warm is {cold / warm:.0f}x faster"
        )

        store = ClipStore(work / "cache" / "features")
        from toolkit.data.preprocess import Preprocessor

        pre = Preprocessor(loaded.recipe, loaded.registry)
        keys = pre.feature_keys(pre.stem_keys(data.competition.train_files))
        order = np.random.default_rng(0).permutation(len(keys))

        def epoch_memmap() -> float:
            total = 0.0
            for start in range(0, len(order), args.batch):
                idx = np.sort(order[start : start + args.batch])
                total += float(np.asarray(data.train_x[idx], dtype=np.float32).sum())
            return total

        def epoch_files() -> float:
            total = 0.0
            for start in range(0, len(order), args.batch):
                idx = order[start : start + args.batch]
                batch = np.stack([store.get(keys[i]) for i in idx]).astype(np.float32)
                total += float(batch.sum())
            return total

        epoch_memmap()  # page cache warm for both
        epoch_files()
        t_mem, a = timed(epoch_memmap)
        t_files, b = timed(epoch_files)
        assert np.isclose(a, b, rtol=1e-3)
        print(
            f"one epoch of {len(keys)} clips: memmap {t_mem * 1000:.1f} ms, "
            f"one file per clip {t_files * 1000:.1f} ms, memmap is {t_files / t_mem:.1f}x faster"
        )


if __name__ == "__main__":
    main()
