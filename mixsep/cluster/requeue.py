"""A job that a scheduler stops early: save its whole training state at the signal, let submitit re-queue it,
and say so in status.json.

SLURM warns a job ``signal_delay_s`` before its time limit, and on pre-emption, with submitit's signal
(USR2; hydra.launcher.signal_delay_s). submitit's own handler then re-queues the job (``scontrol requeue``)
and exits. mixsep defers that handler to the next training-batch boundary, where it first writes
``last.ckpt`` (weights, optimiser, schedule, loop position, best record, EMA, the epoch's pair position),
so the next allocation resumes from that very batch. SIGTERM without that signal (``scontrol requeue``,
``scancel``, a kill at the time limit) is caught by Lightning's own handler; the state is saved the same
way and the job ends as ``requeued`` (SLURM will start it again) or ``cancelled``. A SIGTERM while no Trainer
runs (loading data, starting W&B, writing results) ends the job at once, recorded alike: the last checkpoint
stands, and the job is not left to be killed ``KillWait`` later with its status.json still saying running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from mixsep.adapters import submitit_warning_signal
from mixsep.cluster.where import slurm_job_id

log = logging.getLogger("mixsep")

# why this process is ending early: {"status": "requeued" | "cancelled", "reason": ...}; read by
# cluster.status.recorded_job to record the right status instead of "failed"
stopping: dict = {}


def requeue_count() -> int:
    """How often SLURM has re-queued this job so far (0 for the first allocation, or outside SLURM)."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0)


def _submitit_handler(signum: int):
    """submitit's re-queue handler for ``signum``, if submitit installed one in this process."""
    handler = signal.getsignal(signum)
    owner = getattr(handler, "__self__", None)
    return handler if type(owner).__name__ == "SignalHandler" and "submitit" in type(owner).__module__ else None


def _slurm_will_requeue() -> bool:
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


def record_sigterm() -> None:
    """This process ends for a SIGTERM: ``requeued`` (preemption) when SLURM holds the job for another
    allocation, else ``cancelled``."""
    requeued = _slurm_will_requeue()
    stopping.update(status="requeued" if requeued else "cancelled", reason="preemption" if requeued else "SIGTERM")


def _end_outside_lightning(signum: int, frame) -> None:
    # while a Trainer runs, Lightning's handler calls this one (the handler it found) after noting the SIGTERM,
    # which the loops act on at the next batch: then there is nothing to do here
    if signal.getsignal(signal.SIGTERM) is not _end_outside_lightning:
        return
    record_sigterm()
    raise SIGTERMException(128 + signal.SIGTERM)


@contextlib.contextmanager
def sigterm_ends_the_job() -> Iterator[None]:
    """Within: a SIGTERM outside a Trainer's run ends the job at once, recorded in ``stopping`` (submitit's own
    handler would ignore it, Python's default leave no record); inside a run, Lightning's handling stands."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    previous = signal.signal(signal.SIGTERM, _end_outside_lightning)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


# submitit's handler of the scheduler's warning signal, once record_scheduler_requeues has wrapped it
_warning: dict = {}


def record_scheduler_requeues() -> int | None:
    """From now on, submitit's re-queue at the scheduler's warning is recorded as ``requeued`` (timeout or
    preemption) in ``stopping``, wherever the job is: a warning while the data loads or W&B starts is a re-queue,
    not a failure. Called as the job starts (cluster.status.recorded_job) and by SaveOnSignal. The warning's
    signal, or None outside submitit."""
    if not _warning:
        try:
            signum = submitit_warning_signal()
        except (ImportError, ValueError):
            return None
        handler = _submitit_handler(signum)
        if handler is None:
            return None
        _warning.update(signum=signum, submitit=handler)
        signal.signal(signum, requeue_now)
    return _warning["signum"]


def requeue_now(signum: int, frame) -> None:
    """submitit's handler (checkpoint the submission, ``scontrol requeue``, exit), recorded as a re-queue."""
    submitit = _warning["submitit"]
    stopping.update(status="requeued", reason="timeout" if submitit.__self__.has_timed_out() else "preemption")
    try:
        submitit(signum, frame)
    except subprocess.CalledProcessError:
        if not _slurm_will_requeue():
            raise
        log.info("the job was re-queued already (pre-empted at the same moment)")
        raise SystemExit(-1) from None


class SaveOnSignal(L.Callback):
    """Write ``last.ckpt`` at the next batch boundary after a scheduler's warning or SIGTERM, then let the
    job be re-queued (submitit) or end. Outside a scheduler it acts on SIGTERM only (``cancelled``).

    Under submitit, the warning re-queues the job at once outside ``fit`` (loading data, testing), recorded as
    ``requeued`` (record_scheduler_requeues); during ``fit`` the re-queue waits for the end of the current
    training batch, after the state is saved."""

    def __init__(self, dirpath: str, filename: str = "last") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self._pending = False
        self._signum = record_scheduler_requeues()  # None: not a submitit job

    def _defer(self, signum: int, frame) -> None:
        log.warning(f"received {signal.Signals(signum).name}: saving at the end of this training batch")
        self._pending = True

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        stopping.clear()
        if self._signum is not None:
            signal.signal(self._signum, self._defer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._outside_fit()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and not stopping:
            # Lightning's own check came first: a SIGTERM after this callback's batch end (during a later
            # callback or validation). Lightning resumes a checkpoint made mid-validation, so save here too.
            if trainer.state.fn == TrainerFn.FITTING:
                self._save(trainer)
            record_sigterm()
        self._outside_fit()

    def _outside_fit(self) -> None:
        """After fit a warning re-queues at once (the next allocation resumes from the finished fit); one
        that came after the last training batch is acted on now."""
        if self._signum is not None and signal.getsignal(self._signum) == self._defer:
            signal.signal(self._signum, requeue_now)
            if self._pending:
                self._pending = False
                requeue_now(self._signum, None)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self._pending:
            self._pending = False
            self._save(trainer)
            signal.signal(self._signum, requeue_now)
            requeue_now(self._signum, None)
        elif trainer.received_sigterm:
            self._save(trainer)
            record_sigterm()
            raise SIGTERMException(128 + signal.SIGTERM)

    def _save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path)
        log.info(f"saved the training state at step {trainer.global_step} to {self.path}")
