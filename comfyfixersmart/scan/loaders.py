"""Loader tables: which input of which node class names a model file, and in which folder.

The tables are data (``comfyfixersmart/data/core_loaders.json`` derived from ComfyUI's own node
definitions, ``custom_loaders.json`` for popular custom node packs) so users can extend them
without code: a file of the same format passed as ``loader_tables`` (or named by
``Config.loader_table_file`` when that setting exists) replaces the built-in entries of the node
classes it lists.  ``Config.model_type_mapping`` (node class -> folder) adds whole-node rules.
The format is documented in the ``_doc`` field at the top of each table file.
"""

from __future__ import annotations

import fnmatch
import json
import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..errors import ConfigurationError
from ..folders import canonical_folder

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
CORE_TABLE = DATA_DIR / "core_loaders.json"
CUSTOM_TABLE = DATA_DIR / "custom_loaders.json"

#: Node types that exist only in the frontend (never custom nodes, never hold models themselves).
FRONTEND_TYPES = frozenset({"PrimitiveNode", "Reroute", "Note", "MarkdownNote"})

_ENTRY_KEYS = {"input", "folder", "index", "repeat", "start", "stride", "prefixes", "key", "enabled_key",
               "switch", "count", "ignore", "values", "stems", "any_value", "comment"}


@dataclass(frozen=True)
class Switch:
    """A companion widget that turns an entry off (Comfyroll ``switch_1: "Off"``)."""

    input: str
    index: Optional[int]
    off: Tuple[Any, ...]


@dataclass(frozen=True)
class Count:
    """An INT widget limiting how many repeated entries are used (``lora_count``)."""

    input: str
    index: Optional[int]


@dataclass(frozen=True)
class LoaderSpec:
    """One model-file input of a node class."""

    input: str
    folder: str
    index: Optional[int] = None
    prefixes: Tuple[Tuple[str, str], ...] = ()
    key: Optional[str] = None
    enabled_key: Optional[str] = None
    switch: Optional[Switch] = None
    count: Optional[Count] = None
    #: 1-based position among the repeated entries (for ``count``)
    ordinal: int = 0
    ignore: FrozenSet[str] = frozenset()
    values: Mapping[str, Tuple[Tuple[str, str], ...]] = field(default_factory=dict)
    stems: Tuple[Tuple[str, str], ...] = ()
    any_value: bool = False
    #: ``core``, ``custom`` or ``user``: becomes ModelReference.source
    source: str = "core"

    @property
    def is_glob(self) -> bool:
        return "*" in self.input


@dataclass
class LoaderTable:
    """Node class -> its LoaderSpecs, plus the set of core node classes."""

    specs: Dict[str, Tuple[LoaderSpec, ...]] = field(default_factory=dict)
    core_types: FrozenSet[str] = frozenset()
    ignore_values: FrozenSet[str] = frozenset()
    #: node class -> folder, from ``Config.model_type_mapping`` (value-based extraction)
    type_mapping: Dict[str, str] = field(default_factory=dict)
    #: folder keys that node packs register themselves -> their file extensions (empty: unknown)
    folders: Dict[str, Tuple[str, ...]] = field(default_factory=dict)
    #: for a derived table (see ``overlaid``): the folder keys it may put in place of another
    #: table's folder; None: any
    trusted_folders: Optional[FrozenSet[str]] = None

    def get(self, node_type: str) -> Tuple[LoaderSpec, ...]:
        return self.specs.get(node_type, ())

    def is_core(self, node_type: str) -> bool:
        return node_type in self.core_types or node_type in FRONTEND_TYPES

    def merged(self, other: LoaderTable) -> LoaderTable:
        """A new table where ``other``'s node classes replace ours."""
        specs = dict(self.specs)
        specs.update(other.specs)
        return LoaderTable(specs, self.core_types | other.core_types, self.ignore_values | other.ignore_values,
                           {**self.type_mapping, **other.type_mapping}, {**self.folders, **other.folders})

    def overlaid(self, derived: LoaderTable) -> LoaderTable:
        """A new table where ``derived`` (node definitions read from ComfyUI) corrects ours per input.

        Per node class: an input both know keeps our entry (it may carry hand-written rules:
        index, special values, prefixes) but takes the derived folder when they differ (and
        ``derived.trusted_folders`` allows it); inputs only ``derived`` knows are added; classes
        only ``derived`` knows are added whole.
        """
        trusted = derived.trusted_folders
        specs = dict(self.specs)
        for node_type, dspecs in derived.specs.items():
            mine = self.specs.get(node_type)
            if not mine:
                specs[node_type] = dspecs
                continue
            by_input = {s.input: s for s in dspecs}
            merged: List[LoaderSpec] = []
            for spec in mine:
                d = by_input.pop(spec.input, None)
                take = d is not None and d.folder != spec.folder and (trusted is None or d.folder in trusted)
                merged.append(replace(spec, folder=d.folder) if take else spec)
            globs = [s.input for s in mine if s.is_glob]
            merged.extend(d for name, d in by_input.items() if not any(fnmatch.fnmatchcase(name, g) for g in globs))
            specs[node_type] = tuple(merged)
        return LoaderTable(specs, self.core_types | derived.core_types, self.ignore_values | derived.ignore_values,
                           dict(self.type_mapping), {**self.folders, **derived.folders})


def parse_table(data: Any, *, source: str, origin: str = "<table>") -> LoaderTable:
    """Validate a decoded table file and build a LoaderTable; ConfigurationError names the problem."""

    def bad(msg: str) -> ConfigurationError:
        return ConfigurationError("loader_table", f"{origin}: {msg}")

    if not isinstance(data, dict):
        raise bad("top level must be a JSON object")
    loaders = data.get("loaders", {})
    if not isinstance(loaders, dict):
        raise bad("'loaders' must map node class names to lists of entries")
    ignore = data.get("ignore_values", [])
    if not isinstance(ignore, list) or not all(isinstance(v, str) for v in ignore):
        raise bad("'ignore_values' must be a list of strings")
    node_types = data.get("node_types", [])
    if not isinstance(node_types, list) or not all(isinstance(v, str) for v in node_types):
        raise bad("'node_types' must be a list of strings")
    specs: Dict[str, Tuple[LoaderSpec, ...]] = {}
    for node_type, entries in loaders.items():
        if not isinstance(entries, list) or not entries:
            raise bad(f"{node_type!r}: expected a non-empty list of entries")
        out: List[LoaderSpec] = []
        for n, entry in enumerate(entries):
            out.extend(_parse_entry(entry, source, lambda m, n=n, t=node_type: bad(f"{t!r} entry {n}: {m}")))
        specs[node_type] = tuple(out)
    folders = data.get("folders", {})
    if not isinstance(folders, dict) or not all(
            isinstance(k, str) and k and isinstance(v, list) and all(isinstance(e, str) for e in v)
            for k, v in folders.items()):
        raise bad("'folders' must map folder keys to lists of file extensions")
    return LoaderTable(specs, frozenset(node_types), frozenset(ignore),
                       folders={canonical_folder(k): tuple(v) for k, v in folders.items()})


def _parse_entry(entry: Any, source: str, bad) -> List[LoaderSpec]:
    if not isinstance(entry, dict):
        raise bad("must be an object")
    unknown = set(entry) - _ENTRY_KEYS
    if unknown:
        raise bad(f"unknown keys {sorted(unknown)}")
    name, folder = entry.get("input"), entry.get("folder")
    if not isinstance(name, str) or not name:
        raise bad("'input' must be a non-empty string")
    if not isinstance(folder, str) or not folder:
        raise bad("'folder' must be a non-empty string")
    folder = canonical_folder(folder)

    def opt_int(key: str, default: Optional[int] = None, low: int = 0) -> Optional[int]:
        value = entry.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise bad(f"'{key}' must be an integer >= {low}")
        return value

    index = opt_int("index")
    repeat = opt_int("repeat", 1, 1)
    start = opt_int("start", 1)
    stride = opt_int("stride", 1)
    assert repeat is not None and start is not None and stride is not None
    if repeat > 1000:
        raise bad("'repeat' is too large")
    prefixes = entry.get("prefixes", {})
    if not isinstance(prefixes, dict) or not all(isinstance(k, str) and k and isinstance(v, str)
                                                 for k, v in prefixes.items()):
        raise bad("'prefixes' must map prefixes to folder keys")
    ignore = entry.get("ignore", [])
    if not isinstance(ignore, list) or not all(isinstance(v, str) for v in ignore):
        raise bad("'ignore' must be a list of strings")
    values = entry.get("values", {})
    if not isinstance(values, dict):
        raise bad("'values' must be an object")
    parsed_values: Dict[str, Tuple[Tuple[str, str], ...]] = {}
    for value, files in values.items():
        if not isinstance(files, list) or not all(
            isinstance(f, list) and len(f) == 2 and all(isinstance(x, str) and x for x in f) for f in files
        ):
            raise bad(f"'values'[{value!r}] must be a list of [folder, filename] pairs")
        parsed_values[value] = tuple((canonical_folder(f[0]), f[1]) for f in files)
    stems = entry.get("stems", {})
    if not isinstance(stems, dict) or not all(isinstance(k, str) and k and isinstance(v, str) for k, v in stems.items()):
        raise bad("'stems' must map file-name stems to folder keys")
    for key in ("key", "enabled_key"):
        if entry.get(key) is not None and not isinstance(entry.get(key), str):
            raise bad(f"'{key}' must be a string")
    switch_raw, count_raw = entry.get("switch"), entry.get("count")
    for label, raw in (("switch", switch_raw), ("count", count_raw)):
        if raw is not None and (not isinstance(raw, dict) or not isinstance(raw.get("input"), str)
                                or not (raw.get("index") is None or (isinstance(raw.get("index"), int)
                                                                     and not isinstance(raw.get("index"), bool)))):
            raise bad(f"'{label}' must be an object with 'input' (str) and optional 'index' (int)")
    if switch_raw is not None and not isinstance(switch_raw.get("off", []), list):
        raise bad("'switch.off' must be a list")
    any_value = entry.get("any_value", False)
    if not isinstance(any_value, bool):
        raise bad("'any_value' must be true or false")
    if repeat > 1 and "{i}" not in name:
        raise bad("'repeat' needs '{i}' in 'input'")

    out = []
    for k in range(repeat):
        i = start + k
        def sub(text: str, i: int = i) -> str:
            return text.replace("{i}", str(i))

        switch = None
        if switch_raw is not None:
            s_index = switch_raw.get("index")
            switch = Switch(sub(switch_raw["input"]), None if s_index is None else s_index + k * stride,
                            tuple(switch_raw.get("off", [])))
        count = None
        if count_raw is not None:
            count = Count(count_raw["input"], count_raw.get("index"))
        out.append(LoaderSpec(
            input=sub(name),
            folder=folder,
            index=None if index is None else index + k * stride,
            prefixes=tuple((p, canonical_folder(f)) for p, f in prefixes.items()),
            key=entry.get("key"),
            enabled_key=entry.get("enabled_key"),
            switch=switch,
            count=count,
            ordinal=i if count is not None else 0,
            ignore=frozenset(ignore),
            values=parsed_values,
            stems=tuple((s, canonical_folder(f)) for s, f in stems.items()),
            any_value=any_value,
            source=source,
        ))
    return out


def read_table_file(path: os.PathLike | str, *, source: str) -> LoaderTable:
    """Read and validate one table file."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            data = json.loads(fh.read().decode("utf-8-sig"))
    except FileNotFoundError:
        raise ConfigurationError("loader_table", f"{p} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ConfigurationError("loader_table", f"{p}: {exc}") from None
    return parse_table(data, source=source, origin=str(p))


_cache: Dict[Tuple[str, int, int], LoaderTable] = {}
_cache_lock = threading.Lock()


def _cached(path: Path, source: str) -> LoaderTable:
    # keyed on mtime/size so an edited user table is re-read, the packaged ones only once
    st = path.stat()
    key = (f"{source}:{path}", st.st_mtime_ns, st.st_size)
    with _cache_lock:
        table = _cache.get(key)
    if table is None:
        table = read_table_file(path, source=source)
        with _cache_lock:
            _cache[key] = table
    return table


def build_table(
    extra_tables: Iterable[os.PathLike | str] = (),
    type_mapping: Optional[Mapping[str, str]] = None,
    *,
    core_path: Path = CORE_TABLE,
    custom_path: Path = CUSTOM_TABLE,
    derived: Optional[LoaderTable] = None,
) -> LoaderTable:
    """Core + custom tables, corrected by ``derived`` (the node definitions of the user's ComfyUI,
    see ``LoaderTable.overlaid``), then user tables (later ones win per node class) and
    ``model_type_mapping``."""
    try:
        table = _cached(core_path, "core").merged(_cached(custom_path, "custom"))
    except OSError as exc:  # a broken installation, not a user error
        raise ConfigurationError("loader_table", f"built-in loader table missing: {exc}") from None
    if derived is not None:
        table = table.overlaid(derived)
    for extra in extra_tables:
        p = Path(extra).expanduser()
        if not p.is_file():
            raise ConfigurationError("loader_table", f"{p} does not exist")
        table = table.merged(_cached(p, "user"))
    if type_mapping:
        mapping = {str(k): canonical_folder(str(v)) for k, v in type_mapping.items()}
        table = LoaderTable(table.specs, table.core_types, table.ignore_values, {**table.type_mapping, **mapping},
                            table.folders)
    return table


def user_table_paths(config: Any, extra: Sequence[os.PathLike | str] = ()) -> List[Path]:
    """User tables: ``config.loader_table_file`` (if that setting exists and is set) then ``extra``."""
    paths: List[Path] = []
    configured = getattr(config, "loader_table_file", None)
    if configured:
        paths.append(Path(configured))
    paths.extend(Path(p) for p in extra)
    return paths
