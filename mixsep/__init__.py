"""mixsep: recover an MNIST digit and a CIFAR-10 image from their pixel-wise mean."""

import os
import sys


def _forget_the_start_folder() -> None:
    """``python -m mixsep.COMMAND`` puts the folder it starts in first on Python's path: while ``-m`` still locates
    the command (argv[0] is "-m"), that entry goes before anything else is imported, so a downloaded folder's
    ``safetensors.py`` or ``hydra_plugins/`` never runs. Kept where that folder is a checkout holding this package."""
    start = os.getcwd()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if sys.argv[:1] == ["-m"] and sys.path[:1] == [start] and here != start:
        del sys.path[0]


_forget_the_start_folder()

import importlib  # noqa: E402  (after the start folder is off the path)
import logging  # noqa: E402
from importlib.metadata import PackageNotFoundError, version  # noqa: E402

__all__ = ["Separator", "export_checkpoint", "load_separator"]
_LAZY = {  # imported when used: separating with a model imports neither Lightning nor Hydra
    "Separator": "mixsep.models.separator",
    "load_separator": "mixsep.models.separator",
    "export_checkpoint": "mixsep.training.checkpoints",
}
try:
    __version__ = version("mixsep")  # written once, in pyproject.toml
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "unknown (not installed)"


def _rank_zero_only(record: logging.LogRecord) -> bool:
    """Under DDP only rank 0 speaks (Hydra's run.log, the console); Lightning's rank is read only once it is loaded."""
    rank_zero = sys.modules.get("lightning_utilities.core.rank_zero")
    return getattr(getattr(rank_zero, "rank_zero_only", None), "rank", 0) == 0


logging.getLogger("mixsep").addFilter(_rank_zero_only)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(name)
    return getattr(importlib.import_module(_LAZY[name]), name)
