"""Benchmark: two revisions of the toolkit give the same files, bit for bit (issue 28).

Checks that a restructuring changed no behaviour. Each revision (default: ``main``, the
code before, and ``HEAD``) is checked out into a temporary ``git worktree`` with a venv of
its own, and runs, each from scratch (its own demo folder, cache and leaderboard), the same
small studies on the demo competition made small (``--train``/``--test`` clips):

1. ``recipes/demo.yaml`` (a plain run, ``train.epochs`` 2);
2. ``recipes/demo-search.yaml`` with ``ensemble.seeds`` 2 and ``ensemble.refit`` true
   (3 trials of 2 epochs);
3. a tiny profile study (two cheap profiles, mel + ResNet18 and musicnn + an MLP head, 4
   trials) with ``ensemble.method: stack``; its recipe is written by this script.

Then it compares, one line per file (``same`` / ``DIFFERENT: ...``): every kept
probability file (``*_probs.npy``, ``*_probs.csv``) and ``submission.csv`` byte for byte,
``ensemble.json`` as JSON (each revision's work folder replaced by ``<work>``; the fields
that record time or a new ``version`` are ignored and printed), and each run's leaderboard
rows (times ignored, a plain run's timestamped id and paths normalised). And the new code
on the old revision's files: ``toolkit leaderboard RUN --json`` on the old leaderboard.db
prints what the old code printed; ``toolkit predict`` of each old run on the test clips
(from an empty cache) writes its ``test_probs.csv`` byte for byte; ``toolkit report`` of
the old demo-search run (which reads its ``ensemble.json``) succeeds. Exit 1 on any
difference; a run of either revision that fails stops the script (exit 1, its log named).

Each revision's venv: the editable install of the shared venv maps ``toolkit``, ``plugins``
and ``leaderboard`` to one checkout, so its sources on ``PYTHONPATH`` are not enough. The
venv running this script is copied with hard links (``cp -al``, seconds, no extra disk)
and ``python -m pip install -q --no-deps -e .`` run inside the revision's worktree (pip
replaces the copied editable files, it never writes into them). Everything is made under
``--work`` (default: a temporary folder, removed at the end with the worktrees unless
``--keep``; kept with its logs when a run failed). About 10 to 16 minutes on 2 CPU cores
(shared, under load). Usage, from the repository:

    .venv/bin/python bench/layout_identity.py [--old main] [--new HEAD] [--work DIR] [--keep]
        [--train 60 --test 16]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
KEPT = ("*_probs.npy", "*_probs.csv", "submission.csv", "ensemble.json")
TIME_FIELDS = {"seconds", "created_at"}
"""Fields that record when or how long: never compared."""
NEW_FIELDS = {"version"}
"""Top-level fields of ``ensemble.json`` the new code may add: ignored when the old lacks them."""
STAMP = re.compile(r"/r\d{8}-\d{6}-\d{3}")  # a plain run's id: RUN/rYYYYMMDD-HHMMSS-mmm

PROFILES = """\
# A tiny profile study (recipes/strong.yaml's shape): two cheap profiles, stacked.
name: profiles
data:
  sample_rate: 16000
  duration: 3.0
  demo: {n_train: 400, n_test: 100, seed: 0, duration: 3.0}
separator: {name: spleeter, stem: vocals, backend: torch}
split: {test_size: 0.2, random_state: 42, stratify: true}
train:
  batch_size: 32
  seed: 0
  optimizer: {name: adamw, lr: 0.001, weight_decay: 0.01}
  scheduler: {name: cosine}
search:
  n_trials: 4
  metric: log_loss
  sampler: {name: tpe, seed: 0}
  pruner: {name: none}
  profiles:
    head:
      features: {name: musicnn, model: MSD_musicnn, output: penultimate}
      augmenters: [{name: oversample, rarest: 1}, {name: mixup, alpha: 0.2}]
      model: {backbone: {name: head, hidden: 64, dropout: 0.3}}
      train: {epochs: 4}
      space:
        train.optimizer.lr: {low: 0.0001, high: 0.01, log: true}
    cnn:
      features: {name: mel, n_fft: 1024, hop_length: 256, n_mels: 64}
      augmenters:
        - {name: oversample, rarest: 3}
        - {name: time_mask, copies: 1, max_width: 20}
        - {name: mixup, alpha: 0.2}
      model: {backbone: {name: resnet18, width: 8}}
      train:
        epochs: 2
        optimizer: {name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0.0001}
      space:
        train.optimizer.lr: {low: 0.01, high: 0.1, log: true}
ensemble: {size: 5, method: stack}
"""


@dataclass
class Revision:
    """One revision's checkout and the files its runs wrote."""

    label: str
    spec: str
    work: Path
    commit: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    boards: dict[str, str] = field(default_factory=dict)
    """Run name -> what this revision's ``toolkit leaderboard RUN --json`` printed."""

    @property
    def src(self) -> Path:
        return self.work / "src"

    @property
    def runs(self) -> Path:
        return self.work / "runs"

    @property
    def db(self) -> Path:
        return self.runs / "leaderboard.db"

    @property
    def toolkit(self) -> str:
        return str(self.src / ".venv" / "bin" / "toolkit")


@dataclass
class Tally:
    """The compared files and their verdicts."""

    lines: list[tuple[str, str]] = field(default_factory=list)

    def add(self, what: str, verdict: str) -> None:
        """Record and print one comparison (``same`` or ``DIFFERENT: ...``)."""
        self.lines.append((what, verdict))
        print(f"{what}: {verdict}", flush=True)

    @property
    def different(self) -> int:
        return sum(not v.startswith("same") for _, v in self.lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="main", help="the revision before (default: main)")
    parser.add_argument("--new", default="HEAD", help="the revision after (default: HEAD)")
    parser.add_argument("--work", type=Path, help="where to work (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and worktrees")
    parser.add_argument("--train", type=int, default=60, help="demo train clips")
    parser.add_argument("--test", type=int, default=16, help="demo test clips")
    args = parser.parse_args()
    if sys.prefix == sys.base_prefix:
        sys.exit("error: run this with a venv's python (.venv/bin/python): its venv is copied")
    work = (args.work or Path(tempfile.mkdtemp(prefix="layout-identity-"))).absolute()
    if args.work is not None and work.exists() and any(work.iterdir()):
        sys.exit(f"error: {work} is not empty; give a new --work folder")
    started = time.perf_counter()
    old = Revision("old", args.old, work / "old")
    new = Revision("new", args.new, work / "new")
    tally = Tally()
    finished = False
    try:
        for rev in (old, new):
            build(rev, args)
        print(f"\nold: {old.spec} ({old.commit[:7]}); new: {new.spec} ({new.commit[:7]})")
        print(f"ignored in ensemble.json and leaderboard rows: {', '.join(sorted(TIME_FIELDS))};"
              f" in ensemble.json when the old has none: {', '.join(sorted(NEW_FIELDS))};"
              " paths compared with each revision's work folder as <work>\n")  # fmt: skip
        compare_runs(old, new, tally)
        new_reads_old(old, new, work, tally)
        finished = True
    finally:
        if not args.keep:
            for rev in (old, new):
                git("worktree", "remove", "--force", str(rev.src), check=False)
            if finished:
                shutil.rmtree(work, ignore_errors=True)
            else:
                print(f"kept {work} for its logs", file=sys.stderr)
    for rev in (old, new):
        steps = ", ".join(f"{k} {v:.0f} s" for k, v in rev.seconds.items())
        print(f"{rev.label} ({rev.spec}): {steps}")
    total = time.perf_counter() - started
    print(f"\n{len(tally.lines)} compared, {len(tally.lines) - tally.different} same, "
          f"{tally.different} different ({total / 60:.1f} min)")  # fmt: skip
    sys.exit(1 if tally.different else 0)


def git(*args: str, check: bool = True) -> str:
    """Run git in this repository and return its output."""
    done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        sys.exit(f"error: git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def build(rev: Revision, args: argparse.Namespace) -> None:
    """Check ``rev`` out with a venv of its own and run the three studies in it."""
    print(f"{rev.label}: {rev.spec} into {rev.src}", flush=True)
    clock = time.perf_counter()
    rev.commit = git("rev-parse", "--verify", f"{rev.spec}^{{commit}}")
    rev.work.mkdir(parents=True)
    git("worktree", "add", "--detach", str(rev.src), rev.commit)
    subprocess.run(["cp", "-al", sys.prefix, str(rev.src / ".venv")], check=True)
    pip = [str(rev.src / ".venv/bin/python"), "-m", "pip", "install", "-q", "--no-deps", "-e", "."]
    subprocess.run(pip, cwd=rev.src, check=True, stdout=subprocess.DEVNULL)
    rev.seconds["checkout and venv"] = time.perf_counter() - clock
    recipe = rev.work / "profiles.yaml"
    recipe.write_text(PROFILES)
    common = [
        f"data.demo.folder={rev.work / 'data'}",
        f"data.demo.n_train={args.train}",
        f"data.demo.n_test={args.test}",
        f"cache.dir={rev.work / 'cache'}",
        f"output.leaderboard={rev.db}",
    ]
    studies = {
        "demo": ("recipes/demo.yaml", ["train.epochs=2"]),
        "demo-search": (
            "recipes/demo-search.yaml",
            [
                "train.epochs=2",
                "search.n_trials=3",
                "search.timeout=3600",
                "ensemble.seeds=2",
                "ensemble.refit=true",
            ],
        ),
        "profiles": (str(recipe), []),
    }
    for name, (path, sets) in studies.items():
        clock = time.perf_counter()
        command = ["run", path, "--no-report", "--output", str(rev.runs / name)]
        toolkit(rev, name, [*command, *[a for s in (*common, *sets) for a in ("--set", s)]])
        rev.seconds[name] = time.perf_counter() - clock


def toolkit(rev: Revision, log: str, command: list[str], *, check: bool = True) -> str | None:
    """Run ``rev``'s toolkit CLI in its checkout; its output goes to ``logs/LOG.log``.
    Return stdout, or None when it failed and ``check`` is off."""
    env = {k: v for k, v in os.environ.items() if k != "TOOLKIT_LEADERBOARD"}
    env["TOOLKIT_NO_PROGRESS"] = "1"
    done = subprocess.run(
        [rev.toolkit, *command], cwd=rev.src, env=env, capture_output=True, text=True
    )
    logs = rev.work / "logs"
    logs.mkdir(exist_ok=True)
    path = logs / f"{log}.log"
    path.write_text(f"$ toolkit {' '.join(command)}\n{done.stdout}{done.stderr}")
    if done.returncode == 0:
        return done.stdout
    if check:
        tail = (done.stderr.strip().splitlines() or [""])[-1]
        sys.exit(f"error: {rev.label}: toolkit {command[0]} {log} failed: {tail} (log: {path})")
    return None


def compare_runs(old: Revision, new: Revision, tally: Tally) -> None:
    """Every kept file of every run, and each run's leaderboard rows."""
    for run in run_names(old):
        files = sorted({p for pattern in KEPT for p in kept(old.runs / run, pattern)} |
                       {p for pattern in KEPT for p in kept(new.runs / run, pattern)})  # fmt: skip
        for rel in files:
            a, b = old.runs / run / rel, new.runs / run / rel
            tally.add(f"{run}/{rel}", compare_file(a, b, old.work, new.work))
        rows = [leaderboard_rows(rev, run) for rev in (old, new)]
        tally.add(f"{run}: leaderboard rows ({len(rows[0])})", compare_json(*rows, top=False))


def run_names(rev: Revision) -> list[str]:
    """The run folders ``rev`` wrote."""
    return sorted(p.name for p in rev.runs.iterdir() if p.is_dir() and not p.name.startswith("."))


def kept(run_dir: Path, pattern: str) -> list[Path]:
    """The files of ``pattern`` under ``run_dir``, relative to it."""
    return [p.relative_to(run_dir) for p in run_dir.rglob(pattern)] if run_dir.is_dir() else []


def compare_file(a: Path, b: Path, old_work: Path, new_work: Path) -> str:
    """``same`` or what differs between the old file ``a`` and the new ``b``."""
    for path, side in ((a, "old"), (b, "new")):
        if not path.is_file():
            return f"DIFFERENT: only the {'new' if side == 'old' else 'old'} revision wrote it"
    if a.name.endswith(".json"):
        texts = [p.read_text().replace(str(w), "<work>") for p, w in ((a, old_work), (b, new_work))]
        return compare_json(*(json.loads(t) for t in texts), top=True)
    if a.read_bytes() == b.read_bytes():
        return "same"
    if a.suffix == ".npy":
        x, y = np.load(a), np.load(b)
        if x.shape != y.shape:
            return f"DIFFERENT: shape {x.shape} != {y.shape}"
        return f"DIFFERENT: max |difference| {np.abs(x - y).max():.3g}"
    old_lines, new_lines = a.read_text().splitlines(), b.read_text().splitlines()
    for n, (x, y) in enumerate(zip(old_lines, new_lines, strict=False), start=1):
        if x != y:
            return f"DIFFERENT: line {n}: {x!r} != {y!r}"
    return f"DIFFERENT: {len(old_lines)} lines != {len(new_lines)} lines"


def compare_json(old: Any, new: Any, *, top: bool) -> str:
    """``same`` or the first differing key, ignoring the time fields (and, with ``top``,
    the new top-level fields the old has not); the verdict names the fields ignored."""
    ignored: set[str] = set()
    if top and isinstance(old, dict) and isinstance(new, dict):
        ignored |= {k for k in new if k not in old and k in NEW_FIELDS}
        new = {k: v for k, v in new.items() if k not in ignored}
    where = first_difference(strip(old, ignored), strip(new, ignored), "")
    verdict = "same" if where is None else f"DIFFERENT: {where}"
    return f"{verdict} (ignored: {', '.join(sorted(ignored))})" if ignored else verdict


def strip(value: Any, ignored: set[str]) -> Any:
    """``value`` without the time fields, at any depth; their names go into ``ignored``."""
    if isinstance(value, dict):
        ignored |= TIME_FIELDS & set(value)
        return {k: strip(v, ignored) for k, v in value.items() if k not in TIME_FIELDS}
    if isinstance(value, list):
        return [strip(v, ignored) for v in value]
    return value


def first_difference(a: Any, b: Any, at: str) -> str | None:
    """The dotted path of the first value that differs (bit for bit), or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{at}{key}: only in the {'new' if key in b else 'old'}"
            found = first_difference(a[key], b[key], f"{at}{key}.")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for n, (x, y) in enumerate(zip(a, b, strict=True)):
            found = first_difference(x, y, f"{at}{n}.")
            if found:
                return found
        return None
    same = type(a) is type(b) and a == b
    return None if same else f"{at.rstrip('.')}: {a!r} != {b!r}"


def leaderboard_rows(rev: Revision, run: str) -> list[dict[str, Any]]:
    """``run``'s rows as ``rev``'s code prints them, paths and a plain run's id normalised."""
    out = toolkit(rev, f"leaderboard-{run}", leaderboard_args(rev, run)) or "[]"
    rev.boards[run] = out
    text = STAMP.sub("/r<time>", out.replace(str(rev.work), "<work>"))
    return sorted(json.loads(text), key=lambda row: str(row["id"]))


def leaderboard_args(rev: Revision, run: str) -> list[str]:
    return ["leaderboard", str(rev.runs / run), "--db", str(rev.db), "--json"]


def new_reads_old(old: Revision, new: Revision, work: Path, tally: Tally) -> None:
    """The new code on the old revision's leaderboard, runs and ``ensemble.json``."""
    cache = work / "predict-cache"
    sample = old.work / "data" / "sample_submission.csv"
    for run in run_names(old):
        printed = toolkit(new, f"old-leaderboard-{run}", leaderboard_args(old, run), check=False)
        if printed is None:
            verdict = "DIFFERENT: the new code's leaderboard failed"
        else:
            verdict = "same" if printed == old.boards[run] else "DIFFERENT: not the old output"
        tally.add(f"{run}: old leaderboard.db, new code's leaderboard --json", verdict)
        out = work / "predictions" / f"{run}.csv"
        command = ["predict", str(old.runs / run), str(sample), "--probabilities",
                   "--output", str(out), "--cache", str(cache)]  # fmt: skip
        clock = time.perf_counter()
        done = toolkit(new, f"predict-old-{run}", command, check=False)
        new.seconds[f"predict old {run}"] = time.perf_counter() - clock
        expected = old.runs / run / "test_probs.csv"
        verdict = same_values(out, expected) if done is not None else "DIFFERENT: predict failed"
        tally.add(f"{run}: new code's predict of the old run vs its test_probs.csv", verdict)
    report = toolkit(new, "report-old-demo-search", ["report", str(old.runs / "demo-search"),
                                                     "--db", str(old.db)], check=False)  # fmt: skip
    verdict = "same" if report is not None else "DIFFERENT: the new code's report failed"
    tally.add("demo-search: new code's report of the old run (reads its ensemble.json)", verdict)


def same_values(got: Path, expected: Path) -> str:
    """``same`` when ``got`` is ``expected`` byte for byte, else how their numbers differ."""
    if got.read_bytes() == expected.read_bytes():
        return "same"
    a, b = (pd.read_csv(p, dtype={"id": str}).set_index("id") for p in (got, expected))
    if sorted(a.index) != sorted(b.index) or list(a.columns) != list(b.columns):
        return "DIFFERENT: not the same clips and classes"
    gap = np.abs(a.loc[b.index].to_numpy() - b.to_numpy()).max()
    return f"DIFFERENT: the bytes differ; max |difference| {gap:.3g}"


if __name__ == "__main__":
    main()
