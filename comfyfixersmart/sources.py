"""Sources for every file of a workflow, present ones included (Embed sources, ``annotate``).

A file on disk gets its source by its sha256 (hashed once, then cached): first the
known-model index (no network), then the hubs' own by-hash answers (Civitai's
``by-hash`` endpoint, Hugging Face's LFS sha256 of a file found by name): only a candidate
whose sha256 equals the file's is used.  Missing files keep the source a fix would
download.  URLs are written canonical (``https://huggingface.co/...``,
``https://civitai.com/...``), never the configured mirror or test endpoint.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .annotate import ModelSource, sources_from_analysis, to_source
from .datamodel import ELSEWHERE, PRESENT, AnalysisResult, ModelReference
from .errors import ComfyFixerError, ValidationError
from .logs import get_logger
from .security import redact_text

log = get_logger(__name__)

HF_CANONICAL = "https://huggingface.co"
CIVITAI_CANONICAL = "https://civitai.com"
#: the public hosts: their URLs are canonical already
_PUBLIC = ("https://huggingface.co", "https://hf.co", "https://civitai.com", "https://civitai.red")


@dataclass
class SourcesReport:
    """Every source found (``found_by``: key -> how), and the keys left without one."""

    sources: List[ModelSource] = field(default_factory=list)
    found_by: Dict[str, str] = field(default_factory=dict)
    unsourced: List[str] = field(default_factory=list)


def canonical_url(url: str, config: Any) -> str:
    """``url`` with a configured mirror/test endpoint put back to the public hub's address."""
    for endpoint, public in ((getattr(config, "hf_endpoint", ""), HF_CANONICAL),
                             (getattr(config, "civitai_base_url", ""), CIVITAI_CANONICAL)):
        base = (endpoint or "").rstrip("/")
        if base and base not in _PUBLIC and (url == base or url.startswith(base + "/")):
            return public + url[len(base):]
    return url


def present_sources(references: Sequence[ModelReference], *, hasher: Callable[[str], str], config: Any,
                    index: Any = None, search: Any = None, backends: Optional[Sequence[str]] = None,
                    ) -> Tuple[Dict[str, ModelSource], Dict[str, str]]:
    """Sources of the files on disk (present or elsewhere), found by sha256; returns
    ``({key: source}, {key: how found})``."""
    found: Dict[str, ModelSource] = {}
    how: Dict[str, str] = {}
    wanted: List[Tuple[ModelReference, str]] = []
    for ref in references:
        if ref.status not in (PRESENT, ELSEWHERE) or not ref.local_path:
            continue
        try:
            sha = hasher(ref.local_path)
        except OSError as exc:
            log.warning("cannot hash %s: %s", ref.local_path, exc)
            continue
        model = next(iter(index.by_sha256(sha)), None) if index is not None else None
        if model is not None:
            found[ref.key] = _source(ref, model.url, sha, config)
            how[ref.key] = "known-model index"
            continue
        wanted.append((ref, sha))
    if wanted and search is not None:
        probes = []
        for ref, sha in wanted:
            probe = copy.copy(ref)
            probe.hash, probe.hash_type, probe.url = sha, "sha256", None
            probes.append(probe)
        try:
            resolutions = search.resolve_many(probes, backends=backends)
        except ComfyFixerError as exc:
            log.warning("looking files up by hash failed: %s", redact_text(str(exc)))
            resolutions = []
        for (ref, sha), res in zip(wanted, resolutions):
            match = next((c for c in res.candidates if (c.hash_sha256 or "").lower() == sha), None)
            if match is None:
                continue
            url = match.metadata.get("canonical_url") or match.download_url
            try:
                found[ref.key] = _source(ref, url, sha, config)
            except (ValidationError, ValueError):
                continue
            how[ref.key] = f"sha256 match on {match.backend}"
    return found, how


def workflow_sources(analysis: AnalysisResult, core: Any, min_confidence: Optional[float] = None, *,
                     index: Any = None, backends: Optional[Sequence[str]] = None) -> SourcesReport:
    """Sources for every reference of ``analysis``: what a fix would download for missing
    files, the workflow's own URLs, and by sha256 for files on disk; all URLs canonical."""
    config = core.config
    report = SourcesReport()
    chosen = {s.key: s for s in sources_from_analysis(analysis, core, min_confidence)}
    for key in chosen:
        report.found_by[key] = "resolved"
    if index is None:
        try:
            from .search.known_models import KnownModelIndex

            index = KnownModelIndex.for_config(config)
        except Exception as exc:  # the hubs can still answer
            log.warning("known-model index unavailable: %s", exc)
    inventory = core.inventory
    found, how = present_sources(analysis.references, hasher=inventory.sha256, config=config, index=index,
                                 search=core.search, backends=backends)
    for key, source in found.items():
        # a file on disk: its own bytes decide, over a URL the workflow merely claims
        chosen[key] = source
        report.found_by[key] = how[key]
    for key, source in chosen.items():
        report.sources.append(ModelSource(source.directory, source.filename, canonical_url(source.url, config),
                                          source.sha256, source.locations))
    report.unsourced = [r.key for r in analysis.references if r.key not in chosen]
    return report


def _source(ref: ModelReference, url: str, sha: str, config: Any) -> ModelSource:
    return to_source(ModelSource(ref.expected_directory, ref.filename, canonical_url(url, config), sha,
                                 tuple(ref.locations)))


__all__ = ["SourcesReport", "canonical_url", "present_sources", "workflow_sources"]
