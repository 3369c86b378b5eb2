"""Node definitions (``nodedefs.NodeDefs``) -> loader-table entries.

The same conversion serves the three places the map comes from: a running ComfyUI
(``comfyfixersmart.comfyui.nodemap``), a ComfyUI folder's sources (``rootdefs``) and the
bundled table written by ``scripts/update_loader_table.py``.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

from .loaders import LoaderSpec, LoaderTable
from .nodedefs import FolderInput, NodeDefs


def spec_for(inp: FolderInput, source: str) -> LoaderSpec:
    """A LoaderSpec for one folder input; its constant extra options (``"None"``) name no file."""
    return LoaderSpec(input=inp.input, folder=inp.folder, index=inp.index, ignore=frozenset(inp.extras),
                      source=source)


def defs_table(core: Optional[NodeDefs] = None, custom: Iterable[NodeDefs] = ()) -> LoaderTable:
    """A LoaderTable: ``core`` node types are ComfyUI's own (``core_types``), ``custom`` are packs'."""
    specs: Dict[str, Tuple[LoaderSpec, ...]] = {}
    folders: Dict[str, Tuple[str, ...]] = {}
    for defs, source in [(d, "custom") for d in custom] + ([(core, "core")] if core is not None else []):
        for node_type, node in defs.nodes.items():
            specs[node_type] = tuple(spec_for(i, source) for i in node.inputs)
        for key, exts in defs.folders.items():
            if exts or key not in folders:
                folders[key] = tuple(exts or ())
    core_types = frozenset(core.node_types) if core is not None else frozenset()
    return LoaderTable(specs, core_types, frozenset(), {}, folders)


def table_entries(defs: NodeDefs) -> Dict[str, List[Dict[str, Any]]]:
    """``{"NodeType": [entry, ...]}`` in the JSON table format (see ``data/core_loaders.json``)."""
    out: Dict[str, List[Dict[str, Any]]] = {}
    for node_type in sorted(defs.nodes):
        entries = []
        for inp in defs.nodes[node_type].inputs:
            entry: Dict[str, Any] = {"input": inp.input, "folder": inp.folder}
            if inp.index is not None:
                entry["index"] = inp.index
            if inp.extras:
                entry["ignore"] = list(inp.extras)
            entries.append(entry)
        out[node_type] = entries
    return out
