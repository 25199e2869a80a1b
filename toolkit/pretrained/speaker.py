"""Resemblyzer's pretrained speaker encoder, ported to PyTorch, with its weights loaded safely.

The model is the ``VoiceEncoder`` of resemblyzer 0.1.4 (Apache-2.0): 40-band mel
power spectrograms of 16 kHz audio (25 ms Hann windows, 10 ms hop, not logged)
cut into partial utterances of 160 frames (1.6 s), each run through a 3-layer LSTM
(hidden size 256) whose last hidden state goes through a linear layer, a ReLU and
an L2 normalisation: one unit-norm 256-d embedding per partial utterance.

The weights are ``resemblyzer/pretrained.pt`` of the resemblyzer distribution,
installed without its dependencies (``pip install --no-deps resemblyzer==0.1.4``)
and never imported. The file is checked against a pinned sha256, read with
``torch.load(..., weights_only=True)`` (it holds only tensors, numbers and dicts, so
no allow-list is needed and no code can run), and its encoder tensors are saved
once as a plain tensor file in the user cache (:func:`cache_dir`), which later
loads without the distribution.

Not ported: resemblyzer's voice-activity trimming (``trim_long_silences``, which
needs webrtcvad): clips here are short song snippets whose pauses belong to them.
Its volume normalisation is (:func:`normalize_volume`).
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from toolkit.data.cache import atomic_write, file_digest
from toolkit.errors import ToolkitError
from toolkit.pretrained.files import load_weights_safely, package_dir, user_cache_dir
from toolkit.registry.kinds import mono_batch

SAMPLE_RATE = 16000
"""Sample rate the encoder was trained on, in Hz."""
N_FFT = 400
"""STFT window and FFT size: 25 ms at 16 kHz."""
HOP = 160
"""STFT hop: 10 ms at 16 kHz, one mel frame."""
N_MELS = 40
"""Mel bands of the encoder's input."""
HIDDEN_SIZE = 256
NUM_LAYERS = 3
EMBEDDING_SIZE = 256
"""Size of one embedding."""
WINDOW_FRAMES = 160
"""Frames of one partial utterance the encoder was trained on (1.6 s)."""
DEFAULT_RATE = 1.3
"""Resemblyzer's partial utterances per second."""
DEFAULT_MIN_COVERAGE = 0.75
"""Resemblyzer's least fraction of a last, zero-padded partial that must be audio."""
TARGET_DBFS = -30.0
"""Resemblyzer's volume normalisation target (quieter clips are raised to it)."""
_INT16_MAX = 2**15 - 1

DISTRIBUTION = "resemblyzer"
DISTRIBUTION_VERSION = "0.1.4"
WEIGHTS_FILE = "pretrained.pt"
"""The weight file, relative to the installed resemblyzer package folder."""
WEIGHTS_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
"""sha256 of ``pretrained.pt`` in resemblyzer 0.1.4."""
INSTALL_COMMAND = f"pip install --no-deps {DISTRIBUTION}=={DISTRIBUTION_VERSION}"
CACHE_ENV = "TOOLKIT_SPEAKER_CACHE"
"""Overrides where converted weights are kept (default: ``~/.cache/toolkit/speaker``)."""
_FORMAT = "1"
"""Bump when the converted file's layout changes."""


class SpeakerWeightsError(ToolkitError):
    """The pretrained speaker-encoder weights cannot be found, verified or read."""


class SpeakerEncoder(nn.Module):
    """Resemblyzer's voice encoder: mel frames ``[N, frames, 40]`` to embeddings ``[N, 256]``."""

    def __init__(self) -> None:
        """An encoder with untrained weights (see :func:`load_encoder` for the pretrained one)."""
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, HIDDEN_SIZE, NUM_LAYERS, batch_first=True)
        self.linear = nn.Linear(HIDDEN_SIZE, EMBEDDING_SIZE)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """Unit-norm, non-negative embeddings of a batch of equally long mel-frame sequences."""
        _, (hidden, _) = self.lstm(mels)
        embeds = torch.relu(self.linear(hidden[-1]))
        return nn.functional.normalize(embeds, dim=1)


def weights_path() -> Path:
    """The installed ``pretrained.pt`` of resemblyzer, found without importing it."""
    folder = package_dir(DISTRIBUTION)
    if folder is None:
        raise SpeakerWeightsError(
            f"the speaker encoder's weights come with the '{DISTRIBUTION}' package, which is "
            f"not installed: run '{INSTALL_COMMAND}'"
        )
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise SpeakerWeightsError(
            f"speaker encoder weight file {path} not found: reinstall it with "
            f"'{INSTALL_COMMAND} --force-reinstall'"
        )
    return path


def verify_weights(path: Path) -> None:
    """Raise :class:`SpeakerWeightsError` unless ``path`` is resemblyzer 0.1.4's weight file."""
    try:
        digest = file_digest(path)
    except OSError as exc:
        raise SpeakerWeightsError(
            f"cannot read speaker encoder weight file {path} ({exc.strerror or exc}): "
            f"run '{INSTALL_COMMAND}'"
        ) from None
    if digest != WEIGHTS_SHA256:
        raise SpeakerWeightsError(
            f"speaker encoder weight file {path} has sha256 {digest[:16]}..., not that of "
            f"{DISTRIBUTION} {DISTRIBUTION_VERSION}: reinstall it with "
            f"'{INSTALL_COMMAND} --force-reinstall'"
        )


def _expected_shapes() -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in SpeakerEncoder().state_dict().items()}


def _checked_state(raw: object, origin: Path) -> dict[str, torch.Tensor]:
    """The encoder tensors of ``raw``, or an error naming what does not fit."""
    if not isinstance(raw, dict):
        raise SpeakerWeightsError(f"{origin}: expected a dict of tensors, got {type(raw).__name__}")
    state: dict[str, torch.Tensor] = {}
    for key, shape in _expected_shapes().items():
        value = raw.get(key)
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            raise SpeakerWeightsError(f"{origin}: no tensor {key!r} of shape {shape}")
        state[key] = value.detach().to(torch.float32).clone()
    return state


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The encoder's state dict from a resemblyzer checkpoint, unpickled without running code.

    The file's digest is not checked here (see :func:`verify_weights`).
    """
    raw = load_weights_safely(
        path, SpeakerWeightsError, "speaker encoder weight file", f"run '{INSTALL_COMMAND}'"
    )
    model_state = raw.get("model_state") if isinstance(raw, dict) else None
    if model_state is None:
        raise SpeakerWeightsError(f"{path}: no 'model_state'; not a resemblyzer checkpoint")
    return _checked_state(model_state, path)


def cache_dir() -> Path:
    """Where converted weights are kept."""
    return user_cache_dir("speaker", CACHE_ENV)


def cached_weights_path() -> Path:
    """The converted weight file in :func:`cache_dir` (present once the weights were loaded)."""
    return cache_dir() / f"encoder-{WEIGHTS_SHA256[:16]}-v{_FORMAT}.pt"


def load_state_dict(path: Path | None = None, *, use_cache: bool = True) -> dict[str, torch.Tensor]:
    """The pretrained encoder's state dict.

    ``path`` None: resemblyzer's installed weight file, through its converted copy
    in the user cache when ``use_cache`` (written on first use). A given ``path`` is
    read directly. Either way the original file must have the pinned sha256.
    """
    cached = cached_weights_path() if path is None and use_cache else None
    if cached is not None and cached.is_file():
        with contextlib.suppress(Exception):  # a bad cache entry is rebuilt
            return _checked_state(torch.load(cached, map_location="cpu", weights_only=True), cached)
    source = weights_path() if path is None else Path(path)
    verify_weights(source)
    state = read_checkpoint(source)
    if cached is not None:
        with contextlib.suppress(OSError):  # an unwritable cache is not an error
            atomic_write(cached, lambda handle: torch.save(state, handle))
    return state


def load_encoder(path: Path | None = None) -> SpeakerEncoder:
    """The pretrained encoder in eval mode (weights as in :func:`load_state_dict`)."""
    encoder = SpeakerEncoder()
    encoder.load_state_dict(load_state_dict(path))
    return encoder.eval()


def frame_step(rate: float) -> int:
    """Frames between two partial utterances at ``rate`` partials per second (as resemblyzer)."""
    return int(round((SAMPLE_RATE / rate) / HOP))


def window_frames_of(seconds: float) -> int:
    """Mel frames in a window of ``seconds``."""
    return max(1, math.floor(seconds * SAMPLE_RATE / HOP + 0.5))


def partial_starts(
    n_samples: int,
    window_frames: int = WINDOW_FRAMES,
    rate: float = DEFAULT_RATE,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
) -> list[int]:
    """First mel frame of each partial utterance of a clip of ``n_samples`` at 16 kHz.

    Resemblyzer's rule: partials of ``window_frames`` every :func:`frame_step`
    frames until they cover the clip; the last one is dropped when less than
    ``min_coverage`` of it is audio, unless it is the only one.
    """
    if not 0 < min_coverage <= 1:
        raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
    step = frame_step(rate)
    if not 0 < step <= window_frames:
        raise ValueError(
            f"rate {rate} gives a hop of {step} frames; it must be 1..{window_frames} frames "
            f"(rate at least {SAMPLE_RATE / (HOP * window_frames):g} per second)"
        )
    n_frames = (n_samples + HOP) // HOP  # ceil((n_samples + 1) / HOP)
    steps = max(1, n_frames - window_frames + step + 1)
    starts = list(range(0, steps, step))
    coverage = (n_samples - starts[-1] * HOP) / (window_frames * HOP)
    if coverage < min_coverage and len(starts) > 1:
        starts.pop()
    return starts


def normalize_volume(waves: torch.Tensor, target_dbfs: float = TARGET_DBFS) -> torch.Tensor:
    """Raise each clip of ``waves [B, T]`` to ``target_dbfs`` RMS; louder or silent ones stay."""
    rms = waves.to(torch.float64).square().mean(dim=-1, keepdim=True).sqrt()
    target = 10.0 ** (target_dbfs / 20.0)
    gain = torch.where(rms > 0, target / rms.clamp_min(1e-300), torch.ones_like(rms))
    return (waves * gain.clamp_min(1.0).to(waves.dtype)).to(waves.dtype)


class SpeakerEmbedder:
    """Per-window speaker embeddings of 16 kHz clips, as resemblyzer's ``embed_utterance``."""

    def __init__(
        self,
        window_frames: int = WINDOW_FRAMES,
        rate: float = DEFAULT_RATE,
        min_coverage: float = DEFAULT_MIN_COVERAGE,
        normalize: bool = True,
        encoder: SpeakerEncoder | None = None,
    ) -> None:
        """Settings of the partial utterances and volume normalisation; the pretrained encoder."""
        import torchaudio  # noqa: PLC0415 - heavy

        partial_starts(0, window_frames, rate, min_coverage)  # checks the settings
        self.window_frames = window_frames
        self.rate = rate
        self.min_coverage = min_coverage
        self.normalize = normalize
        self.encoder = encoder if encoder is not None else load_encoder()
        # librosa.feature.melspectrogram's defaults as resemblyzer calls it: periodic Hann,
        # centred frames padded with zeros, power 2, Slaney mel scale and area norm, no log.
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE,
            n_fft=N_FFT,
            hop_length=HOP,
            n_mels=N_MELS,
            power=2.0,
            center=True,
            pad_mode="constant",
            norm="slaney",
            mel_scale="slaney",
        )

    def n_windows(self, n_samples: int) -> int:
        """How many embeddings a clip of ``n_samples`` at 16 kHz gets."""
        return len(partial_starts(n_samples, self.window_frames, self.rate, self.min_coverage))

    def windows(self, waves: torch.Tensor) -> torch.Tensor:
        """The encoder's input: mel frames of each partial utterance, ``[B, W, frames, 40]``,
        of float32 16 kHz clips ``[B, T]`` (volume normalised first, if asked)."""
        waves = mono_batch(waves)
        n_samples = waves.shape[-1]
        starts = partial_starts(n_samples, self.window_frames, self.rate, self.min_coverage)
        if self.normalize:
            waves = normalize_volume(waves)
        needed = (starts[-1] + self.window_frames) * HOP
        if needed > n_samples:
            waves = nn.functional.pad(waves, (0, needed - n_samples))
        device = waves.device
        self.mel.to(device)
        with torch.no_grad():
            frames = self.mel(waves).transpose(1, 2)  # [B, frames, 40]
            index = torch.tensor(starts, device=device)[:, None] + torch.arange(
                self.window_frames, device=device
            )
            return frames[:, index]

    def embed(self, waves: torch.Tensor) -> torch.Tensor:
        """Embeddings ``[B, n_windows, 256]`` of float32 16 kHz clips ``[B, T]``."""
        windows = self.windows(waves)
        batch, count = windows.shape[:2]
        self.encoder.to(windows.device)
        with torch.no_grad():
            embeds = self.encoder(windows.reshape(batch * count, self.window_frames, N_MELS))
        return embeds.reshape(batch, count, EMBEDDING_SIZE)


REFERENCE_ENV = "TOOLKIT_RESEMBLYZER_PYTHON"
"""The Python of a virtualenv with resemblyzer and its dependencies (the reference)."""

_REFERENCE_SCRIPT = """
import sys
import numpy as np
import librosa
from resemblyzer import VoiceEncoder, audio
from resemblyzer.hparams import audio_norm_target_dBFS, sampling_rate

clips, rate = np.load(sys.argv[1]), int(sys.argv[3])
encoder = VoiceEncoder("cpu", verbose=False)
partials = []
for i in range(len(clips.files)):
    wav = clips[f"arr_{i}"]
    if rate != sampling_rate:
        wav = librosa.resample(wav, orig_sr=rate, target_sr=sampling_rate)
    wav = audio.normalize_volume(wav, audio_norm_target_dBFS, increase_only=True)
    partials.append(encoder.embed_utterance(wav, return_partials=True)[1])
np.savez(sys.argv[2], *partials)
"""


def reference_partials(
    python: str | Path, clips: list[np.ndarray], sample_rate: int = SAMPLE_RATE
) -> list[np.ndarray]:
    """Resemblyzer's own partial embeddings ``[n_windows, 256]`` of mono ``clips``.

    Runs ``VoiceEncoder.embed_utterance(..., return_partials=True)`` with ``python``
    (see :data:`REFERENCE_ENV`) after resemblyzer's resampling and volume
    normalisation (not its silence trimming).
    """
    with tempfile.TemporaryDirectory() as folder:
        inputs, outputs = Path(folder) / "clips.npz", Path(folder) / "partials.npz"
        np.savez(inputs, *[np.asarray(c, dtype=np.float32) for c in clips])
        script = Path(folder) / "reference.py"
        script.write_text(_REFERENCE_SCRIPT)
        result = subprocess.run(
            [str(python), str(script), str(inputs), str(outputs), str(sample_rate)],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if result.returncode != 0:
            tail = result.stderr.strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"the resemblyzer reference failed: {tail[0]}")
        with np.load(outputs) as data:
            return [data[f"arr_{i}"] for i in range(len(clips))]
