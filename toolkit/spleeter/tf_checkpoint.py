"""Read Deezer's 2stems TensorFlow checkpoint into PyTorch-layout numpy arrays.

Needs ``tensorflow`` (imported only when called) and numpy, nothing from the
toolkit, so the reference virtualenv can run it too. The names produced are those of
:class:`toolkit.spleeter.unet.UNet`'s state dict.

Keras numbers its layers in creation order across the whole graph, and Spleeter
builds one U-Net per instrument in ``instrument_list`` order, so instrument ``k``
owns ``conv2d_{7k}``..``conv2d_{7k+6}`` (six encoder convolutions, then the output
one), ``conv2d_transpose_{6k}``..``_{6k+5}`` and ``batch_normalization_{12k}``..
``_{12k+11}`` (six encoder norms, the sixth unused, then six decoder norms).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

CONVS_PER_NET = 7
DECONVS_PER_NET = 6
NORMS_PER_NET = 12


def _layer(base: str, index: int) -> str:
    return base if index == 0 else f"{base}_{index}"


def _norm(read: Any, prefix: str, name: str) -> dict[str, np.ndarray]:
    return {
        f"{prefix}.weight": read(f"{name}/gamma"),
        f"{prefix}.bias": read(f"{name}/beta"),
        f"{prefix}.running_mean": read(f"{name}/moving_mean"),
        f"{prefix}.running_var": read(f"{name}/moving_variance"),
    }


def convert_variables(read: Any, n_instruments: int = 2) -> list[dict[str, np.ndarray]]:
    """State dicts, one per instrument, from ``read(variable_name) -> ndarray``."""
    nets = []
    for k in range(n_instruments):
        state: dict[str, np.ndarray] = {}
        for i in range(CONVS_PER_NET):
            name = _layer("conv2d", CONVS_PER_NET * k + i)
            prefix = f"encoder.{i}" if i < 6 else "output"
            # TF conv kernels are [kh, kw, in, out]; PyTorch wants [out, in, kh, kw].
            state[f"{prefix}.weight"] = np.transpose(read(f"{name}/kernel"), (3, 2, 0, 1))
            state[f"{prefix}.bias"] = read(f"{name}/bias")
        for i in range(DECONVS_PER_NET):
            name = _layer("conv2d_transpose", DECONVS_PER_NET * k + i)
            # TF transposed kernels are [kh, kw, out, in]; PyTorch wants [in, out, kh, kw].
            state[f"decoder.{i}.weight"] = np.transpose(read(f"{name}/kernel"), (3, 2, 0, 1))
            state[f"decoder.{i}.bias"] = read(f"{name}/bias")
        for i in range(NORMS_PER_NET):
            name = _layer("batch_normalization", NORMS_PER_NET * k + i)
            if i < 5:
                state.update(_norm(read, f"encoder_norm.{i}", name))
            elif i >= 6:
                state.update(_norm(read, f"decoder_norm.{i - 6}", name))
        nets.append({key: np.ascontiguousarray(v, dtype=np.float32) for key, v in state.items()})
    return nets


def read_tf_checkpoint(folder: str | os.PathLike[str]) -> list[dict[str, np.ndarray]]:
    """The U-Net state dicts stored in a TensorFlow 2stems model folder, vocals first."""
    import tensorflow as tf  # type: ignore[import-not-found]  # noqa: PLC0415

    prefix = tf.train.latest_checkpoint(os.fspath(folder))
    if prefix is None:
        raise FileNotFoundError(f"{folder}: no TensorFlow checkpoint (no 'checkpoint' file)")
    return convert_variables(lambda name: np.asarray(tf.train.load_variable(prefix, name)))


if __name__ == "__main__":  # pragma: no cover - a helper for the reference venv
    import sys

    arrays = read_tf_checkpoint(sys.argv[1])
    flat = {f"{k}/{name}": v for k, net in enumerate(arrays) for name, v in net.items()}
    np.savez(sys.argv[2], **flat)
