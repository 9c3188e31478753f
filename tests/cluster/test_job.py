"""cluster/job.py: one object owns a job's life; nothing of it is kept in module globals."""

from __future__ import annotations

import ast
import json
import signal
from pathlib import Path

import pytest

from mixsep.cluster.job import Job
from tests.helpers import PROJECT_ROOT


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
