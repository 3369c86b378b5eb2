"""The two workflow formats and their graph pieces.

* UI format (what the editor saves): ``{"nodes": [...], "links": [...], "definitions":
  {"subgraphs": [...]}, "extra": {"groupNodes": {...}}}``.  Links are arrays
  ``[id, origin_id, origin_slot, target_id, target_slot, type]`` (litegraph 0.4) or objects
  ``{"id", "origin_id", ...}`` (schema version 1 and inside subgraphs).
* API / prompt format (what is queued): ``{"<id>": {"class_type": ..., "inputs": {...}}}``;
  a link is ``["<origin id>", slot]``.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

from ..errors import NotAWorkflowError, WorkflowParseError

UI = "ui"
API = "api"

#: id of the virtual node that feeds a subgraph's inputs (litegraph SUBGRAPH_INPUT_ID)
SUBGRAPH_INPUT_ID = -10

#: Nodes whose text is documentation, never model references.
NOTE_TYPES = frozenset({"Note", "MarkdownNote", "Notes", "Note Plus (mtb)", "Fast Groups Muter (rgthree)", "Label (rgthree)"})

#: Node modes of litegraph: 2 = never (muted), 4 = bypass.
INACTIVE_MODES = (2, 4)

Link = Tuple[Any, Any, Any, Any]  # origin_id, origin_slot, target_id, target_slot


def detect_format(data: Any) -> str:
    """``"ui"``, ``"api"`` or ``"unknown"`` (no exception)."""
    if not isinstance(data, dict):
        return "unknown"
    if isinstance(data.get("nodes"), list):
        return UI
    if data and _looks_api(data):
        return API
    return "unknown"


def _looks_api(data: Dict[str, Any]) -> bool:
    # every real node of a prompt has class_type; tolerate a few non-node keys
    seen = 0
    for value in data.values():
        if isinstance(value, dict) and "class_type" in value:
            seen += 1
            if seen >= 1:
                return True
    return False


def unwrap(data: Dict[str, Any], path: Any = None) -> Tuple[Dict[str, Any], str]:
    """The graph and its format; accepts ``{"workflow": ...}`` / ``{"prompt": ...}`` wrappers."""
    fmt = detect_format(data)
    if fmt != "unknown":
        return data, fmt
    for key in ("workflow", "prompt", "extra_pnginfo"):
        inner = data.get(key)
        if isinstance(inner, str):
            from .loading import decode_json  # a JSON string inside JSON (some exporters do this)

            try:
                inner = decode_json(inner, path)
            except WorkflowParseError:
                continue
        if isinstance(inner, dict):
            if key == "extra_pnginfo" and isinstance(inner.get("workflow"), dict):
                inner = inner["workflow"]
            fmt = detect_format(inner)
            if fmt != "unknown":
                return inner, fmt
    if not data:
        raise NotAWorkflowError(path, "empty workflow object")
    raise NotAWorkflowError(path, "not a ComfyUI workflow: no 'nodes' list and no API-format nodes with 'class_type'")


def link_tuple(link: Any) -> Optional[Tuple[Any, Link]]:
    """``(link_id, (origin_id, origin_slot, target_id, target_slot))`` from either link form."""
    if isinstance(link, list):
        if len(link) >= 5:
            return link[0], (link[1], link[2], link[3], link[4])
        return None
    if isinstance(link, dict) and "id" in link:
        return link["id"], (link.get("origin_id"), link.get("origin_slot"), link.get("target_id"), link.get("target_slot"))
    return None


def hashable(value: Any) -> Any:
    """Node and link ids as dict keys: ints stay ints, numeric strings become ints, others str."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        # isdigit() alone accepts "²" and other digits int() refuses
        return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return str(value)


class UIGraph:
    """One level of a UI graph (the root or a subgraph definition) with lazy indexes."""

    __slots__ = ("_by_id", "_links", "_raw_links", "nodes")

    def __init__(self, nodes: Any, links: Any):
        self.nodes: List[Any] = nodes if isinstance(nodes, list) else []
        self._raw_links = links if isinstance(links, list) else []
        self._links: Optional[Dict[Any, Link]] = None
        self._by_id: Optional[Dict[Any, dict]] = None

    def link(self, link_id: Any) -> Optional[Link]:
        if self._links is None:
            table: Dict[Any, Link] = {}
            for raw in self._raw_links:
                item = link_tuple(raw)
                if item is not None:
                    try:
                        table[hashable(item[0])] = item[1]
                    except TypeError:
                        continue
            self._links = table
        return self._links.get(hashable(link_id))

    def node(self, node_id: Any) -> Optional[dict]:
        if self._by_id is None:
            table: Dict[Any, dict] = {}
            for n in self.nodes:
                if isinstance(n, dict) and "id" in n:
                    try:
                        table.setdefault(hashable(n["id"]), n)
                    except TypeError:
                        continue
            self._by_id = table
        return self._by_id.get(hashable(node_id))


def input_link(node: dict, name: str) -> Any:
    """Link id feeding the input (or converted widget) called ``name``, else None."""
    inputs = node.get("inputs")
    if not isinstance(inputs, list):
        return None
    for inp in inputs:
        if not isinstance(inp, dict):
            continue
        widget = inp.get("widget")
        if inp.get("name") == name or (isinstance(widget, dict) and widget.get("name") == name):
            link = inp.get("link")
            return None if link is None or isinstance(link, (list, dict, bool)) else link
    return None


def collect_subgraphs(data: Dict[str, Any], warnings: List[str], limit: int = 10_000) -> Dict[Any, dict]:
    """Every subgraph definition by id: ``definitions.subgraphs`` of the root and, nested, of each
    definition (the frontend flattens them, older exports nest them)."""
    found: Dict[Any, dict] = {}
    stack: List[Tuple[Any, int]] = [(data, 0)]
    while stack:
        holder, depth = stack.pop()
        defs = holder.get("definitions") if isinstance(holder, dict) else None
        subs = defs.get("subgraphs") if isinstance(defs, dict) else None
        if not isinstance(subs, list):
            continue
        for sub in subs:
            if not isinstance(sub, dict):
                continue
            sid = sub.get("id")
            if not isinstance(sid, str) or not sid:
                warnings.append("subgraph definition without a string id ignored")
                continue
            if sid in found:
                continue
            if len(found) >= limit:
                warnings.append(f"more than {limit} subgraph definitions; the rest are ignored")
                return found
            found[sid] = sub
            if depth < 64:
                stack.append((sub, depth + 1))
    return found


def group_nodes(data: Dict[str, Any]) -> Dict[str, dict]:
    """Legacy group-node definitions (``extra.groupNodes``) by name."""
    extra = data.get("extra")
    groups = extra.get("groupNodes") if isinstance(extra, dict) else None
    if not isinstance(groups, dict):
        return {}
    return {k: v for k, v in groups.items() if isinstance(k, str) and isinstance(v, dict)}


def group_name(node_type: str) -> Optional[str]:
    """``workflow>Name`` (current) or ``workflow/Name`` (older frontends) -> ``Name``."""
    if node_type.startswith(("workflow>", "workflow/")):
        return node_type[9:]
    return None


def iter_api_nodes(data: Dict[str, Any]) -> Iterable[Tuple[str, dict]]:
    for key, node in data.items():
        if isinstance(node, dict) and isinstance(node.get("class_type"), str):
            yield key, node


def input_link_any(node: dict) -> Any:
    """The first connected input's link id (a Reroute has exactly one input)."""
    inputs = node.get("inputs")
    if not isinstance(inputs, list):
        return None
    for inp in inputs:
        if isinstance(inp, dict):
            link = inp.get("link")
            if link is not None and not isinstance(link, (list, dict, bool)):
                return link
    return None
