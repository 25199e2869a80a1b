"""Spleeter's U-Net in PyTorch: one network per stem, mapping a magnitude to a masked one.

The layout follows Deezer's ``spleeter.model.functions.unet.apply_unet`` (after
Jansson et al., ISMIR 2017), in NCHW with H = time frames and W = frequency bins:

- six encoder blocks: 5x5 convolution, stride 2, TensorFlow ``"same"`` padding
  (one row/column before, two after), then batch norm and LeakyReLU(0.2). The skip
  connections and the bottleneck take the convolution *before* its batch norm, so
  the sixth block's norm and activation are unused and left out here;
- six decoder blocks: 5x5 transposed convolution, stride 2, cropped to twice the
  input size as TensorFlow's ``"same"`` does (one row/column off the start, two off
  the end), ReLU, batch norm (dropout is inactive at inference), then concatenated
  after the matching encoder convolution; the last one has a single filter;
- a 4x4 convolution with dilation 2 and ``"same"`` padding (three on each side) to
  two channels, a sigmoid, times the input magnitude.

Batch norm uses Keras' epsilon, 1e-3, with the stored moving statistics.

**Trimmed segments.** The original always runs 512-frame segments; a short clip is
zero-padded to 512 frames, and far enough past the end of the audio every layer's
activations stop changing from one time row to the next (they are the network's
response to silence). :meth:`UNet.mask` can instead run a segment cut shortly after
the audio and, at every layer, pad its end with those steady rows (from
:meth:`UNet.steady_rows`) instead of zeros. When the cut leaves at least 64 frames
of silence after the audio, the result is the same as the full segment's to float
rounding (``tests/test_spleeter.py``), for a fraction of the compute.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ENCODER_FILTERS = (16, 32, 64, 128, 256, 512)
"""Filters of the six encoder convolutions (``conv_n_filters``)."""

BN_EPSILON = 1e-3
"""Keras' BatchNormalization default epsilon."""

SUBPIXEL_LAYERS = (3, 4, 5)
"""Decoder layers run as a 3x3 convolution and a pixel shuffle (faster on CPU there)."""


class UNet(nn.Module):
    """One Spleeter U-Net: magnitude ``[B, C, T, F]`` in, estimated source magnitude out.

    ``T`` and ``F`` must be multiples of 64.
    """

    def __init__(self, in_channels: int = 2, filters: tuple[int, ...] = ENCODER_FILTERS) -> None:
        super().__init__()
        widths = (in_channels, *filters)
        self.encoder = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], kernel_size=5, stride=2) for i in range(6)
        )
        self.encoder_norm = nn.ModuleList(
            nn.BatchNorm2d(widths[i + 1], eps=BN_EPSILON) for i in range(5)
        )
        # Decoder i upsamples to the width of encoder 5 - i and is concatenated with
        # it (so the next decoder sees twice that width); the last goes to 1 channel.
        up_out = (*filters[-2::-1], 1)
        up_in = (filters[-1], *(2 * w for w in filters[-2::-1]))
        self.decoder = nn.ModuleList(
            nn.ConvTranspose2d(up_in[i], up_out[i], kernel_size=5, stride=2) for i in range(6)
        )
        self.decoder_norm = nn.ModuleList(nn.BatchNorm2d(w, eps=BN_EPSILON) for w in up_out)
        self.output = nn.Conv2d(1, in_channels, kernel_size=4, dilation=2, padding=3)
        self._subpixel_cache: dict[int, tuple] = {}

    def mask(self, magnitude: torch.Tensor, tail: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The sigmoid mask ``[B, C, T, F]`` for ``magnitude`` ``[B, C, T, F]``.

        ``tail``: the steady rows of :meth:`steady_rows`, to pad the end of every
        layer's input with instead of zeros (a trimmed segment); None for zeros.
        """
        return self._run(magnitude, tail, None)

    def forward(
        self, magnitude: torch.Tensor, tail: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """The estimated source magnitude: the mask times ``magnitude``."""
        return self.mask(magnitude, tail) * magnitude

    @torch.no_grad()
    def steady_rows(self, n_bins: int = 1024, frames: int = 1024) -> list[torch.Tensor]:
        """Each convolution's input far inside a long silence: ``[1, C, 1, W]`` rows.

        Taken from the middle of a ``frames``-long segment of zeros, where the
        segment's borders no longer reach.
        """
        param = self.output.weight
        zeros = torch.zeros(1, self.output.out_channels, frames, n_bins, device=param.device)
        rows: list[torch.Tensor] = []
        self._run(zeros, None, rows)
        return rows

    @torch.no_grad()
    def _run(
        self,
        x: torch.Tensor,
        tail: list[torch.Tensor] | None,
        record: list[torch.Tensor] | None,
    ) -> torch.Tensor:
        """The mask; ``record`` (if given) collects each convolution input's middle row.

        Every convolution input is written once, straight into a buffer with its
        padding (batch norm and activation fused into that write), so the padding,
        concatenation and normalisation cost no extra passes over the activations.
        """
        rows = iter(tail) if tail is not None else None

        def buffer(
            like: torch.Tensor, shape: tuple[int, int, int], pad: tuple[int, int, int, int]
        ) -> tuple[torch.Tensor, torch.Tensor]:
            return _padded(like, shape, pad, next(rows) if rows is not None else None)

        def seen(inner: torch.Tensor) -> None:
            if record is not None:
                middle = inner.shape[2] // 2
                record.append(inner[:, :, middle : middle + 1].clone())

        batch = x.shape[0]
        skips: list[torch.Tensor] = []
        buf, inner = buffer(x, x.shape[1:], ENCODER_PAD)
        inner.copy_(x)
        seen(inner)
        for i, conv in enumerate(self.encoder):
            conv_out = conv(buf)
            skips.append(conv_out)
            if i < len(self.encoder_norm):
                scale, shift = _affine(self.encoder_norm[i])
                buf, inner = buffer(conv_out, conv_out.shape[1:], ENCODER_PAD)
                torch.addcmul(shift, conv_out, scale, out=inner)
                F.leaky_relu(inner, 0.2, inplace=True)
                seen(inner)
        bottom = skips[-1]
        buf, inner = buffer(bottom, bottom.shape[1:], self._decoder_pad(0, tail))
        inner.copy_(bottom)
        seen(inner)
        for i, norm in enumerate(self.decoder_norm):
            height, width = inner.shape[2], inner.shape[3]
            up = self._upsample(i, buf).relu_()
            channels = self.decoder[i].out_channels
            scale, shift = _affine(norm)
            if i < 5:
                skip = skips[-2 - i]
                split = skip.shape[1]
                shape = (split + channels, 2 * height, 2 * width)
                buf, inner = buffer(skip, shape, self._decoder_pad(i + 1, tail))
                inner[:, :split].copy_(skip)
                _store_upsampled(up, inner[:, split:], scale, shift, i in SUBPIXEL_LAYERS)
            else:
                buf, inner = buffer(up, (channels, 2 * height, 2 * width), OUTPUT_PAD)
                _store_upsampled(up, inner, scale, shift, i in SUBPIXEL_LAYERS)
            seen(inner)
        assert inner.shape[0] == batch
        return torch.sigmoid(self.output_conv(buf))

    @staticmethod
    def _decoder_pad(i: int, tail: list[torch.Tensor] | None) -> tuple[int, int, int, int]:
        """Padding decoder ``i``'s input needs (see :meth:`_upsample`)."""
        if i in SUBPIXEL_LAYERS:
            return (2, 1, 2, 1)
        # Only the last kept output row reads an input row past the end: a zero
        # one adds nothing, a steady tail row must be there.
        return (0, 0, 0, 1) if tail is not None else (0, 0, 0, 0)

    def _upsample(self, i: int, padded: torch.Tensor) -> torch.Tensor:
        """Decoder ``i``'s transposed convolution of ``padded`` (see :meth:`_decoder_pad`).

        Native layers return the full output, whose rows and columns ``1 .. 2H+1``
        are kept. Sub-pixel layers return the four phases ``[B, 4C, H+1, W+1]``:
        row ``2q + p`` of the full output (before cropping) sums input rows
        ``q - 2 .. q`` with taps ``p + 4, p + 2, p`` (those below 5), which is one
        3x3 convolution to four channels per output channel.
        """
        if i not in SUBPIXEL_LAYERS:
            return self.decoder[i](padded)
        weight, bias = self._subpixel_weights(i)
        return F.conv2d(padded, weight, bias)

    def _subpixel_weights(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        deconv = self.decoder[i]
        key = (deconv.weight.data_ptr(), deconv.weight._version, deconv.weight.device)
        cached = self._subpixel_cache.get(i)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        w = deconv.weight.detach()  # [in, out, 5, 5]
        c_in, c_out = w.shape[:2]
        # Pad the taps to 6 (index 5 is zero), then phase p of kernel row 2j + p,
        # read by input row q - 2 + j, is tap p + 2 * (2 - j).
        w6 = F.pad(w, (0, 1, 0, 1)).flip(2, 3)  # index 5 - k holds tap k
        w6 = w6.reshape(c_in, c_out, 3, 2, 3, 2)  # [in, out, j, 1 - p, l, 1 - r]
        phases = w6.flip(3, 5).permute(1, 3, 5, 0, 2, 4)  # [out, p, r, in, j, l]
        weight = phases.reshape(c_out * 4, c_in, 3, 3).contiguous(memory_format=torch.channels_last)
        bias = deconv.bias.detach().repeat_interleave(4) if deconv.bias is not None else None
        self._subpixel_cache[i] = (key, weight, bias)
        return weight, bias  # type: ignore[return-value]

    def output_conv(self, padded: torch.Tensor) -> torch.Tensor:
        """The last convolution on an already padded input."""
        return F.conv2d(padded, self.output.weight, self.output.bias, dilation=2)


ENCODER_PAD = (1, 2, 1, 2)
"""TensorFlow ``"same"`` padding of a 5x5, stride-2 convolution: (left, right, top, bottom)."""

OUTPUT_PAD = (3, 3, 3, 3)
"""``"same"`` padding of the 4x4 convolution with dilation 2."""


def _affine(norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference batch norm as ``x * scale + shift``, both ``[1, C, 1, 1]``."""
    assert norm.running_var is not None and norm.running_mean is not None
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    return scale.view(1, -1, 1, 1), shift.view(1, -1, 1, 1)


def _store_upsampled(
    up: torch.Tensor, out: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, phases: bool
) -> None:
    """Write ``up * scale + shift``, cropped as TensorFlow's ``"same"`` does, into ``out``.

    ``up`` is a native transposed convolution's full output, or its four phases
    (see :meth:`UNet._upsample`); then kept row ``2a + b`` is full row ``2a + b + 1``,
    i.e. phase ``1 - b`` at phase row ``a + b`` (columns alike), so each phase is
    written straight to its rows without a pixel shuffle.
    """
    height, width = out.shape[2], out.shape[3]
    if not phases:
        torch.addcmul(shift, up[:, :, 1 : height + 1, 1 : width + 1], scale, out=out)
        return
    half_h, half_w = height // 2, width // 2
    src = up.unflatten(1, (-1, 2, 2))  # [B, C, p, r, H+1, W+1]
    dst = out.unflatten(3, (half_w, 2)).unflatten(2, (half_h, 2))  # [B, C, a, b, c, d]
    for b in (0, 1):
        for d in (0, 1):
            phase = src[:, :, 1 - b, 1 - d, b : b + half_h, d : d + half_w]
            torch.addcmul(shift, phase, scale, out=dst[:, :, :, b, :, d])


def _padded(
    like: torch.Tensor,
    shape: tuple[int, ...] | torch.Size,
    pad: tuple[int, int, int, int],
    tail: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A channels-last buffer for a ``shape`` = (C, H, W) input padded by ``pad``.

    Returns the buffer, its borders zero (the bottom rows copy the steady ``tail``
    row when given), and the view of its interior, for the caller to fill.
    """
    left, right, top, bottom = pad
    channels, height, width = shape
    out = torch.empty(
        (like.shape[0], channels, top + height + bottom, left + width + right),
        dtype=like.dtype,
        device=like.device,
        memory_format=torch.channels_last,
    )
    out[:, :, :top].zero_()
    out[:, :, top + height :].zero_()
    out[:, :, top : top + height, :left].zero_()
    out[:, :, top : top + height, left + width :].zero_()
    if tail is not None and bottom:
        out[:, :, top + height :, left : left + width] = tail
    return out, out[:, :, top : top + height, left : left + width]
