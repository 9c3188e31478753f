"""The conv dual-decoder: a convolutional encoder and two skip decoders (gray source, colour source), joined by the
structure head (structure.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mixsep.errors import ConfigError
from mixsep.models.blocks import SkipDecoder, conv_block
from mixsep.models.registry import register_network
from mixsep.models.structure import SourceHead, structured_input


@register_network
class ConvSkipDual(nn.Module):
    """Encoder: two 3×3 conv–BN–ReLU per level, ``widths`` channels, 2×2 max-pooling between levels. Two
    :class:`SkipDecoder`s (MNIST, CIFAR), ``decoder_widths`` channels per level, finest first. ``structure``: the
    structure head's switches (:class:`SourceHead`)."""

    def __init__(
        self,
        widths: list[int] = (32, 64, 128, 256),
        decoder_widths: list[int] = (24, 48, 96),
        **structure,
    ) -> None:
        super().__init__()
        widths = list(widths)
        if len(widths) < 2 or min(widths) < 1:
            raise ConfigError(f"model.net.widths={widths}: give 2 or more positive channel counts, one per level")
        self.head = SourceHead(**structure)
        self.encoder = nn.ModuleList(conv_block(cin, cout) for cin, cout in zip([6, *widths[:-1]], widths))
        skips = [(w, 32 // 2**i) for i, w in enumerate(widths[:-1])]
        bottom = (widths[-1], 32 // 2 ** (len(widths) - 1))
        outs = (self.head.mnist_channels, 3)
        self.decoders = nn.ModuleList(SkipDecoder(skips, bottom, list(decoder_widths), out) for out in outs)

    def forward(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.encoder[0](structured_input(mix))
        features = [x]
        for level in self.encoder[1:]:
            features.append(level(F.max_pool2d(features[-1], 2)))
        bottom = features.pop()
        return self.head(mix, *(decoder(features, bottom) for decoder in self.decoders))
