"""Write resolved sources into a UI workflow as ComfyUI's own model metadata.

Each loader node that uses a file gets an entry in ``properties.models``::

    {"name": "sd15/model.safetensors", "url": "https://...", "directory": "checkpoints",
     "hash": "<sha256 hex>", "hash_type": "sha256"}

the shape ComfyUI's frontend reads for its missing-models dialog, so whoever opens the
saved workflow next gets exact sources.  Nodes inside ``definitions.subgraphs`` are
annotated too.  Nothing else in the document changes: the input is not modified, and the
copy differs only in the ``properties.models`` lists of the nodes concerned.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from .datamodel import AUTO_CHOICE_FLOOR, AnalysisResult, ModelLocation, ModelReference, Resolution
from .errors import ValidationError, WorkflowParseError
from .folders import canonical_folder
from .security import check_url

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
#: locations that name a file without being the loader that uses it
_NOT_A_LOADER = ("properties.models", "(prompt text)", "(lora tag)")
_PATH_TOKEN = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")


@dataclass(frozen=True)
class ModelSource:
    """Where a workflow's model file comes from.

    ``filename`` and ``directory`` identify the file as the workflow names it (folder key,
    relative path with sub-folders).  ``locations`` say which nodes use it; when empty,
    ``annotate_workflow`` finds them by scanning the workflow.
    """

    directory: str
    filename: str
    url: str
    sha256: Optional[str] = None
    locations: Tuple[ModelLocation, ...] = field(default=(), compare=False)

    @property
    def key(self) -> str:
        return f"{self.directory}/{self.filename}"


SourceLike = Union[ModelSource, Mapping[str, Any], ModelReference]


def annotate_workflow(workflow: dict, sources: Iterable[SourceLike], *, config=None) -> dict:
    """A copy of the UI ``workflow`` with ``properties.models`` entries for ``sources``.

    ``sources``: ``ModelSource`` objects, download specs / items (``{"key"?, "filename",
    "directory", "url", "sha256"?}``) or references carrying a ``url``.  Raises
    ``WorkflowParseError`` for an API-format prompt (it has nowhere to keep metadata) and
    ``ValidationError`` for a source without a usable URL.
    """
    return annotate_workflow_with_count(workflow, sources, config=config)[0]


def annotate_workflow_with_count(workflow: dict, sources: Iterable[SourceLike], *,
                                 config=None) -> Tuple[dict, int]:
    """``annotate_workflow`` plus how many node entries were written or updated."""
    if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
        raise WorkflowParseError(None, "annotate needs a UI-format workflow (a 'nodes' list); "
                                       "API-format prompts have no place for model metadata")
    wanted = [to_source(s) for s in sources]
    if any(not s.locations for s in wanted):
        wanted = _locate(workflow, wanted, config)
    document = copy.deepcopy(workflow)
    graphs = _SubgraphIndex(document)
    count = 0
    for source in wanted:
        done = set()
        for loc in source.locations:
            if any(marker in loc.where for marker in _NOT_A_LOADER) or loc.where == "models":
                continue
            node = graphs.node(loc.node_id, loc.subgraph_path)
            if node is None or id(node) in done:
                continue
            done.add(id(node))
            _write_entry(node, _entry(source, _raw_name(node, loc.where, source.filename)))
            count += 1
    return document, count


def to_source(value: SourceLike) -> ModelSource:
    """A ``ModelSource`` from any accepted source shape (checked: http(s) URL, sha256 form)."""
    if isinstance(value, ModelSource):
        source = value
    elif isinstance(value, ModelReference):
        if not value.url:
            raise ValidationError(f"reference {value.key!r} has no url to embed")
        sha = value.hash if (value.hash_type or "sha256").lower() == "sha256" else None
        source = ModelSource(value.expected_directory, value.filename, value.url, sha, tuple(value.locations))
    elif isinstance(value, Mapping):
        key = value.get("key")
        if isinstance(key, str) and "/" in key:
            # a plan spec: the key names the file as the workflow does (filename may be save_as)
            directory, filename = key.split("/", 1)
        else:
            directory, filename = value.get("directory"), value.get("filename")
        if not isinstance(directory, str) or not isinstance(filename, str) or not directory or not filename:
            raise ValidationError("a source needs 'directory' and 'filename' (or 'key')")
        url = value.get("url") or value.get("download_url")
        sha = value.get("sha256") or value.get("hash_sha256")
        source = ModelSource(directory, filename, url, sha)  # type: ignore[arg-type]
    else:
        raise ValidationError(f"cannot use {type(value).__name__} as a model source")
    if not isinstance(source.url, str):
        raise ValidationError(f"source {source.key!r} has no url")
    check_url(source.url)  # http(s), no credentials: it will be shared with the workflow
    sha = source.sha256
    if sha is not None and (not isinstance(sha, str) or not _SHA256.match(sha.strip())):
        sha = None  # other hash kinds (AutoV2...) are not what hash_type "sha256" promises
    directory = canonical_folder(source.directory.strip())
    filename = source.filename.replace("\\", "/").strip()
    return ModelSource(directory, filename, source.url.strip(), sha.strip().lower() if sha else None,
                       tuple(source.locations))


def sources_from_analysis(analysis: AnalysisResult, core: Any = None,
                          min_confidence: Optional[float] = None) -> List[ModelSource]:
    """Sources worth embedding: each missing reference's chosen candidate (the one a fix
    would download), and references whose workflow metadata already named a URL."""
    if min_confidence is None:
        config = getattr(core, "config", None)
        min_confidence = getattr(config, "min_confidence", 0.9)
    threshold = max(float(min_confidence), AUTO_CHOICE_FLOOR)
    out: Dict[str, ModelSource] = {}
    for res in analysis.resolutions:
        source = _from_resolution(res, threshold)
        if source is not None:
            out[source.key] = source
    for ref in analysis.references:
        if ref.key not in out and ref.url:
            try:
                out[ref.key] = to_source(ref)
            except (ValidationError, ValueError):
                continue  # a malformed URL in someone's metadata is not ours to copy
    return list(out.values())


# -- internals ------------------------------------------------------------------------------------

def _from_resolution(res: Resolution, threshold: float) -> Optional[ModelSource]:
    chosen = res.choose(threshold)
    if chosen is None:
        return None
    ref = res.reference
    sha = chosen.hash_sha256 or (ref.hash if (ref.hash_type or "sha256").lower() == "sha256" else None)
    try:
        return to_source(ModelSource(ref.expected_directory, ref.filename, chosen.download_url, sha,
                                     tuple(ref.locations)))
    except (ValidationError, ValueError):
        return None


def _locate(workflow: dict, sources: Sequence[ModelSource], config) -> List[ModelSource]:
    """Fill in the locations of sources given without them, from one scan of the workflow."""
    from .scan import WorkflowScanner

    data = WorkflowScanner(config).scan_data(workflow)
    by_key: Dict[str, List[ModelLocation]] = {}
    for ref in data.model_references:
        by_key.setdefault(f"{canonical_folder(ref.expected_directory)}/{ref.filename}", []).extend(ref.locations)
    return [s if s.locations else ModelSource(s.directory, s.filename, s.url, s.sha256,
                                              tuple(by_key.get(s.key, ())))
            for s in sources]


class _SubgraphIndex:
    """Finds a node by id and subgraph path (instance node ids, outermost first)."""

    def __init__(self, document: dict):
        self.root = document
        self.definitions: Dict[str, dict] = {}
        self._collect(document, depth=0)

    def _collect(self, graph: dict, depth: int) -> None:
        if depth > 32:  # definitions nest only a few levels; stop malicious depth
            return
        subgraphs = (graph.get("definitions") or {}).get("subgraphs") if isinstance(graph.get("definitions"), dict) \
            else None
        for sub in subgraphs or []:
            if isinstance(sub, dict) and isinstance(sub.get("id"), str):
                self.definitions.setdefault(sub["id"], sub)
                self._collect(sub, depth + 1)

    def node(self, node_id: Any, path: Sequence[Any]) -> Optional[dict]:
        graph: Optional[dict] = self.root
        for instance_id in path:
            instance = _find(graph, instance_id)
            graph = self.definitions.get(str(instance.get("type"))) if instance else None
            if graph is None:
                return None
        return _find(graph, node_id)


def _find(graph: Optional[dict], node_id: Any) -> Optional[dict]:
    if graph is None:
        return None
    for node in graph.get("nodes") or []:
        if isinstance(node, dict) and str(node.get("id")) == str(node_id):
            return node
    return None


def _raw_name(node: dict, where: str, filename: str) -> str:
    """The file name exactly as the node holds it (Windows separators included), if it is
    the same file; otherwise the reference's normalised name."""
    value: Any = node
    for index, name in _PATH_TOKEN.findall(where):
        if index:
            value = value[int(index)] if isinstance(value, list) and int(index) < len(value) else None
        else:
            value = value.get(name) if isinstance(value, dict) else None
        if value is None:
            return filename
    if isinstance(value, str) and value.replace("\\", "/").strip() == filename:
        return value
    return filename


def _entry(source: ModelSource, name: str) -> Dict[str, Any]:
    entry: Dict[str, Any] = {"name": name, "url": source.url, "directory": source.directory}
    if source.sha256:
        entry["hash"] = source.sha256
        entry["hash_type"] = "sha256"
    return entry


def _write_entry(node: dict, entry: Dict[str, Any]) -> None:
    """Update the node's entry for the same file in place, or append one."""
    props = node.get("properties")
    if not isinstance(props, dict):
        props = node["properties"] = {}
    models = props.get("models")
    if not isinstance(models, list):
        models = props["models"] = []
    for existing in models:
        if isinstance(existing, dict) and existing.get("name") == entry["name"] \
                and canonical_folder(str(existing.get("directory") or entry["directory"])) == entry["directory"]:
            if "hash" not in entry and existing.get("url") != entry["url"]:
                # the hash of the old source says nothing about the new one
                existing.pop("hash", None)
                existing.pop("hash_type", None)
            existing.update(entry)
            return
    models.append(entry)
