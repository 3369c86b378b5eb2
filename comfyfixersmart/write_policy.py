"""Where the library may write: model folders only, chosen by folder key.

A workflow (or a page) names a folder; it never names a path.  ``folder_key`` accepts a
``directory`` only when it *is* a key of the model folder table (legacy names such as
``unet`` mapped the way ComfyUI maps them): ``"../../x"``, ``"/etc"``, ``"C:\\x"``,
``"models/loras"`` or ``"loras/../x"`` are refused.  ComfyUI's ``output``, ``input`` and
``temp`` folders (served back by ``/view``) and ``custom_nodes`` (code) are never model
folders, whatever key a custom node registers for them: ``model_folder_table`` drops such
keys, and every folder whose *real* path lies inside, or contains, one of those roots.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from .errors import UnsafePathError, ValidationError
from .extra_paths import NON_MODEL_KEYS
from .folders import canonical_folder
from .logs import get_logger
from .security import safe_join

log = get_logger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: ComfyUI folders that hold no models: writing there serves files back (output, input,
#: temp through ``/view``) or runs them (custom_nodes).
PROTECTED_DIRS = ("output", "input", "temp", "custom_nodes")
#: folder keys that never receive a file, even when a custom node registered them
REFUSED_KEYS = frozenset(PROTECTED_DIRS) | NON_MODEL_KEYS


def protected_roots(comfyui_root: Optional[PathLike], extra: Iterable[PathLike] = ()) -> List[str]:
    """The real paths of ``<root>/output|input|temp|custom_nodes`` plus ``extra`` (ComfyUI's
    own ``--output-directory`` etc.)."""
    roots: List[str] = []
    if comfyui_root is not None:
        base = Path(comfyui_root).expanduser()
        roots.extend(str(base / name) for name in PROTECTED_DIRS)
    roots.extend(os.fspath(p) for p in extra if p)
    out: List[str] = []
    for root in roots:
        real = os.path.realpath(root)
        if real not in out:
            out.append(real)
    return out


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # other drive on Windows
        return False


def overlaps_protected(path: PathLike, protected: Sequence[str]) -> Optional[str]:
    """The protected root ``path`` (resolved) lies in or contains, else None."""
    real = os.path.realpath(os.fspath(path))
    for root in protected:
        if _inside(real, root) or _inside(root, real):
            return root
    return None


def model_folder_table(folders: Mapping[str, Sequence[PathLike]], protected: Sequence[str] = ()
                       ) -> Dict[str, List[str]]:
    """``folders`` without refused keys and without folders overlapping a protected root
    (a key left without folders is dropped: nothing may be written for it)."""
    out: Dict[str, List[str]] = {}
    for key, paths in folders.items():
        key = str(key)
        if key in REFUSED_KEYS or canonical_folder(key) in REFUSED_KEYS:
            continue
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        kept: List[str] = []
        for p in paths:
            hit = overlaps_protected(p, protected)
            if hit is not None:
                log.warning("folder %r: %s overlaps %s; not used as a model folder", key, p, hit)
                continue
            if os.fspath(p) not in kept:
                kept.append(os.fspath(p))
        if kept or not paths:
            out[key] = kept
    return out


def folder_key(directory: object, keys: Iterable[str], canonical: Callable[[str], str] = canonical_folder,
               field: str = "directory") -> str:
    """``directory`` when it is exactly a model folder key (legacy names mapped); else
    ``ValidationError`` (``UnsafePathError`` for anything shaped like a path)."""
    if not isinstance(directory, str) or not directory.strip():
        raise ValidationError(f"{field} must be a model folder key such as 'checkpoints'")
    name = directory.strip()
    if any(c in name for c in "/\\:\0") or name in (".", "..") or name.startswith("~"):
        raise UnsafePathError(f"{field}: {name[:80]!r} is a path; only a model folder key is accepted")
    known = set(keys)
    key = name if name in known else canonical(name)
    if name.lower() in REFUSED_KEYS or key.lower() in REFUSED_KEYS:  # Output is output on Windows/macOS
        raise ValidationError(f"{field}: {name!r} is not a model folder; files are never written there")
    if key not in known:
        raise ValidationError(f"{field}: unknown model folder {name[:80]!r}")
    return key


def checked_target(root: PathLike, relative: str, protected: Sequence[str] = ()) -> Path:
    """``root/relative`` contained in the real ``root`` (``safe_join``), refused when the real
    root is, or lies in, a protected folder (a models folder symlinked to ``output``)."""
    hit = overlaps_protected(root, protected)
    if hit is not None:
        raise UnsafePathError(f"{os.fspath(root)!r} leads into {hit!r}, which is not a model folder")
    return safe_join(root, relative)


__all__ = ["PROTECTED_DIRS", "REFUSED_KEYS", "checked_target", "folder_key", "model_folder_table",
           "overlaps_protected", "protected_roots"]
