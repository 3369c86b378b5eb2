"""The known-model index: file names, folders, URLs and hashes from ComfyUI's official workflow
templates and ComfyUI-Manager's model list (``comfyfixersmart/data/known_models.json``, built by
``scripts/build_model_index.py``; see ``index_build``).

Nothing is read at import: the file is parsed on the first lookup.  The file used is, first
found: ``Config.known_models_file``; a refreshed copy in ``Config.cache_dir`` (written by the
background refresh, ``index_refresh``); the bundled snapshot.

Lookups (all return lists: one name may be listed with several URLs):

* ``by_name(name, folder=None)``: by file name, with or without a sub-folder (``SDXL/x.safetensors``
  finds ``x.safetensors``; a bare embedding name ``easynegative`` finds ``easynegative.safetensors``).  ComfyUI matches names exactly, so exact-case hits come first and
  a case-insensitive hit is returned only when there is no exact one (``KnownModel.case_exact``).
* ``lookup(name, folder)``: by (name, folder key; legacy names mapped).
* ``by_sha256(hex)``.
* ``corroborates(name, url_or_repo_path, sha256=None)``: whether the index backs a candidate
  found elsewhere (same sha256, or the same file at the same place).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from ..errors import ValidationError
from ..folders import canonical_folder
from ..logs import get_logger
from .index_build import HF_CANONICAL, hf_parts, hf_url, load_index_bytes

log = get_logger(__name__)

BUNDLED = "known_models.json"
#: the refreshed index in ``Config.cache_dir``
REFRESHED = "known_models.json"
_HF_HOSTS = ("huggingface.co", "www.huggingface.co", "hf.co")


@dataclass(frozen=True)
class KnownModel:
    """One file the index knows.  ``url`` is canonical (``https://huggingface.co/...``);
    ``sources`` names where it is listed (``"comfyui-workflow-templates-json 0.1.123"``)."""

    name: str
    url: str
    directory: str
    sha256: Optional[str] = None
    size: Optional[int] = None
    sources: Tuple[str, ...] = ()
    #: sub-folder the source saves it under (ComfyUI-Manager's ``save_path``), '' if none
    subfolder: str = ""
    #: number of official templates listing it (0: only ComfyUI-Manager)
    templates: int = 0
    #: False when found only by a case-insensitive name match
    case_exact: bool = True
    source_kinds: Tuple[str, ...] = field(default=(), repr=False)

    @property
    def basename(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def hf(self) -> Optional[Tuple[str, str, str]]:
        """``(repo_id, revision, path)`` for a Hugging Face URL, else None."""
        host = (urlsplit(self.url).hostname or "").lower()
        return hf_parts(self.url) if host in _HF_HOSTS else None

    @property
    def in_templates(self) -> bool:
        return "templates" in self.source_kinds

    @property
    def in_manager(self) -> bool:
        return "model-list" in self.source_kinds

    def describe(self) -> str:
        """Where it is listed, in words: "listed in ComfyUI's official templates (...)"."""
        parts = []
        templates = [s for s, k in zip(self.sources, self.source_kinds) if k == "templates"]
        manager = [s for s, k in zip(self.sources, self.source_kinds) if k == "model-list"]
        if templates:
            parts.append(f"listed in ComfyUI's official templates ({', '.join(templates)})")
        if manager:
            parts.append(f"in the ComfyUI-Manager model list ({', '.join(manager)})")
        return " and ".join(parts) or "listed in the known-model index"


def download_url_for(model: KnownModel, hf_endpoint: str) -> str:
    """The URL to download ``model`` from: Hugging Face files on ``hf_endpoint`` (a mirror or a
    test hub), other URLs unchanged.  The canonical URL stays ``model.url``."""
    hf = model.hf
    if hf is None or hf_endpoint.rstrip("/") == HF_CANONICAL:
        return model.url
    return hf_url(*hf, endpoint=hf_endpoint)


class KnownModelIndex:
    """Lookups in the known-model index; loads its file on first use (thread-safe)."""

    def __init__(self, path: Optional[Path] = None, *, data: Optional[Dict[str, Any]] = None):
        """``path``: an index file (None: the bundled snapshot); ``data``: an already parsed index."""
        self.path = Path(path) if path is not None else None
        self._data = data
        self._lock = threading.Lock()
        self._models: Optional[List[KnownModel]] = None
        self._mtime: Optional[float] = None
        self._by_name: Dict[str, List[int]] = {}
        self._by_lower: Dict[str, List[int]] = {}
        self._by_sha: Dict[str, List[int]] = {}
        self.sources: List[Dict[str, Any]] = []

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def for_config(cls, config) -> "KnownModelIndex":
        """The shared index for ``config`` (one per file, loaded once per process)."""
        path = index_path(config)
        key = str(path) if path is not None else "<bundled>"
        with _shared_lock:
            index = _shared.get(key)
            if index is None or index.stale():
                index = _shared[key] = cls(path)
            return index

    def stale(self) -> bool:
        """True when the file changed since it was loaded (a refresh wrote a new one)."""
        if self.path is None or self._models is None:
            return False
        try:
            return self.path.stat().st_mtime != self._mtime
        except OSError:
            return False

    def _load(self) -> List[KnownModel]:
        if self._models is not None:
            return self._models
        with self._lock:
            if self._models is not None:
                return self._models
            data = self._data
            if data is None:
                if self.path is None:
                    raw = resources.files(__package__.rsplit(".", 1)[0]).joinpath("data", BUNDLED).read_bytes()
                    self._mtime = None
                else:
                    try:
                        raw = self.path.read_bytes()
                        self._mtime = self.path.stat().st_mtime
                    except OSError as exc:
                        raise ValidationError(f"cannot read the known-model index {self.path}: {exc}") from None
                data = load_index_bytes(raw)
            self._build(data)
            return self._models  # type: ignore[return-value]

    def _build(self, data: Dict[str, Any]) -> None:
        self.sources = [s for s in data.get("sources") or [] if isinstance(s, dict)]
        labels = [f"{s.get('package')} {s.get('version')}".strip() for s in self.sources]
        kinds = [str(s.get("kind") or "") for s in self.sources]
        models: List[KnownModel] = []
        for row in data.get("models") or []:
            if not isinstance(row, dict) or not all(isinstance(row.get(k), str) and row.get(k)
                                                    for k in ("name", "url", "directory")):
                continue
            src = [i for i in row.get("src") or [] if isinstance(i, int) and 0 <= i < len(labels)]
            sha = row.get("sha256")
            size = row.get("size")
            models.append(KnownModel(
                name=row["name"], url=row["url"], directory=canonical_folder(row["directory"]),
                sha256=sha.lower() if isinstance(sha, str) and len(sha) == 64 else None,
                size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
                sources=tuple(labels[i] for i in src), subfolder=str(row.get("subfolder") or ""),
                templates=int(row.get("templates") or 0), source_kinds=tuple(kinds[i] for i in src)))
        by_name: Dict[str, List[int]] = {}
        by_lower: Dict[str, List[int]] = {}
        by_sha: Dict[str, List[int]] = {}
        for i, m in enumerate(models):
            by_name.setdefault(m.basename, []).append(i)
            by_lower.setdefault(m.basename.lower(), []).append(i)
            if m.sha256:
                by_sha.setdefault(m.sha256, []).append(i)
        self._by_name, self._by_lower, self._by_sha = by_name, by_lower, by_sha
        self._models = models

    # -- lookups -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._load())

    @property
    def models(self) -> List[KnownModel]:
        return list(self._load())

    def sources_loaded(self) -> List[Dict[str, Any]]:
        """The index's sources (package, version, license, kind, entries), loading it if needed."""
        self._load()
        return list(self.sources)

    def by_name(self, name: str, folder: Optional[str] = None) -> List[KnownModel]:
        """Entries for a file name (sub-folder ignored); exact case first, else case-insensitive.
        With ``folder``, entries of that folder come first (others follow)."""
        models = self._load()
        base = str(name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
        if not base:
            return []
        hits = [models[i] for i in self._by_name.get(base, [])]
        if not hits:
            hits = [replace(models[i], case_exact=False) for i in self._by_lower.get(base.lower(), [])]
        if not hits and "." not in base:
            # ComfyUI loads embeddings by bare name (it tries .safetensors, .pt, .bin)
            stem = base.lower() + "."
            hits = [models[i] if models[i].basename.startswith(base + ".") else replace(models[i], case_exact=False)
                    for key, ids in self._by_lower.items() if key.startswith(stem) and "." not in key[len(stem):]
                    for i in ids]
        if folder:
            key = canonical_folder(folder)
            hits.sort(key=lambda m: m.directory != key)
        return hits

    def lookup(self, name: str, folder: str) -> List[KnownModel]:
        """Entries for ``name`` in ``folder`` (a folder key; legacy names mapped)."""
        key = canonical_folder(folder)
        return [m for m in self.by_name(name) if m.directory == key]

    def by_sha256(self, sha256: str) -> List[KnownModel]:
        """Entries whose sha256 is ``sha256`` (hex, any case)."""
        models = self._load()
        return [models[i] for i in self._by_sha.get(str(sha256 or "").strip().lower(), [])]

    def corroborates(self, name: str, url_or_repo_path: Optional[str] = None, sha256: Optional[str] = None) -> bool:
        """Whether the index backs a candidate: its ``sha256`` is listed, or an entry of the same
        file name points at the same file.  ``url_or_repo_path``: a URL (any HF endpoint: only
        repo and path are compared, not the revision) or ``"owner/repo/path/in/repo"``."""
        if sha256 and self.by_sha256(sha256):
            return True
        if not url_or_repo_path:
            return False
        wanted = _location(url_or_repo_path)
        return any(_location(m.url) == wanted for m in self.by_name(name) if m.case_exact)


def _location(value: str) -> str:
    """Comparable place of a file: ``hf:owner/repo/path`` for Hugging Face URLs (any host,
    any revision) or repo paths, else the URL without its query."""
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme in ("http", "https"):
        found = hf_parts(value)
        if found is not None:
            return f"hf:{found[0]}/{found[2]}"
        return f"{parts.scheme}://{(parts.hostname or '').lower()}{parts.path}"
    return f"hf:{value.strip('/')}"


_shared: Dict[str, KnownModelIndex] = {}
_shared_lock = threading.Lock()


def index_path(config) -> Optional[Path]:
    """The index file ``config`` uses: ``known_models_file``, a refreshed copy, or None
    (the bundled snapshot)."""
    chosen = getattr(config, "known_models_file", None)
    if chosen is not None:
        return Path(chosen)
    refreshed = Path(config.cache_dir) / REFRESHED
    if refreshed.is_file():
        return refreshed
    return None
