"""Files written whole or not at all: a reader (a report, a resumed run, the next job) sees the old file or the new
one, never a part, whatever ends the writer (kill -9, a node failure, a full disk)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | Path, write: Callable[[Path], object], durable: bool = False) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then a rename over it (atomic within a file system).
    ``durable``: flushed to disk first, and the rename too (checkpoints: what a re-queued job resumes from)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would create it (mkstemp's files are private)
        write(Path(tmp))
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    if durable:
        with contextlib.suppress(OSError):
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def write_text_atomically(path: str | Path, text: str) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(text))
