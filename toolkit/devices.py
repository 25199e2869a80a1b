"""The training device: which one, which precision and layout, what fits on it.

Everything that only CUDA does (pinned memory, copies that do not wait, the
memory query) is guarded by ``device.type == "cuda"`` here, so the CPU runs the
same code paths with those steps left out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Literal

import numpy as np
import torch
from torch import nn

from toolkit.errors import ToolkitError, error_line

Precision = Literal["fp32", "bf16", "fp16"]

AUTOCAST_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
"""The dtype autocast runs the forward pass in, by ``train.precision``."""

DEVICE_SHARE = 0.5
"""``data_on_device: auto`` keeps the features on a CUDA device when they take at most
this share of its free memory (the rest is for the model, activations and gradients)."""


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else the CPU; other names are torch's."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def devices_here() -> list[str]:
    """The devices this machine has: ``cpu``, then each CUDA device, then ``mps``."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        names.append("mps")
    return names


def check_device(name: str, key: str, advice: str) -> None:
    """A one-line ToolkitError, naming ``key`` (the setting or flag) and this machine's
    devices, unless ``name`` (``auto`` or a torch device name) is a device here; ``advice``
    ends the message (what to do instead)."""
    if name == "auto":
        return
    here = ", ".join(devices_here())
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ToolkitError(
            f"{key}: {name!r} is not a device name (devices here: {here}); {advice}"
        ) from None
    if not _available(device):
        raise ToolkitError(
            f"{key}: {name} is not available on this machine (devices here: {here}); {advice}"
        )


def _available(device: torch.device) -> bool:
    """Whether torch can use ``device`` here (its type present, and its index if it has one)."""
    if device.type == "cpu":
        return True
    if device.type == "mps":
        return torch.backends.mps.is_available() and device.index in (None, 0)
    backend = getattr(torch, device.type, None)  # cuda, xpu, ...: is_available, device_count
    if backend is None or not hasattr(backend, "is_available") or not backend.is_available():
        return False
    return device.index is None or device.index < backend.device_count()


def resolve_precision(name: str, device: torch.device) -> Precision:
    """The precision ``train.precision`` means on ``device``.

    ``auto`` is bf16 on a CUDA device that computes in it (compute capability 8
    or more; on older cards such as Turing bf16 is only emulated, and fp16 is
    the precision their tensor cores have), else fp32. On the CPU it is fp32:
    bf16 there changes the numbers a seeded run gives, and it is only faster on
    CPUs with bf16 instructions (choose ``bf16`` to have it).
    """
    if name == "auto":
        cuda_bf16 = device.type == "cuda" and (
            bool(torch.version.hip) or torch.cuda.get_device_capability(device)[0] >= 8
        )
        return "bf16" if cuda_bf16 else "fp32"
    if name not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"unknown precision {name!r}")
    return name  # type: ignore[return-value]


def autocast(precision: Precision, device: torch.device) -> AbstractContextManager[object]:
    """The context a forward pass runs in: autocast to bf16 or fp16, nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])


def grad_scaler(precision: Precision, device: torch.device) -> torch.amp.GradScaler | None:
    """The loss scaler fp16 training needs (fp16 gradients underflow without it), else None."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def accumulator_dtype(device: torch.device) -> torch.dtype:
    """The dtype running sums are kept in on ``device``: float64 where it has it."""
    return torch.float32 if device.type == "mps" else torch.float64


def fits_on_device(nbytes: int, device: torch.device) -> bool:
    """Whether ``nbytes`` of features may stay on ``device`` for a whole run.

    On the CPU they always may: the features are already in host memory and the
    device tensors share it. On CUDA, when they take at most ``DEVICE_SHARE`` of
    the free memory. Other devices copy a batch at a time.
    """
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return nbytes <= DEVICE_SHARE * free
    return False


def keep_on_device(setting: bool | str, device: torch.device, *arrays: np.ndarray | None) -> bool:
    """Whether ``train.data_on_device`` keeps these arrays on the device for the whole run."""
    if setting != "auto":
        return bool(setting)
    nbytes = sum(int(a.nbytes) for a in arrays if a is not None)
    return fits_on_device(nbytes, device)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; from host memory to CUDA through pinned memory, without waiting.

    The copy is ordered on the current stream, so kernels queued after it see it;
    the host goes on at once.
    """
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def is_conv2d(model: nn.Module) -> bool:
    """Whether ``model`` has a 2-D convolution (so a channels-last layout can speed it up)."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def use_channels_last(setting: bool | str, model: nn.Module, device: torch.device) -> bool:
    """Whether to train ``model`` channels-last: ``auto`` on CUDA for 2-D convolutional ones.

    Not by default on the CPU, where it changes the numbers a seeded run gives.
    """
    if setting == "auto":
        return device.type == "cuda" and is_conv2d(model)
    return bool(setting)


def with_layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``x`` in the memory layout the model runs in (channels-last for 4-D batches)."""
    if channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def compile_model(model: nn.Module) -> nn.Module:
    """``torch.compile(model)``, or a one-line error naming ``train.compile`` where unsupported."""
    try:
        return torch.compile(model)  # type: ignore[return-value]
    except RuntimeError as error:
        raise _compile_error(error) from error


@contextmanager
def compile_errors() -> Iterator[None]:
    """Turn torch.compile's failures (raised at the first call, or a recompile) into one line."""
    from torch._dynamo.exc import TorchDynamoException  # noqa: PLC0415 - heavy, only when compiling

    try:
        yield
    except TorchDynamoException as error:
        raise _compile_error(error) from error


def _compile_error(error: Exception) -> ToolkitError:
    reason = error_line(error)
    return ToolkitError(
        f"train.compile: torch.compile does not work here ({reason}); set train.compile: false, "
        "or install what it names (a C++ compiler on the CPU, Triton on CUDA)"
    )
