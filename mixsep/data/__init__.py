"""The data: sources decoded once into uint8 tensors (sources, cache), the fixed and random pairs (pairs), the
augmentations (augment) and the LightningDataModule that batches them (datamodule)."""

__all__ = ["MixDataModule"]


def __getattr__(name: str):
    # imported on first use: separating with a trained model reads augment.py, not Lightning's data module
    if name == "MixDataModule":
        from mixsep.data.datamodule import MixDataModule

        return MixDataModule
    raise AttributeError(name)
