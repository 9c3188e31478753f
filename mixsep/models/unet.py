"""The U-Net separator: predicts the gray MNIST image, CIFAR follows from the mixture exactly."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mixsep.errors import ConfigError
from mixsep.models.blocks import Upsample, conv_block
from mixsep.models.registry import register_network
from mixsep.models.structure import constrain, feasible_gray_bounds, resize_projector, structured_input


class ResidualBlock(nn.Module):
    """Two 3×3 convolutions with BatchNorm (the last ReLU after the sum), added to their input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = conv_block(channels, channels)[:-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class GlobalAttention(nn.Module):
    """Multi-head self-attention over every position of a coarse feature map, added to its input (the fill-in
    under a stroke can use context from anywhere)."""

    def __init__(self, channels: int, heads: int = 4) -> None:
        super().__init__()
        if channels % heads:
            raise ConfigError(f"attention needs channels ({channels}) divisible by its heads ({heads})")
        self.heads = heads
        self.norm = nn.GroupNorm(1, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # (b, heads, h*w, c/heads)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of every pixel (NAFNet's LayerNorm2d), in any memory layout."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class NAFBlock(nn.Module):
    """NAFNet's block (Chen et al., 2022): SimpleGate, simplified channel attention and a gated feed-forward, both
    branches added through zero-initialised scales, so a new block starts as the identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.norm1, self.norm2 = ChannelNorm(c), ChannelNorm(c)
        self.expand = nn.Conv2d(c, 2 * c, 1)
        self.depthwise = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c, 1))
        self.project = nn.Conv2d(c, c, 1)
        self.ffn_expand = nn.Conv2d(c, 2 * c, 1)
        self.ffn_project = nn.Conv2d(c, c, 1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.depthwise(self.expand(self.norm1(x))).chunk(2, dim=1)
        y = a * b
        y = x + self.project(y * self.attention(y)) * self.beta
        a, b = self.ffn_expand(self.norm2(y)).chunk(2, dim=1)
        return y + self.ffn_project(a * b) * self.gamma


def _level(cin: int, cout: int, blocks: int, kind: str = "conv") -> nn.Sequential:
    if kind == "naf":  # one 3×3 convolution to change the width, then 1 + blocks NAF blocks
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), *(NAFBlock(cout) for _ in range(1 + blocks)))
    level = conv_block(cin, cout)  # extended in place: with no blocks, the parameter names of earlier checkpoints
    for _ in range(blocks):
        level.append(ResidualBlock(cout))
    return level


@register_network
class UNetSeparator(nn.Module):
    """U-Net that predicts the gray MNIST image inside its feasible interval; ``cifar = 2·mix − mnist`` exactly.

    ``width``/``depth``: ``width·2^i`` channels at level i, ``depth`` down-samplings (or ``widths`` per level).
    ``blocks``: residual blocks added at each level (an int, or a list per level). ``attention``: self-attention
    at the coarsest level. ``block``: ``conv`` (two 3×3 conv–BN–ReLU) or ``naf`` (a 3×3 conv, then 1 + blocks
    NAFNet blocks), or a list per level. ``output``: ``clamp`` (a sigmoid clamped into the interval) or
    ``interval`` (``lo + (hi − lo)·sigmoid``: a gradient everywhere). ``resize_range``: the gray estimate is
    then projected onto the range of the 28→32 bilinear resize, alternated with the interval.
    """

    def __init__(
        self,
        width: int = 32,
        depth: int = 3,
        widths: list[int] | None = None,
        blocks: int | list[int] = 0,
        attention: bool = False,
        output: str = "clamp",
        block: str | list[str] = "conv",
        resize_range: bool = False,
    ) -> None:
        super().__init__()
        chans = list(widths) if widths else [width * 2**i for i in range(depth + 1)]
        depth = len(chans) - 1
        per_level = [blocks] * len(chans) if isinstance(blocks, int) else list(blocks)
        if depth < 1 or min(chans) < 1 or len(per_level) != len(chans) or min(per_level) < 0:
            raise ConfigError(
                f"model.net: need width >= 1 and depth >= 1 (or widths with 2+ levels, each >= 1) and one "
                f"blocks count >= 0 per level; got width={width}, depth={depth}, widths={widths}, blocks={blocks}"
            )
        if output not in ("clamp", "interval"):
            raise ConfigError(f"model.net.output={output!r} is not one of clamp, interval")
        kinds = [block] * len(chans) if isinstance(block, str) else list(block)
        if len(kinds) != len(chans) or not set(kinds) <= {"conv", "naf"}:
            raise ConfigError(
                f"model.net.block={block!r}: give conv or naf, or a list of them with one per level ({len(chans)})"
            )
        self.output = output
        self.stem = _level(3 + 1 + 2, chans[0], per_level[0], kinds[0])  # mix, its gray value, feasible bounds
        self.down = nn.ModuleList(_level(chans[i], chans[i + 1], per_level[i + 1], kinds[i + 1]) for i in range(depth))
        self.context = GlobalAttention(chans[-1]) if attention else nn.Identity()
        self.up = nn.ModuleList(Upsample(chans[i + 1], chans[i], 2) for i in range(depth))
        self.merge = nn.ModuleList(_level(2 * chans[i], chans[i], per_level[i], kinds[i]) for i in range(depth))
        self.head = nn.Conv2d(chans[0], 1, 1)
        if resize_range:  # derived from PIL at start-up, so not part of the checkpoint
            self.register_buffer("projector", resize_projector(), persistent=False)
        self.resize_range = resize_range

    def forward(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = feasible_gray_bounds(mix)
        skips = [self.stem(structured_input(mix))]
        for block in self.down:
            skips.append(block(F.max_pool2d(skips[-1], 2)))
        x = self.context(skips.pop())
        for i in reversed(range(len(self.up))):
            x = self.merge[i](torch.cat([self.up[i](x), skips[i]], dim=1))
        p = torch.sigmoid(self.head(x).float())
        gray = lo + (hi - lo) * p if self.output == "interval" else torch.minimum(torch.maximum(p, lo), hi)
        if self.resize_range:
            gray = constrain(gray, lo, hi, True, self.projector)
        mnist = gray.expand(-1, 3, -1, -1)
        return mnist, 2 * mix - mnist
