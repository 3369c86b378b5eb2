"""WorkflowScanner: workflow files or graphs -> WorkflowData with the model references they need."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Union

from ..datamodel import ModelReference, ValidationResult, WorkflowData
from ..errors import WorkflowParseError
from ..logs import get_logger
from ..settings import Config, get_config
from . import graph as g
from .extract import Extractor
from .loaders import FRONTEND_TYPES, LoaderTable, build_table, user_table_paths
from .packs import missing_packs
from .loading import WORKFLOW_EXTENSIONS, decode_json, load_workflow_ex, parse_workflow_bytes
from .rootdefs import read_root, root_table
from .validate import validate_workflow as _validate

log = get_logger(__name__)

#: Top-level keys of a UI workflow copied into WorkflowData.metadata.
_META_KEYS = ("id", "revision", "version", "last_node_id", "last_link_id")


class WorkflowScanner:
    """Reads ComfyUI workflows (UI or API format, JSON/PNG/WebP) and lists the model files they use.

    ``loader_tables`` are extra loader-table files (format: ``comfyfixersmart/data/custom_loaders.json``)
    whose entries replace the built-in ones of the same node classes.

    Which input of which node names a file in which folder (the loader map) comes from:
    ``node_table`` when given (inside ComfyUI: the running ComfyUI's node definitions), else the
    sources of ``config.comfyui_root`` read statically (``rootdefs``), laid over the bundled
    table; without either, the bundled table alone.
    """

    def __init__(self, config: Optional[Config] = None, *, loader_tables: Sequence[Union[str, os.PathLike]] = (),
                 node_table: Optional[LoaderTable] = None):
        self.config = config if config is not None else get_config()
        self._extra_tables = list(loader_tables)
        self._node_table = node_table
        self._table: Optional[LoaderTable] = None
        self._installed: Optional[Set[str]] = None
        self._installed_read = False
        #: files that could not be read by the last ``scan_directory`` call
        self.errors: List[WorkflowParseError] = []

    @property
    def table(self) -> LoaderTable:
        """The loader table in use (built on first use, not at construction)."""
        if self._table is None:
            derived = self._node_table if self._node_table is not None else root_table(self.config)
            self._table = build_table(user_table_paths(self.config, self._extra_tables),
                                      self.config.model_type_mapping, derived=derived)
        return self._table

    def installed_node_types(self) -> Optional[Set[str]]:
        """Every node type of ``config.comfyui_root`` (ComfyUI's own and its custom_nodes' packs,
        read statically); None without a root (or inside ComfyUI, where the routes know the live
        set): then every non-core node type counts as not installed."""
        if not self._installed_read:
            self._installed_read = True
            root = getattr(self.config, "comfyui_root", None)
            if root is not None and self._node_table is None and getattr(self.config, "read_node_sources", True):
                try:
                    defs = read_root(root, self.config.cache_dir if self.config.cache_enabled else None)
                    installed = set(defs.core.node_types) | set(defs.core.nodes)
                    for pack in defs.packs.values():
                        installed |= set(pack.node_types) | set(pack.nodes)
                    self._installed = installed
                except (OSError, RecursionError, MemoryError) as exc:
                    log.warning("could not list the node types under %s: %s", root, exc)
        return self._installed

    # -- public API -----------------------------------------------------------------------
    def scan_workflow(self, path: Union[str, os.PathLike]) -> WorkflowData:
        """Parse one workflow file; raises WorkflowParseError (path + reason) when unreadable."""
        data, origin = load_workflow_ex(path, max_bytes=self.config.max_workflow_bytes)
        return self._scan(data, str(path), origin)

    def scan_data(self, data: Union[Dict[str, Any], str, bytes], path: Optional[str] = None) -> WorkflowData:
        """Scan a graph given as a dict, JSON text, or PNG/WebP/JSON bytes (e.g. posted to a route)."""
        if isinstance(data, dict):
            return self._scan(data, path, "data")
        if isinstance(data, (bytes, bytearray, memoryview, str)):
            parsed, origin = parse_workflow_bytes(data, path)
            return self._scan(parsed, path, origin)
        raise WorkflowParseError(path, f"expected a workflow object, JSON text or image bytes, got {type(data).__name__}")

    def scan_directory(self, directory: Union[str, os.PathLike], recursive: bool = True) -> List[WorkflowData]:
        """Scan every ``.json``/``.png``/``.webp`` file; unreadable ones go to ``self.errors``."""
        self.errors = []
        root = Path(directory)
        if not root.is_dir():
            raise WorkflowParseError(root, "not a directory")
        results: List[WorkflowData] = []
        for file in self._workflow_files(root, recursive):
            try:
                results.append(self.scan_workflow(file))
            except WorkflowParseError as exc:
                log.warning("skipping unreadable workflow %s", exc)
                self.errors.append(exc)
        return results

    def extract_models(self, workflow_data: Dict[str, Any]) -> List[ModelReference]:
        """Model references of an already parsed workflow dict (UI or API format)."""
        return self._scan(workflow_data, None, "data").model_references

    def validate_workflow(self, workflow_data: Any) -> ValidationResult:
        """Structural check of a workflow dict: errors make it unusable, warnings are oddities."""
        return _validate(workflow_data)

    # -- internals ------------------------------------------------------------------------
    @staticmethod
    def _workflow_files(root: Path, recursive: bool) -> Iterable[Path]:
        if recursive:
            found = []
            # os.walk does not follow directory symlinks, so a link loop cannot hang the scan
            for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: None):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if name.lower().endswith(WORKFLOW_EXTENSIONS) and not name.startswith("."):
                        found.append(Path(dirpath) / name)
            return found
        return sorted(p for p in root.iterdir() if p.is_file() and p.name.lower().endswith(WORKFLOW_EXTENSIONS)
                      and not p.name.startswith("."))

    def _scan(self, data: Any, path: Optional[str], origin: str) -> WorkflowData:
        if isinstance(data, str):
            data = decode_json(data, path)
        if not isinstance(data, dict):
            raise WorkflowParseError(path, f"expected a JSON object, got {type(data).__name__}")
        graph, fmt = g.unwrap(data, path)
        extractor = Extractor(self.table, self.config.model_extensions, path)
        try:
            result = extractor.run(graph, fmt)
        except RecursionError:
            raise WorkflowParseError(path, "graph nested too deeply") from None
        table = self.table
        custom = {t for t in result.node_types
                  if not table.is_core(t) and t not in extractor.subgraphs and g.group_name(t) is None}
        if fmt == g.UI:
            nodes = [n for n in graph.get("nodes") or [] if isinstance(n, dict)]
            metadata = {k: graph[k] for k in _META_KEYS if k in graph and not isinstance(graph[k], (dict, list))}
            extra = graph.get("extra")
            if isinstance(extra, dict):
                metadata["extra"] = {k: v for k, v in extra.items() if k not in ("ds", "groupNodes")}
            if extractor.subgraphs:
                metadata["subgraphs"] = sorted(extractor.subgraphs)
            if extractor.groups:
                metadata["group_nodes"] = sorted(extractor.groups)
            wid = graph.get("id") if isinstance(graph.get("id"), str) and graph.get("id") else None
        else:
            nodes = [dict(node, id=key) for key, node in g.iter_api_nodes(graph)]
            metadata = {}
            wid = None
        metadata.update({"source": origin, "node_count": result.node_count})
        if wid is None:
            wid = Path(path).stem if path else "workflow-" + _digest(graph)
        return WorkflowData(
            path=path,
            workflow_id=wid,
            nodes=nodes,
            model_references=result.references,
            custom_node_types=custom - FRONTEND_TYPES,
            metadata=metadata,
            format=fmt,
            warnings=result.warnings,
            informational_references=result.informational,
            missing_packs=missing_packs(custom - FRONTEND_TYPES, self.installed_node_types()),
        )


def _digest(graph: Dict[str, Any]) -> str:
    # a stable id for graphs without one: hash of the node ids/types, cheap and order-independent enough
    h = hashlib.sha1()
    for key in sorted(map(str, graph.keys()))[:1000]:
        h.update(key.encode("utf-8", "replace"))
    return h.hexdigest()[:12]
