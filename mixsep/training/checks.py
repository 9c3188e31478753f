"""What the configs' types cannot say (training/schema.py), checked inside the task before a run starts: the
trainer against this machine, the settings' ranges and the network's arguments (schema.py, beside their types)."""

from __future__ import annotations

import inspect
import os

import lightning as L
import torch
from omegaconf import DictConfig

from mixsep.errors import ConfigError
from mixsep.training.hardware import on_gpu
from mixsep.training.schema import check_network, check_settings


def trainer_keys() -> set[str]:
    return set(inspect.signature(L.Trainer).parameters)


def check_trainer(trainer_cfg: DictConfig) -> None:
    """What Lightning would refuse only mid-fit (with a bare assert) or not at all: more devices than the machine
    has, a strategy that trains in multiprocessing children."""
    devices = trainer_cfg.get("devices")
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > 1:
        gpu = on_gpu(trainer_cfg)
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


def check_run(cfg: DictConfig) -> None:
    """Every check of a composed training config before anything is built (the data's sizes: the data module's
    ``check``, once it is built)."""
    check_settings(cfg)
    net = cfg.get("model", {}).get("net")
    if isinstance(net, DictConfig) and "_target_" in net:
        check_network(net)
    check_trainer(cfg.trainer)
