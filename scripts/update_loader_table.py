"""Regenerate the bundled loader tables from ComfyUI's and popular custom-node packs' sources.

    python scripts/update_loader_table.py --comfyui PATH [--pack PATH ...] \
        [--origin NAME=owner/repo@commit ...] [--extra FILE=owner/repo@commit ...] \
        [--core-out FILE] [--custom-out FILE] [--check]

Runs the same static reader as ``comfyfixer scan --comfyui-root`` (``comfyfixersmart.scan.nodedefs``:
``ast`` only, nothing is imported) over a ComfyUI source tree (``nodes.py``, ``comfy_extras/``,
``comfy_api_nodes/``, ``folder_paths.py``) and each pack folder, then MERGES the result into
``comfyfixersmart/data/core_loaders.json`` and ``custom_loaders.json``:

* an input the table already lists keeps its entry (hand-written rules such as ``index``,
  ``repeat``, ``values``, ``prefixes`` survive, and its folder: a differing folder in the source
  is reported with ``!`` for a human to decide);
* inputs and node types the table lacks are added; entries the sources no longer show stay
  (older installs still have those nodes); ``node_types`` is the union;
* the ComfyUI version and commit, and every pack's repository and commit, are recorded.

``--extra FILE=owner/repo@commit`` reads single ComfyUI source files newer than the tree (when
only those files of a newer commit can be had, not the whole tree) as core nodes; each is
recorded with its repository and commit under ``comfyui.extra_files``.

Provenance: a path inside a git work tree is described by its HEAD and ``origin`` remote;
otherwise pass ``--origin NAME=owner/repo@commit`` (NAME: the folder's name).  Only the
generated tables are committed, never the sources read.  ``--check`` writes nothing and exits 1
when the tables would change.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from comfyfixersmart.folders import canonical_folder  # noqa: E402
from comfyfixersmart.scan.loaders import CORE_TABLE, CUSTOM_TABLE, parse_table  # noqa: E402
from comfyfixersmart.scan.nodedefs import NodeDefs, collect, read_source  # noqa: E402
from comfyfixersmart.scan.nodetable import table_entries  # noqa: E402
from comfyfixersmart.scan.rootdefs import _py_files, read_root  # noqa: E402


# -- provenance --------------------------------------------------------------------------------

def git_origin(path: Path) -> Optional[Tuple[str, str]]:
    """(owner/repo, commit) of a git work tree, or None."""
    try:
        commit = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True, timeout=30).stdout.strip()
        url = subprocess.run(["git", "-C", str(path), "remote", "get-url", "origin"], capture_output=True,
                             text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"[:/]([^/:]+/[^/]+?)(?:\.git)?/?$", url)
    return (m.group(1) if m else url or "unknown"), commit


def origin_of(path: Path, given: Dict[str, str]) -> Dict[str, str]:
    spec = given.get(path.name)
    if spec:
        repo, _, commit = spec.partition("@")
        return {"repo": repo, "commit": commit}
    found = git_origin(path)
    if found:
        return {"repo": found[0], "commit": found[1]}
    return {"repo": "unknown", "commit": "unknown"}


def comfyui_version(root: Path) -> str:
    text = (root / "comfyui_version.py").read_text() if (root / "comfyui_version.py").is_file() else ""
    m = re.search(r"__version__\s*=\s*[\"']([^\"']+)", text)
    return m.group(1) if m else "unknown"


# -- merging -----------------------------------------------------------------------------------

def covered_names(entry: Dict[str, Any]) -> List[str]:
    """The input names one table entry stands for (``clip_name{i}`` with ``repeat`` expanded)."""
    name = entry["input"]
    repeat = int(entry.get("repeat", 1))
    start = int(entry.get("start", 1))
    return [name.replace("{i}", str(start + k)) for k in range(repeat)] if "{i}" in name else [name]


def merge_loaders(old: Dict[str, List[Dict[str, Any]]], new: Dict[str, List[Dict[str, Any]]],
                  changes: List[str]) -> Dict[str, List[Dict[str, Any]]]:
    out = {k: [dict(e) for e in v] for k, v in old.items()}
    for node_type, entries in new.items():
        mine = out.get(node_type)
        if not mine:
            out[node_type] = entries
            changes.append(f"+ {node_type}: " + ", ".join(f"{e['input']}->{e['folder']}" for e in entries))
            continue
        for entry in entries:
            hit = next((m for m in mine if entry["input"] in covered_names(m)
                        or fnmatch.fnmatchcase(entry["input"], m["input"])), None)
            if hit is None:
                mine.append(entry)
                changes.append(f"+ {node_type}.{entry['input']} -> {entry['folder']}")
            elif canonical_folder(hit["folder"]) != entry["folder"]:
                # reported, not applied: a hand-written folder is a decision (GGUF's unet_gguf key
                # lists the diffusion_models folders; Impact's bbox/ and segm/ live in ultralytics)
                changes.append(f"! {node_type}.{entry['input']}: table says {hit['folder']}, "
                               f"the source lists {entry['folder']} (kept {hit['folder']})")
    return out


def merge_folders(old: Dict[str, List[str]], new: Dict[str, Optional[Tuple[str, ...]]]) -> Dict[str, List[str]]:
    out = {k: list(v) for k, v in old.items()}
    for key, exts in new.items():
        if exts or key not in out:
            out[key] = sorted(exts or out.get(key, []))
    return dict(sorted(out.items()))


# -- main --------------------------------------------------------------------------------------

CORE_DOC = [
    "Core table: every loader of ComfyUI's own nodes (inputs whose options are folder_paths.get_filename_list(FOLDER)),",
    "read by scripts/update_loader_table.py from the ComfyUI sources named in 'comfyui' and merged with hand-written",
    "entries.  'node_types' lists every core node class so the scanner can tell custom node types apart; 'folders' are",
    "the folder keys of that ComfyUI's folder_paths.py with their file extensions.",
]
CUSTOM_DOC = [
    "Custom-node table: loaders of the popular custom-node packs listed in 'packs' (repository and commit read),",
    "read by scripts/update_loader_table.py and merged with hand-written entries; 'folders' are the folder keys",
    "those packs register themselves.  Extend it without code: see below.",
]


def with_header(doc: List[str], header: List[str]) -> List[str]:
    """``header`` in place of the lines before the format description."""
    start = next((i for i, line in enumerate(doc) if line.startswith("Loader table of")), len(doc))
    return header + doc[start:]


def read_pack(path: Path) -> NodeDefs:
    return collect(read_source(f.read_bytes(), str(f)) for f in _py_files(path))


def parse_extra(spec: str) -> Tuple[Path, Dict[str, str]]:
    """``FILE=owner/repo@commit`` -> (FILE, {"file", "repo", "commit"})."""
    path, sep, origin = spec.partition("=")
    repo, at, commit = origin.partition("@")
    if not sep or not at or not repo or not commit:
        raise ValueError(f"--extra {spec!r}: expected FILE=owner/repo@commit")
    return Path(path), {"file": Path(path).name, "repo": repo, "commit": commit}


def update(comfyui: Path, packs: List[Path], origins: Dict[str, str], core_out: Path, custom_out: Path,
           check: bool = False, extras: Optional[List[str]] = None) -> List[str]:
    """Merge the readings into the two table files; returns the list of changes."""
    changes: List[str] = []
    core_data = json.loads(core_out.read_text(encoding="utf-8"))
    custom_data = json.loads(custom_out.read_text(encoding="utf-8"))
    today = datetime.date.today().isoformat()

    root = read_root(comfyui, None)
    core = root.core
    extra_files: List[Dict[str, str]] = []
    if extras:
        # single newer files: their node types and loaders join the tree's (a file's loaders
        # replace the tree's reading of the same node types: the file is the newer source)
        readings = []
        for spec in extras:
            path, origin = parse_extra(spec)
            readings.append(read_source(path.read_bytes(), str(path)))
            extra_files.append(origin)
        core.update(collect(readings))
    fp = comfyui / "folder_paths.py"
    core_folders = read_source(fp.read_bytes(), str(fp)).folders if fp.is_file() else {}
    core_folders.pop("custom_nodes", None)
    comfy_origin = origin_of(comfyui, origins)
    core_data["comfyui"] = {"version": comfyui_version(comfyui), **comfy_origin, "read": today}
    if extra_files:
        core_data["comfyui"]["extra_files"] = extra_files
    core_data["loaders"] = merge_loaders(core_data.get("loaders", {}), table_entries(core), changes)
    added = sorted(core.node_types - set(core_data.get("node_types", [])))
    if added:
        changes.append(f"+ {len(added)} core node types")
    core_data["node_types"] = sorted(set(core_data.get("node_types", [])) | core.node_types)
    core_data["folders"] = merge_folders(core_data.get("folders", {}), core_folders)

    pack_info = {p.get("name"): p for p in custom_data.get("packs", []) if isinstance(p, dict)}
    loaders = custom_data.get("loaders", {})
    folders = custom_data.get("folders", {})
    for path in packs:
        defs = read_pack(path)
        # a pack node that shadows a core node type is ComfyUI's business, not the table's
        entries = {k: v for k, v in table_entries(defs).items() if k not in core.node_types}
        loaders = merge_loaders(loaders, entries, changes)
        folders = merge_folders(folders, {k: v for k, v in defs.folders.items() if k not in core_folders})
        pack_info[path.name] = {"name": path.name, **origin_of(path, origins), "read": today,
                                "node_types": len(defs.node_types), "loaders": len(defs.nodes)}
    custom_data["packs"] = sorted(pack_info.values(), key=lambda p: p["name"].lower())
    custom_data["loaders"] = loaders
    custom_data["folders"] = folders

    core_data["_doc"] = with_header(core_data.get("_doc", []), CORE_DOC)
    custom_data["_doc"] = with_header(custom_data.get("_doc", []), CUSTOM_DOC)
    for data, out in ((core_data, core_out), (custom_data, custom_out)):
        parse_table(data, source="check", origin=str(out))  # never write a table the scanner rejects
        text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
        if not check and text != out.read_text(encoding="utf-8"):
            out.write_text(text, encoding="utf-8")
    return changes


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--comfyui", type=Path, required=True, help="a ComfyUI source tree")
    ap.add_argument("--pack", type=Path, action="append", default=[], help="a custom-node pack folder")
    ap.add_argument("--origin", action="append", default=[], help="NAME=owner/repo@commit for a folder without git")
    ap.add_argument("--extra", action="append", default=[],
                    help="FILE=owner/repo@commit: a single newer ComfyUI source file read as core nodes")
    ap.add_argument("--core-out", type=Path, default=CORE_TABLE)
    ap.add_argument("--custom-out", type=Path, default=CUSTOM_TABLE)
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if the tables would change")
    args = ap.parse_args(argv)
    origins = dict(o.split("=", 1) for o in args.origin if "=" in o)
    if not (args.comfyui / "nodes.py").is_file():
        ap.error(f"{args.comfyui} has no nodes.py: not a ComfyUI source tree")
    try:
        extras = [spec for spec in args.extra if parse_extra(spec)[0].is_file() or ap.error(f"{spec}: no such file")]
    except ValueError as exc:
        ap.error(str(exc))
    changes = update(args.comfyui, args.pack, origins, args.core_out, args.custom_out, args.check, extras)
    for line in changes:
        print(line)
    print(f"{len(changes)} change(s)" + (" (not written: --check)" if args.check else ""))
    return 1 if args.check and any(not c.startswith("!") for c in changes) else 0


if __name__ == "__main__":
    sys.exit(main())
