"""The trainer's device paths, run on the CPU: precisions, resident data, no per-step reads.

CUDA-only steps (pinned memory, copies that do not wait) are guarded inside
``toolkit.devices``; every other step of those paths runs here on the CPU.
"""

from __future__ import annotations

import gc
import math
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from tests.conftest import held_out_accuracy, write_recipe
from toolkit.demo import DemoCompetition, make_demo_competition
from toolkit.devices import keep_on_device, resolve_precision, use_channels_last
from toolkit.errors import ToolkitError
from toolkit.plugins.backbones.resnet import resnet18
from toolkit.recipe.loading import load_recipe
from toolkit.recipe.schema import Train
from toolkit.training import optimisation
from toolkit.training.device_data import DEVICE_ARRAYS, DeviceArrays, Features, prefetched
from toolkit.training.pipeline import prepare, train_recipe
from toolkit.training.trainer import predict_proba, train

CPU = torch.device("cpu")
META = torch.device("meta")


def learnable(n: int, seed: int = 1, channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float16 feature maps ``[channels, 16, 20]`` whose lowest rows carry their label."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, channels, 16, 20)).astype(np.float16)
    y = np.arange(n) % 3
    x[:, :, :4, :] += y[:, None, None, None]
    return x, y


def small_net(seed: int = 0) -> nn.Module:
    """A narrow ResNet18 with seeded initial weights."""
    torch.manual_seed(seed)
    return resnet18(num_classes=3, in_channels=1, width=4)


SGD = {"name": "sgd", "lr": 0.05, "momentum": 0.9}
ADAMW = {"name": "adamw", "lr": 3e-3}


def fit(  # type: ignore[no-untyped-def]
    n: int = 64,
    epochs: int = 2,
    net: nn.Module | None = None,
    optimizer: dict[str, object] = SGD,
    channels: int = 1,
    **settings: object,
):
    """Train a network (default: a narrow ResNet18) on ``n`` learnable maps, validated on 30."""
    x, y = learnable(n + 30, channels=channels)
    cfg = Train(
        epochs=epochs,
        batch_size=16,
        optimizer=optimizer,
        scheduler={"name": "none"},
        **settings,
    )
    return train(
        net or small_net(), x[:n], y[:n], x[n:], y[n:], cfg, 3, test_x=x[:7], select_by="accuracy"
    )


class TinyConv(nn.Module):
    """One convolution and a linear layer; may record the memory layout it is given."""

    def __init__(self, channels: int = 1, record: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(channels, 8, 3, padding=1)
        self.head = nn.Linear(8, 3)
        self.record = record
        self.layouts: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.record:
            self.layouts.append(x.is_contiguous(memory_format=torch.channels_last))
            weight = self.conv.weight
            self.layouts.append(weight.is_contiguous(memory_format=torch.channels_last))
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


# --- settings and decisions (fast) ---------------------------------------------------------


def test_auto_precision_is_fp32_on_the_cpu_and_names_pass_through() -> None:
    assert resolve_precision("auto", CPU) == "fp32"
    for name in ("fp32", "bf16", "fp16"):
        assert resolve_precision(name, CPU) == name
    assert Train().precision == "auto"
    with pytest.raises(ValidationError, match="precision"):
        Train(precision="fp8")  # type: ignore[arg-type]


def test_data_on_device_and_channels_last_settings() -> None:
    x = np.zeros((4, 1, 8, 8), dtype=np.float16)
    assert keep_on_device("auto", CPU, x, None)  # host memory already holds them
    assert not keep_on_device(False, CPU, x)
    assert Train(data_on_device=False).data_on_device is False
    with pytest.raises(ValidationError, match="data_on_device"):
        Train(data_on_device="sometimes")  # type: ignore[arg-type]
    net = small_net()
    assert not use_channels_last("auto", net, CPU)  # on CUDA only by default
    assert use_channels_last(True, net, CPU)
    assert not use_channels_last("auto", net, torch.device("meta"))


def test_a_resident_array_is_copied_once_and_forgotten_with_its_array() -> None:
    """The cache on the meta device (a device of its own, without data), as on a GPU."""
    cache = DeviceArrays(size=2)
    x = np.arange(12, dtype=np.float16).reshape(3, 4)
    first = cache.get(x, META)
    assert first.device == META and first.shape == (3, 4) and first.dtype == torch.float16
    assert cache.get(x, META) is first and cache.placed == 1  # seed copies, folds: reused
    labels = cache.get(np.array([1, 2, 3], dtype=np.int32), META, np.dtype(np.int64))
    assert labels.dtype == torch.int64 and cache.placed == 2
    assert len(cache) == 1  # the labels' array is already gone, and its copy with it
    alive = weakref.ref(x)
    del x
    gc.collect()
    assert alive() is None and len(cache) == 0  # the cache never keeps an array alive
    kept = [np.zeros(2) for _ in range(3)]
    for a in kept:
        cache.get(a, META)
    assert len(cache) == 2  # bounded


def test_on_the_cpu_a_resident_array_is_its_own_memory() -> None:
    x = np.arange(12, dtype=np.float16).reshape(3, 4)
    placed = DEVICE_ARRAYS.placed
    assert DEVICE_ARRAYS.get(x, CPU).data_ptr() == x.ctypes.data
    assert DEVICE_ARRAYS.placed == placed


def test_read_only_memmaps_are_shared_without_a_warning(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((5, 1, 2, 3), dtype=np.float16))
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = next(Features(mapped, CPU, resident=True).chunks(4))
    assert batch.dtype == torch.float32 and batch.shape == (4, 1, 2, 3)


def test_resident_and_gathered_batches_are_the_same_float32_rows() -> None:
    x, y = learnable(40)
    index = [np.array([3, 5, 9]), np.array([0, 1]), np.array([39, 20, 2, 7])]
    resident = Features(x, CPU, resident=True, labels=y)
    gathered = Features(x, CPU, resident=False, labels=y)
    for (xa, ya), (xb, yb), rows in zip(
        resident.batches(index), gathered.batches(index), index, strict=True
    ):
        assert xa.dtype == xb.dtype == torch.float32
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        np.testing.assert_array_equal(xa.numpy(), x[rows].astype(np.float32))
        np.testing.assert_array_equal(ya.numpy(), y[rows])
    chunks = [list(f.chunks(16)) for f in (resident, gathered)]
    assert all(torch.equal(a, b) for a, b in zip(*chunks, strict=True))
    assert [len(c) for c in chunks[0]] == [16, 16, 8]


def test_prefetched_makes_each_item_one_ahead_of_its_use() -> None:
    made: list[int] = []

    def items() -> Iterator[int]:
        for i in range(4):
            made.append(i)
            yield i

    seen = []
    for item in prefetched(items()):
        seen.append((item, list(made)))
    assert [s[0] for s in seen] == [0, 1, 2, 3]
    assert [s[1][-1] for s in seen] == [1, 2, 3, 3]


# --- training (slow) -----------------------------------------------------------------------

READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__")
"""Tensor methods that read a value back to the host (on CUDA each waits for the device)."""


def count_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count every call of the read-back methods from now on."""
    counts: Counter[str] = Counter()

    def counting(name: str, method: Callable[..., object]) -> Callable[..., object]:
        def wrapper(self: torch.Tensor, *args: object, **kwargs: object) -> object:
            counts[name] += 1
            return method(self, *args, **kwargs)

        return wrapper

    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    return counts


@pytest.mark.slow
@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"data_on_device": False},
        {"precision": "bf16"},
        {"precision": "fp16", "optimizer": ADAMW},
    ],
    ids=["fp32", "fp32-host", "bf16", "fp16-adamw"],
)
def test_no_value_is_read_back_per_step(
    settings: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reads of a run do not grow with its steps: none happens inside an epoch.

    SGD keeps no step counter (unfused AdamW reads its host-side counter each
    step); fp16 runs AdamW, fused, whose loss scaler checks for overflow on the
    device (with SGD it reads a flag back each step). No batch augmenter runs:
    mixup's draws are host-side by design.
    """
    few, many = (reads_of_a_run(monkeypatch, n, math.inf, settings) for n in (32, 96))
    assert few == many  # 2 and 6 steps per epoch, the same reads
    # the counter does see reads: a loss shown after every step adds one per step
    every_step = reads_of_a_run(monkeypatch, 96, 0.0, settings)
    assert every_step >= many + 2 * 6, (few, many, every_step)


def reads_of_a_run(
    monkeypatch: pytest.MonkeyPatch, n: int, refresh: float, settings: dict[str, object]
) -> int:
    """Values read back while training 2 epochs on ``n`` maps, progress on."""
    with monkeypatch.context() as patch:
        patch.delenv("TOOLKIT_NO_PROGRESS", raising=False)  # progress on, as in a log
        patch.setattr(optimisation, "LOSS_REFRESH_SECONDS", refresh)
        counts = count_reads(patch)
        fit(n=n, epochs=2, **settings)  # type: ignore[arg-type]
    return sum(counts.values())


@pytest.mark.slow
def test_fp32_numbers_are_the_same_with_resident_and_gathered_data() -> None:
    resident = fit(n=70, epochs=3)
    gathered = fit(n=70, epochs=3, data_on_device=False)
    assert resident.history == gathered.history
    np.testing.assert_array_equal(resident.val_probs, gathered.val_probs)
    assert resident.test_probs is not None and gathered.test_probs is not None
    np.testing.assert_array_equal(resident.test_probs, gathered.test_probs)
    for key, value in resident.state_dict.items():
        assert torch.equal(value, gathered.state_dict[key]), key


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_each_precision_learns(precision: str) -> None:
    result = fit(n=96, epochs=5, net=TinyConv(), optimizer=ADAMW, precision=precision)
    assert np.isfinite([r["train_loss"] for r in result.history]).all()
    assert max(r["val_accuracy"] for r in result.history) > 0.6  # chance is 1/3


@pytest.mark.slow
def test_channels_last_reaches_the_network_and_it_learns() -> None:
    probe = TinyConv(channels=2)
    result = fit(n=96, epochs=10, net=probe, optimizer=ADAMW, channels=2, channels_last=True)
    assert probe.layouts and all(probe.layouts)
    assert max(r["val_accuracy"] for r in result.history) > 0.6
    plain = TinyConv(channels=2)
    fit(n=32, epochs=1, net=plain, channels=2)
    assert not any(plain.layouts)  # auto is off on the CPU


@pytest.mark.slow
def test_evaluation_runs_in_the_chosen_precision() -> None:
    x, y = learnable(40)
    net = small_net().eval()
    full = predict_proba(net, x, CPU, 16)
    half = predict_proba(net, x, CPU, 16, precision="bf16", data_on_device=True)
    assert half.dtype == full.dtype == np.float64
    assert not np.array_equal(full, half)  # bf16 rounding shows
    np.testing.assert_allclose(full, half, atol=0.05)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> DemoCompetition:
    root = tmp_path_factory.mktemp("bf16") / "competition"
    return make_demo_competition(root, n_train=320, n_test=60, seed=11, duration=2.0)


@pytest.mark.slow
def test_bf16_beats_chance_on_held_out_clips(clips: DemoCompetition, tmp_path: Path) -> None:
    loaded = load_recipe(
        write_recipe(tmp_path, clips.root),
        (
            "data.duration=2.0",
            "features.n_mels=48",
            "train.epochs=30",
            "train.precision=bf16",
            "train.optimizer={name: adamw, lr: 0.003, weight_decay: 0.0001}",
            "model.backbone={name: head, hidden: 128, pooling: attention}",
            "augmenters=[{name: mixup, alpha: 0.2}]",
        ),
    )
    data = prepare(loaded.recipe, loaded.registry)
    result = train_recipe(loaded.recipe, loaded.registry, data, select_by="accuracy")
    held_out, majority = held_out_accuracy(clips.root, data.competition, result.test_probs)
    # chance is 0.25 over four classes; the majority class is about 0.4 here
    assert held_out > max(0.45, majority + 0.1), (held_out, result.history)


@pytest.mark.slow
def test_compile_trains() -> None:
    result = fit(n=96, epochs=5, net=TinyConv(record=False), optimizer=ADAMW, compile=True)
    assert max(r["val_accuracy"] for r in result.history) > 0.6  # chance is 1/3


@pytest.mark.slow
def test_compile_names_the_setting_when_it_cannot() -> None:
    """A machine without a working C++ compiler, for torch.compile's CPU backend."""
    import torch._inductor.config as inductor

    torch._dynamo.reset()
    # torch's own patch: restored exactly afterwards, so later compiling tests still work
    with (
        inductor.patch({"cpp.cxx": ("/nonexistent/c++",)}),
        pytest.raises(ToolkitError, match=r"^train\.compile: torch\.compile does not work here"),
    ):
        fit(n=32, epochs=1, compile=True)
    torch._dynamo.reset()
