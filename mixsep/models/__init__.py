"""The networks: plain ``nn.Module``s mapping a mean image (B, 3, 32, 32) in [0, 1] to (mnist_hat, cifar_hat),
two (B, 3, 32, 32) tensors before clamping. One file per family:

- ``unet.py``: the U-Net (``model=unet``);
- ``conv_dual.py``: the conv dual-decoder with skips (``model=conv_dual``);
- ``resnet.py``: the ResNet18-encoder dual-decoder and single-decoder families (``model=resnet_dual``, ``single_sub``);
- ``bottleneck.py``: the earlier reports' systems, kept exact (``model=*_bottleneck``, ``experiment=prior/*``);
- ``structure.py``: the structure head every family can switch on (gray digit, exact mixture, feasible interval,
  resize range); ``blocks.py``: the shared conv block and skip decoder; ``tta.py``: test-time shifts as an
  evaluation wrapper (``mixsep.evaluate tta_shift=true``).

Names are importable from ``mixsep.models`` (checkpoints name their network as ``mixsep.models.<Class>``).
"""

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
