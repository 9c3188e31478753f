"""DDP inside a multirun: while a job runs, the command line Lightning gives its DDP children is this one job's."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import open_dict, read_write

# what Lightning's subprocess launcher sets in this process for its DDP children
LAUNCHER_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


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
    saved_argv, saved_dir = sys.argv, HydraConfig.get().run.dir
    saved_env = {key: os.environ.get(key) for key in LAUNCHER_VARIABLES}
    sys.argv = [saved_argv[0], *HydraConfig.get().overrides.task]
    _set_run_dir(HydraConfig.get().runtime.output_dir)
    try:
        yield
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        sys.argv = saved_argv
        _set_run_dir(saved_dir)
