"""A Kaggle-style competition folder: train labels, audio files, the sample submission."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.data.audio import AUDIO_EXTENSIONS, note_listing, remedy
from toolkit.errors import DataError, error_line
from toolkit.recipe.schema import Data


@dataclass(frozen=True)
class Competition:
    """What a run needs from the folder: ids, files, labels, submission shape."""

    root: Path
    train_ids: list[str]
    train_files: list[Path]
    train_labels: np.ndarray
    """Class index of each train clip, into ``classes``."""
    classes: list[str]
    """The label values of the train CSV, sorted; index i is class i."""
    test_ids: list[str]
    """Test ids in the sample submission's order."""
    test_files: list[Path]
    sample_submission: pd.DataFrame
    id_column: str
    label_column: str
    train_csv: Path
    """The train CSV the labels come from (for messages)."""
    groups: np.ndarray | None = None
    """Each train clip's value of ``data.group_column`` (clips of one group split together)."""

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: {what} not found (check data.root and the file name)")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - pandas raises many types for bad files
        raise DataError(f"{path}: cannot read {what}: {error_line(exc)}") from None
    if frame.empty:
        raise DataError(f"{path}: {what} has no rows")
    return frame


def _column(frame: pd.DataFrame, name: str, path: Path, key: str) -> pd.Series:
    if name not in frame.columns:
        close = difflib.get_close_matches(name, list(frame.columns), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise DataError(
            f"{path}: no column {name!r} ({key}); {hint}columns: {', '.join(frame.columns)}"
        )
    return frame[name].astype(str).str.strip()


def index_audio(folder: Path) -> dict[str, Path]:
    """Map each id (file name without extension, and with it) to its audio file."""
    if not folder.is_dir():
        raise DataError(f"{folder}: audio folder not found (check data.root and the folder name)")
    rank = {ext: i for i, ext in enumerate(AUDIO_EXTENSIONS)}
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        ext = path.suffix.lower()
        if ext not in rank or not path.is_file():
            continue
        found[path.name] = path
        current = found.get(path.stem)
        if current is None or rank[ext] < rank[current.suffix.lower()]:
            found[path.stem] = path
    return found


def clip_files(ids: list[str], folder: Path, csv_path: Path) -> list[Path]:
    """The audio file of each id in ``folder``: an id without one, or an empty file, is a
    one-line DataError (naming ``csv_path``, the list the ids come from)."""
    files = index_audio(folder)
    missing = [i for i in ids if i not in files]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DataError(
            f"{csv_path}: id {missing[0]!r}{more} has no audio file in {folder} "
            f"(expected {expected_file(missing[0])})"
        )
    found = [files[i] for i in ids]
    if csv_path.is_file():
        note_listing(found, csv_path)
    empty = next((f for f in found if f.stat().st_size == 0), None)
    if empty is not None:
        raise DataError(f"{empty}: empty file (0 bytes); {remedy(empty)}")
    return found


def is_file_name(clip_id: str) -> bool:
    """Whether an id is an audio file's name, extension included (``test_001.wav``)."""
    return Path(clip_id).suffix.lower() in AUDIO_EXTENSIONS


def expected_file(clip_id: str) -> str:
    """The audio file an id names: the id itself when it is a file name (``clip_1.wav``),
    else the id with any audio extension (``clip_1.<wav|flac|...>``)."""
    if is_file_name(clip_id):
        return clip_id
    return f"{clip_id}.<{'|'.join(e.lstrip('.') for e in AUDIO_EXTENSIONS)}>"


def folder_clips(folder: Path, file_names: bool = False) -> tuple[list[str], list[Path]]:
    """Every audio file of ``folder`` and its id (the file name without its extension, or
    with ``file_names`` the file name), by id; an empty file, or a folder without audio, is a
    one-line DataError."""
    files = index_audio(folder)
    ids = sorted({path.name if file_names else path.stem for path in files.values()})
    if not ids:
        kinds = ", ".join(e.lstrip(".") for e in AUDIO_EXTENSIONS)
        raise DataError(f"{folder}: no audio files ({kinds}) in this folder")
    return ids, clip_files(ids, folder, folder)


def read_ids(path: Path, id_column: str, what: str) -> tuple[pd.DataFrame, list[str]]:
    """A CSV of ids (``what`` it is, for messages) and its ids in order: a missing column, a
    repeated or empty id is a one-line DataError."""
    frame = _read_csv(path, what)
    ids = list(_column(frame, id_column, path, "data.id_column"))
    _unique(ids, path)
    return frame, ids


def _unique(ids: list[str], path: Path) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise DataError(f"{path}: id {i!r} appears more than once")
        if not i:
            raise DataError(f"{path}: an id is empty")
        seen.add(i)


def submission_layout(columns: list[str], id_column: str, classes: list[str]) -> str | None:
    """How a sample submission wants predictions: ``"label"`` (one column besides the id),
    ``"probabilities"`` (one column per class), or ``None`` when it fits neither."""
    others = [c for c in columns if c != id_column]
    if len(others) == 1:
        return "label"
    if sorted(others) == sorted(classes):
        return "probabilities"
    return None


def _label_sort_key(label: str) -> tuple[int, float | str]:
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


def load_competition(data: Data) -> Competition:
    """The competition in ``data.root``; any inconsistency is a one-line DataError."""
    root = Path(data.root)
    if not root.is_dir():
        raise DataError(f"{root}: competition folder not found (set data.root)")
    train_csv = root / data.train_csv
    train = _read_csv(train_csv, "train CSV")
    train_ids = list(_column(train, data.id_column, train_csv, "data.id_column"))
    labels = list(_column(train, data.label_column, train_csv, "data.label_column"))
    _unique(train_ids, train_csv)
    empty = [i for i, lab in zip(train_ids, labels, strict=True) if not lab]
    if empty:
        raise DataError(f"{train_csv}: id {empty[0]!r} has an empty {data.label_column!r}")
    groups = None
    if data.group_column is not None:
        values = list(_column(train, data.group_column, train_csv, "data.group_column"))
        blank = [i for i, g in zip(train_ids, values, strict=True) if not g]
        if blank:
            raise DataError(
                f"{train_csv}: id {blank[0]!r} has an empty {data.group_column!r} "
                "(data.group_column); give every clip a group"
            )
        groups = np.array(values, dtype=object)
    classes = sorted(set(labels), key=_label_sort_key)
    if len(classes) < 2:
        raise DataError(f"{train_csv}: needs at least two classes, found {classes}")
    lookup = {c: i for i, c in enumerate(classes)}
    sub_path = root / data.sample_submission
    sample = _read_csv(sub_path, "sample submission")
    test_ids = list(_column(sample, data.id_column, sub_path, "data.id_column"))
    _unique(test_ids, sub_path)
    if submission_layout(list(sample.columns), data.id_column, classes) is None:
        raise DataError(
            f"{sub_path}: columns {list(sample.columns)} are neither [{data.id_column}, label] "
            f"nor {data.id_column} and one column per class of {train_csv.name} {classes}"
        )
    return Competition(
        root=root,
        train_ids=train_ids,
        train_files=clip_files(train_ids, root / data.train_audio, train_csv),
        train_labels=np.array([lookup[lab] for lab in labels], dtype=np.int64),
        classes=classes,
        test_ids=test_ids,
        test_files=clip_files(test_ids, root / data.test_audio, sub_path),
        sample_submission=sample,
        id_column=data.id_column,
        label_column=data.label_column,
        train_csv=train_csv,
        groups=groups,
    )
