"""The node definitions of a ComfyUI folder, read from its sources (never imported).

``nodes.py``, ``comfy_extras/`` and ``comfy_api_nodes/`` are ComfyUI's own nodes; every entry
of ``custom_nodes/`` (a package folder or a single ``.py`` file, as ComfyUI loads them) is a
pack read as one unit.  Each file's reading is cached by (mtime, size) in
``<cache_dir>/nodedefs.json`` so a second scan of the same install reads nothing again.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ..errors import ComfyFixerError
from ..extra_paths import comfyui_folder_paths
from ..fileutils import atomic_write_bytes
from ..folders import CORE_FOLDERS
from ..logs import get_logger
from .loaders import LoaderTable
from .nodedefs import READER_VERSION, FileDefs, NodeDefs, collect, read_source
from .nodetable import defs_table

log = get_logger(__name__)

CACHE_NAME = "nodedefs.json"
#: a file must mention one of these to say anything about nodes or folders
_MARKERS = (b"INPUT_TYPES", b"define_schema", b"NODE_CLASS_MAPPINGS", b"folder_names_and_paths",
            b"add_model_folder_path")
#: folders of a pack that hold no node definitions ComfyUI loads (a pack's tests may even define
#: stand-in nodes, as ours do)
_SKIP_DIRS = frozenset({".git", "__pycache__", "node_modules", "venv", ".venv", "env", "site-packages",
                        "build", "dist", ".github", "web", "js", "docs", "examples", "tests", "test"})
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_FILES_PER_PACK = 3000


@dataclass
class RootDefs:
    """The node definitions of one ComfyUI folder."""

    core: NodeDefs
    #: pack name (its custom_nodes entry) -> its definitions
    packs: Dict[str, NodeDefs] = field(default_factory=dict)

    def table(self, trusted_folders: Optional[Iterable[str]] = None) -> LoaderTable:
        """The derived LoaderTable; ``trusted_folders``: see ``LoaderTable.trusted_folders``."""
        table = defs_table(self.core, self.packs.values())
        if trusted_folders is not None:
            table.trusted_folders = frozenset(trusted_folders)
        return table


def _py_files(top: Path, limit: int = MAX_FILES_PER_PACK) -> List[Path]:
    out: List[Path] = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(".py"):
                out.append(Path(dirpath) / name)
                if len(out) >= limit:
                    return out
    return out


def source_groups(root: Path) -> List[Tuple[str, bool, List[Path]]]:
    """``(name, is_core, files)`` for ComfyUI's own nodes and each custom-node pack."""
    core: List[Path] = []
    if (root / "nodes.py").is_file():
        core.append(root / "nodes.py")
    for sub in ("comfy_extras", "comfy_api_nodes"):
        if (root / sub).is_dir():
            core.extend(_py_files(root / sub))
    groups: List[Tuple[str, bool, List[Path]]] = [("ComfyUI", True, core)]
    custom = root / "custom_nodes"
    try:
        entries = sorted(os.scandir(custom), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        entries = []
    for entry in entries:
        # what ComfyUI skips: hidden entries, __pycache__, *.disabled
        if entry.name.startswith(".") or entry.name == "__pycache__" or entry.name.endswith(".disabled"):
            continue
        path = Path(entry.path)
        if entry.is_dir():
            if (path / "__init__.py").is_file():
                groups.append((entry.name, False, _py_files(path)))
        elif entry.name.endswith(".py"):
            groups.append((entry.name[:-3], False, [path]))
    return groups


class FileCache:
    """path -> (mtime_ns, size, FileDefs json) of earlier readings, kept in one JSON file.

    Only files holding one of ``markers`` are parsed; one cache file per set of markers.
    """

    def __init__(self, path: Optional[Path], markers: Tuple[bytes, ...] = _MARKERS):
        self.path = path
        self.markers = markers
        self.entries: Dict[str, Any] = {}
        self.dirty = False
        if path is not None:
            try:
                data = json.loads(path.read_bytes())
                if isinstance(data, dict) and data.get("reader") == READER_VERSION \
                        and isinstance(data.get("files"), dict):
                    self.entries = data["files"]
            except (OSError, ValueError):
                pass

    def read(self, file: Path) -> FileDefs:
        try:
            st = file.stat()
        except OSError:
            return FileDefs()
        key = str(file)
        hit = self.entries.get(key)
        if isinstance(hit, list) and len(hit) == 3 and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
            try:
                return FileDefs() if hit[2] is None else FileDefs.from_json(hit[2])
            except (KeyError, TypeError, ValueError, IndexError):
                pass
        defs = None
        if st.st_size <= MAX_FILE_BYTES:
            try:
                data = file.read_bytes()
            except OSError:
                data = b""
            if any(m in data for m in self.markers):
                defs = read_source(data, str(file))
        self.entries[key] = [st.st_mtime_ns, st.st_size, None if defs is None else defs.to_json()]
        self.dirty = True
        return defs if defs is not None else FileDefs()

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        # entries of files that no longer exist go; other roots' entries stay
        live = {k: v for k, v in self.entries.items() if os.path.exists(k)}
        try:
            atomic_write_bytes(self.path, json.dumps({"reader": READER_VERSION, "files": live},
                                                     separators=(",", ":")).encode("utf-8"))
        except OSError as exc:
            log.debug("node definition cache not written: %s", exc)


_lock = threading.Lock()


def read_root(root: os.PathLike | str, cache_dir: Optional[os.PathLike | str] = None) -> RootDefs:
    """Read the node definitions of the ComfyUI folder ``root`` (cached in ``cache_dir``)."""
    root_path = Path(os.path.abspath(os.fspath(Path(root).expanduser())))
    with _lock:  # one reader of the cache file at a time in this process
        cache = FileCache(Path(cache_dir) / CACHE_NAME if cache_dir is not None else None)
        out = RootDefs(NodeDefs())
        for name, is_core, files in source_groups(root_path):
            defs = collect(cache.read(f) for f in files)
            if is_core:
                out.core = defs
            else:
                out.packs[name] = defs
        cache.save()
    return out


def root_table(config: Any) -> Optional[LoaderTable]:
    """The derived loader table of ``config.comfyui_root`` (None without a root, when
    ``config.read_node_sources`` is off, or on failure)."""
    root = getattr(config, "comfyui_root", None)
    if root is None or not getattr(config, "read_node_sources", True):
        return None
    cache_dir = config.cache_dir if getattr(config, "cache_enabled", True) else None
    try:
        defs = read_root(root, cache_dir)
        # outside ComfyUI a key is only as good as the folders we know for it: a pack key that
        # aliases other folders at run time (GGUF's unet_gguf = the diffusion_models folders)
        # must not replace the bundled folder, or files would be looked for in models/unet_gguf
        known = set(CORE_FOLDERS) | {key for key, dirs in comfyui_folder_paths(root).items()
                                     if any(Path(d).is_dir() for d in dirs)}
        return defs.table(trusted_folders=known)
    except (OSError, RecursionError, MemoryError, ComfyFixerError) as exc:  # the bundled table still works
        log.warning("could not read the node definitions under %s: %s", root, exc)
        return None
