"""Benchmark: Spleeter 2stems separation speed, every backend on the same clips in one run.

Backends: the torch port in ``exact`` and ``packed`` mode, and, when the reference
virtualenv is found (``TOOLKIT_SPLEETER_PYTHON``, see docs/spleeter.md), the official
package as users call it (``Separator.separate`` per clip, ``tf-separate``) and the
same package with its graph built once for all clips (``tf-session``, what our
``tensorflow`` backend runs). Each backend first separates one clip (loading, graph
building, worker start-up: reported apart), then all clips in one call; with
``--rounds`` > 1 the fastest round counts, so a moment of load from other programs
weighs less. Speed is audio seconds per wall second; the ratio is against
``tf-separate``.

Usage: python bench/spleeter_speed.py [--clips 16] [--durations 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable, Sequence
from datetime import datetime

import numpy as np
import torch

from toolkit.spleeter.examples import SAMPLE_RATE, cut, load_example
from toolkit.spleeter.inference import SpleeterTorch
from toolkit.spleeter.tf_backend import TFSpleeter, reference_unavailable_reason

Runner = Callable[[Sequence[np.ndarray]], object]


def make_clips(n: int, durations: Sequence[float]) -> list[np.ndarray]:
    """``n`` clips cut from the packaged example, lengths cycling through ``durations``."""
    wave = load_example()
    return [cut(wave, 0.77 * i, durations[i % len(durations)]) for i in range(n)]


def cpu_name() -> str:
    """The CPU model, from /proc/cpuinfo when there is one."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    """Time every available backend and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--durations", default="4", help="comma-separated clip lengths (s)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--skip-tf-separate", action="store_true", help="it is slow")
    args = parser.parse_args()
    durations = [float(d) for d in args.durations.split(",")]
    clips = make_clips(args.clips, durations)
    audio = sum(c.shape[-1] for c in clips) / SAMPLE_RATE

    runners: dict[str, tuple[Runner, Callable[[], None]]] = {}
    startup: dict[str, float] = {}
    for mode in ("exact", "packed"):
        start = time.perf_counter()
        engine = SpleeterTorch(mode=mode, batch_size=args.batch_size)
        engine.separate_many(clips[:1])
        startup[f"torch-{mode}"] = time.perf_counter() - start
        runners[f"torch-{mode}"] = (engine.separate_many, lambda: None)
    reason = reference_unavailable_reason()
    apis = [] if reason else ["session"] + ([] if args.skip_tf_separate else ["separate"])
    for api in apis:
        start = time.perf_counter()
        worker = TFSpleeter(api=api)
        worker.start()
        worker.separate_many(clips[:1])
        startup[f"tf-{api}"] = time.perf_counter() - start
        runners[f"tf-{api}"] = (worker.separate_many, worker.close)

    best: dict[str, float] = {}
    loads = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for name, (run, _close) in runners.items():
            start = time.perf_counter()
            run(clips)
            elapsed = time.perf_counter() - start
            best[name] = min(best.get(name, float("inf")), elapsed)
            loads.append(os.getloadavg()[0])
    for _run, close in runners.values():
        close()

    print(f"# Spleeter 2stems speed, {datetime.now().isoformat(timespec='minutes')}")
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); load average during the run "
        f"{min(loads):.1f}..{max(loads):.1f}"
    )
    print(
        f"clips: {len(clips)} x {args.durations} s = {audio:.1f} s of audio; "
        f"best of {args.rounds} rounds; torch batch_size {args.batch_size}"
    )
    if reason:
        print(f"reference backend skipped: {reason}")
    print()
    reference = best.get("tf-separate")
    print("| backend | start-up s | wall s | audio s / wall s | vs tf-separate |")
    print("|---|---|---|---|---|")
    for name, elapsed in best.items():
        ratio = f"{reference / elapsed:.1f}x" if reference else "n/a"
        print(f"| {name} | {startup[name]:.1f} | {elapsed:.2f} | {audio / elapsed:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
