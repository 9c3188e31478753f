"""mixsep: recover an MNIST digit and a CIFAR-10 image from their pixel-wise mean."""

from mixsep.separator import Separator, load_separator

__all__ = ["Separator", "load_separator"]
__version__ = "0.1.0"
