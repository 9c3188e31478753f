"""A job that a scheduler stops early: save its whole training state at the signal, let submitit re-queue it.

SLURM warns a job ``signal_delay_s`` before its time limit, and on pre-emption, with submitit's signal
(USR2; hydra.launcher.signal_delay_s). submitit's own handler then calls its launcher's ``checkpoint()`` (the same
job, submitted again), re-queues the job (``scontrol requeue``) and exits. While fitting, mixsep defers that
handler to the next training-batch boundary, where it first writes ``last.ckpt`` (weights, optimiser, schedule,
loop position, best record, EMA, the epoch's pair position), so the next allocation resumes from that very batch.
SIGTERM without that signal (``scontrol requeue``, ``scancel``, a kill at the time limit) is caught by Lightning's
own handler; the state is saved the same way. The job's record of either stop is its ``Job`` (cluster/job.py).
"""

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
    """submitit's re-queue handler and the scheduler's warning signal it is bound to (USR2 unless
    ``SUBMITIT_PREEMPT_SIGNAL`` says otherwise), when this process is a submitit job; else ``(None, None)``."""
    try:
        from submitit import JobEnvironment
        from submitit.core.job_environment import SignalHandler
    except ImportError:
        return None, None
    signum = getattr(signal, "SIG" + JobEnvironment.USR_SIG)
    handler = signal.getsignal(signum)
    return (handler, signum) if isinstance(getattr(handler, "__self__", None), SignalHandler) else (None, None)


def slurm_will_requeue() -> bool:
    """After a SIGTERM: does SLURM hold this job for another allocation (``scontrol requeue``, pre-emption)
    rather than end it (``scancel``, the time limit)? A re-queue has already raised its restart count."""
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
    """Write ``last.ckpt`` at the next batch boundary after a scheduler's warning or SIGTERM, then let the
    job be re-queued (submitit) or end, recorded in its ``job``. Outside a scheduler it acts on SIGTERM only
    (``cancelled``).

    Neither framework saves at a batch boundary: submitit's handler re-queues and exits where the signal lands,
    and Lightning's ``SLURMEnvironment(auto_requeue=True)`` saves inside its handler, mid-step, and is not installed
    where submitit's handler is (tests/cluster/test_requeue.py shows each). While fitting, the job (``Job``) holds
    the warning for this callback, which saves and then calls submitit's handler."""

    def __init__(self, job, dirpath: str, filename: str = "last") -> None:
        self.job = job
        self.path = Path(dirpath) / f"{filename}.ckpt"

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.job.fitting = True

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._outside_fit()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and not self.job.stopping:
            # Lightning's own check came first: a SIGTERM after this callback's batch end (during a later
            # callback or validation). Lightning resumes a checkpoint made mid-validation, so save here too.
            if trainer.state.fn == TrainerFn.FITTING:
                self._save(trainer)
            self.job.record_sigterm()
        self._outside_fit()

    def _outside_fit(self) -> None:
        """After fit a warning re-queues at once (the next allocation resumes from the finished fit); one
        that came after the last training batch is acted on now."""
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
