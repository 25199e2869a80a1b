"""New clips predicted by a finished run: the models of its submission, through the same
separation and feature pipeline, combined as the run combined them.

The clips are a folder of audio files (ids: the file names, in sorted order;
without their extension unless the run's competition names its clips with it,
``test_001.wav``, as its submission's ids show) or a CSV of ids (kept as written)
shaped like the sample submission
(its id column is the run's ``data.id_column``), whose clips are in ``audio``
(default: the CSV's folder's ``data.test_audio`` folder, ``test/``, when there
is one, else the CSV's own folder). Each model's recipe computes the features
(its cache: the recipe's ``cache.dir``, or ``cache``; an export's own
``cache/``), so the run's own test clips take their cached features, and each
feature setting is computed once for all the models that share it. The models
(:mod:`toolkit.deploy.chosen`) predict as their training predicted its test clips
(:mod:`toolkit.deploy.trained`) and are combined as the run combined them (the
ensemble's weights, or its stack's level-2 model), so on the run's own test
clips, in its order, the probabilities are the run's.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from toolkit.data.cache import atomic_write
from toolkit.data.dataset import clip_files, folder_clips, is_file_name, read_ids, submission_layout
from toolkit.data.submission import fill_submission, probability_frame
from toolkit.deploy.chosen import Choice, chosen_models
from toolkit.deploy.trained import PLUGINS, TrainedModel, recorded_version_changes
from toolkit.errors import DataError, ModelError
from toolkit.progress import progress_bar, warn
from toolkit.runs.run_dir import SUBMISSION

if TYPE_CHECKING:
    from toolkit.training.pipeline import ClipFeatures  # torch: imported only when predicting

EXPORT_MANIFEST = "export.json"
"""The file that makes a folder an export (see :mod:`toolkit.deploy.export`)."""

EXPORT_CACHE = "cache"
"""An export's own cache folder (stems and features of the clips it predicts)."""

PREDICTIONS = "predictions"
"""The folder of a run (or export) where ``toolkit predict`` writes unless told where."""

FILE_NAME_IDS = "ids_are_file_names"
"""The key of an export's manifest that says whether the competition's ids are file names."""


@dataclass
class Clips:
    """The clips to predict: ids, their audio files, and the sample's columns if it has any."""

    ids: list[str]
    files: list[Path]
    columns: list[str] | None = None
    """The columns of the sample submission the ids came from (``None``: a folder, or a CSV
    of ids alone)."""


@dataclass
class Prediction:
    """The run's class probabilities of the clips, and the submission they make."""

    ids: list[str]
    classes: list[str]
    probabilities: np.ndarray
    """``[N, K]``: row i is clip ``ids[i]``, column k class ``classes[k]``."""
    columns: list[str]
    """The submission's columns: the id and a label, or the id and one per class."""
    id_column: str
    models: list[str] = field(default_factory=list)
    """The ids of the models that predicted."""

    def submission(self) -> pd.DataFrame:
        """The submission: a predicted label per clip, or its probabilities per class."""
        return fill_submission(
            self.columns, self.id_column, self.ids, self.classes, self.probabilities
        )

    def probability_table(self) -> pd.DataFrame:
        """Per-class probabilities per clip, as a run's ``test_probs.csv`` holds them."""
        return probability_frame(self.ids, self.probabilities, self.classes)

    def write(self, path: Path | str, probabilities: bool = False) -> Path:
        """Write the submission (or, with ``probabilities``, the probability table) as CSV."""
        path = Path(path)
        frame = self.probability_table() if probabilities else self.submission()
        atomic_write(path, lambda handle: frame.to_csv(handle, index=False))
        return path


def predict(
    run_dir: Path | str,
    clips: Path | str,
    *,
    audio: Path | str | None = None,
    output: Path | str | None = None,
    probabilities: bool = False,
    cache: Path | str | None = None,
    device: str = "auto",
) -> Prediction:
    """Predict ``clips`` (a folder of audio files, or a CSV of ids whose audio is in
    ``audio``) with the submission of the finished run (or export) ``run_dir``; returns the
    :class:`Prediction` (ids, classes, probabilities; ``.submission()`` the table).

    Writes the submission to ``output`` when given (with ``probabilities``, the
    per-class probabilities instead). ``cache`` overrides where stems and features
    are cached; ``device`` is ``auto`` (CUDA when present), ``cpu``, ``cuda``, ...
    Every model file is checked before any clip is decoded; a missing or damaged
    one, like a clip that cannot be decoded, is a one-line error naming it.
    """
    import torch  # noqa: F401 - here: importing toolkit stays light

    from toolkit.data.checks import check_writable
    from toolkit.devices import check_device, resolve_device
    from toolkit.training.pipeline import clip_features

    check_device(device, "--device", "use --device cpu")
    if output is not None:
        check_writable(Path(output).absolute().parent, "--output")
    choice = chosen_models(run_dir)
    cache_dir = _cache_dir(choice.run_dir, cache)
    plugin_dirs = [choice.run_dir / PLUGINS]
    models = [
        TrainedModel.load(m.folder, cache_dir=cache_dir, plugin_dirs=plugin_dirs)
        for m in choice.models
    ]
    states = [model.states() for model in models]
    classes = _shared_classes(models, states)
    for change in recorded_version_changes([s for group in states for s in group]):
        warn(f"trained with {change}: the probabilities may differ from the run's")
    data = models[0].recipe.data
    file_names = ids_are_file_names(choice, data.id_column)
    wanted = _read_clips(Path(clips), data.id_column, audio, data.test_audio, file_names)
    columns = _columns(wanted, choice, classes, data.id_column, data.label_column)
    target = resolve_device(device)
    views: dict[str, ClipFeatures] = {}
    probs: dict[str, np.ndarray] = {}
    with progress_bar("predicting", sum(len(s) for s in states)) as advance:
        for chosen, model, model_states in zip(choice.models, models, states, strict=True):
            view = _view_key(model)
            if view not in views:
                views[view] = clip_features(
                    model.recipe, model.registry, wanted.files, wanted.ids, "predict"
                )
            probs[chosen.id] = model.probabilities(views[view], target, model_states)
            advance(len(model_states))
    prediction = Prediction(
        ids=wanted.ids,
        classes=classes,
        probabilities=choice.combine(probs),
        columns=columns,
        id_column=data.id_column,
        models=[m.id for m in choice.models],
    )
    if output is not None:
        prediction.write(output, probabilities)
    return prediction


def _view_key(model: TrainedModel) -> str:
    """What the model's features depend on: models equal in it share one feature array."""
    from toolkit.training.data_views import VIEW_KEYS

    return json.dumps(model.recipe.model_dump(mode="json", include=VIEW_KEYS), sort_keys=True)


def _cache_dir(run_dir: Path, cache: Path | str | None) -> Path | None:
    """Where stems and features go: ``cache`` if given; in an export its own ``cache/``, or
    the temporary folder's when the export cannot be written; else (``None``) each recipe's
    ``cache.dir``."""
    from toolkit.data.checks import check_writable

    if cache is not None:
        check_writable(Path(cache), "--cache")
        return Path(cache).absolute()
    if not (run_dir / EXPORT_MANIFEST).is_file():
        return None
    own = (run_dir / EXPORT_CACHE).absolute()
    try:
        check_writable(own, "cache")
        return own
    except DataError:
        return Path(tempfile.gettempdir()) / "toolkit-cache"


def _shared_classes(models: list[TrainedModel], states: list[list[dict[str, Any]]]) -> list[str]:
    """The classes every model predicts (in one order), or a ModelError naming a model
    that predicts others."""
    first = [str(c) for c in states[0][0]["classes"]]
    for model, group in zip(models, states, strict=True):
        for state, path in zip(group, model.weight_files, strict=True):
            if [str(c) for c in state["classes"]] != first:
                raise ModelError(
                    f"{path}: predicts classes {state['classes']}, the run's other models "
                    f"{first}; it belongs to another run"
                )
    return first


def default_output(run_dir: Path | str, clips: Path | str, probabilities: bool = False) -> Path:
    """Where ``toolkit predict`` writes unless told: ``RUN_DIR/predictions/NAME.csv``, NAME
    the clips folder's name or the CSV's (``NAME_probabilities.csv`` with ``probabilities``)."""
    clips = Path(clips)
    name = clips.resolve().name if clips.is_dir() else clips.stem
    return Path(run_dir) / PREDICTIONS / f"{name}{'_probabilities' if probabilities else ''}.csv"


def ids_are_file_names(choice: Choice, id_column: str) -> bool:
    """Whether the run's competition names its clips by file name, extension included
    (``test_001.wav``): an export's manifest records it; a run's submission (the sample's
    ids), else its first model's test probabilities, show it."""
    manifest = choice.run_dir / EXPORT_MANIFEST
    if manifest.is_file():
        recorded = json.loads(manifest.read_text()).get(FILE_NAME_IDS)
        if recorded is not None:
            return bool(recorded)
    tables = [
        (choice.run_dir / SUBMISSION, id_column),
        (choice.models[0].folder.probabilities_file("test", ".csv"), "id"),
    ]
    for table, column in tables:
        if table.is_file():
            frame = pd.read_csv(table, dtype=str, keep_default_na=False)
            if column in frame.columns and len(frame):
                return all(is_file_name(i) for i in frame[column])
    return False


def _read_clips(
    clips: Path, id_column: str, audio: Path | str | None, test_audio: str, file_names: bool
) -> Clips:
    """The clips a folder or a CSV of ids names (see the module docstring)."""
    if clips.is_dir():
        if audio is not None:
            raise DataError(f"--audio: {clips} is a folder of clips already; give a CSV of ids")
        ids, files = folder_clips(clips, file_names)
        return Clips(ids, files)
    if not clips.is_file():
        raise DataError(f"{clips}: no such folder of clips or CSV of ids")
    frame, ids = read_ids(clips, id_column, "CSV of ids")
    folder = Path(audio) if audio is not None else _audio_beside(clips, test_audio)
    if not folder.is_dir():
        raise DataError(f"--audio {folder}: folder not found (the clips of {clips.name})")
    columns = list(frame.columns)
    return Clips(ids, clip_files(ids, folder, clips), columns if len(columns) > 1 else None)


def _audio_beside(csv: Path, test_audio: str) -> Path:
    """The audio folder of a CSV of ids: its folder's test audio folder, else its folder."""
    beside = csv.parent / test_audio
    return beside if beside.is_dir() else csv.parent


def _columns(
    clips: Clips, choice: Choice, classes: list[str], id_column: str, label_column: str
) -> list[str]:
    """The submission's columns: the sample's, else the run's submission's, else the id and
    the label column."""
    if clips.columns is not None:
        if submission_layout(clips.columns, id_column, classes) is None:
            raise DataError(
                f"columns {clips.columns} are neither [{id_column}, label] nor {id_column} and "
                f"one column per class {classes}"
            )
        return clips.columns
    return run_submission_columns(choice.run_dir) or [id_column, label_column]


def run_submission_columns(run_dir: Path) -> list[str] | None:
    """The columns of the run's submission: an export's manifest says them, a run directory's
    ``submission.csv`` has them; ``None`` when neither is there."""
    manifest = run_dir / EXPORT_MANIFEST
    if manifest.is_file():
        columns = json.loads(manifest.read_text()).get("submission_columns")
        if columns:
            return [str(c) for c in columns]
    submission = run_dir / SUBMISSION
    if submission.is_file():
        return list(pd.read_csv(submission, nrows=0).columns)
    return None
