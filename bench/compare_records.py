"""Compare two sets of finished runs file by file (issue 28, records): the kept probabilities,
submissions and ``ensemble.json`` (apart from its new ``version``) must be identical.

Usage: python bench/compare_records.py BEFORE AFTER  (each holding seeds/run, stack/run, ...)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def same(a: Path, b: Path) -> str:
    """'' when the two files hold the same content, else what differs."""
    if not b.is_file():
        return "missing after"
    if a.suffix == ".npy":
        x, y = np.load(a), np.load(b)
        return "" if x.shape == y.shape and np.array_equal(x, y) else "numbers differ"
    if a.name == "ensemble.json":
        old, new = json.loads(a.read_text()), json.loads(b.read_text())
        old.pop("version", None), new.pop("version", None)
        for key in ("storage",):  # the run's own path
            old.pop(key, None), new.pop(key, None)
        return "" if old == new else "content differs"
    return "" if a.read_bytes() == b.read_bytes() else "bytes differ"


ROW_FIELDS = (
    "kind", "state", "params", "val_accuracy", "val_loss", "metric", "metric_value", "epochs",
    "members", "trial_number", "folds", "fold_mean", "fold_std", "best_epoch", "estimate",
    "profile",
)  # fmt: skip
"""What a leaderboard row says of its model (not its times, paths or provenance)."""


def rows(db: Path) -> dict[str, dict[str, object]]:
    """Each row of a leaderboard, by id: :data:`ROW_FIELDS`."""
    from toolkit.leaderboard.store import Leaderboard

    return {r.id: {f: getattr(r, f) for f in ROW_FIELDS} for r in Leaderboard(db).rows()}


def main(before: Path, after: Path) -> int:
    failures = 0
    for run in sorted(p for p in before.glob("*/run") if p.is_dir()):
        files = [
            p
            for p in run.rglob("*")
            if p.is_file()
            and (
                p.suffix == ".npy"
                or p.name in ("submission.csv", "ensemble.json")
                or p.name.endswith("_probs.csv")
            )
        ]
        bad = [(f, same(f, after / f.relative_to(before))) for f in sorted(files)]
        bad = [(f, why) for f, why in bad if why]
        failures += len(bad)
        print(f"{run.relative_to(before)}: {len(files)} files compared, {len(bad)} differ")
        for f, why in bad:
            print(f"  {f.relative_to(before)}: {why}")
        db = run.parent / "leaderboard.db"
        old, new = rows(db), rows(after / db.relative_to(before))
        differ = [i for i in old if old[i] != new.get(i)] + [i for i in new if i not in old]
        failures += len(differ)
        print(f"{db.relative_to(before)}: {len(old)} rows compared, {len(differ)} differ")
        for row_id in differ:
            print(f"  {row_id}: {old.get(row_id)} then, {new.get(row_id)} now")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
