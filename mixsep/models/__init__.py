"""The separators: plain ``nn.Module`` networks mapping a mean image (B, 3, 32, 32) in [0, 1] to (gray_hat,
color_hat), one file per family, and the LightningModule that trains them (the layout map in docs/development.md
says which file holds what). mixsep's own networks are importable from here by their registered names
(``from mixsep.models import UNetSeparator``), each family's module imported only when first used."""


def __getattr__(name: str):
    from mixsep.models.registry import BUILT_IN, architecture

    if name in BUILT_IN:
        return architecture(name)
    raise AttributeError(f"module 'mixsep.models' has no attribute {name!r}")
