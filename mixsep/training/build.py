"""Building a run's objects, each from its own config node: ``hydra.utils.instantiate`` with a user's mistake
(raised by a constructor, wrapped by Hydra) coming out as itself."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

from mixsep.cluster.ddp import in_multirun
from mixsep.errors import ConfigError, user_error
from mixsep.training.checkpoints import AtomicCheckpointIO
from mixsep.training.config import quiet_known_noise


def build(node, **kwargs):
    """``hydra.utils.instantiate``; a user's mistake raised by the constructor comes out unwrapped."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        fixable = user_error(err)
        if fixable is None:
            raise
        raise fixable from err


def build_module(model_cfg: DictConfig) -> L.LightningModule:
    # plain containers: the net's config is saved in the checkpoint and must load without omegaconf
    return build(OmegaConf.to_container(model_cfg, resolve=True), _recursive_=False)


def build_callbacks(callbacks_cfg: DictConfig | None, job=None) -> list:
    """The configured callbacks; one whose class takes a ``job`` (SaveOnSignal, Heartbeat) is given the job."""
    from hydra.utils import get_object

    callbacks = []
    for name, node in (callbacks_cfg or {}).items():
        if not node:
            continue
        if "_target_" not in node:  # e.g. a preset's callbacks.ema options on top of callbacks=default
            raise ConfigError(
                f"callbacks.{name} has options but no _target_: the callbacks group in use does not define "
                f"it. Choose a group that does (e.g. callbacks={name}), or remove it with ~callbacks.{name}"
            )
        takes_job = "job" in inspect.signature(get_object(str(node["_target_"]))).parameters
        callbacks.append(build(node, job=job) if takes_job else build(node))
    return callbacks


def build_trainer(trainer_cfg: DictConfig, callbacks: list, loggers: list, run_folder: Path | None = None) -> L.Trainer:
    """Lightning's Trainer from the settled ``trainer_cfg``; it reads and removes checkpoints only through
    ``AtomicCheckpointIO``, which keeps a resumed record's paths inside ``run_folder`` (or the resumed file's)."""
    quiet_known_noise()
    if not loggers:  # Lightning's LearningRateMonitor refuses a run that logs nowhere (logger=none)
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer = _built_trainer(trainer_cfg, callbacks, loggers)
    checkpoint_io = trainer.strategy.checkpoint_io
    if type(checkpoint_io) is TorchCheckpointIO:  # Lightning's own (trainer.plugins without mixsep's)
        trainer.strategy.checkpoint_io = checkpoint_io = AtomicCheckpointIO()
    if not isinstance(checkpoint_io, AtomicCheckpointIO):
        raise ConfigError(
            f"trainer.plugins: {type(checkpoint_io).__name__} would read the checkpoints mixsep resumes and tests "
            "unchecked; use mixsep.training.checkpoints.AtomicCheckpointIO (or a subclass of it)"
        )
    checkpoint_io.run_folder = run_folder
    check_ddp_can_start(trainer)
    return trainer


def _built_trainer(trainer_cfg: DictConfig, callbacks: list, loggers: list) -> L.Trainer:
    try:
        return build(trainer_cfg, callbacks=callbacks, logger=loggers or False)
    except InstantiationException as err:
        cause = err.__cause__ or err
        if not isinstance(cause, (ValueError, TypeError, MisconfigurationException, ImportError)):
            raise  # not a refused value (e.g. a CUDA initialisation failure): itself, with its traceback
        raise ConfigError(
            f"Lightning's Trainer refused the trainer config: {type(cause).__name__}: {cause}. Check the trainer.* "
            "values (e.g. trainer.precision one of 32-true, bf16-mixed, 16-mixed)."
        ) from err


def check_ddp_can_start(trainer: L.Trainer) -> None:
    """Under ``-m``, DDP over local devices starts its children with this job's command line: only a sweep of
    ``python -m mixsep.run`` can give it (a Ray or submitit worker runs another program)."""
    launches = trainer.world_size > 1 and not trainer.strategy.cluster_environment.creates_processes_externally
    if in_multirun() and launches and getattr(sys.modules["__main__"].__spec__, "name", None) != "mixsep.run":
        raise ConfigError(
            "DDP over several devices inside a job of this launcher cannot start its processes. Give each "
            "job one device (trainer.devices=1, as hydra/launcher=gpus does), or let SLURM start one process "
            "per device (hydra/launcher=slurm with hydra.launcher.tasks_per_node=trainer.devices)."
        )
