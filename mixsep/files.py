"""Files written whole or not at all (a reader sees the old file or the new one, whatever ends the writer; a link at
the path is replaced, never written through), and where a command's outputs may go (``check_outputs``)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

from mixsep.errors import MixsepError


def write_atomically(
    path: str | Path, write: Callable[[Path], object], durable: bool = False, keep_suffix: bool = False
) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then a rename over it (atomic within a file system).
    ``durable``: flushed to disk first, and the rename too (checkpoints: what a re-queued job resumes from).
    ``keep_suffix``: the temporary file ends like ``path`` (writers that pick the format by suffix: PIL)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(8)}{path.suffix if keep_suffix else ''}")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # new, ours; the umask applies as open()'s
    try:
        write(tmp)
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        with contextlib.suppress(OSError):  # not every file system syncs a folder
            _fsync(path.parent)


def _fsync(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomically(path: str | Path, text: str) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(text))


def refuse_linked_folder(folder: Path, flag: str) -> None:
    """``folder`` is one mixsep chose (not one the user named): a symbolic link there (prepared in a downloaded
    folder) would send the outputs elsewhere, so it is refused."""
    if folder.is_symlink():
        raise MixsepError(
            f"{folder} is a symbolic link (to {os.readlink(folder)}); mixsep writes only into folders you name: "
            f"remove the link, or name the folder with {flag}"
        )


def check_outputs(targets: Iterable[Path], inputs: Iterable[Path], overwrite: bool, flag: str) -> list[str]:
    """Before anything is written: no output path is an input (as given, resolved, or the same file), no output
    is a folder, and an existing one (a file or a link: a link is replaced, never written through) only with
    ``overwrite``. ``flag``: the option that names the outputs, for the fix. Returns the outputs that exist (what
    ``overwrite`` will replace, for the command to say)."""
    targets, inputs = list(targets), list(inputs)
    given = {*map(_unresolved_last, inputs), *(path.resolve() for path in inputs)}
    same_files = {_file_id(path, follow_symlinks=True) for path in inputs} - {None}
    for target in targets:
        if _unresolved_last(target) in given or _file_id(target, follow_symlinks=False) in same_files:
            raise MixsepError(f"{target} would replace an input: choose another {flag}")
        if target.is_dir() and not target.is_symlink():
            raise MixsepError(f"{target} is a folder, where an output file goes: choose another {flag}")
    existing = [str(t) for t in targets if os.path.lexists(t)]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise MixsepError(
            f"{existing[0]}{more} already exists: add --overwrite to replace it, or choose another {flag}"
        )
    return existing


def _unresolved_last(path: Path) -> Path:
    """The path with its folders resolved but not its last part (a link there is the output, not its target)."""
    return Path(os.path.abspath(path)).parent.resolve() / path.name


def _file_id(path: Path, follow_symlinks: bool) -> tuple[int, int] | None:
    try:
        stat = path.stat(follow_symlinks=follow_symlinks)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino
