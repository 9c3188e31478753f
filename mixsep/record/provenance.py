"""Which code produced a result: the git commit (and whether the tree had uncommitted changes), the versions of
mixsep and of the stack it ran on, and the command line as typed. Recorded in metrics.json, status.json and the
loggers' config; ``mixsep.report`` shows the short commit."""

from __future__ import annotations

import functools
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("torch", "lightning", "torchmetrics", "hydra-core")


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def code_version() -> dict:
    """The commit and versions (the same for the whole life of a process)."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        git = {"git_commit": None, "git_dirty": None, "git_note": f"not a git checkout: {PROJECT_ROOT}"}
    else:
        changes = _git("status", "--porcelain", "--untracked-files=no")
        git = {"git_commit": commit, "git_dirty": bool(changes) if changes is not None else None}
    return {
        **git,
        "mixsep_version": _version("mixsep"),
        "python_version": sys.version.split()[0],
        **{f"{name.replace('-', '_')}_version": _version(name) for name in PACKAGES},
    }


def provenance() -> dict:
    """code_version() and the command line as typed (``python -m mixsep.run model=unet ...``)."""
    argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
    return {**code_version(), "command": shlex.join(argv)}


def short_commit(record: dict) -> str:
    """``1a2b3c4`` (``+dirty`` when the tree had uncommitted changes), ``-`` when none was recorded."""
    source = record.get("provenance") if isinstance(record.get("provenance"), dict) else record
    commit = source.get("git_commit")
    if not commit:
        return "-"
    return commit[:7] + ("+dirty" if source.get("git_dirty") else "")
