"""What the problem's structure gives every family, as switches of one output head: the digit is gray, the mixture
is known (``cifar = 2·mix − mnist``), each pixel's gray value has a feasible interval (both sources in [0, 1]), and a
28×28 digit resized to 32×32 by PIL's bilinear filter lies in the range of a fixed linear map."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mixsep.errors import ConfigError

CONSISTENCY = ("exact", "none")


def feasible_bounds(mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel, the interval the MNIST value m must lie in for CIFAR = 2·mix − m and m to lie in [0, 1]."""
    two_mix = 2 * mix
    return (two_mix - 1).clamp(min=0), two_mix.clamp(max=1)


def feasible_gray_bounds(mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The interval of a gray MNIST value (one channel): the intersection of the channels' intervals."""
    lo, hi = feasible_bounds(mix)
    lo = lo.amax(1, keepdim=True)
    return lo, torch.maximum(lo, hi.amin(1, keepdim=True))


def structured_input(mix: torch.Tensor) -> torch.Tensor:
    """(B, 6, H, W) in [-1, 1]: the mix, its gray value and the feasible interval of the gray digit."""
    lo, hi = feasible_gray_bounds(mix)
    return torch.cat([mix, mix.mean(1, keepdim=True), lo, hi], dim=1) * 2 - 1


def resize_projector(small: int = 28, large: int = 32) -> torch.Tensor:
    """(large, large) float32: the orthogonal projector onto the range of PIL's bilinear small→large resize along
    one axis. The filter is linear and separable: resizing unit rows gives its (large, small) matrix A exactly, a
    resized image is A·X·Aᵀ (before rounding to 8 bits), and P = A(AᵀA)⁻¹Aᵀ maps any image Y to the nearest, P·Y·Pᵀ."""
    from PIL import Image

    unit_rows = np.eye(small, dtype=np.float32)[:, None]
    rows = [Image.fromarray(row, mode="F").resize((large, 1), Image.BILINEAR) for row in unit_rows]
    a = np.stack([np.asarray(row)[0] for row in rows], axis=1).astype(np.float64)
    return torch.from_numpy(a @ np.linalg.solve(a.T @ a, a.T)).float()  # numpy: a CPU tensor, even in a meta context


class SourceHead(nn.Module):
    """Decoder logits → (gray_hat, color_hat), each (B, 3, H, W), using the structure the switches allow.

    ``gray``: the MNIST logits have one channel (repeated to three). ``consistency="exact"``: a single decoder's
    colour estimate is ``2·mix − mnist``; two decoders' estimates are projected onto the pairs that average
    to the mix (the nearest such pair in squared error: the gray value is the mean of the MNIST decoder's and
    the one the colour decoder implies), so both decoders shape the answer and the mixture holds exactly.
    ``interval``: the MNIST estimate is clamped into its feasible interval (both sources then lie in [0, 1]).
    ``resize_range``: the gray estimate is projected onto the resized 28×28 images, alternated with the interval.
    """

    def __init__(
        self, gray: bool = True, consistency: str = "exact", interval: bool = True, resize_range: bool = False
    ) -> None:
        super().__init__()
        if consistency not in CONSISTENCY:
            raise ConfigError(f"model.net.consistency={consistency!r} is not one of {', '.join(CONSISTENCY)}")
        if resize_range and not gray:
            raise ConfigError("model.net.resize_range=true needs model.net.gray=true (the resize maps a gray digit)")
        self.gray, self.consistency, self.interval, self.resize_range = gray, consistency, interval, resize_range
        self.mnist_channels = 1 if gray else 3
        if resize_range:  # derived from PIL at start-up, so not part of the checkpoint
            self.register_buffer("projector", resize_projector(), persistent=False)

    def forward(
        self, mix: torch.Tensor, mnist_logit: torch.Tensor, cifar_logit: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mix = mix.float()
        mnist = torch.sigmoid(mnist_logit.float())
        if cifar_logit is not None:
            cifar = torch.sigmoid(cifar_logit.float())
            if self.consistency == "none":
                return mnist.expand(-1, 3, -1, -1), cifar
            implied = 2 * mix - cifar
            mnist = (mnist + (implied.mean(1, keepdim=True) if self.gray else implied)) / 2
        elif self.consistency == "none":
            raise ConfigError("a single decoder needs model.net.consistency=exact (its colour estimate: 2·mix − mnist)")
        lo, hi = feasible_gray_bounds(mix) if self.gray else feasible_bounds(mix)
        mnist = constrain(mnist, lo, hi, self.interval, self.projector if self.resize_range else None)
        mnist = mnist.expand(-1, 3, -1, -1)
        return mnist, 2 * mix - mnist


def constrain(
    gray: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, interval: bool = True, projector: torch.Tensor | None = None
) -> torch.Tensor:
    """The estimate clamped into [lo, hi] (``interval``); with a resize-range ``projector``, two rounds of
    alternating projections: onto the range of the 28→32 resize, then into the interval."""
    rounds = 2 if projector is not None and gray.shape[-2:] == projector.shape else 0
    for _ in range(rounds):
        gray = projector @ gray @ projector.T
        if interval:
            gray = gray.clamp(lo, hi)
    return gray.clamp(lo, hi) if interval and not rounds else gray
