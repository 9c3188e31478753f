"""The ResNet18-encoder families: torchvision's ResNet18 stages (its feature extraction) and the input as skips of
one or two skip decoders, joined by the structure head."""

from __future__ import annotations

import torch
from torch import nn

from mixsep.errors import ConfigError
from mixsep.models.blocks import SkipDecoder, conv_block
from mixsep.models.registry import register_network
from mixsep.models.structure import SourceHead, structured_input

STAGES = ("relu", "layer1", "layer2", "layer3", "layer4")  # the stem's activation, then the four stages


def resnet18_with_weights(pretrained_weights: str | None = None) -> nn.Module:
    """torchvision's ResNet18, with no weights or those of a local state-dict file (``.safetensors``, or read by the
    weights-only unpickler: nothing in it runs); never downloaded."""
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    if not pretrained_weights:
        return net
    try:
        if str(pretrained_weights).endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(pretrained_weights)
        else:
            state = torch.load(pretrained_weights, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as err:  # missing, not plain data (refused unread), wrong keys or shapes
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"model.net.pretrained_weights={pretrained_weights!r} is not a torchvision ResNet18 state-dict file "
            f"that holds only tensors ({type(err).__name__}: {first[:200]}); nothing in it was run"
        ) from err
    return net


@register_network
class ResNetSkipDual(nn.Module):
    """ResNet18 stages on the mix and a full-resolution conv block on the structured input as skips of
    ``decoders`` skip decoders (2: MNIST and CIFAR; 1: MNIST, CIFAR = 2·mix − MNIST), ``decoder_widths`` channels
    per skip level, finest first. ``structure``: the structure head's switches (:class:`SourceHead`). ``stages=3``
    (the default) leaves out layer4: with the ImageNet stem its 3×3 convolutions see 1×1 maps, and its 8.4 M
    parameters cost 40 % of a CPU training step."""

    def __init__(
        self,
        pretrained_weights: str | None = None,
        stem_stride: int = 2,
        maxpool: bool = True,
        stages: int = 3,
        input_width: int = 32,
        decoder_widths: list[int] | None = None,
        decoders: int = 2,
        **structure,
    ) -> None:
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        if decoders not in (1, 2):
            raise ConfigError(f"model.net.decoders={decoders!r} is not 1 or 2")
        if stem_stride not in (1, 2):
            raise ConfigError(f"model.net.stem_stride={stem_stride!r} is not 1 or 2")
        if stages not in (3, 4):
            raise ConfigError(f"model.net.stages={stages!r} is not 3 or 4")
        self.head = SourceHead(**structure)
        self.full_resolution = conv_block(6, input_width)
        resnet = resnet18_with_weights(pretrained_weights)
        resnet.conv1.stride = (stem_stride, stem_stride)  # 1, no max-pool: for 32×32 inputs (4× the FLOPs)
        if not maxpool:
            resnet.maxpool = nn.Identity()
        self.stages = STAGES[: 1 + stages]  # the stem's activation and the stages used
        self.encoder = create_feature_extractor(resnet, return_nodes={name: name for name in self.stages})
        with torch.no_grad():  # the stages' channels and sizes, for the decoders' skips (eval: BN stats untouched)
            probe = self.encoder.eval()(torch.zeros(1, 3, 32, 32))
        self.encoder.train()
        shapes = [(input_width, 32)] + [(probe[s].shape[1], probe[s].shape[-1]) for s in self.stages]
        if decoder_widths is None:
            decoder_widths = [24, 48, 64, 128, 256][: len(shapes) - 1]
        outs = (self.head.mnist_channels, 3)[:decoders]
        self.decoders = nn.ModuleList(SkipDecoder(shapes[:-1], shapes[-1], list(decoder_widths), o) for o in outs)

    def forward(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stages = self.encoder(mix * 2 - 1)
        features = [self.full_resolution(structured_input(mix))] + [stages[s] for s in self.stages]
        bottom = features.pop()
        return self.head(mix, *(decoder(features, bottom) for decoder in self.decoders))


@register_network
class ResNetSkipSub(ResNetSkipDual):
    """The single-decoder family: ResNetSkipDual with one decoder (MNIST); CIFAR = 2·mix − MNIST."""

    def __init__(self, decoder_widths: list[int] | None = None, stages: int = 3, **kwargs) -> None:
        widths = decoder_widths if decoder_widths is not None else [32, 48, 64, 128, 256][: 1 + stages]
        super().__init__(decoder_widths=widths, stages=stages, decoders=1, **kwargs)
