"""Errors a user can fix; their messages say how. Every entry point prints them as one line
``mixsep: …`` without a traceback and exits non-zero."""

from __future__ import annotations

import argparse
import contextlib
import errno
import re
import sys
from collections.abc import Iterator


class MixsepError(Exception):
    """Base of mixsep's user-facing errors."""


class ConfigError(MixsepError, ValueError):
    """A config value that cannot work (the message names the knob)."""


class DataNotFoundError(MixsepError, FileNotFoundError):
    """The datasets are missing or unreadable; the message says where we looked and how to fix it."""


class CheckpointError(MixsepError, ValueError):
    """The file is not a mixsep checkpoint (missing, truncated, or from something else)."""


class TrainingDivergedError(MixsepError):
    """The loss became NaN or infinite: the message names the step and what to change."""


class DiskError(MixsepError, OSError):
    """A file could not be written: the disk is full, or the folder is read-only."""


_DISK_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EROFS: "the file system is read-only",
    errno.EDQUOT: "over quota",
}


def disk_error(err: BaseException) -> DiskError | None:
    """A full disk or a read-only folder behind ``err``; torch.save reports ENOSPC as a RuntimeError of its
    zip writer ("file write failed")."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _DISK_ERRNOS:
            where = f" writing {err.filename}" if err.filename else ""
            return DiskError(
                f"{_DISK_ERRNOS[err.errno]}{where}: free some space, or write elsewhere (hydra.run.dir=...)"
            )
        text = str(err)
        if isinstance(err, RuntimeError) and ("file write failed" in text or "No space left" in text):
            return DiskError(
                "a file could not be written (the disk is full?): free some space, or write elsewhere "
                "(hydra.run.dir=...)"
            )
        err = err.__cause__ or err.__context__
    return None


def user_error(err: BaseException) -> MixsepError | None:
    """The user-fixable error behind ``err`` (Hydra's instantiate wraps what a constructor raises; a full disk
    hides behind the writer's own exception)."""
    seen, cause = set(), err
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, MixsepError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return unknown_argument(err) or disk_error(err)


def moved_setting(key: str) -> str:
    """Where a setting of earlier versions went, said beside a refused key (e.g. model.batch_size)."""
    return " (the training batch is data.batch_size)" if key.rpartition(".")[2] == "batch_size" else ""


def unknown_argument(err: BaseException) -> ConfigError | None:
    """A key the config gives that the class Hydra builds does not take (``+model.batch_size=64``): Hydra's
    InstantiationException around the constructor's TypeError, said as the key to remove."""
    said = str(err)
    key = re.search(r"got an unexpected keyword argument '(\w+)'", said)
    target = re.search(r"Error in call to target '([\w.]+)'", said)
    if type(err).__name__ != "InstantiationException" or not (key and target):
        return None
    where = re.search(r"full_key: ([\w.]+)", said)
    name = f"{where[1]}.{key[1]}" if where else key[1]
    hint = moved_setting(key[1])
    fix = f"remove it (~{name})" if where else "remove it from the config"
    return ConfigError(f"{target[1]} takes no argument {key[1]}{hint}: {fix}, or fix its spelling")


def positive_int(text: str) -> int:
    """An argparse ``type``: a whole number >= 1 (a batch size, a count), else argparse's one-line error."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line ``mixsep: …`` naming --help (exit status 2)."""

    def error(self, message: str):
        sys.exit(f"mixsep: {message} (see {self.prog} --help)")


@contextlib.contextmanager
def one_line_errors(os_error: str | None = None) -> Iterator[None]:
    """How a command ends on a user's mistake (a training job's: ``cluster.job.Job``, which also
    records it): a user-fixable error inside exits with one line ``mixsep: …``
    (status 1, no traceback). ``os_error`` says what to do about any other OSError (a file the entry point
    cannot read or write; ``{error}`` is filled in); anything else is a bug and keeps its traceback."""
    try:
        yield
    except BrokenPipeError:  # the reader (e.g. | head) stopped reading
        sys.exit(0)
    except Exception as err:
        fixable = user_error(err)
        if fixable is None and isinstance(err, MemoryError):
            fixable = "out of memory: a file asks for more than this machine has (or lower data.batch_size)"
        if fixable is None and isinstance(err, RecursionError):
            fixable = "a file is nested too deeply to be read: it is not one that mixsep wrote"
        if fixable is None and os_error and isinstance(err, OSError):
            fixable = os_error.format(error=f"{err.filename}: {err.strerror}" if err.filename else err)
        if fixable is None:
            raise
        sys.exit(f"mixsep: {fixable}")
