"""DDP inside a multirun: while a job runs, the command line Lightning gives its DDP children is this one job's."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import lightning as L
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import open_dict, read_write

from mixsep.errors import ConfigError


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


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


def _set_run_dir(run_dir: str) -> None:
    hydra = HydraConfig.get()
    with read_write(hydra), open_dict(hydra):
        hydra.run.dir = run_dir  # Lightning adds hydra.run.dir=<this> to the children's command line


@contextlib.contextmanager
def ddp_children_run_this_job() -> Iterator[None]:
    """Under ``-m``, Lightning's DDP starts its children with this process's ``sys.argv``, which would re-launch the
    whole sweep from every child: for the job's length the command line is this job's (its overrides, its folder),
    and the next job in this process starts with no process group, no LOCAL_RANK/MASTER_PORT left."""
    if not in_multirun():
        yield
        return
    saved_argv, saved_dir, saved_env = sys.argv, HydraConfig.get().run.dir, dict(os.environ)
    sys.argv = [saved_argv[0], *HydraConfig.get().overrides.task]
    _set_run_dir(HydraConfig.get().runtime.output_dir)
    try:
        yield
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
        _set_run_dir(saved_dir)
