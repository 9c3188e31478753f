"""A job's record in its folder: status.json (running, completed, failed, pruned, requeued, cancelled; ``lost``
when the process is gone) and the folder lock that keeps two live jobs out of one folder. The job that writes
them: cluster/job.py."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from mixsep.errors import ConfigError
from mixsep.files import write_text_atomically
from mixsep.record.where import now_iso, slurm_job_id

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
        pass
    return True


def effective_status(record: dict) -> str:
    """status.json's status, with a ``running`` job whose process is gone shown as ``lost``: its pid no longer
    exists on this host, or its heartbeat is older than LOST_AFTER_SECONDS (any host)."""
    status = record.get("status") or "unknown"
    if status != "running":
        return status
    pid = record.get("pid")
    if record.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid):
        return "lost"
    try:  # a naive or malformed time (a record from elsewhere) says nothing
        age = datetime.now(timezone.utc) - datetime.fromisoformat(record.get("heartbeat") or record.get("time"))
    except (TypeError, ValueError):
        return status
    return "lost" if age.total_seconds() > LOST_AFTER_SECONDS else status


class FolderLock:
    """This job's claim on its run folder: an exclusive ``flock`` on ``<run dir>/.mixsep.lock``, which the kernel
    releases when the process ends (kill -9 included). A live process's folder is refused, naming its host and pid;
    a job on another host (a shared file system without working locks), while its heartbeat is fresh."""

    def __init__(self, out: Path) -> None:
        self.out, self.fd = out, None

    def acquire(self) -> None:
        status = read_json(self.out / "status.json")
        if (
            status.get("status") == "running"
            and status.get("host") != socket.gethostname()
            and effective_status(status) == "running"
            and not (slurm_job_id() and status.get("slurm_job_id") == slurm_job_id())  # this job, re-queued
        ):
            raise ConfigError(self._refusal(status))
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(self._refusal(read_json(self.out / ".mixsep.lock"))) from None
        self.fd = fd
        with contextlib.suppress(OSError):  # who holds it, for the refusal; a full disk leaves it unsaid
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": now_iso()}).encode())

    def _open(self) -> int:
        """The lock file, in a run folder that takes files; nothing already in it is touched."""
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.out, prefix=".write-test-"):
                pass
            return os.open(self.out / ".mixsep.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as err:
            raise ConfigError(
                f"cannot write to the run folder {self.out} ({err.strerror or err}). Choose a writable one: "
                "hydra.run.dir=... (hydra.sweep.dir=... under -m)."
            ) from err

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


MAX_RECORD_BYTES = 1 << 20  # a run's metrics.json or status.json is a few kB
NUMBER = (int, float)
TEXT = (str, type(None))
# the fields of status.json that mixsep reads, with the types it writes them as (job.py)
STATUS_KINDS = {
    "status": (str,),
    "value": (*NUMBER, type(None)),
    **dict.fromkeys(("pid", "step", "epoch", "requeues"), (int, type(None))),
    **dict.fromkeys(("host", "heartbeat", "time", "error", "reason", "optimized_metric", "since"), TEXT),
}
JSON_NAMES = {
    bool: "true/false",
    str: "a string",
    int: "an integer",
    float: "a number",
    list: "a list",
    dict: "an object",
    type(None): "null",
}

Kinds = dict[str, "tuple[type, ...] | Kinds"]


class BadRecord(ValueError):
    """A run record (possibly from elsewhere) unlike mixsep's: the message names the file and what is wrong."""


def load_record(path: Path, kinds: Kinds) -> dict:
    """The JSON object in ``path`` ({} where there is none) with the field types of ``kinds`` (a key ending in ``/``:
    every field under it; a mapping: a nested object); BadRecord otherwise."""
    try:
        size = path.stat().st_size
        text = path.read_bytes() if size <= MAX_RECORD_BYTES else None
        record = json.loads(text) if text is not None else None
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise BadRecord(f"{path}: cannot be read ({err.strerror or err})") from err
    except ValueError as err:  # UnicodeDecodeError included
        raise BadRecord(f"{path}: not valid JSON ({str(err)[:120]})") from err
    except RecursionError as err:
        raise BadRecord(f"{path}: nested too deeply to be a run record") from err
    if text is None:
        raise BadRecord(f"{path}: {size:,} bytes, more than a run record's {MAX_RECORD_BYTES:,}")
    problem = kind_problem(record, kinds)
    if problem:
        raise BadRecord(f"{path}: {problem}")
    return record


def kind_problem(value: object, kinds: Kinds, where: str = "") -> str | None:
    """What in ``value`` (a JSON object) does not have the type ``kinds`` gives it; None when all do."""
    if not isinstance(value, dict):
        return f"{JSON_NAMES.get(type(value), 'an object')}, not a JSON object"
    for key, field in value.items():
        wanted = kinds.get(key) or next((k for p, k in kinds.items() if p.endswith("/") and key.startswith(p)), None)
        if isinstance(wanted, dict) and isinstance(field, dict):
            problem = kind_problem(field, wanted, f"{where}{key}.")
            if problem:
                return problem
            continue
        wanted = (dict,) if isinstance(wanted, dict) else wanted
        if wanted is not None and (not isinstance(field, wanted) or isinstance(field, bool) and bool not in wanted):
            names = " or ".join(JSON_NAMES.get(t, t.__name__) for t in wanted)
            found = JSON_NAMES.get(type(field), "an object")
            return f"its field {where}{key} is {found} ({json.dumps(field)[:40]}), not {names}"
    return None


def read_json(path: Path) -> dict:
    """A status.json, or any JSON object ({} where there is none, or it is not one: a job then starts afresh)."""
    try:
        return load_record(path, {})
    except BadRecord:
        return {}


def write_record(out: Path, record: dict) -> None:
    write_text_atomically(out / "status.json", json.dumps(record, indent=2, default=str) + "\n")
