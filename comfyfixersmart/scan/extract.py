"""Graph -> ModelReference list.

One pass over the nodes (and, recursively, subgraph and group-node contents) records every place
a model file is named; places naming the same ``folder/filename`` become one ModelReference.

Sources and confidence:
  ``core``/``custom``/``user`` 1.0  a loader-table entry (0.9 when the value had to be found by
                                    extension because the indexed widget did not hold a file)
  ``mapping``   0.9   ``Config.model_type_mapping`` node class -> folder
  ``metadata``  0.9/0.8  a ``properties.models`` / top-level ``models`` entry not matched to a widget
  ``embedding`` 0.9   ``embedding:NAME`` in prompt text
  ``lora_tag``  0.8   ``<lora:NAME:w>`` in the text of a node that applies such tags
                      (``prompts.LORA_TAG_NODES``) or of a node feeding one; the same tag on any
                      other node (core ``CLIPTextEncode`` reads it as words) is informational:
                      ``Extraction.informational``, never required
  ``fallback``  0.6-0.3  a string ending in a model extension on a node no table knows; the
                      folder is guessed (``infer.infer_folder``) from the input name (0.6), the
                      node type (0.5) or the file name (0.4), with the reason in
                      ``ModelReference.folder_reason``; else ``unknown`` (0.3).  A fallback hit
                      whose filename is also found by a real loader is merged into that
                      reference instead.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from ..datamodel import ModelLocation, ModelReference
from ..errors import ComfyFixerError
from ..folders import UNKNOWN_FOLDER, canonical_folder, type_for
from ..security import exact_relative_path
from . import graph as g
from .infer import infer_folder
from .loaders import FRONTEND_TYPES, LoaderSpec, LoaderTable
from .metadata import ModelMeta, parse_models
from .prompts import LORA_TAG_NODES, find_embeddings, find_lora_tags

MAX_DEPTH = 64
#: Total node visits (subgraph instances expand their definition again): bounds adversarial fan-out.
MAX_VISITS = 1_000_000
#: Places remembered per reference (a file used by thousands of nodes needs only a sample).
MAX_LOCATIONS = 1000
MAX_LINK_HOPS = 64
FALLBACK_CONFIDENCE = 0.3

@dataclass
class _Host:
    """A subgraph instance node seen from inside its definition."""

    node: dict
    ctx: _Ctx
    sub: dict
    proxy: Dict[Tuple[str, str], int]  # (inner node id, widget name) -> index in host widgets


@dataclass
class _Ctx:
    graph: g.UIGraph
    path: Tuple[Any, ...] = ()
    optional: bool = False
    host: Optional[_Host] = None
    stack: Tuple[str, ...] = ()
    group: bool = False


@dataclass
class _Place:
    value: Any
    location: ModelLocation


@dataclass
class _Hit:
    folder: str
    filename: str
    node_type: str
    node_id: Any
    path: List[Any]
    locations: List[ModelLocation]
    widget_values: Dict[str, Any]
    source: str
    confidence: float


@dataclass
class Extraction:
    """Result of one extraction: the references, node types seen, warnings."""

    references: List[ModelReference] = field(default_factory=list)
    node_types: set = field(default_factory=set)
    warnings: List[str] = field(default_factory=list)
    node_count: int = 0
    #: ``<lora:>`` tags on nodes that do not apply them: shown, never required
    informational: List[ModelReference] = field(default_factory=list)

#: subgraph input types shown as a widget on the host node (others are sockets only)
_WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})

#: how far upstream a text may travel (through string nodes) into a node applying LoRA tags
MAX_TAG_HOPS = 16


class Extractor:
    """Extracts model references from one workflow dict with a given loader table."""

    def __init__(self, table: LoaderTable, model_extensions: Sequence[str], workflow_path: Optional[str] = None):
        self.table = table
        self.exts = tuple(e.lower() for e in model_extensions)
        self.ignore = table.ignore_values
        self.workflow_path = workflow_path
        self.refs: Dict[Tuple[str, str], ModelReference] = {}
        self.fallback: Dict[Tuple[str, str], ModelReference] = {}
        self.info: Dict[Tuple[str, str], ModelReference] = {}
        self._host_names: Dict[Tuple[int, int], List[str]] = {}
        #: ids of the nodes (of the graph level being walked) whose ``<lora:>`` tags are applied
        self._tag_nodes: set = set()
        self.out = Extraction()
        self._warned: set = set()
        self.visits = 0
        self.subgraphs: Dict[Any, dict] = {}
        self.groups: Dict[str, dict] = {}
        self._seen: Dict[int, set] = {}  # id(reference) -> keys of its locations

    def _extend(self, ref: ModelReference, locations: List[ModelLocation]) -> None:
        seen = self._seen.get(id(ref))
        if seen is None:
            seen = self._seen[id(ref)] = {_loc_key(loc) for loc in ref.locations}
        for loc in locations:
            if len(ref.locations) >= MAX_LOCATIONS:
                break
            k = _loc_key(loc)
            if k not in seen:
                seen.add(k)
                ref.locations.append(loc)
                if not loc.optional:
                    ref.optional = False

    # -- entry points ---------------------------------------------------------------------
    def run(self, data: Dict[str, Any], fmt: str) -> Extraction:
        if fmt == g.UI:
            self.subgraphs = g.collect_subgraphs(data, self.out.warnings)
            self.groups = g.group_nodes(data)
            self._walk(_Ctx(g.UIGraph(data.get("nodes"), data.get("links"))))
            for meta in parse_models(data.get("models"), self.out.warnings, "models"):
                self._attach_meta(meta, None, "", [], "models", False, 0.8)
        else:
            self._walk_api(data)
        self._merge_fallback()
        self.out.references = sorted(self.refs.values(), key=lambda r: (r.expected_directory, r.filename))
        self.out.informational = [r for key, r in sorted(self.info.items()) if key not in self.refs]
        return self.out

    def warn(self, message: str) -> None:
        if message not in self._warned and len(self._warned) < 1000:
            self._warned.add(message)
            self.out.warnings.append(message)

    # -- UI graphs ------------------------------------------------------------------------
    def _walk(self, ctx: _Ctx) -> None:
        exts = self.exts
        table_get = self.table.specs.get
        nested: List[Tuple[dict, str, bool]] = []
        saved_tag_nodes, self._tag_nodes = self._tag_nodes, _ui_tag_nodes(ctx.graph)
        try:
            self._walk_level(ctx, exts, table_get, nested)
        finally:
            self._tag_nodes = saved_tag_nodes
        for node, sid, optional in nested:
            if self.visits > MAX_VISITS:
                return
            self._enter_subgraph(ctx, node, sid, optional)

    def _walk_level(self, ctx: _Ctx, exts, table_get, nested: List[Tuple[dict, str, bool]]) -> None:
        for node in ctx.graph.nodes:
            self.visits += 1
            if self.visits > MAX_VISITS:
                self.warn(f"graph too large: stopped after {MAX_VISITS} node visits")
                return
            if not isinstance(node, dict):
                if node is not None:
                    self.warn("a node that is not an object was ignored")
                continue
            ntype = node.get("type")
            if not isinstance(ntype, str):
                self.warn("a node without a string 'type' was ignored")
                continue
            self.out.node_count += 1
            self.out.node_types.add(ntype)
            mode = node.get("mode")
            optional = ctx.optional or mode in g.INACTIVE_MODES
            if ntype in self.subgraphs:
                # descend after this level: with a visit budget, every level's own loaders are seen first
                nested.append((node, ntype, optional))
            elif ntype.startswith("workflow"):
                name = g.group_name(ntype)
                if name is not None and name in self.groups:
                    self._enter_group(ctx, node, name, optional)
            specs = table_get(ntype)
            if specs:
                for spec in specs:
                    self._ui_spec(ctx, node, ntype, spec, optional)
            elif ntype not in FRONTEND_TYPES and ntype not in g.NOTE_TYPES:
                folder = self.table.type_mapping.get(ntype)
                if folder is not None:
                    self._ui_by_extension(ctx, node, ntype, folder, "mapping", 0.9, optional)
                elif ntype not in self.table.core_types and ntype not in self.subgraphs:
                    self._ui_by_extension(ctx, node, ntype, None, "fallback", FALLBACK_CONFIDENCE, optional, exts)
            if ntype not in g.NOTE_TYPES:
                self._scan_text(node.get("widgets_values"), ctx, node, ntype, optional)
            props = node.get("properties")
            if isinstance(props, dict) and props.get("models") is not None:
                where = f"node {node.get('id')} properties.models"
                for meta in parse_models(props.get("models"), self.out.warnings, where):
                    self._attach_meta(meta, node.get("id"), ntype, list(ctx.path), "properties.models", optional, 0.9)

    def _enter_subgraph(self, ctx: _Ctx, node: dict, sid: str, optional: bool) -> None:
        if sid in ctx.stack:
            self.warn(f"subgraph {sid!r} contains itself (cycle); not expanded again")
            return
        if len(ctx.stack) >= MAX_DEPTH:
            self.warn(f"subgraphs nested deeper than {MAX_DEPTH} levels; not expanded")
            return
        sub = self.subgraphs[sid]
        proxy: Dict[Tuple[str, str], int] = {}
        props = node.get("properties")
        raw = props.get("proxyWidgets") if isinstance(props, dict) else None
        if isinstance(raw, str):
            from .loading import decode_json_value

            raw = decode_json_value(raw)
        if isinstance(raw, list):
            for i, item in enumerate(raw):
                if isinstance(item, list) and len(item) == 2 and isinstance(item[1], str):
                    proxy.setdefault((str(item[0]), item[1]), i)
        host = _Host(node, ctx, sub, proxy)
        child = _Ctx(g.UIGraph(sub.get("nodes"), sub.get("links")), ctx.path + (node.get("id"),), optional,
                     host, ctx.stack + (sid,))
        self._walk(child)

    def _enter_group(self, ctx: _Ctx, node: dict, name: str, optional: bool) -> None:
        gdef = self.groups[name]
        inner = gdef.get("nodes")
        if not isinstance(inner, list):
            return
        values = node.get("widgets_values")
        # the instance's widgets are the inner nodes' widgets in order: slice when the sizes agree
        sizes = [len(n.get("widgets_values")) if isinstance(n, dict) and isinstance(n.get("widgets_values"), list) else 0
                 for n in inner]
        sliced = isinstance(values, list) and sum(sizes) == len(values)
        nodes, pos = [], 0
        inst_id = node.get("id")
        for n, size in zip(inner, sizes):
            if not isinstance(n, dict):
                continue
            copy = dict(n)
            copy["id"] = f"{inst_id}:{n.get('index', len(nodes))}"
            copy.pop("mode", None)
            if sliced:
                copy["widgets_values"] = values[pos:pos + size]
            pos += size
            nodes.append(copy)
        child = _Ctx(g.UIGraph(nodes, []), ctx.path + (inst_id,), optional, None, ctx.stack, group=True)
        self._walk(child)

    # -- values ---------------------------------------------------------------------------
    def _loc(self, ctx: _Ctx, node: dict, ntype: str, where: str, optional: bool) -> ModelLocation:
        return ModelLocation(_node_id(node.get("id")), ntype, where, list(ctx.path), optional)

    def _ui_places(self, ctx: _Ctx, node: dict, ntype: str, name: str, index: Optional[int],
                   optional: bool) -> List[_Place]:
        """Every place holding the value of input ``name``, highest priority first."""
        places: List[_Place] = []
        host = ctx.host
        node_id = node.get("id")
        if host is not None and host.proxy:
            k = host.proxy.get((str(node_id), name))
            if k is not None:
                value = _host_widget(host, k, name)
                if value is not _MISSING:
                    places.append(_Place(value, self._host_loc(host, f"proxyWidgets[{k}]")))
        link = g.input_link(node, name)
        if link is not None:
            value, loc = self._follow_link(ctx, link)
            if value is not _MISSING and loc is not None:
                places.append(_Place(value, loc))
        wv = node.get("widgets_values")
        if isinstance(wv, dict):
            if name in wv:
                places.append(_Place(wv[name], self._loc(ctx, node, ntype, f"widgets_values.{name}", optional)))
        else:
            named = node.get("widgets_values_named")
            if isinstance(named, dict) and name in named:
                places.append(_Place(named[name], self._loc(ctx, node, ntype, f"widgets_values_named.{name}", optional)))
            elif isinstance(wv, list) and index is not None and index < len(wv):
                places.append(_Place(wv[index], self._loc(ctx, node, ntype, f"widgets_values[{index}]", optional)))
        return places

    def _host_loc(self, host: _Host, where: str) -> ModelLocation:
        hctx, hnode = host.ctx, host.node
        hopt = hctx.optional or hnode.get("mode") in g.INACTIVE_MODES
        return ModelLocation(_node_id(hnode.get("id")), str(hnode.get("type")), where, list(hctx.path), hopt)

    def _follow_link(self, ctx: _Ctx, link_id: Any) -> Tuple[Any, Optional[ModelLocation]]:
        """Value at the origin of a link: a Primitive/literal node's widget, or the subgraph host."""
        graph = ctx.graph
        for _ in range(MAX_LINK_HOPS):
            link = graph.link(link_id)
            if link is None:
                return _MISSING, None
            origin_id, origin_slot = link[0], link[1]
            if g.hashable(origin_id) == g.SUBGRAPH_INPUT_ID and ctx.host is not None:
                return self._from_host_input(ctx, origin_slot)
            origin = graph.node(origin_id)
            if origin is None:
                return _MISSING, None
            otype = origin.get("type")
            if otype == "Reroute":
                link_id = g.input_link_any(origin)
                if link_id is None:
                    return _MISSING, None
                continue
            wv = origin.get("widgets_values")
            values = list(wv.values()) if isinstance(wv, dict) else wv if isinstance(wv, list) else []
            strings = [(i, v) for i, v in enumerate(values) if isinstance(v, str)]
            if otype == "PrimitiveNode" and values:
                return values[0], ModelLocation(_node_id(origin_id), str(otype), "widgets_values[0]", list(ctx.path),
                                                ctx.optional or origin.get("mode") in g.INACTIVE_MODES)
            if len(strings) == 1:  # a literal node (PrimitiveString, String Literal, ...)
                i, v = strings[0]
                return v, ModelLocation(_node_id(origin_id), str(otype), f"widgets_values[{i}]", list(ctx.path),
                                        ctx.optional or origin.get("mode") in g.INACTIVE_MODES)
            return _MISSING, None
        return _MISSING, None

    def _from_host_input(self, ctx: _Ctx, slot: Any) -> Tuple[Any, Optional[ModelLocation]]:
        host = ctx.host
        assert host is not None
        sub_inputs = host.sub.get("inputs")
        if not isinstance(slot, int) or not isinstance(sub_inputs, list) or not 0 <= slot < len(sub_inputs):
            return _MISSING, None
        spec = sub_inputs[slot]
        name = spec.get("name") if isinstance(spec, dict) else None
        if not isinstance(name, str):
            return _MISSING, None
        hnode = host.node
        k = host.proxy.get(("-1", name))
        if k is not None:
            value = _host_widget(host, k, name)
            if value is not _MISSING:
                return value, self._host_loc(host, f"proxyWidgets[{k}]")
        # the host's own input: linked in the parent graph, or a widget on the host
        link = g.input_link(hnode, name)
        if link is not None:
            return self._follow_link(host.ctx, link)
        wv = hnode.get("widgets_values")
        if isinstance(wv, dict):
            return (wv[name], self._host_loc(host, f"widgets_values.{name}")) if name in wv else (_MISSING, None)
        if isinstance(wv, list) and not host.proxy:
            names = self._host_widget_names(host, len(wv))
            if name in names:
                k = names.index(name)
                if k < len(wv):
                    return wv[k], self._host_loc(host, f"widgets_values[{k}]")
        return _MISSING, None

    def _host_widget_names(self, host: _Host, count: int) -> List[str]:
        """The subgraph inputs the host's ``widgets_values`` hold, in order.

        The frontend saves one value per subgraph input that feeds a widget, in the order of
        the subgraph's inputs; the host's own ``inputs`` list may lack some of them.  So:
        the inputs linked to an inner widget, else those of a widget type, when either count
        matches the values; else the host's widget inputs as listed."""
        sub = host.sub
        key = (id(sub), count)
        cached = self._host_names.get(key)
        if cached is not None:
            return cached
        sub_inputs = [i for i in sub.get("inputs") or [] if isinstance(i, dict)]
        graph = g.UIGraph(sub.get("nodes"), sub.get("links"))

        def feeds_widget(spec: dict) -> bool:
            for link_id in spec.get("linkIds") or []:
                link = graph.link(link_id)
                target = graph.node(link[2]) if link is not None else None
                slots = target.get("inputs") if isinstance(target, dict) else None
                if isinstance(slots, list) and isinstance(link[3], int) and 0 <= link[3] < len(slots):
                    slot = slots[link[3]]
                    if isinstance(slot, dict) and isinstance(slot.get("widget"), dict):
                        return True
            return False

        names: List[str] = []
        for candidate in ([str(i.get("name")) for i in sub_inputs if feeds_widget(i)],
                          [str(i.get("name")) for i in sub_inputs if i.get("type") in _WIDGET_TYPES]):
            if len(candidate) == count:
                names = candidate
                break
        else:
            names = [i.get("widget", {}).get("name") for i in host.node.get("inputs") or []
                     if isinstance(i, dict) and isinstance(i.get("widget"), dict)]
        self._host_names[key] = names
        return names

    def _ui_spec(self, ctx: _Ctx, node: dict, ntype: str, spec: LoaderSpec, optional: bool) -> None:
        if spec.is_glob:
            self._glob_spec(ctx, node, ntype, spec, optional, node.get("widgets_values"), "widgets_values")
            return
        opt = optional or self._switched_off(node.get("widgets_values"), spec)
        if spec.index is None and isinstance(node.get("widgets_values"), list) and not isinstance(
                node.get("widgets_values_named"), dict):
            places = [p for p in self._ui_places(ctx, node, ntype, spec.input, None, opt)]
            if not places:
                self._ui_by_extension(ctx, node, ntype, spec.folder, spec.source, 1.0, opt)
                return
        else:
            places = self._ui_places(ctx, node, ntype, spec.input, spec.index, opt)
        self._record_places(places, node, ntype, ctx, spec, opt)

    def _record_places(self, places: List[_Place], node: dict, ntype: str, ctx: _Ctx, spec: LoaderSpec,
                       optional: bool) -> None:
        if not places:
            return
        effective = places[0].value
        files = self._files(spec, effective)
        if files is None:
            # the widget did not hold a file name (shifted widgets of another node version):
            # look for a file-like value on the node when this is its only file input
            if len(self.table.get(ntype)) == 1 and isinstance(node.get("widgets_values"), list):
                self._ui_by_extension(ctx, node, ntype, spec.folder, spec.source, 0.9, optional)
            return
        locations = [p.location for p in places if p.value == effective]
        for folder, filename in files:
            self._add(folder, filename, ntype, node.get("id"), list(ctx.path), locations,
                      {spec.input: effective}, spec.source, 1.0)

    def _glob_spec(self, ctx: Optional[_Ctx], node: dict, ntype: str, spec: LoaderSpec, optional: bool,
                   values: Any, where: str) -> None:
        items: Iterable[Tuple[str, Any]]
        if isinstance(values, dict):
            items = ((k, v) for k, v in values.items() if fnmatch.fnmatchcase(k, spec.input))
        elif isinstance(values, list):
            items = ((f"[{i}]", v) for i, v in enumerate(values))
        else:
            return
        for label, value in items:
            if spec.key is not None:
                if not isinstance(value, dict):
                    continue
                opt = optional or (spec.enabled_key is not None and value.get(spec.enabled_key) is False)
                value = value.get(spec.key)
            else:
                opt = optional
            files = self._files(spec, value)
            if not files:
                continue
            loc_where = f"{where}.{label}" if not label.startswith("[") else f"{where}{label}"
            path = list(ctx.path) if ctx else []
            loc = ModelLocation(_node_id(node.get("id", node.get("_api_id"))), ntype, loc_where, path, opt)
            for folder, filename in files:
                self._add(folder, filename, ntype, node.get("id", node.get("_api_id")), path, [loc],
                          {label.strip("[]") if ctx else label: value}, spec.source, 1.0)

    def _switched_off(self, values: Any, spec: LoaderSpec) -> bool:
        sw = spec.switch
        if sw is not None:
            v = _pick(values, sw.input, sw.index)
            if v is not _MISSING and v in sw.off:
                return True
        cnt = spec.count
        if cnt is not None:
            v = _pick(values, cnt.input, cnt.index)
            if isinstance(v, int) and not isinstance(v, bool) and spec.ordinal > v:
                return True
        return False

    def _ui_by_extension(self, ctx: _Ctx, node: dict, ntype: str, folder: Optional[str], source: str,
                         confidence: float, optional: bool, exts: Optional[Tuple[str, ...]] = None) -> None:
        exts = exts or self.exts
        widgets = _widget_items(node.get("widgets_values"))
        if widgets is None:
            return
        items, fmt = widgets
        for key, value in items:
            if not isinstance(value, str) or not value[-16:].lower().endswith(exts):
                continue
            name = self._safe_name(value)
            if name is None:
                continue
            target, why = folder, None
            if target is None:
                guess = infer_folder(ntype, key if isinstance(key, str) else "", name)
                target, confidence, why = guess.folder, guess.confidence, guess.reason
            loc = self._loc(ctx, node, ntype, fmt.format(key), optional)
            self._add(target, name, ntype, node.get("id"), list(ctx.path), [loc],
                      {str(key): value}, source, confidence, why)

    # -- API prompts ----------------------------------------------------------------------
    def _walk_api(self, data: Dict[str, Any]) -> None:
        table_get = self.table.specs.get
        self._tag_nodes = _api_tag_nodes(data)
        for key, node in data.items():
            self.visits += 1
            if not isinstance(node, dict):
                continue
            ntype = node.get("class_type")
            if not isinstance(ntype, str):
                if "inputs" in node:
                    self.warn(f"node {key!r} has no string 'class_type'; ignored")
                continue
            self.out.node_count += 1
            self.out.node_types.add(ntype)
            inputs = node.get("inputs")
            if not isinstance(inputs, dict):
                inputs = {}
            specs = table_get(ntype)
            if specs:
                for spec in specs:
                    self._api_spec(data, key, node, ntype, inputs, spec)
            elif ntype not in g.NOTE_TYPES:
                folder = self.table.type_mapping.get(ntype)
                if folder is not None:
                    self._api_by_extension(key, ntype, inputs, folder, "mapping", 0.9)
                elif ntype not in self.table.core_types:
                    self._api_by_extension(key, ntype, inputs, None, "fallback", FALLBACK_CONFIDENCE)
            if ntype not in g.NOTE_TYPES:
                for name, value in inputs.items():
                    if isinstance(value, str):
                        self._text(value, key, ntype, f"inputs.{name}", [], False, _hashable_id(key))

    def _api_spec(self, data: Dict[str, Any], key: str, node: dict, ntype: str, inputs: dict,
                  spec: LoaderSpec) -> None:
        if spec.is_glob:
            self._glob_spec(None, {"_api_id": _node_id(key)}, ntype, spec, False, inputs, "inputs")
            return
        if spec.input not in inputs:
            return
        value = inputs[spec.input]
        where = f"inputs.{spec.input}"
        loc_id, loc_type = _node_id(key), ntype
        if isinstance(value, list):
            value, origin = _api_follow(data, value)
            if value is _MISSING:
                return
            loc_id, loc_type, where = origin
        optional = self._switched_off(inputs, spec)
        files = self._files(spec, value)
        if not files:
            return
        scalars = {k: v for k, v in inputs.items() if not isinstance(v, (list, dict))}
        loc = ModelLocation(loc_id, loc_type, where, [], optional)
        for folder, filename in files:
            self._add(folder, filename, ntype, _node_id(key), [], [loc], scalars, spec.source, 1.0)

    def _api_by_extension(self, key: str, ntype: str, inputs: dict, folder: Optional[str], source: str,
                          confidence: float) -> None:
        exts = self.exts
        for name, value in inputs.items():
            if not isinstance(value, str) or not value[-16:].lower().endswith(exts):
                continue
            safe = self._safe_name(value)
            if safe is None:
                continue
            target, why = folder, None
            if target is None:
                guess = infer_folder(ntype, name, safe)
                target, confidence, why = guess.folder, guess.confidence, guess.reason
            loc = ModelLocation(_node_id(key), ntype, f"inputs.{name}", [], False)
            self._add(target, safe, ntype, _node_id(key), [], [loc], {name: value}, source, confidence, why)

    # -- prompt text ----------------------------------------------------------------------
    def _scan_text(self, values: Any, ctx: _Ctx, node: dict, ntype: str, optional: bool) -> None:
        widgets = _widget_items(values)
        if widgets is None:
            return
        items, fmt = widgets
        for k, v in items:
            if isinstance(v, str) and ":" in v:
                self._text(v, node.get("id"), ntype, fmt.format(k), list(ctx.path), optional,
                           _hashable_id(node.get("id")))

    def _text(self, text: str, node_id: Any, ntype: str, where: str, path: List[Any], optional: bool,
              graph_id: Any = None) -> None:
        for name in find_embeddings(text):
            safe = self._safe_name(name)
            if safe is not None:
                loc = ModelLocation(_node_id(node_id), ntype, f"{where} (prompt text)", path, optional)
                self._add("embeddings", safe, ntype, node_id, path, [loc], {"text": f"embedding:{name}"},
                          "embedding", 0.9)
        applied = None
        for name, tag in find_lora_tags(text):
            safe = self._safe_name(name)
            if safe is None:
                continue
            if applied is None:
                applied = ntype in LORA_TAG_NODES or graph_id in self._tag_nodes
            if applied:
                loc = ModelLocation(_node_id(node_id), ntype, f"{where} (lora tag)", path, optional)
                self._add("loras", safe, ntype, node_id, path, [loc], {"text": tag}, "lora_tag", 0.8)
            elif len(self.info) < MAX_LOCATIONS:
                # a node that does not apply tags (CLIPTextEncode encodes them as words)
                loc = ModelLocation(_node_id(node_id), ntype, f"{where} (lora tag, not applied)", path, True)
                key = ("loras", safe)
                if key not in self.info:
                    self.info[key] = ModelReference(
                        filename=safe, node_type=ntype, expected_type="lora", expected_directory="loras",
                        widget_values={"text": tag}, node_id=_node_id(node_id), subgraph_path=list(path),
                        optional=True, confidence=0.0, source="lora_tag_ignored", locations=[loc],
                        workflow_path=self.workflow_path)

    # -- files and references -------------------------------------------------------------
    def _files(self, spec: LoaderSpec, value: Any) -> Optional[List[Tuple[str, str]]]:
        """``[(folder, filename)]`` named by ``value``; ``[]`` for "no file"; None if not a file name."""
        if not isinstance(value, str):
            return None if value is not None else []
        v = value.strip()
        if v in self.ignore or v in spec.ignore:
            return []
        if v in spec.values:
            return list(spec.values[v])
        folder = spec.folder
        unified = v.replace("\\", "/")
        for prefix, pfolder in spec.prefixes:
            if unified.startswith(prefix):
                folder, unified = pfolder, unified[len(prefix):]
                break
        if spec.stems:
            base = unified.rsplit("/", 1)[-1]
            for stem, sfolder in spec.stems:
                if base.startswith(stem):
                    folder = sfolder
                    break
        if not spec.any_value and not _has_extension(unified):
            return None
        name = self._safe_name(unified)
        if name is None:
            return []
        return [(folder, name)]

    def _safe_name(self, value: str) -> Optional[str]:
        name, error = _checked_name(value)
        if error is not None:
            self.warn(f"unsafe model file name ignored: {error}")
        return name

    def _add(self, folder: str, filename: str, ntype: str, node_id: Any, path: List[Any],
             locations: List[ModelLocation], widget_values: Dict[str, Any], source: str, confidence: float,
             folder_reason: Optional[str] = None) -> None:
        folder = canonical_folder(folder)
        key = (folder, filename)
        store = self.fallback if source == "fallback" else self.refs
        ref = store.get(key)
        if ref is None:
            store[key] = ModelReference(
                filename=filename,
                node_type=ntype,
                expected_type=type_for(folder) if folder != UNKNOWN_FOLDER else "unknown",
                expected_directory=folder,
                widget_values=dict(widget_values),
                node_id=_node_id(node_id),
                subgraph_path=list(path),
                optional=all(loc.optional for loc in locations),
                confidence=confidence,
                source=source,
                locations=list(locations),
                workflow_path=self.workflow_path,
                folder_reason=folder_reason,
            )
            return
        self._extend(ref, locations)
        if confidence > ref.confidence:
            ref.node_type, ref.node_id, ref.subgraph_path = ntype, _node_id(node_id), list(path)
            ref.widget_values, ref.source, ref.confidence = dict(widget_values), source, confidence
            ref.folder_reason = folder_reason

    def _attach_meta(self, meta: ModelMeta, node_id: Any, ntype: str, path: List[Any], where: str,
                     optional: bool, confidence: float) -> None:
        loc = ModelLocation(_node_id(node_id) if node_id is not None else "", ntype, where, path, optional)
        ref = None
        if meta.directory is not None:
            ref = self.refs.get((meta.directory, meta.name))
        if ref is None:
            matches = [r for (folder, name), r in self.refs.items() if name == meta.name
                       and (meta.directory is None or folder == UNKNOWN_FOLDER)]
            ref = matches[0] if len(matches) == 1 else None
        if ref is None:
            folder = meta.directory or UNKNOWN_FOLDER
            self._add(folder, meta.name, ntype, node_id, path, [loc], {}, "metadata", confidence)
            ref = self.refs[(canonical_folder(folder), meta.name)]
        elif node_id is not None or not any(loc.where == where for loc in ref.locations):
            self._extend(ref, [loc])
        ref.url = ref.url or meta.url
        if meta.hash and not ref.hash:
            ref.hash, ref.hash_type = meta.hash, meta.hash_type

    def _merge_fallback(self) -> None:
        by_name: Dict[str, List[ModelReference]] = {}
        for (folder, name), ref in self.refs.items():
            by_name.setdefault(name, []).append(ref)
        for (folder, name), ref in self.fallback.items():
            known = by_name.get(name)
            if known:
                self._extend(known[0], ref.locations)
            else:
                self.refs.setdefault((folder, name), ref)


# -- helpers ------------------------------------------------------------------------------

class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


def _node_id(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return str(value) if value is not None else ""
    if isinstance(value, (int, str)):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return str(value)


@lru_cache(maxsize=16384)
def _checked_name(value: str) -> Tuple[Optional[str], Optional[str]]:
    # the same names recur across nodes and files: validate each distinct string once
    try:
        return exact_relative_path(value), None
    except ComfyFixerError as exc:
        return None, str(exc)


def _loc_key(loc: ModelLocation) -> Tuple[Any, ...]:
    return (str(loc.node_id), loc.where, tuple(map(str, loc.subgraph_path)))


def _pick(values: Any, name: str, index: Optional[int]) -> Any:
    if isinstance(values, dict):
        return values.get(name, _MISSING)
    if isinstance(values, list) and index is not None and index < len(values):
        return values[index]
    return _MISSING


def _has_extension(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    dot = base.rfind(".")
    if dot <= 0 or dot == len(base) - 1:
        return False
    ext = base[dot + 1:]
    return len(ext) <= 12 and ext.isalnum()


def _host_widget(host: _Host, k: int, name: str) -> Any:
    wv = host.node.get("widgets_values")
    if isinstance(wv, list) and k < len(wv):
        return wv[k]
    if isinstance(wv, dict) and name in wv:
        return wv[name]
    return _MISSING


def _api_follow(data: Dict[str, Any], link: list) -> Tuple[Any, Tuple[Any, str, str]]:
    """Follow ``["id", slot]`` links to a literal node's single string input."""
    for _ in range(MAX_LINK_HOPS):
        if len(link) != 2 or isinstance(link[0], (list, dict)):
            return _MISSING, ("", "", "")
        origin = data.get(str(link[0]))
        if not isinstance(origin, dict) or not isinstance(origin.get("inputs"), dict):
            return _MISSING, ("", "", "")
        inputs = origin["inputs"]
        strings = [(k, v) for k, v in inputs.items() if isinstance(v, str)]
        links = [v for v in inputs.values() if isinstance(v, list)]
        if len(strings) == 1 and not links:
            k, v = strings[0]
            return v, (_node_id(link[0]), str(origin.get("class_type")), f"inputs.{k}")
        if not strings and len(links) == 1 and origin.get("class_type") == "Reroute":
            link = links[0]
            continue
        return _MISSING, ("", "", "")
    return _MISSING, ("", "", "")


def _hashable_id(value: Any) -> Any:
    try:
        return g.hashable(value)
    except TypeError:
        return None


def _ui_tag_nodes(graph: g.UIGraph) -> set:
    """Ids of the nodes of one UI graph level whose ``<lora:>`` tags get applied: the nodes
    that apply tags, and every node upstream of them (a text node wired into one)."""
    start = [n for n in graph.nodes if isinstance(n, dict) and n.get("type") in LORA_TAG_NODES]
    if not start:
        return set()
    seen: set = set()
    frontier = start
    for _ in range(MAX_TAG_HOPS):
        nxt = []
        for node in frontier:
            nid = _hashable_id(node.get("id"))
            if nid is None or nid in seen:
                continue
            seen.add(nid)
            inputs = node.get("inputs")
            for inp in inputs if isinstance(inputs, list) else ():
                link = inp.get("link") if isinstance(inp, dict) else None
                if link is None or isinstance(link, (list, dict, bool)):
                    continue
                origin = graph.link(link)
                upstream = graph.node(origin[0]) if origin is not None else None
                if upstream is not None:
                    nxt.append(upstream)
        if not nxt:
            break
        frontier = nxt
    return seen


def _api_tag_nodes(data: Dict[str, Any]) -> set:
    """The same for an API prompt (links are ``[node id, slot]`` input values)."""
    frontier = [k for k, n in data.items() if isinstance(n, dict) and n.get("class_type") in LORA_TAG_NODES]
    seen: set = set()
    for _ in range(MAX_TAG_HOPS):
        nxt = []
        for key in frontier:
            if key in seen:
                continue
            seen.add(key)
            node = data.get(key)
            inputs = node.get("inputs") if isinstance(node, dict) else None
            for value in inputs.values() if isinstance(inputs, dict) else ():
                if isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)) \
                        and not isinstance(value[0], bool) and str(value[0]) in data:
                    nxt.append(str(value[0]))
        if not nxt:
            break
        frontier = nxt
    return {_hashable_id(k) for k in seen}


def _widget_items(values: Any) -> Optional[Tuple[Iterable[Tuple[Any, Any]], str]]:
    """``(key, value)`` pairs of widgets given as a list or a named dict, with the format of
    their location (``widgets_values[0]`` / ``widgets_values.name``); None for anything else."""
    if isinstance(values, list):
        return enumerate(values), "widgets_values[{}]"
    if isinstance(values, dict):
        return values.items(), "widgets_values.{}"
    return None
