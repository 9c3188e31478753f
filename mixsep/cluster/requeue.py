"""A job that a scheduler stops early: its whole training state saved at the next batch boundary after submitit's
warning signal (USR2; then submitit's own handler re-queues it) or a SIGTERM (Lightning's handler notes it). The
job's record of either stop is its ``Job`` (cluster/job.py)."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
from pathlib import Path

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from mixsep.record.where import slurm_job_id

log = logging.getLogger("mixsep")


def requeue_count() -> int:
    """How often SLURM has re-queued this job so far (0 for the first allocation, or outside SLURM)."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0)


def submitits_handler() -> tuple:
    """submitit's re-queue handler and its signal (``JobEnvironment.USR_SIG``) in a submitit job, else Nones."""
    try:
        from submitit import JobEnvironment
        from submitit.core.job_environment import SignalHandler
    except ImportError:
        return None, None
    signum = getattr(signal, "SIG" + JobEnvironment.USR_SIG)
    handler = signal.getsignal(signum)
    return (handler, signum) if isinstance(getattr(handler, "__self__", None), SignalHandler) else (None, None)


def slurm_will_requeue() -> bool:
    """After a SIGTERM: does SLURM hold this job for another allocation (``scontrol requeue``, pre-emption) rather
    than end it (``scancel``, the time limit)? A re-queue has already raised its restart count."""
    job = slurm_job_id()
    if not job:
        return False
    try:
        shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    restarts = re.search(r"\bRestarts=(\d+)", shown)
    return restarts is not None and int(restarts.group(1)) > requeue_count()


class SaveOnSignal(L.Callback):
    """Write ``last.ckpt`` at the next batch boundary after a scheduler's warning or a SIGTERM, then let the job be
    re-queued (submitit) or end, recorded in its ``job``.

    The gaps it fills (tests/cluster/test_requeue.py): submitit's handler re-queues and exits mid-step, saving
    nothing; Lightning's ``SLURMEnvironment(auto_requeue=True)`` saves inside its handler, mid-step, and is not
    installed where submitit's handler is."""

    def __init__(self, job, dirpath: str, filename: str = "last") -> None:
        self.job = job
        self.path = Path(dirpath) / f"{filename}.ckpt"

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.job.fitting = True

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._outside_fit()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and not self.job.stopping:
            # Lightning's own check came first (a SIGTERM during a later callback or validation): save here too
            if trainer.state.fn == TrainerFn.FITTING:
                self._save(trainer)
            self.job.record_sigterm()
        self._outside_fit()

    def _outside_fit(self) -> None:
        """A warning that came after the last training batch is acted on now (the next allocation resumes)."""
        self.job.fitting = False
        if self.job.warned:
            self.job.requeue_now()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.job.warned:
            self._save(trainer)
            self.job.requeue_now()
        elif trainer.received_sigterm:
            self._save(trainer)
            self.job.record_sigterm()
            raise SIGTERMException(128 + signal.SIGTERM)

    def _save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path)
        log.info(f"saved the training state at step {trainer.global_step} to {self.path}")
