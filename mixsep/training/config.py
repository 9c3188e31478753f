"""The composed config: where its files are, mixsep's resolvers, the one step that settles it for this machine,
and the plain-container copy that loggers and metrics.json record."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from mixsep.errors import CheckpointError
from mixsep.record.provenance import provenance
from mixsep.record.where import run_id
from mixsep.training.hardware import on_gpu, resolve_precision
from mixsep.training.schema import register_schemas


def user_config_dir() -> Path:
    """The per-user config folder on every mixsep app's search path (after the package's own; Hydra finds it
    through hydra_plugins/mixsep_plugins/search_path.py): this machine's or cluster's ``local/default.yaml``, a
    user's own ``experiment/``, ``model/``, ... files. MIXSEP_CONFIG_DIR, else e.g. ~/.config/mixsep."""
    import platformdirs

    return Path(os.environ.get("MIXSEP_CONFIG_DIR") or platformdirs.user_config_dir("mixsep")).expanduser().resolve()


# ${if_tty:a,b}: a on a terminal, b when stdout goes to a file or a pipe (progress bar refresh rates)
OmegaConf.register_new_resolver("if_tty", lambda tty, plain: tty if sys.stdout.isatty() else plain, replace=True)
# ${mixsep_run_id:}: the unique part of a run folder's name; cached in the config, so a sweep's jobs (pickled
# to Ray or SLURM) resolve the sweep folder to the same name as the process that launched them
OmegaConf.register_new_resolver("mixsep_run_id", run_id, use_cache=True, replace=True)
# the configs' types and defaults, which config.yaml, evaluate.yaml and the groups name in their defaults lists
register_schemas()

log = logging.getLogger("mixsep")

# what trainer.precision takes (Lightning 2.x), and its older aliases: a model file's precision must be one of them
PRECISIONS = ("16-mixed", "bf16-mixed", "32-true", "64-true", "16-true", "bf16-true", "16", "32", "64", "bf16")
PRECISIONS += ("transformer-engine", "transformer-engine-float16")


def precision_from_file(value: object, where: str) -> str:
    """A precision a model file records, checked against Lightning's settings before it enters a config: a file's
    string is never resolved (``${oc.env:HOME}`` would read this machine's environment)."""
    precision = str(value)
    if precision not in PRECISIONS:
        shown = precision if len(precision) <= 40 else f"{precision[:40]}..."
        raise CheckpointError(
            f"{where} records the precision {shown!r}, which is not one of Lightning's ({', '.join(PRECISIONS[:6])}):"
            " set trainer.precision=32-true (or another) to choose"
        )
    return precision


def settle_for_this_machine(cfg: DictConfig, default_precision: str | None = None) -> DictConfig:
    """The one change made to a composed config, on a copy: ``trainer.precision`` as it will be used (``auto``
    resolved for this machine; ``null`` = ``default_precision``, e.g. a checkpoint's, checked by
    ``precision_from_file``), and ``sync_batchnorm`` off on CPUs (DDP over gloo trains without SyncBatchNorm,
    which works only on GPUs). The config tree, the Trainer and metrics.json all read the settled copy."""
    settled = cfg.copy()
    with open_dict(settled):
        trainer = settled.trainer
        if trainer.get("precision") is None and default_precision is not None:
            trainer.precision = default_precision
        trainer.precision = resolve_precision(trainer)
        if trainer.get("sync_batchnorm") and not on_gpu(trainer):
            trainer.sync_batchnorm = False
            log.info(
                "trainer.sync_batchnorm: off on CPU (SyncBatchNorm needs GPUs); each process keeps its own statistics"
            )
    return settled


def composed_config(cfg: DictConfig) -> dict:
    """The whole composed config (data, model incl. model.net, trainer, seed, ...), Hydra's own node aside, and
    the provenance of the code that runs it (commit, versions, command line)."""
    kept = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    return {**OmegaConf.to_container(kept, resolve=True, enum_to_str=True), "provenance": provenance()}


def quiet_known_noise() -> None:
    """The warnings and tips mixsep silences, in one place: Lightning advertises its cloud logger on every
    Trainer (rank_zero_info; no switch exists: Lightning-AI/pytorch-lightning#21294), and warns that `srun` "is
    available but not used" wherever SLURM's client is installed (outside a SLURM allocation there is nothing to
    prepend it to; inside one, the hint stays)."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _no_lit_logger_tip not in logger.filters:
        logger.addFilter(_no_lit_logger_tip)
    if not os.environ.get("SLURM_JOB_ID"):
        warnings.filterwarnings("ignore", message="The `srun` command is available on your system but is not used")


def _no_lit_logger_tip(record: logging.LogRecord) -> bool:
    return not any(ad in record.getMessage() for ad in ("litlogger", "litmodels"))


def set_float32_matmul_precision(cfg: DictConfig) -> None:
    if cfg.get("float32_matmul_precision"):
        torch.set_float32_matmul_precision(cfg.float32_matmul_precision)
