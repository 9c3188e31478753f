"""One training job's life, owned by one object that the task function creates: its record in the run folder
(status.json, heartbeat, the folder lock), its stop (SIGTERM, a scheduler's warning and submitit's re-queue,
pre-emption, cancel), its dashboards' final status and the provenance of its code.

Not Hydra's ``Callback``: Hydra skips ``on_job_end`` when a job ends by ``SystemExit`` (both re-queue paths) and
turns what ``on_job_start`` raises into a warning, so it could not refuse a live job's folder (test_job.py).
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
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from mixsep.cluster.requeue import requeue_count, slurm_will_requeue, submitits_handler
from mixsep.errors import ConfigError, DiskError, TrainingDivergedError, user_error
from mixsep.record.provenance import provenance
from mixsep.record.status import HEARTBEAT_SECONDS, FolderLock, read_json, write_record
from mixsep.record.where import hydra_job, now_iso, scheduler_fields

log = logging.getLogger("mixsep")


class Job:
    """A training job in ``out`` (None: not recorded). ``with job:`` it runs (status.json, lock, signals) and ends
    completed (``job.objective``), failed, pruned, re-queued or cancelled. A user's mistake ends a single run in
    one ``mixsep:`` line and raises inside a sweep (the launcher marks the job failed); a run refused before
    training leaves a finished run's record as it was."""

    def __init__(self, out: Path | None = None, optimized_metric: str = "val/psnr") -> None:
        self.out, self.optimized_metric = Path(out) if out is not None else None, optimized_metric
        self.objective: float | None = None
        self.stopping: dict = {}  # why it ends early: {"status": "requeued" | "cancelled", "reason": ...}
        self.on_end: list[Callable[[str], None]] = []  # called with its final status (closing its dashboards)
        self.provenance = provenance()
        self.is_zero = rank_zero_only.rank == 0  # DDP: rank 0 alone keeps the record
        self.fitting = False  # while fitting, the scheduler's warning waits for SaveOnSignal's batch boundary
        self.warned = False  # a warning that waits
        self._lock = FolderLock(self.out)
        self._earlier_status: bytes | None = None
        self._handlers_before: dict[int, Any] = {}  # restored when the job ends
        self._submitit, self._warning_signal = None, None  # submitit's re-queue handler and its signal

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
            self._handlers_before[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._end_outside_lightning)
            self._submitit, self._warning_signal = submitits_handler()
            if self._submitit is not None:
                self._handlers_before[self._warning_signal] = signal.signal(self._warning_signal, self._on_warning)
        if self.is_zero:  # the lock above has checked that the folder takes files
            self._write("running", requeues=requeue_count())
        return self

    def __exit__(self, kind, err: BaseException | None, traceback) -> None:
        for signum, handler in self._handlers_before.items():
            signal.signal(signum, handler)
        self._handlers_before = {}
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
        record = read_json(self.out / "status.json") if self.out is not None else {}
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

    def _on_warning(self, signum: int, frame) -> None:
        """The scheduler's warning: a re-queue (timeout or preemption), at once unless fitting (SaveOnSignal
        saves at the end of the training batch first). A warning while the data loads is not a failure."""
        if not self.fitting:
            self.requeue_now()
            return
        log.warning(f"received {signal.Signals(signum).name}: saving at the end of this training batch")
        self.warned = True

    def requeue_now(self) -> None:
        """submitit's handler (its launcher's ``checkpoint()``, ``scontrol requeue``, exit), recorded as a re-queue."""
        self.warned = False
        timed_out = self._submitit.__self__.has_timed_out()
        self.stopping.update(status="requeued", reason="timeout" if timed_out else "preemption")
        try:
            self._submitit(self._warning_signal, None)
        except subprocess.CalledProcessError:
            if not slurm_will_requeue():
                raise
            log.info("the job was re-queued already (pre-empted at the same moment)")
            raise SystemExit(-1) from None


class Heartbeat(L.Callback):
    """Refreshes the running job's heartbeat in its status.json (time, host, pid, step) every ``every_seconds`` of
    training, so ``mixsep.report`` can tell a live job from a lost one (status.effective_status)."""

    def __init__(self, job: Job, every_seconds: float = HEARTBEAT_SECONDS) -> None:
        self.job, self.every_seconds, self._last = job, every_seconds, 0.0

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        now = time.monotonic()
        if trainer.is_global_zero and now - self._last >= self.every_seconds:
            self._last = now
            self.job.heartbeat(trainer.global_step)


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
