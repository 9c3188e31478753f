"""The separators (plain ``nn.Module`` networks: mean image → (gray_hat, color_hat)) and their LightningModule. The
registered networks import by name (``from mixsep.models import UNetSeparator``), each family when first used."""


def __getattr__(name: str):
    from mixsep.models.registry import BUILT_IN, architecture

    if name in BUILT_IN:
        return architecture(name)
    raise AttributeError(f"module 'mixsep.models' has no attribute {name!r}")
