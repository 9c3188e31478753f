"""One training job's life, owned by one object that the task function creates and passes to what needs it: its
record in the run folder (status.json, heartbeat, the folder lock), its stop (a SIGTERM, a scheduler's warning and
submitit's re-queue, pre-emption, cancel), its dashboards' final status and the provenance of its code.

A stop is recorded in ``Job.stopping`` by the handler that sees it, whatever exception then ends the job:
``requeued`` (SLURM starts it again) or ``cancelled``, with the reason. A SIGTERM while no Trainer runs (loading
data, starting W&B, writing results) ends the job at once, recorded alike; within a Trainer's run Lightning's own
handler notes it and ``requeue.SaveOnSignal`` saves at the next batch boundary.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from mixsep.adapters import submitit_warning_signal
from mixsep.cluster.provenance import provenance
from mixsep.cluster.requeue import requeue_count, slurm_will_requeue, submitits_handler
from mixsep.cluster.status import FolderLock, read_json, write_record
from mixsep.cluster.where import hydra_job, now_iso, scheduler_fields
from mixsep.errors import ConfigError, DiskError, TrainingDivergedError, user_error

log = logging.getLogger("mixsep")


class Job:
    """A training job in ``out``, selecting on ``optimized_metric``. ``with job:`` it is running (status.json,
    lock, signal handling); it ends completed (with ``job.objective``), failed, pruned, re-queued or cancelled.

    A user-fixable error of a single run exits with one line ``mixsep: …`` (no traceback); inside a sweep it
    raises, so that the launcher marks this job failed and the other jobs go on. A run refused before training
    leaves a finished run's record as it was."""

    def __init__(self, out: Path, optimized_metric: str = "val/psnr") -> None:
        self.out, self.optimized_metric = Path(out), optimized_metric
        self.objective: float | None = None
        self.stopping: dict = {}  # why it ends early: {"status": "requeued" | "cancelled", "reason": ...}
        self.on_end: list[Callable[[str], None]] = []  # called with its final status (closing its dashboards)
        self.provenance = provenance()
        self.is_zero = rank_zero_only.rank == 0  # DDP: rank 0 alone keeps the record
        self._lock = FolderLock(self.out)
        self._earlier_status: bytes | None = None
        self._sigterm_before = None
        self.warning_signal: int | None = None  # the scheduler's warning (submitit's), None outside submitit
        self._submitit_handler = None
        self._watch_scheduler()

    # the record
    def __enter__(self) -> Job:
        if self.is_zero:  # before anything is written: a live job's folder is left exactly as it is
            try:
                self._lock.acquire()
            except ConfigError as err:  # in use by a live job, or not writable
                if hydra_job()["multirun"]:
                    raise
                sys.exit(f"mixsep: {err}")
        with contextlib.suppress(OSError):
            self._earlier_status = (self.out / "status.json").read_bytes()
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._sigterm_before = signal.signal(signal.SIGTERM, self._end_outside_lightning)
        if self.is_zero:  # the lock above has checked that the folder takes files
            self._write("running", requeues=requeue_count())
        return self

    def __exit__(self, kind, err: BaseException | None, traceback) -> None:
        if self._sigterm_before is not None:
            signal.signal(signal.SIGTERM, self._sigterm_before)
            self._sigterm_before = None
        if err is None:
            self._end("completed")
            if self.is_zero:
                self._write("completed", optimized_metric=self.optimized_metric, objective=self.objective,
                            requeues=requeue_count())  # fmt: skip
            self._lock.release()
            return
        status = self._record_stop(err) if self.is_zero else "failed"
        self._end(status)
        self._lock.release()
        fixable = user_error(err)
        if fixable is not None and not hydra_job()["multirun"]:
            refused = not isinstance(fixable, (TrainingDivergedError, DiskError))
            if self.is_zero and self._earlier_status is not None and refused:
                with contextlib.suppress(OSError):  # refused before training: the folder's record stays
                    (self.out / "status.json").write_bytes(self._earlier_status)
            sys.exit(f"mixsep: {fixable}")

    def heartbeat(self, step: int) -> None:
        """A running job's sign of life in status.json: the time, its pid, the step reached."""
        record = read_json(self.out / "status.json")
        if record.get("status") == "running":
            record.update(heartbeat=now_iso(), pid=os.getpid(), step=step)
            with contextlib.suppress(OSError):  # a full disk must not stop training for a heartbeat
                write_record(self.out, record)

    def _write(self, status: str, **fields) -> None:
        """status.json: running / requeued (count, reason) / completed / failed (the error) / cancelled / pruned (by
        an Optuna search's pruner: the step, epoch and objective value)."""
        stamp, where = now_iso(), {"host": socket.gethostname(), "pid": os.getpid(), **scheduler_fields()}
        record = {"status": status, "time": stamp, "heartbeat": stamp, **where, **hydra_job(), **fields}
        write_record(self.out, {**record, "provenance": self.provenance})

    def _record_stop(self, err: BaseException) -> str:
        """status.json of a job that ended early: pruned by a search's pruner, re-queued or cancelled (none of them
        a failure), or failed (with the error). The status it wrote."""
        pruned = pruned_at(err)
        status = "pruned" if pruned is not None else self.stopping.get("status", "failed")
        with contextlib.suppress(OSError):  # an unwritable folder: the one-line error says so
            if pruned is not None:  # kept, never "best"
                self._write("pruned", optimized_metric=self.optimized_metric, **pruned)
            elif self.stopping:
                requeues = requeue_count() + (status == "requeued")
                self._write(status, reason=self.stopping["reason"], requeues=requeues)
            else:
                self._write("failed", **failure_fields(err))
        return status

    def _end(self, status: str) -> None:
        for call in self.on_end:
            call(status)

    # the stop
    def record_sigterm(self) -> None:
        """This job ends for a SIGTERM: ``requeued`` (pre-emption) when SLURM holds it for another allocation, else
        ``cancelled``."""
        if slurm_will_requeue():
            self.stopping.update(status="requeued", reason="preemption")
        else:
            self.stopping.update(status="cancelled", reason="SIGTERM")

    def _end_outside_lightning(self, signum: int, frame) -> None:
        # while a Trainer runs, Lightning's handler calls this one (the handler it found) after noting the SIGTERM,
        # which the loops act on at the next batch: then there is nothing to do here
        if signal.getsignal(signal.SIGTERM) != self._end_outside_lightning:
            return
        self.record_sigterm()
        raise SIGTERMException(128 + signal.SIGTERM)

    def _watch_scheduler(self) -> None:
        """From now on, submitit's re-queue at the scheduler's warning is recorded as ``requeued`` (timeout or
        preemption), wherever the job is: a warning while the data loads or W&B starts is a re-queue, not a
        failure. SaveOnSignal defers it to a batch boundary while fitting."""
        try:
            signum = submitit_warning_signal()
        except (ImportError, ValueError):
            return
        handler = submitits_handler(signum)
        if handler is None:  # not a submitit job, or this process's previous job watches it already
            handler = getattr(signal.getsignal(signum), "__self__", None)
            handler = handler._submitit_handler if isinstance(handler, Job) else None
        if handler is None:
            return
        self.warning_signal, self._submitit_handler = signum, handler
        signal.signal(signum, self.requeue_now)

    def requeue_now(self, signum: int, frame) -> None:
        """submitit's handler (its launcher's ``checkpoint()``, ``scontrol requeue``, exit), recorded as a re-queue."""
        submitit = self._submitit_handler
        timed_out = submitit.__self__.has_timed_out()
        self.stopping.update(status="requeued", reason="timeout" if timed_out else "preemption")
        try:
            submitit(signum, frame)
        except subprocess.CalledProcessError:
            if not slurm_will_requeue():
                raise
            log.info("the job was re-queued already (pre-empted at the same moment)")
            raise SystemExit(-1) from None


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


def pruned_at(err: BaseException) -> dict | None:
    """Where an Optuna search's pruner stopped this job (its ``TrialPruned``): step, epoch and objective value."""
    if "optuna" not in sys.modules or not isinstance(err, sys.modules["optuna"].TrialPruned):
        return None  # (optuna imported only where a search runs)
    details = err.args[0] if err.args and isinstance(err.args[0], dict) else {}
    return {k: details.get(k) for k in ("step", "epoch", "value")}
