"""Benchmark: a finished run exported, installed offline and predicting its test clips.

For one finished run (``recipes/strong.yaml``'s, say), side by side in one run:

1. ``toolkit export`` (CPU target, no ``--torch-wheel``): its wall time and its size,
   models and wheels apart, torch's wheels apart;
2. the export installed into a fresh virtual environment from its own wheels with
   the network unreachable (``toolkit.deploy.export_check``): wall time and size installed;
3. the installed toolkit predicting the run's test clips, first from an empty cache
   (separation and features computed), then again from that cache: wall time per
   100 clips, and whether the probabilities are the run's ``test_probs`` bit for bit.

Prints a markdown table. Needs the package indexes (the export downloads its wheels)
and about 8 GB of free disk while it runs. Usage:

    python bench/export_predict.py RUN_DIR [--work runs/bench-export] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from toolkit.deploy.export import export_run
from toolkit.deploy.export_check import check_export

MIB = 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished run directory")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-export"))
    parser.add_argument("--keep", action="store_true", help="keep the export and environment")
    args = parser.parse_args()
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    export = args.work / "export"
    summary = export_run(args.run_dir, export)
    torch = sum(b for name, b in summary.wheels.items() if _is_torch(name))
    try:
        check = check_export(export, repeats=1, keep=args.work / "check" if args.keep else None)
    finally:
        if not args.keep:
            shutil.rmtree(export, ignore_errors=True)
    first, again = check.predict_seconds
    per_100 = 100 / check.clips
    print(f"run: {args.run_dir} ({len(summary.models)} models)")
    print(f"torch: {summary.torch}")
    print()
    print("| step | wall time | size |")
    print("|---|---|---|")
    print(
        f"| export (models {summary.model_bytes / MIB:.1f} MiB, {len(summary.wheels)} wheels) "
        f"| {summary.seconds:.0f} s | {(summary.model_bytes + summary.wheel_bytes) / MIB:.0f} MiB "
        f"(torch and its CUDA libraries {torch / MIB:.0f} MiB) |"
    )
    network = "no network" if check.isolated else "network not cut"
    print(
        f"| install ({network}) | {check.install_seconds:.0f} s | "
        f"{check.installed_bytes / MIB:.0f} MiB installed |"
    )
    print(f"| predict {check.clips} clips, nothing cached | {first:.1f} s "
          f"({first * per_100:.1f} s per 100 clips) | |")  # fmt: skip
    print(f"| predict {check.clips} clips, cached | {again:.1f} s "
          f"({again * per_100:.1f} s per 100 clips) | |")  # fmt: skip
    same = "yes" if check.identical else f"no (max difference {check.max_difference:.3g})"
    print(f"\nthe run's test_probs bit for bit: {same}")


def _is_torch(wheel: str) -> bool:
    """Whether a wheel is torch's or one of the CUDA libraries it links."""
    name = wheel.split("-")[0].lower()
    return name == "torch" or name.startswith(("nvidia_", "nvidia-", "cuda", "triton"))


if __name__ == "__main__":
    main()
