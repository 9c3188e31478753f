"""mixsep: recover an MNIST digit and a CIFAR-10 image from their pixel-wise mean."""

import logging

from lightning.pytorch.utilities import rank_zero_only

from mixsep.models.separator import Separator, load_separator
from mixsep.training.checkpoints import export_checkpoint


class _RankZeroOnly(logging.Filter):
    """Under DDP every rank runs the same code; only rank 0 speaks (Hydra's run.log and the console)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(rank_zero_only, "rank", 0) == 0


logging.getLogger("mixsep").addFilter(_RankZeroOnly())

__all__ = ["Separator", "export_checkpoint", "load_separator"]
__version__ = "0.1.0"
