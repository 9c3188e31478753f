"""The separators: plain ``nn.Module`` networks mapping a mean image (B, 3, 32, 32) in [0, 1] to (gray_hat,
color_hat), one file per family, and the LightningModule that trains them (the layout map in docs/development.md
says which file holds what). The networks are importable from here; checkpoints name theirs
``mixsep.models.<Class>``."""

import importlib

# each public name and the module that defines it, imported only when the name is first used: importing
# mixsep.models (as every command does) loads no family it does not build (the ResNet families bring torchvision)
WHERE = {
    **dict.fromkeys(("SkipDecoder", "conv_block"), "mixsep.models.blocks"),
    "ConvSkipDual": "mixsep.models.conv_dual",
    **dict.fromkeys(("ResNetSkipDual", "ResNetSkipSub", "resnet18_stages"), "mixsep.models.resnet"),
    **dict.fromkeys(
        ("SourceHead", "feasible_bounds", "feasible_gray_bounds", "structured_input"), "mixsep.models.structure"
    ),
    "ShiftEnsemble": "mixsep.models.tta",
    **dict.fromkeys(
        ("ChannelNorm", "GlobalAttention", "NAFBlock", "ResidualBlock", "UNetSeparator"), "mixsep.models.unet"
    ),
    **dict.fromkeys(
        ("CifarAE", "ConvDual", "MeanAE", "ResNetDual", "SingleSub", "resnet18_trunk"), "mixsep.prior.nets"
    ),
}
__all__ = sorted(WHERE)


def __getattr__(name: str):
    if name in WHERE:
        return getattr(importlib.import_module(WHERE[name]), name)
    raise AttributeError(f"module 'mixsep.models' has no attribute {name!r}")
