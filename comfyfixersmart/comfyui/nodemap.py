"""The loader map of the running ComfyUI: which input of which node lists which model folder.

Every class in ``nodes.NODE_CLASS_MAPPINGS`` (core and custom, V1 and V3) is looked up in its
own source file with the static reader (``scan.nodedefs``; the file's reading is cached by
mtime/size in ``<cache_dir>/nodedefs.json``), inheriting through the live ``__mro__``.  For
every class that has folder inputs the live ``INPUT_TYPES()`` (what ``/object_info`` calls)
then confirms the folder where ComfyUI lists files for it, and gives the real widget
positions.  A pack class the reader found nothing in (options built in another module) is
probed the same way: an option list holding every file of a folder that has files is that
folder's (at most ``PROBE_BUDGET`` seconds of such calls per build).  Folder keys are ComfyUI's own (``map_legacy``), and every key of
``folder_paths.folder_names_and_paths`` is known.

Nothing of ComfyUI is changed: no attribute is set, no folder list altered.  The map is
computed on first use and again when the node set changes (another mapping object, or a
different number of node types or folder keys).
"""

from __future__ import annotations

import inspect
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from ..extra_paths import NON_MODEL_KEYS
from ..folders import canonical_folder
from ..logs import get_logger
from ..scan.loaders import LoaderSpec, LoaderTable
from ..scan.nodedefs import FileDefs, FolderInput
from ..scan.nodetable import spec_for
from ..scan.rootdefs import FileCache

log = get_logger(__name__)

LIVE_CACHE_NAME = "nodedefs-live.json"
#: seconds spent at most calling INPUT_TYPES of pack classes the reader found no folder in
PROBE_BUDGET = 0.5
_WIDGETS = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
_SEEDS = frozenset({"seed", "noise_seed"})
_UPLOADS = ("image_upload", "video_upload", "audio_upload", "upload", "model_upload")


class LiveNodeMap:
    """``table()`` -> the LoaderTable of the running ComfyUI (None if it cannot be built).

    ``nodes_module`` / ``folder_paths`` default to ComfyUI's modules from ``sys.modules``;
    ``cache_dir`` keeps the per-file readings between restarts (None: memory only).
    """

    def __init__(self, folder_paths: ModuleType, nodes_module: Optional[ModuleType] = None,
                 cache_dir: Optional[Path] = None, *, confirm: bool = True,
                 probe_budget: float = PROBE_BUDGET):
        self._fp = folder_paths
        self._probe_budget = probe_budget
        self._nodes = nodes_module
        self._cache_path = Path(cache_dir) / LIVE_CACHE_NAME if cache_dir is not None else None
        self._confirm = confirm
        self._lock = threading.Lock()
        self._key: Optional[Tuple[int, int, int]] = None
        self._table: Optional[LoaderTable] = None
        #: seconds the last computation took, and how many node types it covered
        self.last_seconds = 0.0
        self.last_count = 0

    def _mapping(self) -> Optional[Dict[str, Any]]:
        module = self._nodes if self._nodes is not None else sys.modules.get("nodes")
        mapping = getattr(module, "NODE_CLASS_MAPPINGS", None)
        return mapping if isinstance(mapping, dict) else None

    def node_types(self) -> Optional[Set[str]]:
        """Every node type the running ComfyUI knows now (None before its nodes are loaded)."""
        mapping = self._mapping()
        return set(map(str, list(mapping))) if mapping is not None else None

    def table(self) -> Optional[LoaderTable]:
        mapping = self._mapping()
        if mapping is None:
            return None
        folders = getattr(self._fp, "folder_names_and_paths", {})
        key = (id(mapping), len(mapping), len(folders))
        with self._lock:
            if key != self._key or self._table is None:
                start = time.perf_counter()
                try:
                    self._table = self._build(dict(mapping))
                except Exception:  # never break a scan: the bundled table is the fallback
                    log.warning("could not build the loader map from ComfyUI's nodes", exc_info=True)
                    self._table = None
                self._key = key
                self.last_seconds = time.perf_counter() - start
                self.last_count = len(mapping)
                log.info("loader map: %d node types read in %.2f s", len(mapping), self.last_seconds)
            return self._table

    # -- building ---------------------------------------------------------------------------
    def _build(self, mapping: Dict[str, Any]) -> LoaderTable:
        # node types come from the live mapping and folder keys from folder_paths: only files
        # that list files can add anything, the others are not even parsed
        cache = FileCache(self._cache_path, markers=(b"get_filename_list",))
        files: Dict[str, FileDefs] = {}
        file_of: Dict[str, Optional[str]] = {}  # module name -> source path

        def defs_of(cls: Any) -> Optional[FileDefs]:
            module = getattr(cls, "__module__", None)
            if module not in file_of:
                file_of[module] = _source_file(cls, module)
            path = file_of[module]
            if path is None:
                return None
            if path not in files:
                files[path] = cache.read(Path(path))
            return files[path]

        specs: Dict[str, Tuple[LoaderSpec, ...]] = {}
        core: Set[str] = set()
        canonical = self._canonical
        listings = _Listings(self)
        # probing classes the reader found nothing in is the costly part: bounded.  Only the
        # probes' own time counts, so a slow start (reading sources on a busy machine) does
        # not silently skip every probe.
        probe_left = self._probe_budget
        for node_type, cls in mapping.items():
            if not isinstance(node_type, str) or not isinstance(cls, type):
                continue
            is_core = not str(getattr(cls, "RELATIVE_PYTHON_MODULE", "") or "").startswith("custom_nodes")
            if is_core:
                core.add(node_type)
            inputs = self._static_inputs(cls, defs_of)
            if not inputs:
                if is_core or not self._confirm or probe_left <= 0:
                    continue
                # a pack's options built where the reader cannot follow (another module, a
                # computed key): recognise the files of a folder among its live options
                probe_start = time.perf_counter()
                inputs = self._detected(cls, listings)
                probe_left -= time.perf_counter() - probe_start
                if not inputs:
                    continue
            inputs = [FolderInput(i.input, canonical(i.folder), i.index, i.extras) for i in inputs]
            if self._confirm:
                inputs = self._confirmed(cls, inputs)
            if inputs:
                specs[node_type] = tuple(spec_for(i, "core" if is_core else "custom") for i in inputs)
        cache.save()
        return LoaderTable(specs, frozenset(core), frozenset(), {}, self._folder_keys())

    @staticmethod
    def _static_inputs(cls: type, defs_of: Callable[[Any], Optional[FileDefs]]) -> Tuple[FolderInput, ...]:
        # the class's own definition, else the nearest base's (the live MRO crosses files)
        for klass in getattr(cls, "__mro__", (cls,)):
            if klass is object:
                break
            defs = defs_of(klass)
            found = defs.classes.get(klass.__name__) if defs is not None else None
            if found is not None and found.inputs is not None:
                return found.inputs
        return ()

    def _canonical(self, key: str) -> str:
        map_legacy = getattr(self._fp, "map_legacy", None)
        mapped = map_legacy(key) if callable(map_legacy) else key
        return canonical_folder(mapped) if mapped == key else mapped

    def _folder_keys(self) -> Dict[str, Tuple[str, ...]]:
        out: Dict[str, Tuple[str, ...]] = {}
        for key, value in list(getattr(self._fp, "folder_names_and_paths", {}).items()):
            if key in NON_MODEL_KEYS:
                continue
            exts = value[1] if isinstance(value, tuple) and len(value) == 2 else ()
            out[self._canonical(key)] = tuple(sorted(e for e in exts if isinstance(e, str)))
        return out

    def _confirmed(self, cls: type, inputs: List[FolderInput]) -> List[FolderInput]:
        """Check the static reading against the live INPUT_TYPES: folder and widget position."""
        try:
            live = cls.INPUT_TYPES()
        except Exception:  # a node whose INPUT_TYPES fails here fails in /object_info too
            return inputs
        if not isinstance(live, dict):
            return inputs
        options, positions = _live_inputs(live)
        out = []
        for inp in inputs:
            live_index = positions.get(inp.input)
            folder, index = inp.folder, live_index if live_index is not None else inp.index
            opts = options.get(inp.input)
            if opts is not None:
                folder = self._folder_listing(opts, folder)
            out.append(FolderInput(inp.input, folder, index, inp.extras))
        return out

    def _detected(self, cls: type, listings: "_Listings") -> List[FolderInput]:
        """Folder inputs of a class found only by its live options: every file of one folder
        (a folder that has files) is offered, and little else."""
        try:
            live = cls.INPUT_TYPES()
        except Exception:
            return []
        if not isinstance(live, dict):
            return []
        options, positions = _live_inputs(live)
        out = []
        for name, opts in options.items():
            names = {o for o in opts if isinstance(o, str)}
            if not names:
                continue
            key = listings.match(names)
            if key is not None:
                extras = tuple(sorted(names - listings.files(key)))
                out.append(FolderInput(name, key, positions.get(name), extras))
        return out

    def _folder_listing(self, options: List[Any], folder: str) -> str:
        """``folder`` when its files are among the options (or it lists none), else the key that is."""
        names = {o for o in options if isinstance(o, str)}
        files = self._files(folder)
        if not files or set(files) <= names:
            return folder
        for key in list(getattr(self._fp, "folder_names_and_paths", {})):
            if key in NON_MODEL_KEYS or key == folder:
                continue
            other = self._files(key)
            if other and set(other) <= names:
                log.debug("loader map: options of folder %r match %r instead", folder, key)
                return self._canonical(key)
        return folder

    def _files(self, key: str) -> List[str]:
        if key not in getattr(self._fp, "folder_names_and_paths", {}):
            return []
        try:
            return list(self._fp.get_filename_list(key))
        except Exception:
            return []


class _Listings:
    """The files of every model folder key that has some, listed once per build."""

    def __init__(self, owner: LiveNodeMap):
        self._owner = owner
        self._lists: Optional[Dict[str, frozenset]] = None

    def _all(self) -> Dict[str, frozenset]:
        if self._lists is None:
            lists: Dict[str, frozenset] = {}
            for key in list(getattr(self._owner._fp, "folder_names_and_paths", {})):
                if key in NON_MODEL_KEYS:
                    continue
                files = frozenset(self._owner._files(key))
                if files:
                    lists.setdefault(self._owner._canonical(key), files)
            self._lists = lists
        return self._lists

    def files(self, key: str) -> frozenset:
        return self._all().get(key, frozenset())

    def match(self, names: Set[str]) -> Optional[str]:
        """The one key all of whose files are among ``names``, which hold few other entries."""
        found = [(len(files), key) for key, files in self._all().items()
                 if files <= names and len(names - files) <= max(3, len(names) // 10)]
        if not found:
            return None
        found.sort(reverse=True)
        if len(found) > 1 and found[0][0] == found[1][0]:
            return None  # two folders with the same files: no telling which one the node reads
        return found[0][1]


def _source_file(cls: Any, module_name: Optional[str]) -> Optional[str]:
    module = sys.modules.get(module_name or "")
    path = getattr(module, "__file__", None)
    if isinstance(path, str) and path.endswith(".py"):
        return path
    try:
        return inspect.getsourcefile(cls)
    except (TypeError, OSError):
        return None


def _live_inputs(input_types: Dict[str, Any]) -> Tuple[Dict[str, List[Any]], Dict[str, Optional[int]]]:
    """Combo options per input, and each input's position in ``widgets_values`` (None after an
    input that could not be classified), from a live INPUT_TYPES dict."""
    options: Dict[str, List[Any]] = {}
    positions: Dict[str, Optional[int]] = {}
    pos: Optional[int] = 0
    for section in ("required", "optional"):
        inputs = input_types.get(section)
        if not isinstance(inputs, dict):
            continue
        for name, spec in inputs.items():
            width: Optional[int] = None
            if isinstance(spec, (tuple, list)) and spec:
                kind = spec[0]
                opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                if isinstance(kind, (list, tuple)):
                    options[name] = list(kind)
                    kind = "COMBO"
                elif kind == "COMBO" and isinstance(opts.get("options"), (list, tuple)):
                    options[name] = list(opts["options"])
                if isinstance(kind, str):
                    if kind not in _WIDGETS or opts.get("forceInput"):
                        width = 0
                    else:
                        width = 1
                        if kind == "INT" and (name in _SEEDS or opts.get("control_after_generate")):
                            width += 1
                        elif kind == "COMBO" and (opts.get("control_after_generate") or any(opts.get(k) for k in _UPLOADS)):
                            width += 1
            positions[name] = pos
            pos = None if pos is None or width is None else pos + width
    return options, positions
