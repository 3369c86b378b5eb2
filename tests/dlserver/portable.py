"""Run the download engine as on Windows, on Linux: the POSIX-only APIs it could use are
taken away and Windows' file rules are enforced.

* ``os.pwrite``, ``os.pread``, ``os.O_NOFOLLOW``, ``os.posix_fallocate``, ``os.fdatasync``
  removed; ``import fcntl`` fails;
* a part file that is open cannot be renamed, replaced or removed (``PermissionError``, as
  Windows' sharing rules give): handles opened through ``os.open`` and the hashers'
  ``open`` are tracked.

``install()`` returns an undo function; ``python -c "import dlserver.portable as p;
p.install(); ..."`` runs a child process the same way (the kill -9 tests).
"""

from __future__ import annotations

import builtins
import os
import sys
import threading
from typing import Callable, Dict, List

REMOVED = ("pwrite", "pread", "O_NOFOLLOW", "posix_fallocate", "fdatasync")
_TRACKED_SUFFIXES = (".part",)


class _Handles:
    """Which part files are open (Windows refuses to rename or delete them)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_fd: Dict[int, str] = {}
        self.counts: Dict[str, int] = {}
        self.refusals: List[str] = []

    def opened(self, path: str) -> str:
        real = os.path.realpath(path)
        with self.lock:
            self.counts[real] = self.counts.get(real, 0) + 1
        return real

    def closed(self, real: str) -> None:
        with self.lock:
            self.counts[real] -= 1
            if not self.counts[real]:
                del self.counts[real]

    def check(self, *paths) -> None:
        for path in paths:
            real = os.path.realpath(os.fspath(path))
            with self.lock:
                busy = real in self.counts
            if busy:
                self.refusals.append(real)
                raise PermissionError(13, "The process cannot access the file because it is being used by "
                                          "another process (simulated Windows)", os.fspath(path))


def install() -> Callable[[], None]:
    """Take the POSIX APIs away and enforce Windows' open-file rules; returns the undo."""
    saved = {name: getattr(os, name) for name in REMOVED if hasattr(os, name)}
    for name in saved:
        delattr(os, name)
    had_fcntl = "fcntl" in sys.modules
    old_fcntl = sys.modules.get("fcntl")
    sys.modules["fcntl"] = None  # type: ignore[assignment]  # "import fcntl" raises ImportError

    handles = _Handles()
    real_open, real_close = os.open, os.close
    real_replace, real_rename, real_unlink, real_remove = os.replace, os.rename, os.unlink, os.remove

    def tracked_open(path, flags, mode=0o777, *, dir_fd=None):
        fd = real_open(path, flags, mode, dir_fd=dir_fd)
        if isinstance(path, (str, os.PathLike)) and os.fspath(path).endswith(_TRACKED_SUFFIXES):
            handles.by_fd[fd] = handles.opened(os.fspath(path))
        return fd

    def tracked_close(fd):
        real = handles.by_fd.pop(fd, None)
        real_close(fd)
        if real is not None:
            handles.closed(real)

    def replace(src, dst, **kw):
        handles.check(src, dst)
        return real_replace(src, dst, **kw)

    def rename(src, dst, **kw):
        handles.check(src, dst)
        return real_rename(src, dst, **kw)

    def unlink(path, **kw):
        handles.check(path)
        return real_unlink(path, **kw)

    def remove(path, **kw):
        handles.check(path)
        return real_remove(path, **kw)

    os.open, os.close = tracked_open, tracked_close
    os.replace, os.rename, os.unlink, os.remove = replace, rename, unlink, remove

    # the hashers read the part file through the builtin open: track those handles too
    from comfyfixersmart.download import verify

    class _TrackedFile:
        def __init__(self, fh, real):
            self._fh, self._real = fh, real

        def __getattr__(self, name):
            return getattr(self._fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

        def close(self):
            if self._real is not None:
                self._fh.close()
                handles.closed(self._real)
                self._real = None

    def verify_open(path, *args, **kwargs):
        fh = builtins.open(path, *args, **kwargs)
        if os.fspath(path).endswith(_TRACKED_SUFFIXES):
            return _TrackedFile(fh, handles.opened(os.fspath(path)))
        return fh

    verify.open = verify_open  # type: ignore[attr-defined]

    def undo() -> None:
        del verify.open  # type: ignore[attr-defined]
        os.open, os.close = real_open, real_close
        os.replace, os.rename, os.unlink, os.remove = real_replace, real_rename, real_unlink, real_remove
        for name, value in saved.items():
            setattr(os, name, value)
        if had_fcntl:
            sys.modules["fcntl"] = old_fcntl  # type: ignore[assignment]
        else:
            sys.modules.pop("fcntl", None)

    undo.handles = handles  # type: ignore[attr-defined]
    return undo
