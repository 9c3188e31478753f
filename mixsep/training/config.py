"""The composed config: mixsep's resolvers, the one step that checks what the schema's types cannot say and
settles it for this machine, its tree, and the plain copy that loggers and metrics.json record."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from mixsep.errors import CheckpointError, ConfigError
from mixsep.record.provenance import provenance
from mixsep.record.where import run_id
from mixsep.training.hardware import cpu_has_bf16
from mixsep.training.schema import check_network, check_settings, register_schemas


def user_config_dir() -> Path:
    """The per-user config folder on every mixsep app's search path, after the package's own (``local/``,
    ``experiment/``, ``model/``, ...): MIXSEP_CONFIG_DIR, else e.g. ~/.config/mixsep."""
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
    """A model file's precision, one of Lightning's before it enters a config (``${oc.env:HOME}`` is never resolved)."""
    precision = str(value)
    if precision not in PRECISIONS:
        shown = precision if len(precision) <= 40 else f"{precision[:40]}..."
        raise CheckpointError(
            f"{where} records the precision {shown!r}, which is not one of Lightning's ({', '.join(PRECISIONS[:6])}):"
            " set trainer.precision=32-true (or another) to choose"
        )
    return precision


def settled_config(cfg: DictConfig, default_precision: str | None = None) -> DictConfig:
    """A checked copy, settled for this machine before anything is built: ``trainer.precision`` as used (``auto``
    resolved, ``null``: ``default_precision``), ``sync_batchnorm`` off on CPUs, PyTorch's float32 matmul precision."""
    for node in ("data", "trainer", "paths", *(["model"] if "model" in cfg else [])):
        if not isinstance(cfg.get(node), DictConfig):  # e.g. ~trainer on the command line
            raise ConfigError(f"the config has no {node} (~{node} removed it?): a run needs one, e.g. {node}=default")
    check_settings(cfg)
    net = cfg.get("model", {}).get("net")
    if isinstance(net, DictConfig):
        check_network(net)
    check_trainer(cfg.trainer)
    settled = cfg.copy()
    with open_dict(settled):
        trainer = settled.trainer
        if trainer.get("precision") is None and default_precision is not None:
            trainer.precision = default_precision
        trainer.precision = resolve_precision(str(trainer.get("precision")), trainer.get("accelerator"))
        if trainer.get("sync_batchnorm") and not on_gpu(trainer.get("accelerator")):
            trainer.sync_batchnorm = False
            log.info(
                "trainer.sync_batchnorm: off on CPU (SyncBatchNorm needs GPUs); each process keeps its own statistics"
            )
    if cfg.get("float32_matmul_precision"):
        torch.set_float32_matmul_precision(cfg.float32_matmul_precision)
    return settled


def check_trainer(trainer_cfg: DictConfig) -> None:
    """What Lightning refuses only mid-fit or not at all: more devices than here, a strategy with spawned children."""
    devices = trainer_cfg.get("devices")
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > 1:
        gpu = on_gpu(trainer_cfg.get("accelerator"))
        have = torch.cuda.device_count() if gpu else os.cpu_count() or 1
        if devices > have:
            raise ConfigError(
                f"trainer.devices={devices} is more than the {have} {'GPUs' if gpu else 'CPU cores'} of this "
                f"machine: use trainer.devices={have} or fewer (-1: all of them)"
            )
    # strategies that train in multiprocessing children (spawn / fork): the trained weights, the callbacks' state
    # and the data module would live there, not in this process, which writes metrics.json and the rest
    strategy = str(trainer_cfg.get("strategy") or "auto")
    if any(word in strategy for word in ("spawn", "fork", "notebook")):
        raise ConfigError(
            f"trainer.strategy={strategy} is not supported: it trains in child processes started by "
            "multiprocessing, so this process cannot write the run's outputs. Use trainer.strategy=ddp "
            "(or trainer=ddp), which starts one script process per device."
        )


def on_gpu(accelerator: str | None) -> bool:
    """Does a trainer with this ``accelerator`` (None: auto) train on GPUs here?"""
    accelerator = str(accelerator or "auto")
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def resolve_precision(precision: str, accelerator: str | None) -> str:
    """``auto``: bf16 mixed precision where the hardware computes bf16 natively, else 32-bit; says which."""
    if precision != "auto":
        return precision
    if str(accelerator or "auto") in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        fast, where = torch.cuda.is_bf16_supported(), f"GPU {torch.cuda.get_device_name(0)}"
    else:
        fast = cpu_has_bf16()
        where = f"CPU {'with' if fast else 'without'} AVX512-BF16/AMX"
    choice = "bf16-mixed" if fast else "32-true"
    log.info(f"precision: {choice} (trainer.precision=auto on this {where}; set trainer.precision= to choose)")
    return choice


def write_config_tree(cfg: DictConfig, path: Path):
    """The config as a rich tree, saved in the run folder; printed once the run is built (an error is one line)."""
    import rich
    import rich.syntax
    import rich.tree
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank != 0:
        return None
    tree = rich.tree.Tree("config", guide_style="dim")
    for key in cfg:
        if key == "hydra":
            continue
        node = cfg[key]
        text = OmegaConf.to_yaml(node, resolve=True) if OmegaConf.is_config(node) else str(node)
        tree.add(str(key)).add(rich.syntax.Syntax(text, "yaml"))
    with open(path, "w") as f:
        rich.print(tree, file=f)
    return tree


def composed_config(cfg: DictConfig) -> dict:
    """The composed config as plain values, Hydra's own node aside, with the provenance of the code that runs it."""
    kept = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    return {**OmegaConf.to_container(kept, resolve=True, enum_to_str=True), "provenance": provenance()}


def quiet_known_noise() -> None:
    """Lightning's cloud-logger tip on every Trainer (no switch: Lightning-AI/pytorch-lightning#21294), and its
    "srun is available but not used" outside a SLURM allocation (nothing to prepend it to)."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _no_lit_logger_tip not in logger.filters:
        logger.addFilter(_no_lit_logger_tip)
    if not os.environ.get("SLURM_JOB_ID"):
        warnings.filterwarnings("ignore", message="The `srun` command is available on your system but is not used")


def _no_lit_logger_tip(record: logging.LogRecord) -> bool:
    return not any(ad in record.getMessage() for ad in ("litlogger", "litmodels"))
