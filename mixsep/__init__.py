"""mixsep: recover an MNIST digit and a CIFAR-10 image from their pixel-wise mean."""

import os
import sys


def _forget_the_start_folder() -> None:
    """``python -m mixsep.COMMAND`` puts the folder it starts in first on Python's path, so a downloaded folder's
    ``safetensors.py``, ``csv.py`` or ``hydra_plugins/`` would run. While ``-m`` is still locating the command
    (argv[0] is "-m"), that entry is dropped before anything else is imported (os and sys are loaded at start-up):
    a command imports only what the user named. Kept when the start folder is the source tree that holds this
    package (a developer's uninstalled checkout). A ``mixsep/`` folder there is imported before this runs: that is
    ``python -m`` itself, which is why ``mixsep COMMAND`` is the way to run in a folder from elsewhere."""
    start = os.getcwd()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if sys.argv[:1] == ["-m"] and sys.path[:1] == [start] and here != start:
        del sys.path[0]


_forget_the_start_folder()

import logging  # noqa: E402  (after the start folder is off the path)
from importlib.metadata import PackageNotFoundError, version  # noqa: E402

__all__ = ["Separator", "export_checkpoint", "load_separator"]
try:
    __version__ = version("mixsep")  # written once, in pyproject.toml
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "unknown"


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
