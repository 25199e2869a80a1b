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

    def _run(
        self,
        x: torch.Tensor,
        tail: list[torch.Tensor] | None,
        record: list[torch.Tensor] | None,
    ) -> torch.Tensor:
        rows = iter(tail) if tail is not None else None

        def seen(t: torch.Tensor) -> torch.Tensor | None:
            if record is not None:
                middle = t.shape[2] // 2
                record.append(t[:, :, middle : middle + 1].clone())
            return next(rows) if rows is not None else None

        skips: list[torch.Tensor] = []
        h = x
        for i, conv in enumerate(self.encoder):
            conv_out = conv(_pad(h, (1, 2, 1, 2), seen(h)))
            skips.append(conv_out)
            if i < len(self.encoder_norm):
                h = F.leaky_relu(self.encoder_norm[i](conv_out), 0.2, inplace=True)
        h = skips[-1]
        for i, norm in enumerate(self.decoder_norm):
            height, width = h.shape[2], h.shape[3]
            up = self._upsample(i, h, seen(h))
            up = norm(F.relu(up[:, :, 1 : 2 * height + 1, 1 : 2 * width + 1]))
            h = torch.cat((skips[-2 - i], up), dim=1) if i < 5 else up
        mask = self.output_conv(_pad(h, (3, 3, 3, 3), seen(h)))
        return torch.sigmoid(mask)

    def _upsample(self, i: int, x: torch.Tensor, tail: torch.Tensor | None) -> torch.Tensor:
        """Decoder ``i``'s transposed convolution, uncropped rows ``0 .. 2H+1`` and more.

        The first output row to keep is 1 and only the last kept row reads an input
        row past the end (zero, or the steady ``tail`` row).
        """
        deconv = self.decoder[i]
        if i not in SUBPIXEL_LAYERS or torch.is_grad_enabled():
            return deconv(x if tail is None else _pad(x, (0, 0, 0, 1), tail))
        # Sub-pixel form: output row 2q + p (before cropping) of a stride-2, 5-tap
        # transposed convolution sums input rows q - 2 .. q with taps p + 4, p + 2, p
        # (those below 5): one 3x3 convolution to 4 phases, then a pixel shuffle.
        weight, bias = self._subpixel_weights(i)
        return F.pixel_shuffle(F.conv2d(_pad(x, (2, 1, 2, 1), tail), weight, bias), 2)

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


def _pad(
    x: torch.Tensor, pad: tuple[int, int, int, int], tail: torch.Tensor | None
) -> torch.Tensor:
    """Zero-pad ``x`` by ``(left, right, top, bottom)``; the bottom rows copy ``tail``.

    Writes the borders only, and keeps ``x``'s memory format.
    """
    left, right, top, bottom = pad
    batch, channels, height, width = x.shape
    out = torch.empty(
        (batch, channels, top + height + bottom, left + width + right),
        dtype=x.dtype,
        device=x.device,
        memory_format=torch.channels_last
        if x.is_contiguous(memory_format=torch.channels_last)
        else torch.contiguous_format,
    )
    out[:, :, top : top + height, left : left + width] = x
    out[:, :, :top].zero_()
    out[:, :, top + height :].zero_()
    out[:, :, top : top + height, :left].zero_()
    out[:, :, top : top + height, left + width :].zero_()
    if tail is not None and bottom:
        out[:, :, top + height :, left : left + width] = tail
    return out
