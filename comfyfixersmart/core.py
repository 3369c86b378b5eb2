"""ComfyFixerCore: scan -> check -> resolve -> choose -> download -> record.

The orchestrator owns no logic of its own beyond choosing and bookkeeping; each step
is a component (scanner, inventory, search, downloader, state) that can be passed in,
so the CLI, the ComfyUI routes and tests share one path.  Components are created
lazily (constructing a core does no I/O) and under a lock, so a core may be used from
worker threads (``asyncio.to_thread``).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

from .datamodel import (
    AUTO_CHOICE_FLOOR,
    MISSING,
    AnalysisResult,
    DownloadResult,
    Failure,
    ModelReference,
    ProgressEvent,
    Resolution,
    WorkflowData,
    WorkflowRun,
)
from .errors import ConfigurationError, WorkflowParseError
from .logs import get_logger
from .settings import Config, get_config

log = get_logger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
EventCallback = Callable[[ProgressEvent], None]


class ComfyFixerCore:
    """The main entry point of the library.

    >>> with ComfyFixerCore(Config.load(comfyui_root="~/ComfyUI")) as fixer:
    ...     run = fixer.run(["workflow.json"], dry_run=True)
    """

    def __init__(
        self,
        config: Optional[Config] = None,
        *,
        scanner=None,
        inventory=None,
        search=None,
        downloader=None,
        state=None,
    ):
        self.config = config if config is not None else get_config()
        self._scanner = scanner
        self._inventory = inventory
        self._search = search
        self._downloader = downloader
        self._state = state
        self._lock = threading.RLock()

    # -- components (lazy) -----------------------------------------------------------
    @property
    def scanner(self):
        with self._lock:
            if self._scanner is None:
                from .scan import WorkflowScanner

                self._scanner = WorkflowScanner(self.config)
            return self._scanner

    @property
    def inventory(self):
        with self._lock:
            if self._inventory is None:
                from .inventory import ModelInventory

                if self.config.comfyui_root is None:
                    raise ConfigurationError(
                        "comfyui_root",
                        "not set: pass --comfyui-root DIR or set COMFYFIXER_COMFYUI_ROOT",
                    )
                self._inventory = ModelInventory(self.config).build(self.config.comfyui_root)
            return self._inventory

    @property
    def has_inventory(self) -> bool:
        """True when references can be checked against local files."""
        return self._inventory is not None or self.config.comfyui_root is not None

    @property
    def search(self):
        with self._lock:
            if self._search is None:
                from .search import ModelSearch

                self._search = ModelSearch(self.config)
            return self._search

    @property
    def state(self):
        with self._lock:
            if self._state is None:
                from .state import StateManager

                self._state = StateManager(self.config)
            return self._state

    @property
    def downloader(self):
        with self._lock:
            if self._downloader is None:
                from .download import DownloadManager

                self._downloader = DownloadManager(self.config, state=self.state)
            return self._downloader

    # -- scanning ---------------------------------------------------------------------
    def scan_paths(self, workflow_paths: Iterable[PathLike]) -> tuple[List[WorkflowData], List[Dict[str, Any]]]:
        """Parse files and folders of workflows; unreadable ones are reported, not fatal."""
        workflows: List[WorkflowData] = []
        errors: List[Dict[str, Any]] = []
        for raw in workflow_paths:
            path = Path(raw).expanduser()
            if path.is_dir():
                workflows.extend(self.scanner.scan_directory(path, recursive=True))
                errors.extend({"path": e.path, "error": e.reason} for e in getattr(self.scanner, "errors", []))
                continue
            try:
                workflows.append(self.scanner.scan_workflow(path))
            except WorkflowParseError as exc:
                errors.append({"path": str(path), "error": exc.reason})
        return workflows, errors

    def check(self, references: List[ModelReference]) -> List[ModelReference]:
        """Fill ``status`` of each reference from the inventory (no-op without a ComfyUI root)."""
        if self.has_inventory:
            self.inventory.check_all(references)
        return references

    def scan_data(self, workflow: Union[dict, str, bytes], path: Optional[str] = None) -> WorkflowData:
        """Parse a workflow given as JSON (a dict or text) and check its references."""
        data = self.scanner.scan_data(workflow, path=path)
        self.check(data.model_references)
        return data

    # -- analysis -----------------------------------------------------------------------
    def analyze_workflows(
        self,
        workflow_paths: Iterable[PathLike],
        *,
        backends: Optional[Sequence[str]] = None,
        resolve: bool = True,
    ) -> AnalysisResult:
        """Scan workflows, check references, and rank candidates for every missing one."""
        workflows, errors = self.scan_paths(workflow_paths)
        return self._analyze(workflows, errors, backends=backends, resolve=resolve)

    def analyze_data(
        self,
        workflow: Union[dict, str, bytes],
        path: Optional[str] = None,
        *,
        backends: Optional[Sequence[str]] = None,
        resolve: bool = True,
    ) -> AnalysisResult:
        """Like ``analyze_workflows`` for one workflow given as JSON (the ComfyUI panel's graph)."""
        data = self.scanner.scan_data(workflow, path=path)
        return self._analyze([data], [], backends=backends, resolve=resolve)

    def _analyze(self, workflows, errors, *, backends, resolve) -> AnalysisResult:
        references = merge_references(ref for wf in workflows for ref in wf.model_references)
        self.check(references)
        missing = [r for r in references if r.status == MISSING]
        if resolve and missing:
            resolutions = self.search.resolve_many(missing, backends=backends)
        else:
            resolutions = [Resolution(reference=r) for r in missing]
        return AnalysisResult(workflows=workflows, references=references, resolutions=resolutions, errors=errors)

    # -- planning -----------------------------------------------------------------------
    def plan(
        self,
        analysis: AnalysisResult,
        min_confidence: Optional[float] = None,
        *,
        include_optional: bool = False,
        output_dir: Optional[PathLike] = None,
    ) -> tuple[List[Dict[str, Any]], List[Failure]]:
        """Download specs for the references whose best candidate is sure enough, and why the
        others are left out.  ``min_confidence`` is never taken below ``AUTO_CHOICE_FLOOR``."""
        threshold = max(self.config.min_confidence if min_confidence is None else float(min_confidence),
                        AUTO_CHOICE_FLOOR)
        specs: List[Dict[str, Any]] = []
        failures: List[Failure] = []
        for res in analysis.resolutions:
            ref = res.reference
            if ref.optional and not include_optional:
                continue
            chosen = res.choose(threshold)
            if chosen is None:
                failures.append(Failure(ref.filename, ref.expected_directory, _why_not(res, threshold),
                                        res.errors[0].get("type") if res.errors else None))
                continue
            filename = chosen.save_as or ref.filename
            spec = {
                "key": ref.key,
                "url": chosen.download_url,
                "filename": filename,
                "directory": ref.expected_directory,
                "sha256": chosen.hash_sha256 or (ref.hash if (ref.hash_type or "sha256").lower() == "sha256" else None),
                "size": chosen.size_bytes,
                "source": chosen.backend,
                "source_id": chosen.model_id,
                "confidence": chosen.confidence,
                "reason": chosen.reason,
            }
            if output_dir is not None:
                from .security import safe_join

                spec["save_path"] = str(safe_join(Path(output_dir) / ref.expected_directory, filename))
            elif self.has_inventory:
                spec["save_path"] = str(self.inventory.target_path(ref.expected_directory, filename))
            specs.append(spec)
        return specs, failures

    # -- downloading ----------------------------------------------------------------------
    def download_models(
        self,
        missing_models: List[Dict[str, Any]],
        output_dir: Optional[PathLike] = None,
        *,
        on_event: Optional[EventCallback] = None,
    ) -> List[DownloadResult]:
        """Download specs (``url``, ``filename``, ``directory``, ``sha256``...); one result each.

        Without ``output_dir`` each file goes to its folder of the ComfyUI install
        (``save_path`` from ``plan`` or the inventory's target path for the folder key).
        """
        specs = []
        for spec in missing_models:
            spec = dict(spec)
            if output_dir is None and not spec.get("save_path"):
                spec["save_path"] = str(self.inventory.target_path(spec["directory"], spec["filename"]))
            specs.append(spec)
        root = output_dir if output_dir is not None else self.config.output_dir
        return self.downloader.download_models(
            specs, root, concurrency=self.config.download_concurrency, on_event=on_event
        )

    def run(
        self,
        workflow_paths: Optional[Iterable[PathLike]] = None,
        output_dir: Optional[PathLike] = None,
        search_backends: Optional[Sequence[str]] = None,
        *,
        dry_run: bool = False,
        min_confidence: Optional[float] = None,
        include_optional: bool = False,
        on_event: Optional[EventCallback] = None,
        confirm: Optional[Callable[[WorkflowRun], bool]] = None,
        **_: Any,
    ) -> WorkflowRun:
        """Scan, resolve and download everything missing; return what happened.

        ``output_dir`` is a models root (files go to ``output_dir/<folder>/<file>``); by
        default files go into the ComfyUI install's own folders.  ``confirm`` sees the
        planned run (``run.plan``) before anything is downloaded and may decline.
        """
        started = time.monotonic()
        paths = list(workflow_paths) if workflow_paths is not None else list(self.config.workflow_dirs)
        if not paths:
            raise ConfigurationError("workflow_dirs", "no workflow given")
        analysis = self.analyze_workflows(paths, backends=search_backends)
        specs, failures = self.plan(analysis, min_confidence, include_optional=include_optional,
                                    output_dir=output_dir)
        failures = [Failure(e["path"], "", e["error"], "WorkflowParseError") for e in analysis.errors] + failures
        run = WorkflowRun(
            workflows_scanned=len(analysis.workflows),
            models_found=len(analysis.references),
            models_present=sum(1 for r in analysis.references if r.status != MISSING),
            models_missing=analysis.models_missing,
            plan=specs,
            failures=failures,
            dry_run=dry_run,
        )
        if not dry_run and specs and (confirm is None or confirm(run)):
            results = self.download_models(specs, output_dir, on_event=on_event)
            run.downloads = results
            for spec, result in zip(specs, results):
                if result.success:
                    run.models_resolved += 1
                else:
                    run.failures.append(Failure(spec["filename"], spec["directory"],
                                                result.error_message or "download failed", result.error_type))
            if run.models_resolved and self._inventory is not None:
                self._inventory.refresh()
        run.duration = time.monotonic() - started
        return run

    # -- lifecycle ---------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Cancel running downloads, release HTTP sessions and pools, remove stray part files
        of cancelled jobs."""
        with self._lock:
            for component in (self._downloader, self._search, self._state):
                if component is None:
                    continue
                for method in ("cancel", "close"):
                    fn = getattr(component, method, None)
                    if fn is None:
                        continue
                    try:
                        fn()
                    except Exception as exc:  # cleanup must go on
                        log.warning("cleanup of %s failed: %s", type(component).__name__, exc)

    close = cleanup

    def __enter__(self) -> "ComfyFixerCore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cleanup()


def merge_references(references: Iterable[ModelReference]) -> List[ModelReference]:
    """One reference per (folder, file), with every location; first-seen order kept."""
    merged: Dict[str, ModelReference] = {}
    for ref in references:
        seen = merged.get(ref.key)
        if seen is None:
            merged[ref.key] = ref
            continue
        seen.locations.extend(loc for loc in ref.locations if loc not in seen.locations)
        seen.optional = seen.optional and ref.optional
        seen.url = seen.url or ref.url
        if not seen.hash and ref.hash:
            seen.hash, seen.hash_type = ref.hash, ref.hash_type
        seen.confidence = max(seen.confidence, ref.confidence)
    return list(merged.values())


def _why_not(res: Resolution, threshold: float) -> str:
    best = res.best
    if best is None:
        if res.errors:
            return "no candidate found; " + "; ".join(e.get("message", "") for e in res.errors[:2])
        return "no candidate found on any backend"
    return (f"best candidate {best.filename!r} from {best.backend} is only "
            f"{best.confidence:.0%} sure ({best.reason}); needs {threshold:.0%}: pick it by hand")
