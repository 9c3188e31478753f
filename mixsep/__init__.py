"""mixsep: recover an MNIST digit and a CIFAR-10 image from their pixel-wise mean."""

import logging
import sys

__all__ = ["Separator", "export_checkpoint", "load_separator"]
__version__ = "0.1.0"


class _RankZeroOnly(logging.Filter):
    """Under DDP every rank runs the same code; only rank 0 speaks (Hydra's run.log and the console). Read from
    Lightning only where Lightning is loaded: separating with a model imports neither Lightning nor Hydra."""

    def filter(self, record: logging.LogRecord) -> bool:
        rank_zero = sys.modules.get("lightning_utilities.core.rank_zero")
        return getattr(getattr(rank_zero, "rank_zero_only", None), "rank", 0) == 0


logging.getLogger("mixsep").addFilter(_RankZeroOnly())


def __getattr__(name: str):
    if name in ("Separator", "load_separator"):
        from mixsep.models import separator

        return getattr(separator, name)
    if name == "export_checkpoint":
        from mixsep.training.checkpoints import export_checkpoint

        return export_checkpoint
    raise AttributeError(name)
