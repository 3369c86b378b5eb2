"""Small file helpers: atomic JSON writes and directory creation."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


#: Windows' classic MAX_PATH minus the terminating NUL
WINDOWS_MAX_PATH = 259


def long_path(path: PathLike, *, windows: Optional[bool] = None) -> str:
    """``path`` as a string the OS accepts for writing: on Windows an absolute path longer
    than MAX_PATH gets the ``\\\\?\\`` (or ``\\\\?\\UNC\\``) prefix."""
    text = os.fspath(path)
    if not (os.name == "nt" if windows is None else windows):
        return text
    if len(text) <= WINDOWS_MAX_PATH or text.startswith("\\\\?\\"):
        return text
    text = text.replace("/", "\\")
    if text.startswith("\\\\"):
        return "\\\\?\\UNC\\" + text[2:]
    if len(text) >= 3 and text[1] == ":" and text[2] == "\\":
        return "\\\\?\\" + text
    return text  # relative: the caller resolves it first


def ensure_directory(path: PathLike) -> Path:
    """Create ``path`` (and parents) if needed; return it as a Path."""
    p = Path(path).expanduser()
    p.mkdir(parents=True, exist_ok=True)
    return p


def atomic_write_bytes(path: PathLike, data: bytes, *, mode: Optional[int] = None) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync, then rename.

    Readers see the old file or the new one, never a half-written one.  The file gets
    ``mode`` if given (e.g. ``0o600`` for secrets: the temp file never has wider rights),
    else the mode of the file it replaces, else the usual ``0o666 & ~umask``.
    """
    target = Path(path).expanduser()
    ensure_directory(target.parent)
    if mode is None:
        try:
            mode = target.stat().st_mode & 0o7777
        except OSError:
            mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=long_path(target.parent))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, long_path(target))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(target.parent)
    return target


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); best effort, not possible on Windows."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_json_file(data: Any, path: PathLike, indent: int = 2) -> Path:
    """Save ``data`` as JSON atomically (temp file + rename); return the path."""
    text = json.dumps(data, indent=indent, ensure_ascii=False, default=_default)
    return atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def _default(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
