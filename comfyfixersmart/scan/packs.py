"""Which custom-node pack provides a node type ComfyUI does not know.

A workflow whose node types are not installed cannot run, and the models of those nodes
cannot be placed with certainty until the pack is there (its loaders decide the folders).
``missing_packs`` names the packs to install, from ComfyUI-Manager's public
extension-node-map (``data/extension_node_map.json``, written by
``scripts/build_extension_map.py``; read on first use, once per process).

What counts as "not known": inside ComfyUI, a node type absent from the running ComfyUI's
``NODE_CLASS_MAPPINGS`` (the routes pass that set as ``installed``); outside it, one that is not
a core node type (with ``--comfyui-root``, nor a node type the root's ``custom_nodes`` define).
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any, Collection, Dict, Iterable, List, Optional, Pattern, Tuple

from ..datamodel import MissingPack
from ..logs import get_logger

log = get_logger(__name__)

MAP_FILE = Path(__file__).resolve().parent.parent / "data" / "extension_node_map.json"


class ExtensionMap:
    """Node type -> packs, from the bundled map file."""

    def __init__(self, data: Dict[str, Any]):
        raw_packs = data.get("packs") if isinstance(data, dict) else None
        self.packs: List[Tuple[str, str]] = [
            (str(p[0]), str(p[1])) for p in raw_packs or [] if isinstance(p, list) and len(p) == 2]
        nodes = data.get("nodes") if isinstance(data, dict) else None
        self.nodes: Dict[str, Any] = nodes if isinstance(nodes, dict) else {}
        self.patterns: List[Tuple[Pattern[str], int]] = []
        for item in (data.get("patterns") if isinstance(data, dict) else None) or []:
            try:
                self.patterns.append((re.compile(item[0]), int(item[1])))
            except (re.error, TypeError, ValueError, IndexError):
                continue
        self.source: Dict[str, Any] = dict(data.get("source") or {}) if isinstance(data, dict) else {}

    def pack_indexes(self, node_type: str) -> List[int]:
        found = self.nodes.get(node_type)
        if isinstance(found, int):
            out = [found]
        elif isinstance(found, list):
            out = [i for i in found if isinstance(i, int)]
        else:
            out = [i for pattern, i in self.patterns if pattern.search(node_type)]
        return [i for i in out if 0 <= i < len(self.packs)]

    def packs_for(self, node_type: str) -> List[Tuple[str, str]]:
        """``[(url, title)]`` of the packs that provide ``node_type`` (several may)."""
        return [self.packs[i] for i in self.pack_indexes(node_type)]


_map: Optional[ExtensionMap] = None
_lock = threading.Lock()


def extension_map(path: Optional[Path] = None) -> ExtensionMap:
    """The bundled map (read once); ``path``: another file of the same format, read each call."""
    global _map
    if path is not None:
        return ExtensionMap(_read(path))
    with _lock:
        if _map is None:
            _map = ExtensionMap(_read(MAP_FILE))
        return _map


def _read(path: Path) -> Dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read().decode("utf-8"))
    except (OSError, ValueError) as exc:  # a broken install: no pack names, the scan still works
        log.warning("cannot read the extension-node map %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def missing_packs(node_types: Iterable[str], installed: Optional[Collection[str]] = None,
                  *, ext_map: Optional[ExtensionMap] = None) -> List[MissingPack]:
    """The packs providing the ``node_types`` that are not ``installed`` (None: all of them
    count), fewest packs first: each step takes the pack that covers most of the node types
    still left.  Node types no pack is known for come last, in one entry without ``url``."""
    wanted = sorted({t for t in node_types if isinstance(t, str) and t and (installed is None or t not in installed)})
    if not wanted:
        return []
    emap = ext_map if ext_map is not None else extension_map()
    by_pack: Dict[int, set] = {}
    unknown: List[str] = []
    for node_type in wanted:
        indexes = emap.pack_indexes(node_type)
        if not indexes:
            unknown.append(node_type)
        for i in indexes:
            by_pack.setdefault(i, set()).add(node_type)
    left = set(wanted) - set(unknown)
    out: List[MissingPack] = []
    while left:
        # the pack covering most of what is left; ties: the one listed first in the map
        best = max(by_pack, key=lambda i: (len(by_pack[i] & left), -i))
        covered = sorted(by_pack[best] & left)
        url, title = emap.packs[best]
        out.append(MissingPack(node_types=covered, title=title, url=url))
        left -= set(covered)
    if unknown:
        out.append(MissingPack(node_types=unknown))
    return out


__all__ = ["ExtensionMap", "MissingPack", "extension_map", "missing_packs"]
