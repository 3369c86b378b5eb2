"""Structural checks of a workflow dict -> ValidationResult (never raises)."""

from __future__ import annotations

from typing import Any, Dict, List

from ..datamodel import ValidationResult
from ..errors import WorkflowParseError
from . import graph as g

_MAX_MESSAGES = 200


def validate_workflow(data: Any) -> ValidationResult:
    """Errors make a workflow unusable (not a graph, nodes without type); warnings are oddities
    (dangling links, duplicate ids, unknown subgraph references, cycles)."""
    errors: List[str] = []
    warnings: List[str] = []
    if not isinstance(data, dict):
        return ValidationResult(False, "unknown", [f"expected a JSON object, got {type(data).__name__}"])
    try:
        graph, fmt = g.unwrap(data)
    except WorkflowParseError as exc:  # report, do not raise
        return ValidationResult(False, "unknown", [exc.reason])
    if fmt == g.API:
        _check_api(graph, errors, warnings)
    else:
        _check_ui(graph, errors, warnings)
    return ValidationResult(not errors, fmt, errors[:_MAX_MESSAGES], warnings[:_MAX_MESSAGES])


def _check_api(data: Dict[str, Any], errors: List[str], warnings: List[str]) -> None:
    count = 0
    for key, node in data.items():
        if not isinstance(node, dict):
            warnings.append(f"entry {key!r} is not a node object")
            continue
        if not isinstance(node.get("class_type"), str):
            errors.append(f"node {key!r} has no string 'class_type'")
            continue
        count += 1
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            errors.append(f"node {key!r}: 'inputs' is not an object")
            continue
        for name, value in inputs.items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)) \
                    and not isinstance(value[0], bool) and isinstance(value[1], int):
                if str(value[0]) not in data:
                    warnings.append(f"node {key!r} input {name!r} links to missing node {value[0]!r}")
        if len(errors) + len(warnings) > _MAX_MESSAGES:
            return
    if count == 0:
        errors.append("no nodes")


def _check_ui(data: Dict[str, Any], errors: List[str], warnings: List[str]) -> None:
    subgraphs = g.collect_subgraphs(data, warnings)
    groups = g.group_nodes(data)
    _check_level(data, "workflow", subgraphs, groups, errors, warnings)
    for sid, sub in subgraphs.items():
        _check_level(sub, f"subgraph {sid!r}", subgraphs, groups, errors, warnings)
    # cycles: a definition reachable from itself
    uses = {sid: {n.get("type") for n in (sub.get("nodes") or []) if isinstance(n, dict)} & subgraphs.keys()
            for sid, sub in subgraphs.items()}
    for sid in subgraphs:
        seen, todo = set(), list(uses[sid])
        while todo:
            cur = todo.pop()
            if cur == sid:
                warnings.append(f"subgraph {sid!r} contains itself (cycle)")
                break
            if cur not in seen:
                seen.add(cur)
                todo.extend(uses.get(cur, ()))


def _check_level(level: Dict[str, Any], label: str, subgraphs: Dict[Any, dict], groups: Dict[str, dict],
                 errors: List[str], warnings: List[str]) -> None:
    nodes = level.get("nodes")
    if not isinstance(nodes, list):
        errors.append(f"{label}: 'nodes' is not a list")
        return
    ids = set()
    for n, node in enumerate(nodes):
        if len(errors) + len(warnings) > _MAX_MESSAGES:
            return
        if not isinstance(node, dict):
            errors.append(f"{label}: node #{n} is not an object")
            continue
        ntype = node.get("type")
        if not isinstance(ntype, str) or not ntype:
            errors.append(f"{label}: node #{n} has no string 'type'")
            continue
        nid = node.get("id")
        if nid is None:
            warnings.append(f"{label}: node #{n} ({ntype}) has no id")
        else:
            try:
                key = g.hashable(nid)
            except TypeError:
                key = str(nid)
            if key in ids:
                warnings.append(f"{label}: duplicate node id {nid!r}")
            ids.add(key)
        wv = node.get("widgets_values")
        if wv is not None and not isinstance(wv, (list, dict)):
            warnings.append(f"{label}: node {nid!r} widgets_values is neither a list nor an object")
        name = g.group_name(ntype)
        if name is not None and name not in groups:
            warnings.append(f"{label}: node {nid!r} uses group node {name!r} that is not defined in extra.groupNodes")
        if _looks_uuid(ntype) and ntype not in subgraphs:
            warnings.append(f"{label}: node {nid!r} uses subgraph {ntype!r} that is not defined")
    links = level.get("links")
    if links is not None and not isinstance(links, list):
        warnings.append(f"{label}: 'links' is not a list")
        return
    for raw in links or []:
        item = g.link_tuple(raw)
        if item is None:
            warnings.append(f"{label}: malformed link {str(raw)[:60]}")
            continue
        _, (origin, _, target, _) = item
        for end in (origin, target):
            try:
                known = g.hashable(end) in ids or (isinstance(g.hashable(end), int) and g.hashable(end) < 0)
            except TypeError:
                known = False
            if not known:
                warnings.append(f"{label}: link {item[0]!r} points to missing node {end!r}")
                break
        if len(errors) + len(warnings) > _MAX_MESSAGES:
            return


def _looks_uuid(value: str) -> bool:
    return len(value) == 36 and value.count("-") == 4
