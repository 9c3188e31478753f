"""Building blocks that several families share."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mixsep.errors import ConfigError


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Upsample(nn.ConvTranspose2d):
    """A transposed convolution whose kernel equals its stride (``factor``), computed as what it is: a 1×1
    convolution to ``factor²`` times the channels, then a pixel shuffle. Same parameters and outputs, without
    oneDNN's transposed-convolution kernels (benchmarks/profile_step.py measures the step with and without)."""

    def __init__(self, in_channels: int, out_channels: int, factor: int) -> None:
        super().__init__(in_channels, out_channels, factor, stride=factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cin, cout, factor = self.in_channels, self.out_channels, self.stride[0]
        weight = self.weight.permute(1, 2, 3, 0).reshape(cout * factor * factor, cin, 1, 1)
        return F.pixel_shuffle(F.conv2d(x, weight, self.bias.repeat_interleave(factor * factor)), factor)


class SkipDecoder(nn.Module):
    """A U-Net decoder over any encoder (at every scale: concatenation, two 3×3 conv–BN–ReLU), then a 1×1 head.

    ``skip_shapes``: (channels, size) of the skip features, finest first; ``bottom``: the coarsest map's;
    ``widths``: the decoder's channels per skip level. Up by a transposed convolution, or 1×1 at the same size.
    """

    def __init__(
        self, skip_shapes: list[tuple[int, int]], bottom: tuple[int, int], widths: list[int], out_channels: int
    ) -> None:
        super().__init__()
        if len(widths) != len(skip_shapes) or min(widths) < 1:
            raise ConfigError(
                f"model.net.decoder_widths={widths}: give {len(skip_shapes)} positive widths, one per skip level "
                "(finest first)"
            )
        below = [(w, size) for w, (_, size) in zip(widths[1:], skip_shapes[1:])] + [bottom]  # what feeds each
        self.up = nn.ModuleList()
        for (_, size), (cin, below_size), width in zip(skip_shapes, below, widths):
            factor = size // below_size
            if factor * below_size != size:
                raise ConfigError(f"a skip level of {size} pixels sits above one of {below_size}: not a whole factor")
            self.up.append(Upsample(cin, width, factor) if factor > 1 else nn.Conv2d(cin, width, 1))
        self.merge = nn.ModuleList(conv_block(width + chans, width) for (chans, _), width in zip(skip_shapes, widths))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, skips: list[torch.Tensor], bottom: torch.Tensor) -> torch.Tensor:
        x = bottom
        for i in reversed(range(len(skips))):
            x = self.merge[i](torch.cat([self.up[i](x), skips[i]], dim=1))
        return self.head(x)
