"""The machine a run trains on: which precision it computes fast, how many devices it has, and the Lightning
Trainer fitted to it (with one-line errors for what Lightning would refuse mid-fit)."""

from __future__ import annotations

import logging
import os
import platform
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from mixsep.errors import ConfigError, user_error
from mixsep.loggers import quiet_lightning_tips

log = logging.getLogger("mixsep")


INTEGER_TRAINER_ARGS = (
    "max_epochs",
    "min_epochs",
    "max_steps",
    "num_nodes",
    "log_every_n_steps",
    "check_val_every_n_epoch",
    "num_sanity_val_steps",
    "accumulate_grad_batches",
)


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_bf16() -> bool:
    flags = _cpuinfo()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(trainer_cfg: DictConfig) -> str:
    """``auto``: bf16 mixed precision where the hardware computes bf16 natively, else 32-bit; says which."""
    precision = str(trainer_cfg.get("precision"))
    if precision != "auto":
        return precision
    accelerator = str(trainer_cfg.get("accelerator") or "auto")
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        fast, where = torch.cuda.is_bf16_supported(), f"GPU {torch.cuda.get_device_name(0)}"
    else:
        fast = cpu_has_bf16()
        where = f"CPU {'with' if fast else 'without'} AVX512-BF16/AMX"
    choice = "bf16-mixed" if fast else "32-true"
    log.info(f"precision: {choice} (trainer.precision=auto on this {where}; set trainer.precision= to choose)")
    return choice


def fit_trainer_to_machine(trainer_cfg: DictConfig) -> None:
    """Refuse more devices than the machine has; on CPUs, DDP (gloo) trains without SyncBatchNorm, which
    works only on GPUs (said once)."""
    accelerator = str(trainer_cfg.get("accelerator") or "auto")
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    devices = trainer_cfg.get("devices")
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > 1:
        have = torch.cuda.device_count() if on_gpu else os.cpu_count() or 1
        what = "GPUs" if on_gpu else "CPU cores"
        if devices > have:
            raise ConfigError(
                f"trainer.devices={devices} is more than the {have} {what} of this machine: "
                f"use trainer.devices={have} or fewer (-1: all of them)"
            )
    if trainer_cfg.get("sync_batchnorm") and not on_gpu:
        trainer_cfg.sync_batchnorm = False
        log.info("trainer.sync_batchnorm: off on CPU (SyncBatchNorm needs GPUs); each process keeps its own statistics")


def quiet_srun_hint() -> None:
    """Lightning warns that `srun` "is available but not used" wherever SLURM's client is installed; outside
    a SLURM allocation there is nothing to prepend it to (inside one, the hint stays)."""
    if not os.environ.get("SLURM_JOB_ID"):
        warnings.filterwarnings("ignore", message="The `srun` command is available on your system but is not used")


def build_trainer(trainer_cfg: DictConfig, callbacks: list, loggers: list) -> L.Trainer:
    fit_trainer_to_machine(trainer_cfg)
    quiet_srun_hint()
    quiet_lightning_tips()
    for key in INTEGER_TRAINER_ARGS:  # Lightning checks some of these only mid-fit, with a bare assert
        value = trainer_cfg.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"trainer.{key}={value!r} must be an integer (e.g. trainer.{key}=10)")
    try:
        return instantiate(trainer_cfg, callbacks=callbacks, logger=loggers or False)
    except Exception as err:
        if user_error(err) is not None:
            raise
        cause = err.__cause__ or err
        raise ConfigError(
            f"Lightning's Trainer refused the trainer config: {type(cause).__name__}: {cause}. "
            "Check the trainer.* values (e.g. trainer.max_epochs must be an integer, "
            "trainer.precision one of 32-true, bf16-mixed, 16-mixed)."
        ) from err


def describe_machine() -> str:
    """The GPU(s), or the CPU's model name and cores: metrics.json's ``hardware``."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    cpu = platform.processor() or platform.machine()
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"CPU {cpu}, {os.cpu_count()} cores"
