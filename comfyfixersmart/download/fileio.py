"""The download engine's file-system layer, the same on Linux, macOS and Windows.

* ``pwrite_all`` / ``pread``: positional I/O; where ``os.pwrite``/``os.pread`` are missing
  (Windows) a seek + write under a lock per file descriptor, so segment workers sharing one
  descriptor never interleave a seek and a write.
* ``open_part``: opens a ``.part`` file without following a symbolic link (``O_NOFOLLOW``;
  without it: ``lstat`` before, links and reparse points refused) and refuses a hard-linked
  one, so a planted link cannot send the bytes elsewhere.
* ``PartLock``: one process per part file: ``fcntl.flock`` on the part itself, else a lock
  file ``<name>.part.lock`` created with ``O_CREAT|O_EXCL`` (held with ``msvcrt.locking`` on
  Windows, so a crashed holder's lock is seen as stale; elsewhere its pid is checked).
* ``check_inside``: the real (resolved) folder of a path still lies inside the real root
  it was planned in: run right before the part is opened and before the rename.
* ``long_path``: Windows paths longer than 259 characters get the ``\\\\?\\`` prefix.

Callers close a file before renaming or removing it (Windows cannot rename an open file).
"""

from __future__ import annotations

import errno
import importlib
import os
import socket
import stat
import threading
from pathlib import Path
from typing import Dict, Optional, Union

from ..errors import DownloadError, UnsafePathError
from ..fileutils import long_path

PathLike = Union[str, "os.PathLike[str]"]

_FILE_ATTRIBUTE_REPARSE_POINT = 0x400

_fd_locks: Dict[int, threading.Lock] = {}
_fd_locks_guard = threading.Lock()


def _optional(module: str):
    """``module`` or None; imported at call time so tests can take a platform API away."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _fd_lock(fd: int) -> threading.Lock:
    with _fd_locks_guard:
        return _fd_locks.setdefault(fd, threading.Lock())


# -- positional I/O ---------------------------------------------------------------------------

def pwrite_all(fd: int, data, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (short writes are legal: loop)."""
    view = memoryview(data)
    pwrite = getattr(os, "pwrite", None)
    if pwrite is not None:
        while view:
            n = pwrite(fd, view, offset)
            view = view[n:]
            offset += n
        return
    with _fd_lock(fd):  # seek + write are two calls: no other thread in between
        os.lseek(fd, offset, os.SEEK_SET)
        while view:
            n = os.write(fd, view)
            view = view[n:]


def pread(fd: int, length: int, offset: int) -> bytes:
    """Up to ``length`` bytes at ``offset`` (fewer at the end of the file)."""
    read = getattr(os, "pread", None)
    if read is not None:
        out = b""
        while len(out) < length:
            chunk = read(fd, length - len(out), offset + len(out))
            if not chunk:
                break
            out += chunk
        return out
    with _fd_lock(fd):
        os.lseek(fd, offset, os.SEEK_SET)
        out = b""
        while len(out) < length:
            chunk = os.read(fd, length - len(out))
            if not chunk:
                break
            out += chunk
        return out


# -- paths ------------------------------------------------------------------------------------

def is_link(path: PathLike) -> bool:
    """A symbolic link, or (Windows) a junction / any reparse point."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISLNK(st.st_mode) or bool(getattr(st, "st_file_attributes", 0) & _FILE_ATTRIBUTE_REPARSE_POINT)


def real_path(path: PathLike) -> Path:
    """``path`` with every symlink resolved (missing tails kept as they are)."""
    return Path(os.path.realpath(os.fspath(path)))


def check_inside(path: Path, root_real: Optional[Path], parent_real: Optional[Path] = None) -> None:
    """Raise UnsafePathError unless the real folder of ``path`` is inside ``root_real`` (and,
    when given, is still ``parent_real``, the real folder found when the download was
    planned): a folder swapped for a link meanwhile sends nothing elsewhere."""
    if root_real is None:
        return
    folder = real_path(path.parent)
    try:
        inside = os.path.commonpath([str(root_real), str(folder)]) == str(root_real)
    except ValueError:  # another drive
        inside = False
    if not inside or (parent_real is not None and folder != parent_real):
        raise UnsafePathError(
            f"{path.name}: its folder {path.parent} now leads to {folder}, outside {root_real} "
            "(a folder was replaced by a link since the download was planned); nothing written there")


# -- the part file ------------------------------------------------------------------------------

def open_part(part: Path) -> int:
    """Open (create) ``part`` for reading and writing without following a link."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0)
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    if not nofollow and is_link(part):
        raise _linked(part)
    try:
        fd = os.open(long_path(part), flags | nofollow, 0o644)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) or (nofollow and is_link(part)):
            raise _linked(part) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(f"{part.name} is not a regular file; refused")
        if st.st_nlink > 1:
            # a hard link to another file: writing would change that file too
            raise UnsafePathError(f"{part.name} is a hard link to another file; refused (remove it)")
        if not nofollow:
            # lstat-then-open leaves a window: the file we opened must be the one we checked
            after = os.lstat(part)
            if stat.S_ISLNK(after.st_mode) or (after.st_ino, after.st_dev) != (st.st_ino, st.st_dev):
                raise _linked(part)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _linked(part: Path) -> UnsafePathError:
    return UnsafePathError(f"{part.name} is a symbolic link; a part file is never written through a link "
                           "(remove it to download again)")


class PartLock:
    """Keeps a second process (or a second manager) off one part file."""

    def __init__(self, part: Path, fd: int):
        self.part = part
        self.fd = fd
        self.lock_file = part.with_name(part.name + ".lock")
        self._lock_fd = -1
        self._owns_file = False
        #: the lock lives on the part's own descriptor (flock): closing the part drops it
        self.held_by_fd = False

    def acquire(self) -> "PartLock":
        fcntl = _optional("fcntl")
        if fcntl is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise self._busy() from None
            self.held_by_fd = True
            return self  # released when the part's descriptor closes
        for _attempt in range(2):
            try:
                self._lock_fd = os.open(long_path(self.lock_file),
                                        os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            except FileExistsError:
                if self._take_stale():
                    continue
                raise self._busy() from None
            self._owns_file = True
            os.write(self._lock_fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
            msvcrt = _optional("msvcrt")
            if msvcrt is not None:
                os.lseek(self._lock_fd, 0, os.SEEK_SET)
                msvcrt.locking(self._lock_fd, msvcrt.LK_NBLCK, 1)
            else:
                os.close(self._lock_fd)
                self._lock_fd = -1
            return self
        raise self._busy()

    def release(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # also drops the msvcrt lock
            self._lock_fd = -1
        if self._owns_file:
            self._owns_file = False
            try:
                os.unlink(long_path(self.lock_file))
            except FileNotFoundError:
                pass

    def _take_stale(self) -> bool:
        """Remove a lock file whose holder is gone; True when removed."""
        msvcrt = _optional("msvcrt")
        if msvcrt is not None:
            try:
                fd = os.open(long_path(self.lock_file), os.O_RDWR)
            except OSError:
                return False
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # the holder's lock died with it
            except OSError:
                os.close(fd)
                return False
            os.close(fd)
        else:
            try:
                pid_text, _, host = Path(self.lock_file).read_text(encoding="ascii").partition(" ")
                pid = int(pid_text)
            except (OSError, ValueError):
                return False
            if host.strip() != socket.gethostname() or (pid != os.getpid() and _alive(pid)):
                return False
        try:
            os.unlink(long_path(self.lock_file))
        except FileNotFoundError:
            pass
        return True

    def _busy(self) -> DownloadError:
        name = self.part.name[:-len(".part")] if self.part.name.endswith(".part") else self.part.name
        return DownloadError(f"{name} is being downloaded by another process", path=self.part)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # POSIX only: on Windows the msvcrt branch decides
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
