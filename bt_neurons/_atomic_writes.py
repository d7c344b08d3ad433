"""Writes that happen as a whole or not at all: several files, or one folder.

`atomic_write_files` writes each file to a temporary beside its destination;
only when every file is written are they moved into place, and if moving one
fails, the ones already moved are taken back and the previous files restored.
`atomic_write_folder` writes a temporary folder beside the destination and
renames it into place (the previous folder is moved aside first, and back if
the rename fails). On any error, Ctrl-C included, the temporaries are removed
and the exception propagates: the destinations are as they were.

New files and folders get the permissions the user's umask gives (0644 and
0755 for the usual umask 022), not the private 0600 / 0700 of ``mkstemp`` and
``mkdtemp``.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["atomic_write_files", "atomic_write_folder", "file_mode", "folder_mode"]

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def file_mode() -> int:
    """The mode of a new file under the user's umask (``0o666 & ~umask``)."""
    return 0o666 & ~_UMASK


def folder_mode() -> int:
    """The mode of a new folder under the user's umask (``0o777 & ~umask``)."""
    return 0o777 & ~_UMASK


def _reserve(dest: Path, suffix: str) -> Path:
    """A new, empty file beside ``dest`` whose name nothing else uses."""
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    os.close(fd)
    return Path(name)


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except OSError:  # pragma: no cover - best effort while undoing
        pass


def atomic_write_files(writers: Iterable[tuple[Path, Callable[[Path], None]]]) -> list[Path]:
    """Write several files so that either all of them appear (or are replaced) or none does.

    Each writer gets a temporary path in its destination's folder; when every
    writer has succeeded the temporaries are renamed into place. A destination
    that exists is moved aside first and put back if a later rename fails.

    Args:
        writers: ``(destination, write_function)`` pairs; ``write_function(path)``
            writes the file at ``path``.

    Returns:
        The destination paths.

    Raises:
        IsADirectoryError: a destination is a folder (checked before anything is written).
        ValueError: the same destination is given twice.
    """
    writers = [(Path(dest), write) for dest, write in writers]
    dests = [dest for dest, _ in writers]
    if len({os.path.abspath(d) for d in dests}) != len(dests):
        raise ValueError(f"the destinations must differ, got {[str(d) for d in dests]}")
    for dest in dests:
        if dest.is_dir():
            raise IsADirectoryError(errno.EISDIR, "a folder is in the way of the file to write", str(dest))
    temps: list[Path] = []
    aside: list[tuple[Path, Path]] = []  # (destination, where its previous file waits)
    placed: list[Path] = []
    done = False
    try:
        for dest, write in writers:
            dest.parent.mkdir(parents=True, exist_ok=True)
            temps.append(_reserve(dest, ".tmp"))
            write(temps[-1])
            os.chmod(temps[-1], file_mode())
        for dest, tmp in zip(dests, temps, strict=True):
            if dest.exists() or dest.is_symlink():
                old = _reserve(dest, ".old")
                os.replace(dest, old)
                aside.append((dest, old))
            os.replace(tmp, dest)
            placed.append(dest)
        done = True
    except BaseException:
        for dest in placed:
            _quietly(lambda dest=dest: dest.unlink(missing_ok=True))
        for dest, old in reversed(aside):
            _quietly(lambda dest=dest, old=old: os.replace(old, dest))
        raise
    finally:
        for tmp in temps:
            _quietly(lambda tmp=tmp: tmp.unlink(missing_ok=True))
        if done:
            for _, old in aside:
                _quietly(lambda old=old: old.unlink(missing_ok=True))
    return dests


def _share(folder: Path) -> None:
    """Give ``folder`` and everything in it the modes of the user's umask (not following links)."""
    os.chmod(folder, folder_mode())
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            if not os.path.islink(os.path.join(root, d)):
                os.chmod(os.path.join(root, d), folder_mode())
        for f in files:
            if not os.path.islink(os.path.join(root, f)):
                os.chmod(os.path.join(root, f), file_mode())


def atomic_write_folder(
    dst: str | os.PathLike, write: Callable[[Path], None], *, replace: bool = False
) -> Path:
    """Write the folder ``dst`` as a whole: ``write(tmp)`` fills a temporary folder, renamed to ``dst``.

    Args:
        dst: the folder to create (its parent must exist).
        write: fills the empty folder it is given.
        replace: replace ``dst`` if it exists (default False: `FileExistsError`).
            The previous ``dst`` is removed only once the new one is in place;
            a symbolic link ``dst`` is replaced, not what it points to.

    Returns:
        ``dst`` as a ``Path``.
    """
    dst = Path(dst)
    parent = dst.parent if str(dst.parent) else Path(".")
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=parent))
    try:
        write(tmp)
        _share(tmp)
        if dst.exists() or dst.is_symlink():
            if not replace:
                raise FileExistsError(errno.EEXIST, "already exists", str(dst))
            old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old.", dir=parent))
            try:
                os.replace(dst, old / "previous")
                try:
                    os.replace(tmp, dst)
                except BaseException:
                    os.replace(old / "previous", dst)
                    raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dst
