"""An export tried as its notebook will use it, before it is uploaded.

:func:`check_export` installs the export into a fresh virtual environment from
its own wheels alone (the README's command), with the network unreachable
where this machine can give the commands a network namespace of their own
(``unshare --net``), then predicts the run's own test clips with the installed
toolkit. Their probabilities must be the run's ``test_probs`` bit for bit. It
times the install and each prediction (the first from an empty cache, any
repeat from the cache the first filled) and measures what was installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.deploy.export import INSTALL_COMMAND, WHEELS
from toolkit.deploy.prediction import EXPORT_MANIFEST
from toolkit.errors import ToolkitError
from toolkit.recipe.schema import Data
from toolkit.runs.run_dir import RunDir

NO_NETWORK = (["unshare", "--net"], ["unshare", "--user", "--map-root-user", "--net"])
"""Command prefixes that run a command in a network namespace of its own (root, then not)."""


@dataclass
class ExportCheck:
    """How an export installed and predicted, and whether it predicted as the run did."""

    install_seconds: float
    installed_bytes: int
    clips: int
    predict_seconds: list[float] = field(default_factory=list)
    """The first prediction's (nothing cached), then each repeat's (stems and features
    cached)."""
    isolated: bool = False
    """Whether the network was unreachable (a network namespace of its own)."""
    max_difference: float = 0.0
    """The largest difference from the run's ``test_probs`` (0: bit for bit)."""

    @property
    def identical(self) -> bool:
        """Whether the probabilities are the run's bit for bit."""
        return self.max_difference == 0.0

    def describe(self) -> str:
        """One line: the install, the predictions, the comparison."""
        where = "with no network" if self.isolated else "(the network was not cut here)"
        first, *again = self.predict_seconds
        runs = f"{first:.0f} s" + "".join(f", again in {s:.0f} s from the cache" for s in again)
        same = (
            "the run's test_probs bit for bit"
            if self.identical
            else f"differs from the run's test_probs by up to {self.max_difference:.3g}"
        )
        return (
            f"installed {where} in {self.install_seconds:.0f} s "
            f"({self.installed_bytes / 2**30:.1f} GiB); predicted the run's {self.clips} test "
            f"clips in {runs}: {same}"
        )


def offline_prefix() -> list[str] | None:
    """A command prefix that cuts the network off (see :data:`NO_NETWORK`), if this machine
    can make one."""
    if shutil.which("unshare") is None:
        return None
    for prefix in NO_NETWORK:
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix
    return None


def check_export(export: Path | str, *, repeats: int = 0, keep: Path | None = None) -> ExportCheck:
    """Install ``export`` offline and predict the run's test clips with it (see the module
    docstring), then ``repeats`` more times from the cache; ``keep`` keeps the environment
    there (default: a temporary folder, removed)."""
    export = Path(export).absolute()
    manifest = _manifest(export)
    _same_python(manifest)
    run = Path(manifest["run"])
    expected_path = run / "test_probs.csv"
    if not expected_path.is_file():
        raise ToolkitError(f"{expected_path}: not found; the check compares with the run's")
    clips = _test_clips(export, manifest)
    work = Path(tempfile.mkdtemp(prefix="toolkit-export-check-")) if keep is None else keep
    prefix = offline_prefix() or []
    try:
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        started = time.perf_counter()
        install = f". {venv}/bin/activate && EXPORT={export} && {INSTALL_COMMAND}"
        _run(prefix, install, work, "installing the export")
        check = ExportCheck(
            install_seconds=time.perf_counter() - started,
            installed_bytes=_size(venv),
            clips=0,
            isolated=bool(prefix),
        )
        output = work / "probs.csv"
        for _ in range(1 + repeats):
            started = time.perf_counter()
            _run(
                prefix,
                f'{venv}/bin/toolkit predict "{export}" "{clips}" --probabilities '
                f'-o "{output}" --cache "{work / "cache"}"',
                work,
                "predicting with the installed export",
            )
            check.predict_seconds.append(time.perf_counter() - started)
        got = pd.read_csv(output, dtype={"id": str}).set_index("id")
        expected = pd.read_csv(expected_path, dtype={"id": str}).set_index("id")
        if sorted(got.index) != sorted(expected.index) or list(got.columns) != list(
            expected.columns
        ):
            raise ToolkitError(f"{output}: not the clips and classes of {expected_path}")
        got = got.loc[expected.index]
        check.clips = len(got)
        check.max_difference = float(np.abs(got.to_numpy() - expected.to_numpy()).max())
        return check
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def _manifest(export: Path) -> dict[str, object]:
    path = export / EXPORT_MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ToolkitError(
            f"{path}: missing or damaged; give a folder toolkit export wrote"
        ) from None
    if not (export / WHEELS).is_dir():
        raise ToolkitError(f"{export}: an export without wheels (--no-wheels) cannot be installed")
    return manifest


def _same_python(manifest: dict[str, object]) -> None:
    """The check installs with this Python: the export must be for its version."""
    wanted = str(manifest["target"]["python"])  # type: ignore[index]
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if wanted != here:
        raise ToolkitError(f"the export is for Python {wanted}; check it with Python {wanted}")


def _test_clips(export: Path, manifest: dict[str, object]) -> Path:
    """The run's sample submission (its test clips' ids; their audio in its test folder)."""
    folder = export / manifest["models"][0]["folder"]  # type: ignore[index]
    data = Data.model_validate(RunDir(folder).read_recipe()["data"])
    sample = Path(data.root) / data.sample_submission
    if not sample.is_file() or not (Path(data.root) / data.test_audio).is_dir():
        raise ToolkitError(f"{sample}: the run's test clips are not here to predict")
    return sample


def _run(prefix: list[str], script: str, work: Path, what: str) -> None:
    """Run ``script`` in a shell behind ``prefix``, with a bare environment (no pip settings,
    no progress bars); a failure is a one-line error saying ``what`` failed, with the
    command's last line."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(work),
        "PIP_CONFIG_FILE": os.devnull,
        "TOOLKIT_NO_PROGRESS": "1",
    }
    done = subprocess.run(
        [*prefix, "sh", "-c", script], env=env, capture_output=True, text=True, cwd=work
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ToolkitError(f"export check: {what} failed: {last}")


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
