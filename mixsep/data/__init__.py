"""The data: sources decoded once into uint8 tensors (sources, cache), the fixed and random pairs (pairs), the
augmentations (augment) and the LightningDataModule that batches them (datamodule)."""

from mixsep.data.datamodule import MixDataModule

__all__ = ["MixDataModule"]
