"""The separators: plain ``nn.Module`` networks mapping a mean image (B, 3, 32, 32) in [0, 1] to (gray_hat,
color_hat), one file per family, and the LightningModule that trains them (the README's layout map says which
file holds what). The networks are importable from here; checkpoints name theirs ``mixsep.models.<Class>``."""

from mixsep.models.blocks import SkipDecoder, conv_block
from mixsep.models.conv_dual import ConvSkipDual
from mixsep.models.resnet import ResNetSkipDual, ResNetSkipSub, resnet18_stages
from mixsep.models.structure import SourceHead, feasible_bounds, feasible_gray_bounds, structured_input
from mixsep.models.tta import ShiftEnsemble
from mixsep.models.unet import ChannelNorm, GlobalAttention, NAFBlock, ResidualBlock, UNetSeparator
from mixsep.prior.nets import CifarAE, ConvDual, MeanAE, ResNetDual, SingleSub, resnet18_trunk

__all__ = [
    "CifarAE",
    "ChannelNorm",
    "ConvDual",
    "ConvSkipDual",
    "GlobalAttention",
    "MeanAE",
    "NAFBlock",
    "ResNetDual",
    "ResNetSkipDual",
    "ResNetSkipSub",
    "ResidualBlock",
    "ShiftEnsemble",
    "SingleSub",
    "SkipDecoder",
    "SourceHead",
    "UNetSeparator",
    "conv_block",
    "feasible_bounds",
    "feasible_gray_bounds",
    "resnet18_stages",
    "resnet18_trunk",
    "structured_input",
]
