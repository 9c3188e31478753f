"""cluster/job.py: one object owns a job's life; nothing of it is kept in module globals."""

from __future__ import annotations

import ast
import json
import signal
from pathlib import Path

import pytest
from hydra.experimental.callback import Callback

from mixsep.cluster.job import Job
from tests.helpers import PROJECT_ROOT, run_in_this_process


def _status(folder: Path) -> dict:
    return json.loads((folder / "status.json").read_text())


def test_a_recorded_stop_is_the_jobs_status_whatever_exception_ends_it(tmp_path):
    """A SIGTERM noted by the job, then any exception on the way out (not only SystemExit): cancelled, not failed."""
    with pytest.raises(RuntimeError), Job(tmp_path / "a") as job:
        assert _status(tmp_path / "a")["status"] == "running"
        job.record_sigterm()  # outside SLURM: no scheduler will start it again
        raise RuntimeError("a callback failed while the job was stopping")
    assert (_status(tmp_path / "a")["status"], _status(tmp_path / "a")["reason"]) == ("cancelled", "SIGTERM")

    with pytest.raises(RuntimeError), Job(tmp_path / "b"):
        raise RuntimeError("a bug")
    failed = _status(tmp_path / "b")
    assert failed["status"] == "failed" and "RuntimeError: a bug" in failed["error"]


def test_two_jobs_of_one_process_keep_their_own_record(tmp_path):
    """A sweep's jobs in one process (the basic launcher): the first one's stop is not the second one's."""
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit), Job(tmp_path / "first") as first:
        first.record_sigterm()
        raise SystemExit(143)
    with Job(tmp_path / "second", "val/psnr") as second:
        second.objective = 31.5
    assert second.stopping == {} and _status(tmp_path / "first")["status"] == "cancelled"
    assert (_status(tmp_path / "second")["status"], _status(tmp_path / "second")["objective"]) == ("completed", 31.5)
    assert signal.getsignal(signal.SIGTERM) is before


def test_no_module_of_mixsep_keeps_mutable_state_in_a_global():
    """Module-level names bound to a mutable value are constants or registries (UPPER_CASE), never a job's state."""
    found = []
    for path in sorted((PROJECT_ROOT / "mixsep").rglob("*.py")) + sorted(
        (PROJECT_ROOT / "hydra_plugins").rglob("*.py")
    ):
        for node in ast.parse(path.read_text()).body:
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AnnAssign)
                else []
            )
            value = getattr(node, "value", None)
            mutable = isinstance(value, (ast.Dict, ast.List, ast.Set)) or (
                isinstance(value, ast.Call) and getattr(value.func, "id", "") in ("dict", "list", "set")
            )
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            found += [
                f"{path.relative_to(PROJECT_ROOT)}: {n}"
                for n in names
                if mutable and not n.lstrip("_").isupper() and n != "__all__"
            ]
    assert found == [], found


class HookLog(Callback):
    """A Hydra callback that notes each of its job hooks in ``path``, and refuses the job (as a folder lock would) when
    told to."""

    def __init__(self, path: str, refuse: bool = False) -> None:
        self.path, self.refuse = Path(path), refuse

    def on_job_start(self, config, **kwargs) -> None:
        self._note("on_job_start")
        if self.refuse:
            raise RuntimeError("the run folder is in use by a live job")

    def on_job_end(self, config, job_return, **kwargs) -> None:
        self._note(f"on_job_end {job_return.status.name}")

    def _note(self, hook: str) -> None:
        with self.path.open("a") as notes:
            notes.write(hook + "\n")


TASK = """
import sys
from pathlib import Path

import hydra
from lightning.pytorch.utilities.exceptions import SIGTERMException


@hydra.main(version_base="1.3", config_path=None)
def task(cfg):
    Path(cfg.ran).touch()
    if cfg.end == "requeued":
        sys.exit(-1)  # how submitit's handler ends a job it has re-queued
    if cfg.end == "stopped":
        raise SIGTERMException(143)  # how Lightning ends a job on SIGTERM
    if cfg.end == "failed":
        raise RuntimeError("a bug")


task()
"""


@pytest.mark.parametrize(
    "end, refuse, hooks",
    [
        ("failed", False, ["on_job_start", "on_job_end FAILED"]),
        ("requeued", False, ["on_job_start"]),
        ("stopped", False, ["on_job_start"]),
        ("completed", True, ["on_job_start", "on_job_end COMPLETED"]),
    ],
)
def test_hydras_job_callback_misses_stopped_jobs_and_cannot_refuse_one(end, refuse, hooks, tmp_path, capsys):
    """Gap: Hydra calls a Callback's ``on_job_end`` for a job that raised an Exception, but not for one ended by
    SystemExit (submitit's re-queue, Lightning's SIGTERMException), and what ``on_job_start`` raises becomes a warning
    while the job runs on: neither a re-queue's record nor the refusal of a live job's folder can live there, so
    ``Job`` (the task's context manager) keeps both."""
    script, log, ran = tmp_path / "task.py", tmp_path / "hooks.txt", tmp_path / "ran"
    script.write_text(TASK)
    code = run_in_this_process(
        ["python", str(script), f"+end={end}", f"+ran={ran}", f"hydra.run.dir={tmp_path / 'run'}"]
        + [f"+hydra.callbacks.log._target_={__name__}.HookLog", f"+hydra.callbacks.log.path={log}"]
        + [f"+hydra.callbacks.log.refuse={refuse}"]
    )
    assert log.read_text().split("\n")[:-1] == hooks
    assert ran.exists()  # refused or not, the task ran
    assert code == {"failed": 1, "requeued": -1, "stopped": 143, "completed": 0}[end]
