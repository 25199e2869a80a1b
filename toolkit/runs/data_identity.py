"""Which data a run read: its competition folder and a digest of the files that define it.

A run folder records its data in ``data.json`` and each of its leaderboard rows in its
``data`` column, so that a run never lands on a finished run of other data
(:func:`check_folder`) and the leaderboard and report say what a row was trained on.
The digest covers the train CSV (ids and labels) and the sample submission (the
test ids): two folders with the same digest are the same competition.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from toolkit.errors import ToolkitError
from toolkit.recipe.schema import Data

DATA_FILE = "data.json"
"""The file of a run folder that records its data."""

DIGEST_LENGTH = 12
"""Hex digits of the digest kept (48 bits: enough to tell competitions apart)."""


class OtherDataError(ToolkitError):
    """A run would replace a finished run of other data."""


@dataclass(frozen=True)
class DataIdentity:
    """A competition folder, resolved, and the digest of its train CSV and sample submission
    (None for a run written before runs recorded it: only its folder is known)."""

    root: str
    digest: str | None = None

    @classmethod
    def of(cls, data: Data) -> DataIdentity:
        """The identity of the recipe's data (its files must exist)."""
        root = Path(data.root).expanduser().resolve()
        digest = hashlib.sha256()
        for name in (data.train_csv, data.sample_submission):
            digest.update((root / name).read_bytes())
            digest.update(b"\0")
        return cls(str(root), digest.hexdigest()[:DIGEST_LENGTH])

    def same(self, other: DataIdentity) -> bool:
        """Whether both name the same data: the same digest, or (a digest unknown) folder."""
        if self.digest is not None and other.digest is not None:
            return self.digest == other.digest
        return self.root == other.root

    def describe(self) -> str:
        """``FOLDER (digest D)``: one short line for messages."""
        return self.root if self.digest is None else f"{self.root} (digest {self.digest})"

    def as_dict(self) -> dict[str, Any]:
        """What ``data.json`` and a leaderboard row hold."""
        return {"root": self.root, "digest": self.digest}


def folder_data(run_dir: Path) -> DataIdentity | None:
    """The data of the run in ``run_dir``: its ``data.json``, else (a run of an earlier
    version) the ``data.root`` of its ``recipe.yaml``; None when it holds no run."""
    run_dir = Path(run_dir)
    try:
        record = json.loads((run_dir / DATA_FILE).read_text())
        return DataIdentity(str(record["root"]), record.get("digest"))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
        root = recipe["data"]["root"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return DataIdentity(str(Path(str(root)).expanduser().resolve()))


def check_folder(run_dir: Path, data: DataIdentity) -> None:
    """Refuse, in one line naming the folder, its data and ``--output``, to run in a folder
    that holds a run of other data."""
    held = folder_data(run_dir)
    if held is not None and not held.same(data):
        raise OtherDataError(
            f"{run_dir} holds a run of other data ({held.describe()}), not "
            f"{data.describe()}: choose another run folder with --output DIR"
        )
