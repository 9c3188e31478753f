"""The earlier reports' bottleneck networks, kept exact (every pixel passes through a code of a few hundred
numbers): report 000's conv dual-decoder (8,475,718 parameters), report 002's ResNet18 dual-decoder (16,688,582)
and single decoder with ``2·mix − x̂``, reports 001/003/004's one-image autoencoders (``experiment=prior/*``)."""

from __future__ import annotations

import torch
from torch import nn

from mixsep.errors import ConfigError
from mixsep.models.registry import register_network


def _with_relus(*layers: nn.Module) -> list[nn.Module]:
    """The layers with a ReLU between each two."""
    out = [layers[0]]
    for layer in layers[1:]:
        out += [nn.ReLU(inplace=True), layer]
    return out


def _deconv(cin: int, cout: int, last: bool = False) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)]
    return layers + ([nn.Sigmoid()] if last else [nn.ReLU(inplace=True), nn.BatchNorm2d(cout)])


def _final(kind: str) -> nn.Module:
    layers = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "none": nn.Identity}
    if kind not in layers:
        raise ConfigError(f"model.net.final={kind!r} is not one of {sorted(layers)}")
    return layers[kind]()


class _TwoDecoders(nn.Module):
    """One code of the mix, two decoders: (gray, colour)."""

    def forward(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(mix)
        return self.decoders[0](z), self.decoders[1](z)


class _AutoEncoder(nn.Module):
    """One image out: an autoencoder (it separates nothing)."""

    outputs = "image"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


@register_network
class ConvDual(_TwoDecoders):
    """Report 000: conv encoder to a 128-d code, two FC + ConvTranspose decoders (MNIST, CIFAR)."""

    def __init__(self, dropout_conv: float = 0.2, dropout_fc: float = 0.5) -> None:
        super().__init__()
        enc: list[nn.Module] = []
        for cin, cout in ((3, 64), (64, 128), (128, 256)):
            conv = nn.Conv2d(cin, cout, 4, stride=2, padding=1)
            enc += [conv, nn.ReLU(inplace=True), nn.BatchNorm2d(cout), nn.Dropout(dropout_conv)]
        fc = [nn.Flatten(), nn.Linear(256 * 4 * 4, 512), nn.ReLU(inplace=True), nn.Dropout(dropout_fc)]
        self.encoder = nn.Sequential(*enc, *fc, nn.Linear(512, 128), nn.ReLU(inplace=True))
        self.decoders = nn.ModuleList([self._decoder() for _ in range(2)])

    @staticmethod
    def _decoder() -> nn.Module:
        fc = [*_with_relus(nn.Linear(128, 512), nn.Linear(512, 256 * 4 * 4)), nn.ReLU(inplace=True)]
        deconvs = [*_deconv(256, 128), *_deconv(128, 64), *_deconv(64, 3, last=True)]
        return nn.Sequential(*fc, nn.Unflatten(1, (256, 4, 4)), *deconvs)


def resnet18_trunk(pretrained_weights: str | None = None) -> nn.Module:
    """torchvision ResNet18 without its classifier; optional local state-dict file (no network use)."""
    from mixsep.models.resnet import resnet18_with_weights

    net = resnet18_with_weights(pretrained_weights)
    return nn.Sequential(*list(net.children())[:-2])  # (B, 512, 1, 1) for 32x32 inputs


def _resnet_decoder() -> nn.Module:
    """1x1 -> 4 -> 8 -> 16 -> 32: four ConvTranspose layers with ReLU (report 002)."""
    up = [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1) for cin, cout in ((256, 128), (128, 64), (64, 3))]
    return nn.Sequential(*_with_relus(nn.ConvTranspose2d(512, 256, 4, stride=1, padding=0), *up), nn.Sigmoid())


@register_network
class ResNetDual(_TwoDecoders):
    """Report 002: ResNet18 encoder, two ConvTranspose decoders."""

    def __init__(self, pretrained_weights: str | None = None) -> None:
        super().__init__()
        self.encoder = resnet18_trunk(pretrained_weights)
        self.decoders = nn.ModuleList([_resnet_decoder() for _ in range(2)])


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
class MeanAE(_AutoEncoder):
    """Reports 001 / 003: conv 3→16 (3×3, s2) →32 (3×3, s2) →64 (7×7) of the mean image, mirrored with
    ConvTranspose; ``final="sigmoid"`` for [0, 1] images, ``"tanh"`` for inputs normalised to [-1, 1]."""

    def __init__(self, final: str = "sigmoid") -> None:
        super().__init__()
        down = [nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.Conv2d(16, 32, 3, stride=2, padding=1)]
        self.encoder = nn.Sequential(*_with_relus(*down, nn.Conv2d(32, 64, 7)))
        up = [
            nn.ConvTranspose2d(c, c // 2 if c > 16 else 3, 3, stride=2, padding=1, output_padding=1) for c in (32, 16)
        ]
        self.decoder = nn.Sequential(*_with_relus(nn.ConvTranspose2d(64, 32, 7), *up), _final(final))


@register_network
class CifarAE(_AutoEncoder):
    """Report 004: conv 3→8→8 (3×3, stride 1, no padding, ReLU), mirrored ConvTranspose decoder."""

    def __init__(self, final: str = "sigmoid") -> None:
        super().__init__()
        self.encoder = nn.Sequential(*_with_relus(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3)), nn.ReLU(inplace=True))
        self.decoder = nn.Sequential(
            *_with_relus(nn.ConvTranspose2d(8, 8, 3), nn.ConvTranspose2d(8, 3, 3)), _final(final)
        )
