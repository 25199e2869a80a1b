"""musicnn's pretrained music-tagging networks (Pons and Serra, ISC licence) in PyTorch.

The weights are the TensorFlow checkpoints shipped in the ``musicnn`` 0.1.0 wheel,
installed without its requirements (``pip install --no-deps musicnn==0.1.0``; its
code is never imported). They are located with :func:`importlib.util.find_spec`,
checked against pinned sha256 digests, read with
:mod:`toolkit.pretrained.tf_checkpoint` (no TensorFlow), converted once into a plain
tensor file in the user cache (``~/.cache/toolkit/musicnn``, or
``$TOOLKIT_MUSICNN_CACHE``) and loaded later with ``torch.load(weights_only=True)``.

The input is musicnn's: 16 kHz audio, a 512-point STFT with hop 256 (librosa's
centred, zero-padded frames), 96 Slaney mel bands of the power spectrum, rounded to
float16 as musicnn stores it, then ``log10(10000 x + 1)`` in float32. The networks
see windows of ``n_frames`` frames (187 for 3 s) taken every ``hop`` frames.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.data.cache import atomic_write, file_digest
from toolkit.errors import ToolkitError
from toolkit.pretrained.files import package_dir, user_cache_dir
from toolkit.pretrained.tf_checkpoint import Checkpoint, CheckpointError, index_path, shard_path

PACKAGE = "musicnn"
VERSION = "0.1.0"
INSTALL = f"pip install --no-deps {PACKAGE}=={VERSION}"
"""The command that provides the checkpoint files, without musicnn's requirements."""

CACHE_ENV = "TOOLKIT_MUSICNN_CACHE"
"""Overrides where converted weights are kept (default: ``~/.cache/toolkit/musicnn``)."""

_FORMAT = "1"
"""Bump when the converted file's layout changes."""

ModelName = Literal["MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg"]
MODELS: tuple[str, ...] = ("MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg")

SHA256: dict[str, tuple[str, str]] = {
    "MTT_musicnn": (
        "da2d7bb670b2b31e9bc441bb1bd75eca31b5b061f963cc1f9630c1aff3238f57",
        "041f3935e981a65cea739842d30c188d3a7d2adf4410955c8668eb3de4a5acab",
    ),
    "MSD_musicnn": (
        "87f3e0f3550c8d3bafc840374003e5c8af5eeb5ecf6add61af09a7822d3282c8",
        "8579734ee6388f799ed0def4bbd0d1fdcbeaf213ef2a9dc860917bd76a303de6",
    ),
    "MTT_vgg": (
        "4b0d3d2d02bbe0919c063c1fb74bfa9018ac3517e362d681b07444d4207a5f5f",
        "458f5c8bcecc086a3bba3dce83809df6da6e0a3560a59ddd84711bf3d5fd8303",
    ),
    "MSD_vgg": (
        "50e499238457558bba9f34f8b84d4afb8279afd43520cdf0a4fdf805a49c9ca3",
        "9683d756b8311146534f333502ebf4a2a78a3e320c54ab0411dff6186d8375fc",
    ),
}
"""sha256 of each model's ``.index`` and ``.data-00000-of-00001`` in musicnn 0.1.0."""

SAMPLE_RATE = 16000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96

MTT_LABELS = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock",
    "fast", "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian",
    "opera", "male", "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet",
    "flute", "woman", "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man",
    "classic", "choir", "voice", "new age", "dance", "male voice", "female vocal", "beats",
    "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral",
)  # fmt: skip
"""The 50 MagnaTagATune tags, in the taggram's order."""

MSD_LABELS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
    "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s",
    "chill", "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic",
    "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock",
    "60s", "rnb", "indie pop", "sad", "House", "happy",
)  # fmt: skip
"""The 50 Million Song Dataset (last.fm) tags, in the taggram's order."""

_BN_EPS = 1e-3
"""TensorFlow's ``batch_normalization`` epsilon, which the checkpoints were trained with."""


class MusicnnWeightsError(ToolkitError):
    """musicnn's checkpoint files cannot be found, verified or read."""


def labels(model: str) -> tuple[str, ...]:
    """The tags of ``model``'s taggram, in order."""
    return MTT_LABELS if model.startswith("MTT") else MSD_LABELS


def seconds_to_frames(seconds: float) -> int:
    """The spectrogram frame a time falls in, as musicnn counts (librosa's time_to_frames)."""
    return (int(seconds * SAMPLE_RATE) - N_FFT // 2) // HOP_LENGTH


def window_frames(window: float) -> int:
    """Frames in a window of ``window`` seconds (187 for musicnn's 3 s)."""
    return seconds_to_frames(window) + 1


def hop_frames(window: float, hop: float | None) -> int:
    """Frames between window starts: ``hop`` seconds as musicnn converts it; None: no overlap."""
    return window_frames(window) if hop is None else seconds_to_frames(hop)


# --- input features -----------------------------------------------------------------


class LogMel(nn.Module):
    """musicnn's input: ``[B, T]`` 16 kHz waves to ``[B, frames, 96]`` compressed mel."""

    def __init__(self) -> None:
        """Build the Slaney mel filter bank and the periodic Hann window librosa uses."""
        super().__init__()
        import torchaudio  # noqa: PLC0415

        fbank = torchaudio.functional.melscale_fbanks(
            N_FFT // 2 + 1,
            0.0,
            SAMPLE_RATE / 2,
            N_MELS,
            SAMPLE_RATE,
            norm="slaney",
            mel_scale="slaney",
        )
        self.register_buffer("fbank", fbank.to(torch.float64), persistent=False)
        window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
        self.register_buffer("window", window, persistent=False)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """Return float32 ``[B, frames, 96]``, ``frames = 1 + T // 256``."""
        # librosa >= 0.10 centres frames with zero padding (pad_mode="constant").
        spec = torch.stft(
            waves.to(torch.float64),
            N_FFT,
            HOP_LENGTH,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(power.transpose(1, 2), self.fbank).to(torch.float32)
        # musicnn rounds the mel spectrogram to float16, then compresses it in float32
        # (numpy < 2 promotes a float16 array times 10000 to float32).
        rounded = mel.to(torch.float16).to(torch.float32)
        return torch.log10(rounded * 10000 + 1)


def frame_windows(logmel: torch.Tensor, n_frames: int, hop: int) -> torch.Tensor:
    """``[B, frames, F]`` cut into ``[B, W, n_frames, F]`` windows every ``hop`` frames.

    A spectrogram shorter than one window is padded with silence (zeros) to one window;
    otherwise, as in musicnn, trailing frames that fill no whole window are dropped.
    """
    if logmel.shape[1] < n_frames:
        logmel = F.pad(logmel, (0, 0, 0, n_frames - logmel.shape[1]))
    return logmel.unfold(1, n_frames, hop).transpose(2, 3)


# --- networks -----------------------------------------------------------------------


def _norm2d(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS)


def _norm1d(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=_BN_EPS)


@dataclass(frozen=True)
class Outputs:
    """What a network gives for a batch of windows, each ``[N, D]``."""

    logits: torch.Tensor
    penultimate: torch.Tensor
    pooled: torch.Tensor | None

    @property
    def taggram(self) -> torch.Tensor:
        """Tag probabilities (sigmoid of the logits)."""
        return torch.sigmoid(self.logits)


class Musicnn(nn.Module):
    """musicnn: a musically motivated front-end, a dense mid-end and a pooling back-end.

    Front-end on the normalised ``[time, mel]`` input: two timbral convolutions
    (7 frames by 40% and 70% of the bands) and three temporal ones (128, 64 and 32
    frames by 1 band), each ReLU then batch norm, max-pooled over frequency. Mid-end:
    three 7-frame convolutions over the front-end's 561 channels, the last two
    residual. Back-end: max and mean over time of all those features, batch norm,
    a dense ReLU layer with batch norm (the penultimate embedding), and the tag layer.
    """

    def __init__(self, num_classes: int = 50, midend: int = 64, backend: int = 200) -> None:
        """Layers sized as musicnn's ``build_musicnn`` (``num_filt`` 1.6 in the front-end)."""
        super().__init__()
        timbral, temporal = int(1.6 * 128), int(1.6 * 32)
        self.input_norm = _norm2d(1)
        self.timbral = nn.ModuleList(
            nn.Conv2d(1, timbral, (7, int(share * N_MELS))) for share in (0.4, 0.7)
        )
        self.timbral_norm = nn.ModuleList(_norm2d(timbral) for _ in range(2))
        self.temporal = nn.ModuleList(nn.Conv2d(1, temporal, (k, 1)) for k in (128, 64, 32))
        self.temporal_norm = nn.ModuleList(_norm2d(temporal) for _ in range(3))
        front = 2 * timbral + 3 * temporal
        self.midend = nn.ModuleList(
            nn.Conv1d(front if i == 0 else midend, midend, 7) for i in range(3)
        )
        self.midend_norm = nn.ModuleList(_norm1d(midend) for _ in range(3))
        pooled = 2 * (front + 3 * midend)
        self.pool_norm = _norm1d(pooled)
        self.dense = nn.Linear(pooled, backend)
        self.dense_norm = _norm1d(backend)
        self.classifier = nn.Linear(backend, num_classes)

    def forward(self, x: torch.Tensor) -> Outputs:
        """``x`` ``[N, frames, 96]`` windows: logits, penultimate embedding, pooled features.

        ``pooled`` is the max over time of the 753 mid-end features, then their mean.
        """
        x = self.input_norm(x.unsqueeze(1))
        maps = []
        padded = F.pad(x, (0, 0, 3, 3))
        for conv, norm in zip(self.timbral, self.timbral_norm, strict=True):
            maps.append(norm(F.relu(conv(padded))).amax(dim=3))
        for conv, norm in zip(self.temporal, self.temporal_norm, strict=True):
            k = conv.kernel_size[0]
            # TensorFlow's "same" padding puts the odd extra frame after.
            same = F.pad(x, (0, 0, (k - 1) // 2, k // 2))
            maps.append(norm(F.relu(conv(same))).amax(dim=3))
        features = [torch.cat(maps, dim=1)]
        for i, (conv, norm) in enumerate(zip(self.midend, self.midend_norm, strict=True)):
            out = norm(F.relu(conv(F.pad(features[-1], (3, 3)))))
            features.append(out if i == 0 else out + features[-1])
        stacked = torch.cat(features, dim=1)
        max_pool, mean_pool = stacked.amax(dim=2), stacked.mean(dim=2)
        # TensorFlow flattens [feature, (max, mean)]: the two interleave.
        flat = torch.stack([max_pool, mean_pool], dim=2).flatten(1)
        penultimate = self.dense_norm(F.relu(self.dense(self.pool_norm(flat))))
        pooled = torch.cat([max_pool, mean_pool], dim=1)
        return Outputs(self.classifier(penultimate), penultimate, pooled)


class Vgg(nn.Module):
    """musicnn's VGG-like baseline: five 3x3 convolutions (ReLU, batch norm, max pool).

    Its penultimate embedding is the flattened last pooling (256 values for a 3 s
    window); it has no pooled features.
    """

    POOLS = (
        ((4, 1), (2, 2)),
        ((2, 2), (2, 2)),
        ((2, 2), (2, 2)),
        ((2, 2), (2, 2)),
        ((4, 4), (4, 4)),
    )

    def __init__(self, num_classes: int = 50, filters: int = 128) -> None:
        """Layers sized as musicnn's ``vgg`` with ``num_filters`` ``filters``."""
        super().__init__()
        self.input_norm = _norm2d(1)
        self.convs = nn.ModuleList(
            nn.Conv2d(1 if i == 0 else filters, filters, 3, padding=1) for i in range(5)
        )
        self.norms = nn.ModuleList(_norm2d(filters) for _ in range(5))
        self.classifier = nn.Linear(2 * filters, num_classes)

    def forward(self, x: torch.Tensor) -> Outputs:
        """``x`` ``[N, 187, 96]`` windows: logits and the flattened last pooling."""
        x = self.input_norm(x.unsqueeze(1))
        for conv, norm, (size, stride) in zip(self.convs, self.norms, self.POOLS, strict=True):
            x = F.max_pool2d(norm(F.relu(conv(x))), size, stride)
        # TensorFlow flattens [time, freq, channel].
        flat = x.permute(0, 2, 3, 1).flatten(1)
        return Outputs(self.classifier(flat), flat, None)


def build(model: str) -> Musicnn | Vgg:
    """The untrained network of ``model`` (one of :data:`MODELS`), in inference mode."""
    if model not in MODELS:
        raise ValueError(f"unknown musicnn model {model!r}; expected one of {', '.join(MODELS)}")
    net: Musicnn | Vgg = Vgg() if model.endswith("vgg") else Musicnn()
    return net.eval()


# --- weights ------------------------------------------------------------------------


def _tf_name(base: str, index: int) -> str:
    return base if index == 0 else f"{base}_{index}"


def _musicnn_layers() -> tuple[list[str], list[str], list[str]]:
    """Torch prefixes of the convolutions, norms and dense layers, in TensorFlow's order."""
    convs = [f"timbral.{i}" for i in range(2)] + [f"temporal.{i}" for i in range(3)]
    convs += [f"midend.{i}" for i in range(3)]
    norms = ["input_norm"] + [f"timbral_norm.{i}" for i in range(2)]
    norms += [f"temporal_norm.{i}" for i in range(3)] + [f"midend_norm.{i}" for i in range(3)]
    norms += ["pool_norm", "dense_norm"]
    return convs, norms, ["dense", "classifier"]


def convert_checkpoint(model: str, checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    """The state dict of :func:`build` ``(model)`` from its TensorFlow checkpoint.

    TensorFlow names layers by creation order (``conv2d``, ``conv2d_1``, ...), which
    follows musicnn's model definition.
    """
    state: dict[str, np.ndarray] = {}
    if model.endswith("vgg"):
        convs = [(f"{i + 1}CNN", f"convs.{i}") for i in range(5)]
        norms = ["input_norm"] + [f"norms.{i}" for i in range(5)]
        dense = [("dense", "classifier")]
    else:
        conv_names, norms, dense_names = _musicnn_layers()
        convs = [(_tf_name("conv2d", i), name) for i, name in enumerate(conv_names)]
        dense = [(_tf_name("dense", i), name) for i, name in enumerate(dense_names)]
    for tf, ours in convs:
        kernel = checkpoint.read(f"{tf}/kernel")  # [kh, kw, in, out]
        if ours.startswith("midend"):
            # a convolution spanning the whole feature axis is a 1-D one over time
            state[f"{ours}.weight"] = kernel[:, :, 0, :].transpose(2, 1, 0)
        else:
            state[f"{ours}.weight"] = kernel.transpose(3, 2, 0, 1)
        state[f"{ours}.bias"] = checkpoint.read(f"{tf}/bias")
    for i, ours in enumerate(norms):
        tf = _tf_name("batch_normalization", i)
        state[f"{ours}.weight"] = checkpoint.read(f"{tf}/gamma")
        state[f"{ours}.bias"] = checkpoint.read(f"{tf}/beta")
        state[f"{ours}.running_mean"] = checkpoint.read(f"{tf}/moving_mean")
        state[f"{ours}.running_var"] = checkpoint.read(f"{tf}/moving_variance")
    for tf, ours in dense:
        state[f"{ours}.weight"] = checkpoint.read(f"{tf}/kernel").T
        state[f"{ours}.bias"] = checkpoint.read(f"{tf}/bias")
    return {
        k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in state.items()
    }


def checkpoint_prefix(model: str, root: str | os.PathLike[str] | None = None) -> str:
    """The checkpoint prefix of ``model`` under ``root`` (default: the installed musicnn)."""
    if root is None:
        found = package_dir(PACKAGE)
        if found is None:
            raise MusicnnWeightsError(
                f"musicnn's pretrained weights are not installed: they come with the "
                f"'{PACKAGE}' package, installed without its requirements ({INSTALL})"
            )
        root = found
    # musicnn saved each checkpoint with an empty file name: MODEL/.index, MODEL/.data-*
    return os.path.join(os.fspath(root), model, "")


def verify(model: str, prefix: str) -> None:
    """Check ``model``'s checkpoint files against the pinned sha256 digests."""
    for path, expected in zip(
        (index_path(prefix), shard_path(prefix, 0, 1)), SHA256[model], strict=True
    ):
        if not path.is_file():
            raise MusicnnWeightsError(
                f"musicnn weight file {path} not found: it comes with the '{PACKAGE}' "
                f"package, installed without its requirements ({INSTALL})"
            )
        actual = file_digest(path)
        if actual != expected:
            raise MusicnnWeightsError(
                f"musicnn weight file {path} has sha256 {actual[:12]}..., not musicnn "
                f"{VERSION}'s {expected[:12]}...; reinstall it: {INSTALL} --force-reinstall"
            )


def cache_dir() -> Path:
    """Where converted weights are kept."""
    return user_cache_dir("musicnn", CACHE_ENV)


def load_state_dict(
    model: str, root: str | os.PathLike[str] | None = None, *, use_cache: bool = True
) -> dict[str, torch.Tensor]:
    """The verified pretrained weights of ``model`` as a state dict of :func:`build`.

    ``root`` is a folder holding musicnn's model folders (default: the installed
    package's). With ``use_cache``, a converted copy in :func:`cache_dir` is used when
    present and written otherwise.
    """
    if model not in SHA256:
        raise ValueError(f"unknown musicnn model {model!r}; expected one of {', '.join(MODELS)}")
    cached = cache_dir() / f"{model}-{SHA256[model][1][:16]}-v{_FORMAT}.pt"
    if use_cache and cached.is_file():
        with contextlib.suppress(Exception):  # a bad cache entry is rebuilt
            state = torch.load(cached, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values()):
                return state
    prefix = checkpoint_prefix(model, root)
    verify(model, prefix)
    try:
        state = convert_checkpoint(model, Checkpoint(prefix))
    except CheckpointError as exc:
        raise MusicnnWeightsError(f"cannot read musicnn checkpoint {prefix}: {exc}") from None
    if use_cache:
        with contextlib.suppress(OSError):  # an unwritable cache is not an error
            atomic_write(cached, lambda handle: torch.save(state, handle))
    return state


def pretrained(model: str, root: str | os.PathLike[str] | None = None) -> Musicnn | Vgg:
    """The network of ``model`` with its pretrained weights, in inference mode."""
    net = build(model)
    net.load_state_dict(load_state_dict(model, root))
    return net
