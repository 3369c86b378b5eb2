"""Build the known-model index from the wheels of public, well-kept metadata packages.

Sources (all on PyPI; their licences are recorded in the index):

* ``comfyui-workflow-templates-json`` (MIT, Comfy-Org): every official workflow template;
  node ``properties.models`` and top-level ``models`` entries ``{name, url, directory, hash?}``.
  The meta package ``comfyui-workflow-templates`` names it in its ``Requires-Dist``; the
  ``-media-*`` packages carry the same JSON plus ~100 MB of previews each and are read only
  when given.
* ``comfyui-manager`` (GPL-3.0): ``model-list.json`` ``{name, type, base, save_path,
  filename, url}``.  Only the facts needed to find a file (file name, folder, URL) are kept;
  no description or other text of the list is copied.

Used by ``scripts/build_model_index.py`` (the bundled snapshot, with ``pip download``) and by
the background refresh (``index_refresh``); both call :func:`build_index` on wheel files.
Pure functions: no network here.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zipfile
from email.parser import HeaderParser
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import quote, unquote, urlsplit

from ..errors import ValidationError
from ..folders import canonical_folder, folder_for

FORMAT = 1
TEMPLATES_PACKAGE = "comfyui-workflow-templates"
TEMPLATES_JSON_PACKAGE = "comfyui-workflow-templates-json"
MANAGER_PACKAGE = "comfyui-manager"
#: canonical Hugging Face host of the index's URLs (downloads use ``Config.hf_endpoint``)
HF_CANONICAL = "https://huggingface.co"
_HF_HOSTS = ("huggingface.co", "www.huggingface.co", "hf.co")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")

#: ComfyUI-Manager's ``type`` -> folder key, for entries whose ``save_path`` is ``default``
#: (the table of ComfyUI-Manager's own ``get_model_dir``)
MANAGER_TYPE_FOLDERS: Dict[str, str] = {
    "checkpoint": "checkpoints",
    "checkpoints": "checkpoints",
    "unclip": "checkpoints",
    "clip": "text_encoders",
    "text_encoders": "text_encoders",
    "vae": "vae",
    "lora": "loras",
    "t2i-adapter": "controlnet",
    "t2i-style": "style_models",
    "controlnet": "controlnet",
    "clip_vision": "clip_vision",
    "gligen": "gligen",
    "upscale": "upscale_models",
    "embedding": "embeddings",
    "embeddings": "embeddings",
    "diffusion_model": "diffusion_models",
    "unet": "diffusion_models",
    "taesd": "vae_approx",
}


# -- URLs ----------------------------------------------------------------------------------

def hf_parts(url: str) -> Optional[Tuple[str, str, str]]:
    """``(repo_id, revision, path)`` of a Hugging Face file URL (resolve/blob/raw, hf.co or
    huggingface.co, any host given by the caller's check); None if it is not one."""
    parts = urlsplit(url)
    segs = [unquote(p) for p in parts.path.split("/") if p]
    if len(segs) >= 5 and segs[2] in ("resolve", "blob", "raw") and segs[0] not in ("datasets", "spaces", "api"):
        return f"{segs[0]}/{segs[1]}", segs[3], "/".join(segs[4:])
    return None


def hf_url(repo_id: str, revision: str, path: str, endpoint: str = HF_CANONICAL) -> str:
    """``<endpoint>/<repo>/resolve/<rev>/<path>`` (path quoted, ``/`` kept)."""
    return f"{endpoint.rstrip('/')}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"


def canonical_url(url: str) -> Optional[str]:
    """The URL the index keeps: Hugging Face links as ``https://huggingface.co/<repo>/resolve/
    <rev>/<path>`` (no ``?download=true``); other http(s) URLs unchanged; None if not a URL."""
    if not isinstance(url, str):
        return None
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    if parts.hostname.lower() in _HF_HOSTS:
        found = hf_parts(url)
        if found is None:
            return None  # a repo page, not a file
        return hf_url(*found)
    segs = parts.path.split("/")
    if parts.hostname.lower() == "github.com" and len(segs) > 5 and segs[3] == "blob":
        # a GitHub page link: /raw/ serves the file itself
        return f"https://github.com{'/'.join(segs[:3])}/raw/{'/'.join(segs[4:])}"
    return url


# -- reading the packages -------------------------------------------------------------------

def wheel_metadata(path: Path) -> Dict[str, Any]:
    """``{name, version, license, requires}`` of a wheel (from its ``METADATA``)."""
    with zipfile.ZipFile(path) as zf:
        meta_name = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
        if meta_name is None:
            raise ValidationError(f"{path.name} is not a wheel (no METADATA)")
        text = zf.read(meta_name).decode("utf-8", "replace")
    msg = HeaderParser().parsestr(text)
    licence = msg.get("License-Expression") or msg.get("License") or ""
    if not licence or len(licence) > 80:  # some put the whole licence text there
        classifiers = [c.rsplit("::", 1)[-1].strip() for c in msg.get_all("Classifier") or []
                       if c.startswith("License ::")]
        licence = classifiers[0] if classifiers else (licence[:80] if licence else "unknown")
    requires = []
    for req in msg.get_all("Requires-Dist") or []:
        if "extra ==" in req:
            continue
        name = re.split(r"[\s;<>=!~\[(]", req.strip(), maxsplit=1)[0]
        if name:
            requires.append(name)
    author = (msg.get("Author") or msg.get("Author-email") or "").strip()
    return {"name": normalise_package(msg.get("Name") or ""), "version": msg.get("Version") or "",
            "license": licence.strip(), "author": author[:80], "requires": requires}


def normalise_package(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _template_models(data: Any) -> Iterator[Dict[str, Any]]:
    """``models`` entries of one template workflow: top level, nodes, subgraph definitions."""
    if not isinstance(data, dict):
        return
    for entry in data.get("models") or []:
        yield entry

    def nodes_of(graph: Any) -> Iterable[Any]:
        nodes = graph.get("nodes") if isinstance(graph, dict) else None
        return nodes if isinstance(nodes, list) else []

    graphs = [data]
    definitions = data.get("definitions")
    if isinstance(definitions, dict):
        graphs += [g for g in definitions.get("subgraphs") or [] if isinstance(g, dict)]
    for graph in graphs:
        for node in nodes_of(graph):
            props = node.get("properties") if isinstance(node, dict) else None
            if isinstance(props, dict):
                for entry in props.get("models") or []:
                    yield entry


def template_entries(zf: zipfile.ZipFile) -> Iterator[Dict[str, Any]]:
    """Index entries of every template JSON in a templates wheel (``templates/*.json``)."""
    for member in sorted(zf.namelist()):
        if not member.endswith(".json") or "/templates/" not in f"/{member}" or member.rsplit("/", 1)[-1].startswith(
                "index"):
            continue
        try:
            data = json.loads(zf.read(member).decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        template = member.rsplit("/", 1)[-1][:-5]
        for entry in _template_models(data):
            if not isinstance(entry, dict):
                continue
            name, url, directory = entry.get("name"), canonical_url(entry.get("url") or ""), entry.get("directory")
            if not (isinstance(name, str) and name.strip() and url and isinstance(directory, str) and directory):
                continue
            sha = entry.get("hash")
            kind = str(entry.get("hash_type") or "sha256").lower()
            yield {
                "name": name.strip().replace("\\", "/"),
                "directory": canonical_folder(directory.strip()),
                "url": url,
                "sha256": sha.lower() if isinstance(sha, str) and _HEX64.match(sha) and kind in ("sha256", "sha-256")
                else None,
                "template": template,
            }


def manager_entries(zf: zipfile.ZipFile) -> Iterator[Dict[str, Any]]:
    """Index entries of ComfyUI-Manager's ``model-list.json``."""
    member = next((n for n in zf.namelist() if n.endswith("/model-list.json") or n == "model-list.json"), None)
    if member is None:
        return
    data = json.loads(zf.read(member).decode("utf-8"))
    for entry in data.get("models") or [] if isinstance(data, dict) else []:
        if not isinstance(entry, dict):
            continue
        filename, url = entry.get("filename"), canonical_url(entry.get("url") or "")
        if not (isinstance(filename, str) and filename.strip() and url):
            continue
        save_path = str(entry.get("save_path") or "default").strip().strip("/")
        if save_path == "default":
            kind = str(entry.get("type") or "").lower()
            directory = MANAGER_TYPE_FOLDERS.get(kind) or folder_for(kind)
            subfolder = ""
        else:
            head, _, subfolder = save_path.partition("/")
            directory = canonical_folder(head)
        if not directory:
            continue
        yield {"name": filename.strip(), "directory": directory, "url": url, "sha256": None,
               "subfolder": subfolder}


# -- the index -----------------------------------------------------------------------------

def build_index(wheels: Sequence[Path], *, via: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """The index (a JSON-able dict) built from template and manager wheels.

    ``via``: package -> ``"<meta package> <version>"`` that required it (recorded).
    Entries are unique by (directory, name, url); each lists the sources that name it.
    """
    sources: List[Dict[str, Any]] = []
    merged: Dict[Tuple[str, str, str], Dict[str, Any]] = {}
    for path in sorted(Path(p) for p in wheels):
        meta = wheel_metadata(path)
        with zipfile.ZipFile(path) as zf:
            if meta["name"] == MANAGER_PACKAGE:
                kind, entries = "model-list", list(manager_entries(zf))
            elif meta["name"].startswith(TEMPLATES_PACKAGE):
                kind, entries = "templates", list(template_entries(zf))
            else:
                raise ValidationError(f"{path.name}: not a package the index is built from")
        if not entries and kind == "templates":
            continue  # core/meta packages hold no templates
        index = len(sources)
        source = {"package": meta["name"], "version": meta["version"], "license": meta["license"],
                  "author": meta["author"], "kind": kind, "entries": len(entries)}
        if via and via.get(meta["name"]):
            source["via"] = via[meta["name"]]
        sources.append(source)
        for e in entries:
            key = (e["directory"], e["name"], e["url"])
            row = merged.get(key)
            if row is None:
                row = merged[key] = {"name": e["name"], "directory": e["directory"], "url": e["url"], "src": []}
            if e.get("sha256") and not row.get("sha256"):
                row["sha256"] = e["sha256"]
            if e.get("subfolder") and not row.get("subfolder"):
                row["subfolder"] = e["subfolder"]
            if index not in row["src"]:
                row["src"].append(index)
            if e.get("template"):
                row["templates"] = row.get("templates", 0) + 1
    models = sorted(merged.values(), key=lambda r: (r["directory"], r["name"].lower(), r["url"]))
    return {
        "format": FORMAT,
        "builder": "scripts/build_model_index.py (comfyfixersmart.search.index_build)",
        "sources": sources,
        "note": "Facts (file name, folder, URL, sha256) extracted from the packages named in 'sources', "
                "under their licences; the URLs point at the original publishers.",
        "models": models,
    }


def dumps_index(data: Dict[str, Any]) -> bytes:
    """Compact, stable JSON (one model per line, so a rebuild diffs well)."""
    head = {k: v for k, v in data.items() if k != "models"}
    lines = [json.dumps(m, separators=(",", ":"), ensure_ascii=False, sort_keys=True) for m in data["models"]]
    text = json.dumps(head, indent=1, ensure_ascii=False)[:-2] + ',\n "models": [\n' + ",\n".join(lines) + "\n]}\n"
    return text.encode("utf-8")


def load_index_bytes(raw: bytes) -> Dict[str, Any]:
    """Parse an index file (``.json`` or gzip-compressed); raise ValidationError if malformed."""
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.GzipFile(fileobj=io.BytesIO(raw)).read()
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(f"the known-model index is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list) or data.get("format") != FORMAT:
        raise ValidationError(f"the known-model index has an unknown layout (format {FORMAT} expected)")
    return data
