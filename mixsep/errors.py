"""Errors a user can fix, their messages saying how; every entry point prints them as one line ``mixsep: …``
without a traceback and exits non-zero."""

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
_OUT_OF_LIMITS = {  # no bug of mixsep's, whatever raised them: what they mean to the user
    MemoryError: "out of memory: a file asks for more than this machine has (or lower data.batch_size)",
    RecursionError: "a file is nested too deeply to be read: it is not one that mixsep wrote",
}


def _chain(err: BaseException | None) -> Iterator[BaseException]:
    """``err`` and the exceptions behind it (causes, else contexts), each once: a chain may loop."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def disk_error(err: BaseException) -> DiskError | None:
    """A full disk or a read-only folder behind ``err``; torch.save reports ENOSPC as a RuntimeError of its
    zip writer ("file write failed")."""
    for cause in _chain(err):
        if isinstance(cause, OSError) and cause.errno in _DISK_ERRNOS:
            what = _DISK_ERRNOS[cause.errno] + (f" writing {cause.filename}" if cause.filename else "")
        elif isinstance(cause, RuntimeError) and re.search("file write failed|No space left", str(cause)):
            what = "a file could not be written (the disk is full?)"
        else:
            continue
        return DiskError(f"{what}: free some space, or write elsewhere (hydra.run.dir=...)")
    return None


def user_error(err: BaseException) -> MixsepError | None:
    """The user-fixable error behind ``err`` (Hydra's instantiate wraps what a constructor raises; a full disk
    hides behind the writer's own exception)."""
    fixable = next((cause for cause in _chain(err) if isinstance(cause, MixsepError)), None)
    return fixable or unknown_argument(err) or disk_error(err)


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
    fix = f"remove it (~{where[1]}.{key[1]})" if where else "remove it from the config"
    return ConfigError(f"{target[1]} takes no argument {key[1]}{moved_setting(key[1])}: {fix}, or fix its spelling")


def positive_int(text: str) -> int:
    """An argparse ``type``: a whole number >= 1 (a batch size, a count), else argparse's one-line error."""
    if not text.strip().isdecimal() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line ``mixsep: …`` naming --help (exit status 2)."""

    def error(self, message: str):
        sys.exit(f"mixsep: {message} (see {self.prog} --help)")


@contextlib.contextmanager
def one_line_errors(os_error: str | None = None) -> Iterator[None]:
    """A user-fixable error inside ends the command with one line ``mixsep: …`` (status 1, no traceback; a
    training job's: ``cluster.job.Job``). ``os_error`` says what to do about any other OSError (``{error}`` is
    filled in); anything else is a bug and keeps its traceback."""
    try:
        yield
    except BrokenPipeError:  # the reader (e.g. | head) stopped reading
        sys.exit(0)
    except Exception as err:
        fixable = user_error(err) or _OUT_OF_LIMITS.get(type(err))
        if fixable is None and os_error and isinstance(err, OSError):
            fixable = os_error.format(error=f"{err.filename}: {err.strerror}" if err.filename else err)
        if fixable is None:
            raise
        sys.exit(f"mixsep: {fixable}")
