"""Pretrained networks as trainable bodies under a new head (imported with torch).

A body maps a batch of 16 kHz clips ``[B, T]`` to one embedding per clip ``[B, D]``:
it cuts each clip into the network's windows, runs the pretrained network (the
port in :mod:`toolkit.pretrained`, with its shipped weights) on every window and
averages the windows' embeddings. Its input transform (mel spectrogram, windows)
has no parameters and runs in float32 whatever the training precision; the
network runs under the trainer's autocast.

:class:`FineTuned` puts a body on the waveform stream of a packed batch
(``streams: pack``), pools every other non-waveform stream (frozen embeddings,
as ``concat`` would), and classifies the concatenation with the ``head``
backbone's network, so one model fuses a fine-tuned network with frozen features.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from toolkit.errors import RecipeError, error_at
from toolkit.plugins.backbones.finetune_settings import HeadSettings
from toolkit.plugins.backbones.head_net import EmbeddingHead
from toolkit.pretrained import musicnn, speaker
from toolkit.training.finetuning import BodyLayer, LayerSchedule
from toolkit.training.fusion import Layout, pooled_batch

WAVEFORM = "waveform"
"""The feature plugin whose streams are raw audio."""


def _no_autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device.type, enabled=False)


class MusicnnBody(nn.Module):
    """musicnn's front-end and mid-end (and back-end, for the penultimate embedding).

    Windows of 3 s follow each other, as the ``musicnn`` extractor cuts them by
    default; ``embedding`` is ``penultimate`` (200 values after the dense layer) or
    ``pooled`` (1506: the max and mean over time of the mid-end features).
    """

    def __init__(self, model: str = "MSD_musicnn", embedding: str = "penultimate") -> None:
        """The pretrained ``model`` (a musicnn, not a VGG) with its shipped weights."""
        super().__init__()
        net = musicnn.pretrained(model)
        if not isinstance(net, musicnn.Musicnn):
            raise ValueError(f"{model} is not a musicnn network")
        net.classifier = nn.Identity()  # the tags are not needed: a new head classifies
        self.net = net
        self.logmel = musicnn.LogMel()
        self.n_frames = musicnn.window_frames(3.0)
        self.embedding = embedding
        self.dim = (
            net.dense.out_features if embedding == "penultimate" else 2 * net.dense.in_features
        )
        if embedding != "penultimate":  # the back-end is not used
            for module in (net.pool_norm, net.dense, net.dense_norm):
                module.requires_grad_(False)

    def layers(self) -> list[BodyLayer]:
        """Its layers from the input up: input norm, front-end, each mid-end layer, back-end."""
        net = self.net
        found = [
            BodyLayer.of("input_norm", [net.input_norm]),
            BodyLayer.of(
                "frontend", [net.timbral, net.timbral_norm, net.temporal, net.temporal_norm]
            ),
            *(
                BodyLayer.of(f"midend.{i}", [conv, norm])
                for i, (conv, norm) in enumerate(zip(net.midend, net.midend_norm, strict=True))
            ),
        ]
        if self.embedding == "penultimate":
            found.append(BodyLayer.of("backend", [net.pool_norm, net.dense, net.dense_norm]))
        return found

    def windows(self, audio: torch.Tensor) -> torch.Tensor:
        """The network's input: ``[B, W, 187, 96]`` log-mel windows of 16 kHz clips ``[B, T]``."""
        with torch.no_grad(), _no_autocast(audio.device):
            logmel = self.logmel(audio.float())
            return musicnn.frame_windows(logmel, self.n_frames, self.n_frames)

    def window_embeddings(self, audio: torch.Tensor) -> torch.Tensor:
        """One embedding per window: ``[B, W, D]``."""
        windows = self.windows(audio)
        batch, count = windows.shape[:2]
        outputs = self.net(windows.flatten(0, 1))
        chosen = outputs.penultimate if self.embedding == "penultimate" else outputs.pooled
        return chosen.reshape(batch, count, -1)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """The clip's embedding ``[B, D]``: the mean over its windows."""
        return self.window_embeddings(audio).mean(dim=1)


class SpeakerBody(nn.Module):
    """Resemblyzer's speaker encoder (3 LSTM layers and a linear layer) on 1.6 s windows.

    The windows are resemblyzer's partial utterances at ``rate`` per second (see
    :class:`toolkit.pretrained.speaker.SpeakerEmbedder`); each embedding is unit-norm.
    """

    def __init__(self, rate: float = speaker.DEFAULT_RATE, normalize_volume: bool = True) -> None:
        """The pretrained encoder with its shipped weights."""
        super().__init__()
        self.embedder = speaker.SpeakerEmbedder(
            speaker.WINDOW_FRAMES, rate, speaker.DEFAULT_MIN_COVERAGE, normalize_volume
        )
        self.encoder = self.embedder.encoder
        self.mel = self.embedder.mel
        self.dim = speaker.EMBEDDING_SIZE

    def layers(self) -> list[BodyLayer]:
        """Its layers from the input up: each LSTM layer, then the linear layer."""
        lstm = self.encoder.lstm
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        found = [
            BodyLayer(f"lstm.{k}", [getattr(lstm, f"{n}_l{k}") for n in names])
            for k in range(lstm.num_layers)
        ]
        return [*found, BodyLayer.of("linear", [self.encoder.linear])]

    def window_embeddings(self, audio: torch.Tensor) -> torch.Tensor:
        """One embedding per window: ``[B, W, 256]``."""
        with _no_autocast(audio.device):
            windows = self.embedder.windows(audio.float())
        batch, count = windows.shape[:2]
        embeds = self.encoder(windows.flatten(0, 1))
        return embeds.reshape(batch, count, -1)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """The clip's embedding ``[B, 256]``: the mean over its windows."""
        return self.window_embeddings(audio).mean(dim=1)


class FineTuned(nn.Module):
    """A pretrained body on a waveform stream, frozen streams beside it, and a new head.

    Provides the trainer's optional hooks (:class:`toolkit.registry.kinds.FineTunable`): the
    head and each body layer as parameter groups, the body frozen and unfrozen by
    epoch (:class:`toolkit.training.finetuning.LayerSchedule`), and the raw waveform as input.
    """

    standardize_input = False

    def __init__(
        self,
        body: MusicnnBody | SpeakerBody,
        layout: Layout,
        num_classes: int,
        settings: HeadSettings,
        *,
        name: str = "backbone",
    ) -> None:
        """The body reads the waveform stream of ``settings.audio``; the settings schedule it
        (``name`` is the backbone's, for errors)."""
        super().__init__()
        self.layout = layout
        self.audio_index = _waveform_stream(layout, settings.audio, name)
        self.frozen_indices = [i for i, s in enumerate(layout.streams) if s.name != WAVEFORM]
        self.body = body
        self.head = EmbeddingHead(
            num_classes, pooling="mean", hidden=settings.hidden, dropout=settings.dropout
        )
        try:
            self.schedule = LayerSchedule(body.layers(), settings)
        except ValueError as exc:
            raise RecipeError(error_at(f"model.backbone: {name}", exc)) from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, K]`` of a packed batch."""
        audio = self.layout.part(x, self.audio_index).flatten(1)
        vectors = [self.body(audio)]
        vectors += [pooled_batch(self.layout.part(x, i)) for i in self.frozen_indices]
        return self.head(torch.cat(vectors, dim=1)[:, None, :, None])

    def parameter_groups(self, lr: float) -> list[dict[str, Any]]:
        """The head at ``lr``, then each body layer that ever trains at its own rate."""
        return self.schedule.parameter_groups(self.head.parameters(), lr)

    def on_epoch_start(self, epoch: int) -> None:
        """Freeze or unfreeze the body's layers for ``epoch``."""
        self.schedule.on_epoch_start(epoch)


def _waveform_stream(layout: Layout, audio: str, name: str) -> int:
    """The index of the 16 kHz waveform stream reading ``audio``; a RecipeError if none."""
    found = layout.find(WAVEFORM, audio)
    if not found:
        given = ", ".join(f"{s.name}({s.input})" for s in layout.streams)
        raise RecipeError(
            f"model.backbone: {name} trains on a waveform stream reading {audio!r}, and the "
            f"features have none ({given}); add {{name: waveform"
            f"{', input: mixture' if audio == 'mixture' else ''}}} to features"
        )
    stream = layout.streams[found[0]]
    if stream.block.get("sample_rate") != musicnn.SAMPLE_RATE:
        raise RecipeError(
            f"model.backbone: {name} takes 16 kHz audio; its waveform stream has sample_rate "
            f"{stream.block.get('sample_rate')}: set it to {musicnn.SAMPLE_RATE}"
        )
    if layout.mode != "pack" and len(layout.streams) > 1:
        raise RecipeError(f"model.backbone: {name} takes its streams packed, not {layout.mode}")
    return found[0]
