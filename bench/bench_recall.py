#!/usr/bin/env python3
"""Scanner recall on a labelled corpus of public workflows, with their model metadata removed.

    python bench/bench_recall.py [--wheels DIR] [--templates-version V] [--json OUT] [--misses]

Corpus, built at run time (nothing of it is committed):

* ``templates``: ComfyUI's official workflow templates, PyPI ``comfyui-workflow-templates-json``
  (MIT; fetched with ``pip download --no-deps`` into a temporary folder unless ``--wheels DIR``
  holds the wheel).  Labels: every ``properties.models`` entry of every node (subgraph
  definitions included) and the top-level ``models``: ``(directory, name)`` = the folder key
  and the file name ComfyUI's own missing-models dialog would use.
* ``fixtures``: the public workflows of ``tests/fixtures/workflows`` with their hand-checked
  ``LABELS.json`` (licences in ``tests/fixtures/SOURCES.md``).

Then every ``models`` entry is deleted and each workflow is scanned in five forms: ``ui`` (as
saved), ``api`` (converted here to the prompt form ComfyUI queues: subgraphs flattened, muted
and bypassed nodes left out, widget values named by the node's ``widgets_values_named`` or
``inputs[].widget`` names, else by the loader table's input names, else ``widget_N``), ``png`` (the UI JSON in a
``tEXt workflow`` chunk of a 1x1 PNG), ``schema1`` (links as objects, ``version: 1``) and
``windows`` (every labelled file moved into a sub-folder written with a backslash:
``bench\\name``).  Recall = labels found with the right folder key / labels.

Held-out split (frozen, never looked at while tuning): a template is held out when
``int(sha256(file name).hexdigest()[:8], 16) % 100 < 30``; ``--misses`` lists the misses of the
tuning part only.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from comfyfixersmart.folders import canonical_folder  # noqa: E402
from comfyfixersmart.scan import WorkflowScanner  # noqa: E402
from comfyfixersmart.scan.prompts import find_embeddings  # noqa: E402
from comfyfixersmart.settings import Config  # noqa: E402

TEMPLATES_PACKAGE = "comfyui-workflow-templates-json"
FORMATS = ("ui", "api", "png", "schema1", "windows")
HELD_OUT_PERCENT = 30
FRONTEND_ONLY = {"Note", "MarkdownNote", "PrimitiveNode", "Reroute"}
INACTIVE = (2, 4)
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
SUBGRAPH_INPUT = -10

Label = Tuple[str, str]  # (folder key, file name)


def held_out(name: str) -> bool:
    return int(hashlib.sha256(name.encode("utf-8")).hexdigest()[:8], 16) % 100 < HELD_OUT_PERCENT


# -- corpus ---------------------------------------------------------------------------------------

def _levels(wf: Dict[str, Any]) -> Iterable[Dict[str, Any]]:
    yield wf
    for sub in (wf.get("definitions") or {}).get("subgraphs") or []:
        if isinstance(sub, dict):
            yield sub


def template_labels(wf: Dict[str, Any]) -> Tuple[Set[Label], Set[Label]]:
    """``(all labels, labels on active nodes)`` from the ``models`` metadata."""
    defs = {s.get("id"): s for s in (wf.get("definitions") or {}).get("subgraphs") or [] if isinstance(s, dict)}
    active_defs = _active_subgraphs(wf, defs)
    labels: Set[Label] = set()
    active: Set[Label] = set()
    for level in _levels(wf):
        level_active = level is wf or level.get("id") in active_defs
        for node in level.get("nodes") or []:
            models = (node.get("properties") or {}).get("models") if isinstance(node, dict) else None
            for m in models or []:
                if isinstance(m, dict) and isinstance(m.get("name"), str) and isinstance(m.get("directory"), str):
                    label = (canonical_folder(m["directory"].strip().strip("/")), m["name"].replace("\\", "/"))
                    labels.add(label)
                    if level_active and node.get("mode") not in INACTIVE:
                        active.add(label)
    for m in wf.get("models") or []:
        if isinstance(m, dict) and isinstance(m.get("name"), str) and isinstance(m.get("directory"), str):
            labels.add((canonical_folder(m["directory"]), m["name"]))
            active.add((canonical_folder(m["directory"]), m["name"]))
    return labels, active


def _active_subgraphs(wf: Dict[str, Any], defs: Dict[Any, Dict[str, Any]]) -> Set[Any]:
    """Subgraph definitions with at least one active instance reachable from the root."""
    out: Set[Any] = set()
    stack = [wf]
    while stack:
        level = stack.pop()
        for node in level.get("nodes") or []:
            if isinstance(node, dict) and node.get("type") in defs and node.get("mode") not in INACTIVE:
                if node["type"] not in out:
                    out.add(node["type"])
                    stack.append(defs[node["type"]])
    return out


def strip_metadata(wf: Dict[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(wf)
    out.pop("models", None)
    for level in _levels(out):
        for node in level.get("nodes") or []:
            if isinstance(node, dict) and isinstance(node.get("properties"), dict):
                node["properties"].pop("models", None)
    return out


# -- the other forms ------------------------------------------------------------------------------

def _links(level: Dict[str, Any]) -> Dict[Any, Tuple[Any, Any, Any, Any]]:
    table = {}
    for raw in level.get("links") or []:
        if isinstance(raw, list) and len(raw) >= 5:
            table[raw[0]] = (raw[1], raw[2], raw[3], raw[4])
        elif isinstance(raw, dict) and "id" in raw:
            table[raw["id"]] = (raw.get("origin_id"), raw.get("origin_slot"), raw.get("target_id"), raw.get("target_slot"))
    return table


class ApiConverter:
    """UI graph -> API prompt, the way the frontend queues it (enough of it for model names)."""

    def __init__(self, wf: Dict[str, Any], table: Any):
        self.wf = wf
        self.table = table
        self.defs = {s.get("id"): s for s in (wf.get("definitions") or {}).get("subgraphs") or [] if isinstance(s, dict)}
        self.prompt: Dict[str, Dict[str, Any]] = {}
        self.named_by = defaultdict(int)  # where widget names came from

    def convert(self) -> Dict[str, Any]:
        self._level(self.wf, "", None, 0)
        return self.prompt

    def _widget_names(self, node: Dict[str, Any], count: int) -> List[str]:
        names = [i["widget"]["name"] for i in node.get("inputs") or []
                 if isinstance(i, dict) and isinstance(i.get("widget"), dict) and i["widget"].get("name")]
        # an old or hand-edited file may list only some widgets (those once converted to inputs)
        controls = sum(1 for v in node.get("widgets_values") or [] if v in CONTROL_VALUES)
        if names and count - controls <= len(names) <= count:
            self.named_by["node inputs"] += 1
            return names
        specs = self.table.get(node.get("type")) if self.table is not None else ()
        by_index = {s.index: s.input for s in specs if s.index is not None and not s.is_glob}
        if by_index:
            self.named_by["loader table"] += 1
        else:
            self.named_by["widget_N"] += 1
        return [by_index.get(i, f"widget_{i}") for i in range(count)]

    def _widget_values(self, node: Dict[str, Any]) -> Dict[str, Any]:
        values = node.get("widgets_values")
        if isinstance(values, dict):
            return dict(values)
        named = node.get("widgets_values_named")
        if isinstance(named, dict) and named:  # newer frontends save the names beside the values
            self.named_by["widgets_values_named"] += 1
            return dict(named)
        if not isinstance(values, list):
            return {}
        names = self._widget_names(node, len(values))
        out: Dict[str, Any] = {}
        it = iter(values)
        for name in names:
            try:
                value = next(it)
            except StopIteration:
                break
            out[name] = value
            # a seed widget is followed by its "control after generate" value, which has no input
            if isinstance(value, int) and not isinstance(value, bool) and "seed" in name.lower():
                nxt = next(it, None)
                if nxt is not None and nxt not in CONTROL_VALUES:
                    it = iter([nxt, *it])
        return out

    def _level(self, level: Dict[str, Any], prefix: str, host: Optional[Tuple[Dict[str, Any], Dict[str, Any], str]],
               depth: int) -> None:
        if depth > 16:
            return
        links = _links(level)
        nodes = {n.get("id"): n for n in level.get("nodes") or [] if isinstance(n, dict)}
        for node in nodes.values():
            ntype = node.get("type")
            if not isinstance(ntype, str) or ntype in FRONTEND_ONLY or node.get("mode") in INACTIVE:
                continue
            nid = f"{prefix}{node.get('id')}"
            if ntype in self.defs:
                self._level(self.defs[ntype], nid + ":", (node, level, prefix), depth + 1)
                continue
            inputs = self._widget_values(node)
            for inp in node.get("inputs") or []:
                if not isinstance(inp, dict) or inp.get("link") is None:
                    continue
                name = inp.get("widget", {}).get("name") if isinstance(inp.get("widget"), dict) else inp.get("name")
                value = self._resolve(inp["link"], links, nodes, prefix, host, depth)
                if value is not None and name:
                    inputs[name] = value
            self.prompt[nid] = {"class_type": ntype, "inputs": inputs}

    def _resolve(self, link_id: Any, links, nodes, prefix: str, host, depth: int) -> Any:
        """A link's value: a primitive's literal, a subgraph input's host value, else [id, slot]."""
        for _ in range(32):
            link = links.get(link_id)
            if link is None:
                return None
            origin_id, origin_slot = link[0], link[1]
            if origin_id == SUBGRAPH_INPUT and host is not None:
                return self._host_value(host, origin_slot, depth)
            origin = nodes.get(origin_id)
            if origin is None:
                return None
            if origin.get("type") == "PrimitiveNode":
                values = origin.get("widgets_values")
                return values[0] if isinstance(values, list) and values else None
            if origin.get("type") == "Reroute":
                nxt = next((i.get("link") for i in origin.get("inputs") or [] if isinstance(i, dict)), None)
                if nxt is None:
                    return None
                link_id = nxt
                continue
            return [f"{prefix}{origin_id}", origin_slot]
        return None

    def _host_value(self, host, slot: Any, depth: int) -> Any:
        node, level, prefix = host
        sub = self.defs.get(node.get("type")) or {}
        sub_inputs = sub.get("inputs") or []
        if not isinstance(slot, int) or not 0 <= slot < len(sub_inputs):
            return None
        name = sub_inputs[slot].get("name") if isinstance(sub_inputs[slot], dict) else None
        host_inputs = [i for i in node.get("inputs") or [] if isinstance(i, dict)]
        match = next((i for i in host_inputs if i.get("name") == name), None)
        if match is not None and match.get("link") is not None:
            nodes = {n.get("id"): n for n in level.get("nodes") or [] if isinstance(n, dict)}
            return self._resolve(match["link"], _links(level), nodes, prefix, None, depth)
        values = node.get("widgets_values")
        widget_names = self._host_widget_names(sub, node, len(values) if isinstance(values, list) else 0)
        if isinstance(values, list) and name in widget_names:
            k = widget_names.index(name)
            return values[k] if k < len(values) else None
        return None


    @staticmethod
    def _host_widget_names(sub: Dict[str, Any], node: Dict[str, Any], count: int) -> List[str]:
        """The frontend's host widgets: one per subgraph input feeding an inner widget, in input order."""
        inner = {n.get("id"): n for n in sub.get("nodes") or [] if isinstance(n, dict)}
        links = _links(sub)

        def feeds_widget(spec: Dict[str, Any]) -> bool:
            for link_id in spec.get("linkIds") or []:
                link = links.get(link_id)
                target = inner.get(link[2]) if link else None
                slots = (target or {}).get("inputs") or []
                if link and isinstance(link[3], int) and 0 <= link[3] < len(slots) and isinstance(slots[link[3]], dict) \
                        and slots[link[3]].get("widget"):
                    return True
            return False

        sub_inputs = [i for i in sub.get("inputs") or [] if isinstance(i, dict)]
        names = [i.get("name") for i in sub_inputs if feeds_widget(i)]
        if len(names) == count:
            return names
        return [i.get("widget", {}).get("name") for i in node.get("inputs") or []
                if isinstance(i, dict) and isinstance(i.get("widget"), dict)]


def to_schema1(wf: Dict[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(wf)
    for level in _levels(out):
        links = []
        for raw in level.get("links") or []:
            if isinstance(raw, list) and len(raw) >= 5:
                links.append({"id": raw[0], "origin_id": raw[1], "origin_slot": raw[2], "target_id": raw[3],
                              "target_slot": raw[4], "type": raw[5] if len(raw) > 5 else "*"})
            else:
                links.append(raw)
        level["links"] = links
    out["version"] = 1
    out.setdefault("state", {"lastNodeId": out.pop("last_node_id", 0), "lastLinkId": out.pop("last_link_id", 0)})
    return out


def to_png(wf: Dict[str, Any]) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    text = b"workflow\0" + json.dumps(wf, ensure_ascii=False).encode("utf-8")
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"tEXt", text)
            + chunk(b"IDAT", zlib.compress(b"\0\0\0\0")) + chunk(b"IEND", b""))


def to_windows(wf: Dict[str, Any], labels: Set[Label]) -> Tuple[Dict[str, Any], Set[Label]]:
    """Every widget value naming a labelled file moved into ``bench\\`` (a Windows sub-folder)."""
    names = {name for _folder, name in labels}
    moved: Set[str] = set()
    out = copy.deepcopy(wf)

    def one(v: Any) -> Any:
        if isinstance(v, str) and v.replace("\\", "/") in names:
            moved.add(v.replace("\\", "/"))
            return "bench\\" + v.replace("/", "\\")
        return v

    def move(values: Any) -> Any:
        if isinstance(values, list):
            return [one(v) for v in values]
        if isinstance(values, dict):
            return {k: one(v) for k, v in values.items()}
        return values

    for level in _levels(out):
        for node in level.get("nodes") or []:
            if isinstance(node, dict):
                node["widgets_values"] = move(node.get("widgets_values"))
                if isinstance(node.get("widgets_values_named"), dict):
                    node["widgets_values_named"] = move(node["widgets_values_named"])
    # names written inside prompt text (embedding:NAME) are not widget values: they stay
    return out, {(folder, "bench/" + name if name in moved else name) for folder, name in labels}


# -- scoring --------------------------------------------------------------------------------------

def found(scanner: WorkflowScanner, data: Any) -> Set[Label]:
    return {(r.expected_directory, r.filename) for r in scanner.scan_data(data).model_references}


def fixture_cases() -> List[Tuple[str, Dict[str, Any], Set[Label]]]:
    folder = REPO / "tests" / "fixtures" / "workflows"
    labels = json.loads((folder / "LABELS.json").read_text(encoding="utf-8"))
    out = []
    for wf in labels["workflows"]:
        want: Set[Label] = set()
        for ref in wf["refs"]:
            value = ref["file_value"]
            if value.startswith("(implicit)"):
                continue  # no file name in the workflow (InstantID's insightface models)
            name = next(find_embeddings(value)) if value.startswith("embedding:") else value.replace("\\", "/")
            want.add((canonical_folder(ref["folder"]), name))
        path = folder / wf["workflow"]
        data = json.loads(path.read_text(encoding="utf-8")) if path.suffix == ".json" else None
        if data is not None:
            out.append((wf["workflow"], data, want))
    return out


def template_cases(wheel: Path) -> List[Tuple[str, Dict[str, Any], Set[Label], Set[Label]]]:
    out = []
    with zipfile.ZipFile(wheel) as zf:
        for name in sorted(zf.namelist()):
            if not name.endswith(".json") or "/templates/" not in name or name.endswith("index.json"):
                continue
            try:
                wf = json.loads(zf.read(name))
            except ValueError:
                continue
            if not isinstance(wf, dict) or not isinstance(wf.get("nodes"), list):
                continue
            labels, active = template_labels(wf)
            if labels:
                out.append((name.rsplit("/", 1)[-1], wf, labels, active))
    return out


def download_wheel(version: str, dest: Path) -> Path:
    spec = TEMPLATES_PACKAGE + (f"=={version}" if version else "")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                    "-d", str(dest), spec], check=True)
    return sorted(dest.glob("comfyui_workflow_templates_json-*.whl"))[-1]


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheels", type=Path, help="a folder holding the templates wheel (no download)")
    ap.add_argument("--templates-version", default="")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--misses", action="store_true", help="list the misses of the tuning part")
    args = ap.parse_args(argv)

    tmp = tempfile.TemporaryDirectory(prefix="cfs-recall-")
    if args.wheels:
        wheel = sorted(args.wheels.glob("comfyui_workflow_templates_json-*.whl"))[-1]
    else:
        wheel = download_wheel(args.templates_version, Path(tmp.name))
    scanner = WorkflowScanner(Config(cache_enabled=False))
    table = scanner.table
    started = time.perf_counter()
    # part -> format -> [found, total]
    score: Dict[str, Dict[str, List[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    misses: List[str] = []
    named_by: Dict[str, int] = defaultdict(int)

    def count(part: str, fmt: str, want: Set[Label], got: Set[Label], name: str) -> None:
        score[part][fmt][0] += len(want & got)
        score[part][fmt][1] += len(want)
        if part != "held-out" and want - got:
            misses.extend(f"{part} {fmt} {name}: {folder}/{file}" for folder, file in sorted(want - got))

    cases = template_cases(wheel)
    for name, wf, labels, active in cases:
        part = "held-out" if held_out(name) else "tuning"
        bare = strip_metadata(wf)
        count(part, "ui", labels, found(scanner, bare), name)
        conv = ApiConverter(bare, table)
        count(part, "api", active, found(scanner, conv.convert()), name)
        for k, v in conv.named_by.items():
            named_by[k] += v
        count(part, "png", labels, found(scanner, to_png(bare)), name)
        count(part, "schema1", labels, found(scanner, to_schema1(bare)), name)
        win, win_labels = to_windows(bare, labels)
        count(part, "windows", win_labels, found(scanner, win), name)
    fixtures = fixture_cases()
    for name, wf, want in fixtures:
        bare = strip_metadata(wf) if isinstance(wf.get("nodes"), list) else wf
        fmt = "ui" if isinstance(wf.get("nodes"), list) else "api"
        count("fixtures", fmt, want, found(scanner, bare), name)
        if fmt == "ui":
            count("fixtures", "png", want, found(scanner, to_png(bare)), name)
            count("fixtures", "schema1", want, found(scanner, to_schema1(bare)), name)
            win, win_want = to_windows(bare, want)
            count("fixtures", "windows", win_want, found(scanner, win), name)
    elapsed = time.perf_counter() - started

    version = wheel.name.split("-")[1]
    print(f"scanner recall, metadata removed: {TEMPLATES_PACKAGE} {version} ({len(cases)} templates with models "
          f"metadata; held out: sha256(name) % 100 < {HELD_OUT_PERCENT}) + {len(fixtures)} fixture workflows "
          f"({elapsed:.1f} s)")
    print(f"{'part':10} " + " ".join(f"{f:>16}" for f in FORMATS))
    figures: Dict[str, Dict[str, Any]] = {}
    for part in ("tuning", "held-out", "fixtures"):
        cells = []
        for fmt in FORMATS:
            hit, total = score[part][fmt]
            figures.setdefault(part, {})[fmt] = {"found": hit, "labels": total,
                                                 "recall": round(hit / total, 4) if total else None}
            cells.append(f"{hit / total:.4f} ({hit}/{total})" if total else "-")
        print(f"{part:10} " + " ".join(f"{c:>16}" for c in cells))
    print("API widget names taken from: " + ", ".join(f"{k} {v}" for k, v in sorted(named_by.items())))
    if args.misses:
        for line in misses:
            print("miss:", line)
    if args.json:
        args.json.write_text(json.dumps({"templates": {"package": TEMPLATES_PACKAGE, "version": version,
                                                       "templates": len(cases)},
                                         "held_out_rule": f"int(sha256(name).hexdigest()[:8], 16) % 100 < {HELD_OUT_PERCENT}",
                                         "figures": figures, "api_widget_names": dict(named_by)}, indent=1))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
