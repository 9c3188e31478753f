"""The earlier reports' bottleneck systems, kept exact: every pixel passes through a code of a few hundred numbers.

Report 000's conv dual-decoder (8,475,718 parameters), report 002's ResNet18 dual-decoder (16,688,582) and its
single decoder with ``2·mix − x̂``; reports 001/003/004's one-image autoencoders. ``experiment=prior/*`` and
``model=*_bottleneck`` use them; the design-card families at their best are in conv_dual.py and resnet.py.
"""

from __future__ import annotations

import torch
from torch import nn

from mixsep.errors import ConfigError
from mixsep.models.registry import register_network


def _deconv(cin: int, cout: int, last: bool = False) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)]
    return layers + ([nn.Sigmoid()] if last else [nn.ReLU(inplace=True), nn.BatchNorm2d(cout)])


@register_network
class ConvDual(nn.Module):
    """Report 000: conv encoder to a 128-d code, two FC + ConvTranspose decoders (MNIST, CIFAR)."""

    def __init__(self, dropout_conv: float = 0.2, dropout_fc: float = 0.5) -> None:
        super().__init__()
        enc: list[nn.Module] = []
        for cin, cout in ((3, 64), (64, 128), (128, 256)):
            enc += [
                nn.Conv2d(cin, cout, 4, stride=2, padding=1),
                nn.ReLU(inplace=True),
                nn.BatchNorm2d(cout),
                nn.Dropout(dropout_conv),
            ]
        self.encoder = nn.Sequential(
            *enc,
            nn.Flatten(),
            nn.Linear(256 * 4 * 4, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout_fc),
            nn.Linear(512, 128),
            nn.ReLU(inplace=True),
        )
        self.decoders = nn.ModuleList([self._decoder() for _ in range(2)])

    @staticmethod
    def _decoder() -> nn.Module:
        return nn.Sequential(
            nn.Linear(128, 512),
            nn.ReLU(inplace=True),
            nn.Linear(512, 256 * 4 * 4),
            nn.ReLU(inplace=True),
            nn.Unflatten(1, (256, 4, 4)),
            *_deconv(256, 128),
            *_deconv(128, 64),
            *_deconv(64, 3, last=True),
        )

    def forward(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(mix)
        return self.decoders[0](z), self.decoders[1](z)


def resnet18_trunk(pretrained_weights: str | None = None) -> nn.Module:
    """torchvision ResNet18 without its classifier; optional local state-dict file (no network use)."""
    from mixsep.models.resnet import resnet18_with_weights

    net = resnet18_with_weights(pretrained_weights)
    return nn.Sequential(*list(net.children())[:-2])  # (B, 512, 1, 1) for 32x32 inputs


def _resnet_decoder() -> nn.Module:
    # 1x1 -> 4 -> 8 -> 16 -> 32, four ConvTranspose layers with ReLU (report 002)
    return nn.Sequential(
        nn.ConvTranspose2d(512, 256, 4, stride=1, padding=0),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(256, 128, 4, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(64, 3, 4, stride=2, padding=1),
        nn.Sigmoid(),
    )


@register_network
class ResNetDual(nn.Module):
    """Report 002: ResNet18 encoder, two ConvTranspose decoders."""

    def __init__(self, pretrained_weights: str | None = None) -> None:
        super().__init__()
        self.encoder = resnet18_trunk(pretrained_weights)
        self.decoders = nn.ModuleList([_resnet_decoder() for _ in range(2)])

    def forward(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(mix)
        return self.decoders[0](z), self.decoders[1](z)


@register_network
class SingleSub(nn.Module):
    """One decoder predicts MNIST; CIFAR is what the mixture leaves: ``2 * mix - gray_hat``."""

    def __init__(self, pretrained_weights: str | None = None) -> None:
        super().__init__()
        self.encoder = resnet18_trunk(pretrained_weights)
        self.decoder = _resnet_decoder()

    def forward(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mnist = self.decoder(self.encoder(mix))
        return mnist, 2 * mix - mnist


@register_network
class MeanAE(nn.Module):
    """Reports 001 / 003: a conv autoencoder of the mean image itself (it separates nothing).

    Encoder conv 3→16 (3×3, s2) →32 (3×3, s2) →64 (7×7); decoder mirrored with ConvTranspose.
    ``final="sigmoid"`` for [0, 1] images, ``"tanh"`` for inputs normalised to [-1, 1].
    """

    outputs = "image"

    def __init__(self, final: str = "sigmoid") -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 7),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 7),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(16, 3, 3, stride=2, padding=1, output_padding=1),
            _final(final),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


@register_network
class CifarAE(nn.Module):
    """Report 004: conv 3→8→8 (3×3, stride 1, no padding, ReLU), mirrored ConvTranspose decoder."""

    outputs = "image"

    def __init__(self, final: str = "sigmoid") -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.ReLU(inplace=True), nn.Conv2d(8, 8, 3), nn.ReLU(inplace=True)
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(8, 8, 3), nn.ReLU(inplace=True), nn.ConvTranspose2d(8, 3, 3), _final(final)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def _final(kind: str) -> nn.Module:
    layers = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "none": nn.Identity}
    if kind not in layers:
        raise ConfigError(f"model.net.final={kind!r} is not one of {sorted(layers)}")
    return layers[kind]()
