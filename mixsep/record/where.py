"""Where a job ran and which job it is: its SLURM id, run id, what Hydra says of it, host, devices, Ray node."""

from __future__ import annotations

import functools
import os
import secrets
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode


def slurm_job_id() -> str | None:
    """This job's SLURM id as ``scontrol`` names it: ``ARRAY_TASK`` for a task of a job array (a sweep's jobs)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def scheduler_fields() -> dict:
    """Which cluster job, which GPUs (those it has)."""
    fields = {"slurm_job_id": slurm_job_id(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    return {k: v for k, v in fields.items() if v}


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="milliseconds")


@functools.cache
def run_id() -> str:
    """The unique part of this process's run folder name (``${mixsep_run_id:}``): the SLURM job id (a re-queued
    job finds its folder again), else 6 random hex digits (runs started in the same instant differ)."""
    job = slurm_job_id()
    return f"job{job}" if job else secrets.token_hex(3)


def hydra_job() -> dict:
    """What Hydra says of this job: multirun or not, the sweep's folder name, the job's overrides."""
    if not HydraConfig.initialized():
        return {"multirun": False, "sweep": None, "job_num": None, "overrides": []}
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    return {
        "multirun": multirun,
        "sweep": Path(hc.sweep.dir).name if multirun else None,
        "job_num": hc.job.num if multirun else None,
        "overrides": list(hc.overrides.task),
    }


def where_it_ran(trainer) -> dict:
    """Host, the GPUs this job was given (CUDA_VISIBLE_DEVICES as it saw it), the devices Lightning used."""
    return {
        "host": socket.gethostname(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "slurm_job_id": slurm_job_id(),
        "accelerator": type(trainer.accelerator).__name__.replace("Accelerator", "").lower(),
        "device_ids": list(trainer.device_ids),
        "world_size": trainer.world_size,
        "num_nodes": trainer.num_nodes,
        "strategy": type(trainer.strategy).__name__,
        **ray_cluster(),
    }


def ray_cluster() -> dict:
    """The Ray cluster a job of hydra/launcher=gpus ran in (its GCS address and node), else nothing."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return {}
    context = ray.get_runtime_context()
    return {"ray_gcs_address": context.gcs_address, "ray_node_id": context.get_node_id()}
