"""Typed data classes passed between the scanner, inventory, search, downloads and UI.

Every class has ``to_dict()`` returning plain JSON types (the CLI's ``--json`` and the
HTTP routes use it), so reports are stable and machine readable.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, Union

NodeId = Union[int, str]

#: A reference's status against the local inventory.
PRESENT = "present"
ELSEWHERE = "elsewhere"
MISSING = "missing"

#: Below this confidence a candidate is never chosen automatically, whatever the caller asks.
AUTO_CHOICE_FLOOR = 0.8


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if hasattr(value, "__fspath__"):
        return str(value)
    return value


class _Serializable:
    def to_dict(self) -> Dict[str, Any]:
        """Plain-JSON view of this object."""
        return _plain(self)


@dataclass
class ModelLocation(_Serializable):
    """One place in a workflow where a model file is named."""

    node_id: NodeId
    node_type: str
    #: where in the node: ``widgets_values[0]``, ``inputs.ckpt_name``, ``prompt text``,
    #: ``properties.models``, ``proxyWidgets``, ``models`` (top-level metadata) ...
    where: str
    #: ids of the subgraph instance nodes leading to this node, outermost first
    subgraph_path: List[NodeId] = field(default_factory=list)
    optional: bool = False


@dataclass
class ModelReference(_Serializable):
    """A model file a workflow needs.

    ``filename`` is the path relative to the ComfyUI folder (``/`` separated, sub-folder
    kept, e.g. ``sd15/model.safetensors``).  ``expected_directory`` is the ComfyUI folder key
    (legacy ``unet``/``clip`` already mapped).  ``status`` and ``found_path`` are filled by
    the inventory check.
    """

    filename: str
    node_type: str
    expected_type: str
    expected_directory: str
    widget_values: Dict[str, Any] = field(default_factory=dict)
    node_id: Optional[NodeId] = None
    subgraph_path: List[NodeId] = field(default_factory=list)
    #: True when every place that names it is muted (mode 2) or bypassed (mode 4)
    optional: bool = False
    url: Optional[str] = None
    hash: Optional[str] = None
    hash_type: Optional[str] = None
    #: how sure the extraction is: 1.0 for known loaders, lower for the unknown-node fallback
    confidence: float = 1.0
    #: how it was found: ``core``, ``custom``, ``embedding``, ``lora_tag``, ``metadata``, ``fallback``
    source: str = "core"
    locations: List[ModelLocation] = field(default_factory=list)
    workflow_path: Optional[str] = None
    status: Optional[str] = None
    #: for ``elsewhere``: ``folder_key/relative/path`` of the file found on disk
    found_path: Optional[str] = None
    #: for ``present``/``elsewhere``: absolute path of the file on disk
    local_path: Optional[str] = None
    #: why the folder is what it is, when it was guessed (a node no loader table knows)
    folder_reason: Optional[str] = None

    @property
    def key(self) -> str:
        """Identity of the file: ``folder/relative/path`` (what gets downloaded once)."""
        return f"{self.expected_directory}/{self.filename}"

    @property
    def basename(self) -> str:
        return self.filename.rsplit("/", 1)[-1]


@dataclass
class ValidationResult(_Serializable):
    """Outcome of ``WorkflowScanner.validate_workflow``."""

    valid: bool
    format: str = "unknown"  # "ui", "api" or "unknown"
    errors: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.valid


@dataclass
class MissingPack(_Serializable):
    """A custom-node pack a workflow needs (its node types are not installed); ``url`` and
    ``title`` are None when no known pack provides ``node_types``."""

    node_types: List[str] = field(default_factory=list)
    title: Optional[str] = None
    url: Optional[str] = None

    @property
    def message(self) -> str:
        types = ", ".join(self.node_types)
        if self.url is None:
            return f"no known custom-node pack provides {types}; their models can be placed once it is installed"
        return (f"this workflow also needs the pack {self.title} ({self.url}) for {types}; "
                "its models can be placed once it is installed")


@dataclass
class WorkflowData(_Serializable):
    """A parsed workflow and the model references found in it."""

    path: Optional[str]
    workflow_id: str
    nodes: List[dict] = field(default_factory=list)
    model_references: List[ModelReference] = field(default_factory=list)
    custom_node_types: Set[str] = field(default_factory=set)
    metadata: Dict[str, Any] = field(default_factory=dict)
    format: str = "unknown"
    warnings: List[str] = field(default_factory=list)
    #: names that need no file: ``<lora:>`` tags on nodes that do not apply them
    informational_references: List[ModelReference] = field(default_factory=list)
    #: custom-node packs to install for the node types ComfyUI does not know (``scan.packs``)
    missing_packs: List[MissingPack] = field(default_factory=list)


@dataclass
class ModelInfo(_Serializable):
    """A model file found on disk."""

    filename: str  # relative to its folder root, '/' separated
    folder: str  # folder key
    path: str  # absolute path
    size: int
    mtime: float
    model_type: str
    root: str = ""  # the folder root it was found under
    sha256: Optional[str] = None

    @property
    def basename(self) -> str:
        return self.filename.rsplit("/", 1)[-1]


@dataclass
class SearchResult(_Serializable):
    """A candidate file for a model reference.

    ``metadata["reason"]`` explains the confidence in words; other common metadata keys:
    ``page_url``, ``version_id``, ``file_id``, ``repo_id``, ``revision``, ``format``,
    ``requires_auth``, ``gated``, ``pickle`` (True for .ckpt/.pt/.pth/.bin).
    ``directory`` is the ComfyUI folder the file belongs in (taken from the reference
    when resolving one) and ``save_as`` the relative file name to save under.
    """

    backend: str
    model_id: str
    name: str
    filename: str
    model_type: str
    download_url: str
    size_bytes: Optional[int] = None
    hash_sha256: Optional[str] = None
    metadata: Dict[str, Any] = field(default_factory=dict)
    confidence: float = 0.0
    directory: Optional[str] = None
    save_as: Optional[str] = None

    @property
    def reason(self) -> str:
        return str(self.metadata.get("reason", ""))


@dataclass
class ModelDetails(_Serializable):
    """Details of one model on a backend (``ModelSearch.get_model_details``)."""

    backend: str
    model_id: str
    name: str
    model_type: str = "unknown"
    description: str = ""
    page_url: Optional[str] = None
    files: List[Dict[str, Any]] = field(default_factory=list)
    versions: List[Dict[str, Any]] = field(default_factory=list)
    metadata: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Resolution(_Serializable):
    """A missing reference and its ranked candidates (best first)."""

    reference: ModelReference
    candidates: List[SearchResult] = field(default_factory=list)
    #: backend failures met while resolving (message strings, tokens never included)
    errors: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def best(self) -> Optional[SearchResult]:
        return self.candidates[0] if self.candidates else None

    def choose(self, min_confidence: float = 0.9) -> Optional[SearchResult]:
        """Best candidate if sure enough; never one below ``AUTO_CHOICE_FLOOR``."""
        best = self.best
        if best is None or best.confidence < max(min_confidence, AUTO_CHOICE_FLOOR):
            return None
        return best


@dataclass
class AnalysisResult(_Serializable):
    """What ``ComfyFixerCore.analyze_workflows`` found."""

    workflows: List[WorkflowData] = field(default_factory=list)
    #: every distinct reference (status filled)
    references: List[ModelReference] = field(default_factory=list)
    #: one per missing reference, candidates ranked
    resolutions: List[Resolution] = field(default_factory=list)
    #: workflows that could not be read: ``{"path", "error"}``
    errors: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def missing_models(self) -> List[ModelReference]:
        return [r.reference for r in self.resolutions]

    @property
    def models_missing(self) -> int:
        return len(self.resolutions)


@dataclass
class DownloadResult(_Serializable):
    """Outcome of one download."""

    filename: str
    success: bool
    save_path: str
    size_downloaded: int = 0
    duration: float = 0.0
    error_message: str = ""
    verified: bool = False
    sha256: Optional[str] = None
    #: exception class name on failure (``IntegrityError``, ``AuthRequiredError`` ...)
    error_type: Optional[str] = None
    #: the URL with any credentials removed
    url: Optional[str] = None
    resumed_from: int = 0
    skipped: bool = False  # already present and verified, nothing fetched
    #: e.g. a pickle format (.ckpt/.pt/.pth/.bin) that can run code when loaded
    warnings: List[str] = field(default_factory=list)


@dataclass
class DownloadRecord(_Serializable):
    """A download remembered by the StateManager."""

    filename: str
    source: str
    source_id: str
    path: Optional[str] = None
    sha256: Optional[str] = None
    size: Optional[int] = None
    url: Optional[str] = None
    status: str = "success"
    timestamp: float = field(default_factory=time.time)


@dataclass
class ProgressEvent(_Serializable):
    """A throttled progress report of one download; renderers draw it."""

    filename: str
    downloaded: int
    total: Optional[int]
    #: queued, connecting, downloading, verifying, done, failed, cancelled
    state: str
    speed: float = 0.0  # bytes per second
    eta: Optional[float] = None  # seconds
    error: Optional[str] = None
    error_type: Optional[str] = None
    job_id: Optional[str] = None
    item_id: Optional[str] = None
    warnings: List[str] = field(default_factory=list)


@dataclass
class Failure(_Serializable):
    """A reference that could not be fixed, and why."""

    filename: str
    directory: str
    reason: str
    error_type: Optional[str] = None


@dataclass
class WorkflowRun(_Serializable):
    """Outcome of ``ComfyFixerCore.run``."""

    workflows_scanned: int = 0
    models_found: int = 0
    models_present: int = 0
    models_missing: int = 0
    models_resolved: int = 0
    downloads: List[DownloadResult] = field(default_factory=list)
    failures: List[Failure] = field(default_factory=list)
    #: what was (or, with dry_run, would be) downloaded: one dict per file
    plan: List[Dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False
    duration: float = 0.0
    #: references left alone on purpose, not failures: ``error_type`` is ``elsewhere`` (the
    #: file is in another folder) or ``optional`` (only muted/bypassed nodes use it)
    skipped: List[Failure] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return not self.failures
