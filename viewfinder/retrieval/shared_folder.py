"""Index folders shared by several processes or machines (server replicas, the CLI).

Two pieces, both built on the folder itself, so that any process that sees the folder
(same disk, or a shared file system with POSIX locks such as NFSv4) takes part:

* :func:`writer_lock` - hold it around a whole read-change-save cycle. Saves are already
  atomic (``storage.save_folder``), but two processes that each load, append and save
  would otherwise lose one of the appends and hand out the same ids.
* :class:`FolderVersion` - which ``vector.index`` a loaded copy came from. Every save
  renames a new file into place, so the file's (device, inode) changes; a reader compares
  it with one ``stat`` and reloads when another process has saved. The loaded file is kept
  open, so its inode number cannot be reused by a later save while we compare against it
  (size and mtime are compared too, for when no file descriptor is to be had).
"""
from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from viewfinder.errors import IndexFolderGone, RetrievalIndexError
from viewfinder.retrieval.storage import VECTOR_FILE

try:  # POSIX only; elsewhere a folder has one writer process by convention.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

WRITER_LOCK_FILE = ".viewfinder-writer.lock"


@contextmanager
def writer_lock(directory: str | os.PathLike[str]) -> Iterator[None]:
    """Exclusive, cross-process lock for changing the index in ``directory``.

    Blocks until no other process holds it. Raises :class:`IndexFolderGone` when the folder
    does not exist, or was deleted or replaced while we waited (deleting an index renames
    its folder away while holding this lock).
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise IndexFolderGone(f"index folder not found: {folder}")
    if fcntl is None:  # pragma: no cover
        yield
        return
    path = folder / WRITER_LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:
        raise IndexFolderGone(f"index folder not found: {folder}") from None
    except OSError as exc:
        raise RetrievalIndexError(f"cannot lock index folder {folder} for writing: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            still_there = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            still_there = False
        if not still_there:
            raise IndexFolderGone(f"index folder {folder} was deleted while waiting to change it")
        yield
    finally:
        os.close(fd)  # closing releases the lock


class FolderVersion:
    """The ``vector.index`` of ``directory`` as it is now; compare with :meth:`is_current`.

    The file is held open where a file descriptor is to be had, so its inode number cannot be
    reused by a later save; out of descriptors, size and mtime guard against that reuse too.
    """

    __slots__ = ("_fd", "_id", "path")

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / VECTOR_FILE
        self._fd = -1
        try:
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
                st = os.fstat(self._fd)
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE):
                    raise
                st = os.stat(self.path)  # out of descriptors
        except FileNotFoundError:
            raise IndexFolderGone(f"index folder has no {VECTOR_FILE}: {self.path.parent}") from None
        except OSError as exc:
            raise RetrievalIndexError(f"cannot open {self.path}: {exc}") from exc
        self._id = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    @property
    def held_open(self) -> bool:
        return self._fd >= 0

    def is_current(self) -> bool:
        """False once another save replaced the file, or the folder is gone (one ``stat``)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == self._id

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()
