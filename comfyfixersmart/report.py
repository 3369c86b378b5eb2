"""Stable JSON views of references, candidates and runs.

One place builds the machine-readable shapes used by ``comfyfixer ... --json`` and by the
``/comfyfixer/`` HTTP routes, so both speak the same report format (``REPORT_VERSION``).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional

from .datamodel import (
    AUTO_CHOICE_FLOOR,
    ELSEWHERE,
    MISSING,
    PRESENT,
    AnalysisResult,
    ModelReference,
    Resolution,
    SearchResult,
    WorkflowData,
    WorkflowRun,
)
from .pickles import candidate_warnings, is_pickle_candidate
from .security import redact_url

REPORT_VERSION = 1


def reference_to_json(ref: ModelReference) -> Dict[str, Any]:
    """A reference as ``{"key", "filename", "directory", "type", "status", ...}``."""
    out: Dict[str, Any] = {
        "key": ref.key,
        "filename": ref.filename,
        "directory": ref.expected_directory,
        "type": ref.expected_type,
        "status": ref.status or "unchecked",
        "node_id": ref.node_id,
        "node_type": ref.node_type,
        "nodes": [
            {"node_id": loc.node_id, "node_type": loc.node_type, "where": loc.where,
             "subgraph_path": list(loc.subgraph_path)}
            for loc in ref.locations
        ],
        "optional": ref.optional,
        "source": ref.source,
        "confidence": round(ref.confidence, 3),
    }
    if ref.folder_reason:
        out["folder_reason"] = ref.folder_reason
    if ref.found_path:
        out["found_path"] = ref.found_path
    if ref.local_path:
        # the file on disk (present or elsewhere): what POST /comfyfixer/relink takes as "source"
        out["local_path"] = ref.local_path
    if ref.url:
        out["url"] = redact_url(ref.url)
    if ref.hash:
        out["hash"] = ref.hash
        out["hash_type"] = ref.hash_type or "sha256"
    return out


def candidate_to_json(result: SearchResult) -> Dict[str, Any]:
    """A search candidate with its confidence and reason."""
    meta = result.metadata or {}
    return {
        "backend": result.backend,
        "model_id": result.model_id,
        "name": result.name,
        "filename": result.filename,
        "download_url": redact_url(result.download_url),
        "size_bytes": result.size_bytes,
        "hash_sha256": result.hash_sha256,
        "confidence": round(float(result.confidence), 3),
        "reason": result.reason,
        "page_url": meta.get("page_url"),
        "directory": result.directory,
        "save_as": result.save_as,
        "requires_auth": bool(meta.get("requires_auth", False)),
        "gated": bool(meta.get("gated", False)),
        "pickle": is_pickle_candidate(result),
        "warnings": candidate_warnings(result),
    }


def resolution_to_json(res: Resolution, min_confidence: float = 0.9, *, allow_pickle: bool = False) -> Dict[str, Any]:
    """A missing reference's candidates and which one a fix would take (``chosen``).

    A pickle format is never ``chosen`` unless ``allow_pickle``: the row then says
    ``"pickle": true`` with its ``warnings``, and ``needs_confirmation`` is ``"pickle"``.
    """
    chosen = res.choose(min_confidence)
    best = res.best
    pickle = best is not None and is_pickle_candidate(best)
    out: Dict[str, Any] = {
        "key": res.reference.key,
        "candidates": [candidate_to_json(c) for c in res.candidates],
        "chosen": 0 if chosen is not None and (allow_pickle or not pickle) else None,
        "errors": [_error_json(e) for e in res.errors],
        "pickle": pickle,
        "warnings": candidate_warnings(best) if best is not None else [],
    }
    if pickle and chosen is not None and not allow_pickle:
        out["needs_confirmation"] = "pickle"
    return out


def summarize(references: Iterable[ModelReference]) -> Dict[str, int]:
    """Counts by status; ``optional_missing`` counts missing refs on muted/bypassed nodes
    (not in ``missing``).  Unchecked references (no ComfyUI root) count only in ``total``."""
    refs = list(references)
    return {
        "total": len(refs),
        "present": sum(r.status == PRESENT for r in refs),
        "elsewhere": sum(r.status == ELSEWHERE for r in refs),
        "missing": sum(r.status == MISSING and not r.optional for r in refs),
        "optional_missing": sum(r.status == MISSING and r.optional for r in refs),
    }


def workflow_to_json(wf: WorkflowData) -> Dict[str, Any]:
    """One scanned workflow: its format, warnings, custom node types and checked references."""
    return {
        "path": wf.path,
        "format": wf.format,
        "warnings": list(wf.warnings),
        "custom_node_types": sorted(wf.custom_node_types),
        "references": [reference_to_json(r) for r in wf.model_references],
        "summary": summarize(wf.model_references),
        "missing_packs": [p.to_dict() for p in wf.missing_packs],
        "informational_references": [reference_to_json(r) for r in wf.informational_references],
    }


def scan_to_json(workflows: Iterable[WorkflowData], errors: Iterable[Dict[str, Any]],
                 comfyui_root: Optional[Any] = None) -> Dict[str, Any]:
    """The report of ``comfyfixer scan --json``: per workflow, then a summary of them all.

    ``checked`` is False when no ComfyUI root was given (statuses are then ``unchecked``).
    """
    wfs = list(workflows)
    return {
        "report_version": REPORT_VERSION,
        "comfyui_root": str(comfyui_root) if comfyui_root else None,
        "checked": bool(comfyui_root),
        "workflows": [workflow_to_json(wf) for wf in wfs],
        "errors": [dict(e) for e in errors],
        "summary": summarize(r for wf in wfs for r in wf.model_references),
    }


def analysis_to_json(analysis: AnalysisResult, min_confidence: float = 0.9) -> Dict[str, Any]:
    """The report of ``comfyfixer resolve --json`` and ``POST /comfyfixer/resolve``."""
    return {
        "report_version": REPORT_VERSION,
        "workflows": [
            {"path": wf.path, "format": wf.format, "warnings": list(wf.warnings),
             "references": [r.key for r in wf.model_references],
             "missing_packs": [p.to_dict() for p in wf.missing_packs]}
            for wf in analysis.workflows
        ],
        "references": [reference_to_json(r) for r in analysis.references],
        "resolutions": [resolution_to_json(r, min_confidence) for r in analysis.resolutions],
        "summary": summarize(analysis.references),
        "errors": list(analysis.errors),
        "min_confidence": max(min_confidence, AUTO_CHOICE_FLOOR),
    }


def run_to_json(run: WorkflowRun) -> Dict[str, Any]:
    """The report of ``comfyfixer fix --json``."""
    plan: List[Dict[str, Any]] = []
    for spec in run.plan:
        item = {k: v for k, v in spec.items() if k != "headers"}
        item["url"] = redact_url(item.get("url"))
        plan.append(item)
    return {
        "report_version": REPORT_VERSION,
        "dry_run": run.dry_run,
        "workflows_scanned": run.workflows_scanned,
        "models_found": run.models_found,
        "models_present": run.models_present,
        "models_missing": run.models_missing,
        "models_resolved": run.models_resolved,
        "plan": plan,
        "downloads": [d.to_dict() for d in run.downloads],
        "failures": [f.to_dict() for f in run.failures],
        "skipped": [f.to_dict() for f in getattr(run, "skipped", [])],
        "duration": round(run.duration, 3),
    }


def _error_json(error: Any) -> Dict[str, Any]:
    # "backend" names the hub that failed: the panel shows one banner per unreachable hub
    if isinstance(error, dict):
        out = {"type": error.get("type", "Error"), "message": error.get("message", "")}
        if error.get("help_url"):
            out["help_url"] = error["help_url"]
        backend = error.get("backend")
    else:
        out = {"type": type(error).__name__, "message": str(error)}
        backend = getattr(error, "backend", None)
    if isinstance(backend, str) and backend:
        out["backend"] = backend
    return out


def error_json(exc: BaseException) -> Dict[str, Any]:
    """``{"type", "message", ...}`` for an exception (data attributes of ours included)."""
    to_dict: Optional[Any] = getattr(exc, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return {"type": type(exc).__name__, "message": str(exc)}
