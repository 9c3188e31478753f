"""Which code produced a result: the git commit (and whether tracked files had changes), the versions of mixsep
and its stack, and the command line as typed; ``mixsep.report`` shows the short commit."""

from __future__ import annotations

import functools
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mixsep", "torch", "lightning", "torchmetrics", "hydra-core")


def _git_commit() -> str | None:
    """``<full commit>`` or ``<full commit>-dirty`` (tracked files changed), None outside a git checkout."""
    command = ["git", "describe", "--always", "--dirty", "--abbrev=40", "--exclude=*"]
    try:
        done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=False)
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
    described = _git_commit()
    if described is None:
        git = {"git_commit": None, "git_dirty": None, "git_note": f"not a git checkout: {PROJECT_ROOT}"}
    else:
        commit, dirty, _ = described.partition("-dirty")
        git = {"git_commit": commit, "git_dirty": bool(dirty)}
    versions = {f"{name.replace('-', '_')}_version": _version(name) for name in PACKAGES}
    return {**git, **versions, "python_version": sys.version.split()[0]}


def provenance() -> dict:
    """code_version() and the command line as typed (``python -m mixsep.run model=unet ...``)."""
    argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
    return {**code_version(), "command": shlex.join(argv)}


def short_commit(record: dict) -> str:
    """``1a2b3c4`` (``+dirty`` when tracked files had changes), ``-`` when none was recorded."""
    source = record.get("provenance") if isinstance(record.get("provenance"), dict) else record
    commit = source.get("git_commit")
    return commit[:7] + ("+dirty" if source.get("git_dirty") else "") if commit else "-"
