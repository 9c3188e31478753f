"""A job's context: which job of which sweep it is, where it ran (host, GPUs, SLURM job, Ray node), its
status.json, and DDP inside a multirun.

Launching is Hydra's (basic, Ray, submitit launchers; the Optuna sweeper); this file only makes each
job a well-behaved citizen of whatever launched it (its W&B run: loggers.py)."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import secrets
import socket
import sys
import tempfile
import traceback
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict, read_write

from mixsep.errors import ConfigError, user_error
from mixsep.provenance import provenance

log = logging.getLogger("mixsep")

# Lightning strategies that start their processes with multiprocessing (spawn / fork): the trained
# weights, the callbacks' state and the data module live in the children, not in the process that
# writes metrics.json, samples.png and the checkpoint record.
_MULTIPROCESSING_STRATEGIES = ("spawn", "fork", "notebook")


def slurm_job_id() -> str | None:
    """This job's SLURM id as ``scontrol``/``squeue`` name it: ``ARRAY_TASK`` for a task of a job array
    (a sweep's jobs), whose bare SLURM_JOB_ID may also name the whole array."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def scheduler_fields() -> dict:
    """What a user watching a sweep wants in status.json: which cluster job, which GPUs."""
    fields = {"slurm_job_id": slurm_job_id(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    return {k: v for k, v in fields.items() if v}


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="milliseconds")


@functools.cache
def run_id() -> str:
    """The unique part of this process's run folder name (``${mixsep_run_id:}`` in conf/hydra/default.yaml):
    the scheduler's job id where there is one (so a re-queued job finds its folder again), else 6 random hex
    digits (processes started in the same instant, on one host or many, get different folders)."""
    job = slurm_job_id()
    return f"job{job}" if job else secrets.token_hex(3)


# a running job refreshes its heartbeat this often (callbacks.heartbeat) and is shown as lost when it is older
# than LOST_AFTER_SECONDS (a job on another host), or at once when its pid is gone on this host
HEARTBEAT_SECONDS = 30
LOST_AFTER_SECONDS = 600


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _age_seconds(stamp: str | None) -> float | None:
    try:
        return (datetime.now(timezone.utc) - datetime.fromisoformat(stamp)).total_seconds()
    except (TypeError, ValueError):
        return None


def effective_status(record: dict) -> str:
    """status.json's status, with a ``running`` job whose process is gone shown as ``lost``: its pid no longer
    exists on this host, or its heartbeat is older than LOST_AFTER_SECONDS (any host)."""
    status = record.get("status") or "unknown"
    if status != "running":
        return status
    pid = record.get("pid")
    if record.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid):
        return "lost"
    age = _age_seconds(record.get("heartbeat") or record.get("time"))
    return "lost" if age is not None and age > LOST_AFTER_SECONDS else status


class FolderInUse(ConfigError):
    pass


class FolderLock:
    """This job's claim on its run folder: an exclusive ``flock`` on ``<run dir>/.mixsep.lock`` for the life of
    the job, released by the kernel when the process ends (a kill -9 included), so the folder of a dead job is
    free to resume at once. A live process's folder is refused, naming its host and pid; a job on another host
    (a shared file system without working locks) is refused while its heartbeat is fresh."""

    def __init__(self, out: Path) -> None:
        self.out, self.fd = out, None

    def acquire(self) -> None:
        import fcntl

        status = _read_json(self.out / "status.json")
        if (
            status.get("status") == "running"
            and status.get("host") != socket.gethostname()
            and effective_status(status) == "running"
            and not (slurm_job_id() and status.get("slurm_job_id") == slurm_job_id())  # this job, re-queued
        ):
            raise FolderInUse(self._refusal(status))
        check_writable(self.out)
        try:
            fd = os.open(self.out / ".mixsep.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ConfigError(f"cannot write to the run folder {self.out} ({err.strerror or err})") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.read(fd, 4096).decode(errors="replace")
            os.close(fd)
            try:
                holder = json.loads(owner)
            except json.JSONDecodeError:
                holder = {}
            raise FolderInUse(self._refusal(holder)) from None
        self.fd = fd
        with contextlib.suppress(OSError):  # who holds it, for the refusal; a full disk leaves it unsaid
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": now_iso()}).encode())

    def _refusal(self, holder: dict) -> str:
        return (
            f"the run folder {self.out} is in use by pid {holder.get('pid', '?')} on host {holder.get('host', '?')} "
            f"(since {holder.get('since') or holder.get('time') or '?'}): let that run end, or give this one its "
            "own folder (drop hydra.run.dir=..., or choose another)"
        )

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the file releases the lock; the file stays (it is only a name)
            self.fd = None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def heartbeat(out: Path, step: int) -> None:
    """A running job's sign of life in status.json: the time, its pid, the step reached."""
    record = _read_json(out / "status.json")
    if record.get("status") != "running":
        return
    record.update(heartbeat=now_iso(), pid=os.getpid(), step=step)
    _write_json(out / "status.json", record)


def _write_json(path: Path, record: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(tmp, path)


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
    if "ray" not in sys.modules:
        return {}
    import ray

    if not ray.is_initialized():
        return {}
    context = ray.get_runtime_context()
    return {"ray_gcs_address": context.gcs_address, "ray_node_id": context.get_node_id()}


def check_writable(out: Path) -> None:
    """The run folder must take files; nothing already in it is touched."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ConfigError(
            f"cannot write to the run folder {out} ({err.strerror or err}). Choose a writable one: "
            "hydra.run.dir=... (hydra.sweep.dir=... under -m)."
        ) from err


def write_status(out: Path, status: str, **fields) -> None:
    """``status.json`` in the job's folder: running / requeued (count, reason) / completed / failed (with the
    error) / cancelled."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = now_iso()
    record = {
        "status": status,
        "time": stamp,
        "heartbeat": stamp,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        **scheduler_fields(),
        **hydra_job(),
        **fields,
        "provenance": provenance(),
    }
    _write_json(out / "status.json", record)


def failure_fields(err: BaseException) -> dict:
    fixable = user_error(err)
    if fixable is not None:
        return {"error": str(fixable), "error_type": type(fixable).__name__, "user_fixable": True}
    return {
        "error": f"{type(err).__name__}: {err}",
        "error_type": type(err).__name__,
        "user_fixable": False,
        "traceback": "".join(traceback.format_exception(err))[-4000:],
    }


def check_strategy(trainer_cfg: DictConfig) -> None:
    strategy = str(trainer_cfg.get("strategy") or "auto")
    if any(word in strategy for word in _MULTIPROCESSING_STRATEGIES):
        raise ConfigError(
            f"trainer.strategy={strategy} is not supported: it trains in child processes started by "
            "multiprocessing, so this process cannot write the run's outputs. Use trainer.strategy=ddp "
            "(or trainer=ddp), which starts one script process per device."
        )


def _launches_processes(trainer_cfg: DictConfig) -> bool:
    """Would Lightning start more processes for this job (DDP over >1 local device, not under SLURM)?"""
    strategy = str(trainer_cfg.get("strategy") or "auto")
    devices = trainer_cfg.get("devices", 1)
    many = (
        devices in (-1, "-1", "auto")
        or (isinstance(devices, int) and devices > 1)
        or (isinstance(devices, (list, str)) and len(str(devices).split(",")) > 1)
    )
    return strategy.startswith("ddp") and many and "SLURM_NTASKS" not in os.environ


@contextlib.contextmanager
def ddp_children_run_this_job(trainer_cfg: DictConfig, out: Path) -> Iterator[None]:
    """Under ``-m``, Lightning's DDP starts its children with this process's ``sys.argv``, which would
    re-launch the whole sweep from every child. For the length of the job, the command line becomes
    this one job (its overrides, its folder), so the children join it as ranks 1..N-1."""
    if (
        not HydraConfig.initialized()
        or HydraConfig.get().mode != RunMode.MULTIRUN
        or not _launches_processes(trainer_cfg)
    ):
        yield
        return
    import __main__

    if getattr(getattr(__main__, "__spec__", None), "name", None) != "mixsep.run":
        raise ConfigError(
            "DDP over several devices inside a job of this launcher cannot start its processes. Give each "
            "job one device (trainer.devices=1, as hydra/launcher=gpus does), or let SLURM start one process "
            "per device (hydra/launcher=slurm with hydra.launcher.tasks_per_node=trainer.devices)."
        )
    hc = HydraConfig.get()
    saved_argv, saved_dir, saved_env = sys.argv, hc.run.dir, dict(os.environ)
    sys.argv = [saved_argv[0], *hc.overrides.task]
    with read_write(hc), open_dict(hc):
        hc.run.dir = str(out)  # Lightning adds hydra.run.dir=<this> to the children's command line
    try:
        yield
    finally:
        # the next job in this process starts its own DDP: no process group, no LOCAL_RANK/MASTER_PORT left
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
        with read_write(hc), open_dict(hc):
            hc.run.dir = saved_dir
