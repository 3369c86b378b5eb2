"""Fix an "elsewhere" reference without a second download: link, move or relink a file.

A file the scan found under another folder key (``ModelReference.found_path``) is made
loadable where the node looks:

* ``link``: a hard link in the node's folder where the filesystem allows it, else a copy
  (after a free-space check) verified by sha256;
* ``symlink``: a symbolic link, only when asked for;
* ``move``: ``link`` then, once the new file is verified, the old name removed (a hard link
  or a verified copy exists first: the only copy is never deleted);
* ``relink``: nothing on disk changes; allowed when the node's folder key already lists the
  file's folder (``unet`` and ``diffusion_models``, an extra path): the node is pointed at
  the returned ``name``.

The source must be a regular file (not a symlink) inside a model folder; the target is
checked against the real root of the key's folder (``write_policy.checked_target``), an
existing target is left alone (the same bytes: nothing to do; other bytes: refused).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Union

from .datamodel import ELSEWHERE, ModelReference, _Serializable
from .errors import (
    ComfyFixerError,
    FileExistsConflictError,
    InsufficientSpaceError,
    IntegrityError,
    UnsafePathError,
    ValidationError,
)
from .logs import get_logger
from .security import validate_relative_path
from .write_policy import checked_target, folder_key, model_folder_table

log = get_logger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
MODES = ("link", "move", "relink", "symlink")
#: free space kept beyond the file's size when copying (a full disk breaks ComfyUI too)
SPACE_MARGIN = 64 * 1024 * 1024
#: errors of ``os.link`` after which a copy is made instead
_NO_HARDLINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES,
                getattr(errno, "EOPNOTSUPP", errno.ENOTSUP)}
_CHUNK = 4 * 1024 * 1024

#: (path) -> sha256, e.g. ``ModelInventory.sha256`` (cached by size and mtime)
Hasher = Callable[[str], str]


class RelinkError(ComfyFixerError, OSError):
    """The filesystem refused a link or copy (permissions, a read-only folder ...)."""


@dataclass
class RelinkResult(_Serializable):
    """What was done: the file the node now loads, how, and its verified sha256."""

    path: str  # absolute path of the file in the node's folder (the source for ``relink``)
    mode: str  # link, copy, symlink, move or relink
    sha256: str
    folder: str  # folder key
    name: str  # what the node's widget should say (relative to the folder)
    source: str


def relink_file(source: PathLike, folders: Mapping[str, Sequence[PathLike]], folder: str, name: str,
                mode: str = "link", *, hasher: Optional[Hasher] = None,
                protected: Sequence[str] = ()) -> RelinkResult:
    """Make ``source`` loadable as ``folder``/``name``; see the module docstring.

    ``folders`` is the model folder table (protected folders and keys are dropped from it);
    ``hasher`` gives a file's sha256 (cached); ``protected`` are real paths never written.
    Raises ``ValidationError``/``UnsafePathError`` for bad input, ``FileExistsConflictError``
    when the target holds other bytes, ``InsufficientSpaceError``, ``IntegrityError``.
    """
    if mode not in MODES:
        raise ValidationError(f"mode must be one of {', '.join(MODES)}, not {str(mode)[:20]!r}")
    table = model_folder_table(folders, protected)
    key = folder_key(folder, table, field="folder")
    if not table[key]:
        raise ValidationError(f"folder: model folder {key!r} has no path configured")
    rel = validate_relative_path(name)
    src = _check_source(source, table)
    hash_of = hasher or _sha256
    if mode == "relink":
        where = _listed_as(src, table[key])
        if where is None:
            raise ValidationError(f"{key!r} does not list the folder of {src}: the node cannot load it where it "
                                  "is; use link or move")
        return RelinkResult(path=str(src), mode="relink", sha256=hash_of(str(src)), folder=key, name=where,
                            source=str(src))
    target = checked_target(table[key][0], rel, protected)
    if os.path.realpath(target) == str(src):
        raise ValidationError(f"{target} is the source file itself")
    digest = hash_of(str(src))
    done = _existing(target, src, digest, hash_of)
    if done:
        how = "link"
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        # the folders just made may have been swapped for symlinks: check the real path again
        target = checked_target(table[key][0], rel, protected)
        how = _place(src, target, digest, symlink=(mode == "symlink"))
    if mode == "move":
        _remove_source(src, target, digest, hash_of)
        how = "move"
    log.info("%s %s -> %s (sha256 %s)", how, src, target, digest[:12])
    return RelinkResult(path=str(target), mode=how, sha256=digest, folder=key, name=rel, source=str(src))


def relink_references(references: Sequence[ModelReference], folders: Mapping[str, Sequence[PathLike]],
                      mode: str = "link", *, hasher: Optional[Hasher] = None, protected: Sequence[str] = ()
                      ) -> List[Dict[str, object]]:
    """``relink_file`` for every ``elsewhere`` reference: one ``{"key", "result"|"error"}`` each."""
    out: List[Dict[str, object]] = []
    for ref in references:
        if ref.status != ELSEWHERE or not ref.local_path:
            continue
        try:
            result = relink_file(ref.local_path, folders, ref.expected_directory, ref.filename, mode,
                                 hasher=hasher, protected=protected)
            out.append({"key": ref.key, "result": result.to_dict()})
        except (ValidationError, OSError) as exc:
            out.append({"key": ref.key, "error": {"type": type(exc).__name__, "message": str(exc)}})
    return out


# -- steps ---------------------------------------------------------------------------------------------

def _check_source(source: PathLike, table: Mapping[str, Sequence[PathLike]]) -> Path:
    """The real path of ``source``: a regular file, not a symlink, inside a model folder."""
    if not isinstance(source, (str, os.PathLike)) or not os.fspath(source) or "\0" in os.fspath(source):
        raise ValidationError("source must be the absolute path of a model file")
    raw = os.fspath(source)
    if not os.path.isabs(raw):
        raise ValidationError("source must be an absolute path")
    try:
        st = os.lstat(raw)
    except FileNotFoundError:
        raise ValidationError(f"source {raw} does not exist") from None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"source {raw} is a symbolic link; name the file itself")
    if not stat.S_ISREG(st.st_mode):
        raise ValidationError(f"source {raw} is not a regular file")
    real = Path(os.path.realpath(raw))
    roots = [os.path.realpath(os.fspath(p)) for paths in table.values() for p in paths]
    if not any(_inside(str(real), root) for root in roots):
        raise UnsafePathError(f"source {raw} is not inside a model folder")
    return real


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root and path != root
    except ValueError:
        return False


def _listed_as(src: Path, roots: Sequence[PathLike]) -> Optional[str]:
    """``src`` relative to the first of ``roots`` (real paths) that holds it, '/' separated."""
    for root in roots:
        real = os.path.realpath(os.fspath(root))
        if _inside(str(src), real):
            return Path(os.path.relpath(src, real)).as_posix()
    return None


def _existing(target: Path, src: Path, digest: str, hash_of: Hasher) -> bool:
    """True when ``target`` already holds the same bytes; refuse anything else there."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        raise FileExistsConflictError(f"{target} exists and is not a regular file; not replaced")
    if os.path.samefile(target, src) or hash_of(str(target)) == digest:
        return True
    raise FileExistsConflictError(f"{target} exists with other contents; not replaced")


def _place(src: Path, target: Path, digest: str, *, symlink: bool) -> str:
    """Create ``target`` (never replacing anything) and verify it; returns how."""
    if symlink:
        try:
            os.symlink(src, target)  # FileExistsError if anything appeared there meanwhile
        except FileExistsError:
            raise FileExistsConflictError(f"{target} appeared meanwhile; not replaced") from None
        except OSError as exc:  # e.g. Windows without the symlink privilege
            raise RelinkError(f"cannot create a symbolic link here ({exc.strerror or exc}); use link") from None
        if not os.path.samefile(target, src):
            os.unlink(target)
            raise IntegrityError(f"{target} does not lead to {src}")
        return "symlink"
    try:
        if os.link in os.supports_follow_symlinks:
            os.link(src, target, follow_symlinks=False)  # a source swapped for a symlink meanwhile is not followed
        else:  # Windows: os.link never follows symlinks there
            os.link(src, target)
    except OSError as exc:
        if isinstance(exc, FileExistsError):
            raise FileExistsConflictError(f"{target} appeared meanwhile; not replaced") from None
        if exc.errno not in _NO_HARDLINK:
            raise RelinkError(f"cannot link {src.name} into {target.parent}: {exc.strerror or exc}") from None
        log.info("no hard link for %s (%s); copying", target, exc.strerror)
    else:
        if not os.path.samefile(target, src):  # pragma: no cover - a filesystem that lies
            raise IntegrityError(f"{target} is not the same file as {src}")
        return "link"
    _copy_verified(src, target, digest)
    return "copy"


def _copy_verified(src: Path, target: Path, digest: str) -> None:
    """Copy to a temp file beside ``target`` while hashing, check the sha256, then give it
    the target name with ``os.link`` (fails if the name was taken meanwhile)."""
    size = os.stat(src).st_size
    free = shutil.disk_usage(target.parent).free
    if free < size + SPACE_MARGIN:
        raise InsufficientSpaceError(f"copying {src.name} needs {size + SPACE_MARGIN} bytes free in "
                                     f"{target.parent}; {free} are")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".relink", dir=target.parent)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            while True:
                chunk = inp.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                h.update(chunk)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != digest:
            raise IntegrityError(f"the copy of {src.name} does not match its sha256; nothing was changed")
        shutil.copystat(src, tmp)
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise FileExistsConflictError(f"{target} appeared meanwhile; not replaced") from None
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _remove_source(src: Path, target: Path, digest: str, hash_of: Hasher) -> None:
    """Delete the old name once ``target`` is a verified, separate name for the same bytes."""
    st = os.lstat(target)
    if stat.S_ISLNK(st.st_mode):
        raise ValidationError("a move never leaves a symlink to a removed file; use link or symlink")
    if os.path.realpath(target) == str(src):
        raise ValidationError("source and target are the same path")
    if not os.path.samefile(target, src) and hash_of(str(target)) != digest:
        raise IntegrityError(f"{target} does not match {src.name}; the source is kept")
    os.unlink(src)


def _sha256(path: str) -> str:
    from .hashing import sha256_file

    return sha256_file(path)


__all__ = ["MODES", "RelinkError", "RelinkResult", "relink_file", "relink_references"]
