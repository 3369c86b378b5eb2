"""ComfyFixerCore: scan -> check -> resolve -> choose -> download -> record.

The orchestrator owns no logic of its own beyond choosing and bookkeeping; each step
is a component (scanner, inventory, search, downloader, state) that can be passed in,
so the CLI, the ComfyUI routes and tests share one path.  Components are created
lazily (constructing a core does no I/O) and under a lock, so one core may be used from
several worker threads at once (``asyncio.to_thread``).
"""

from __future__ import annotations

import copy
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple, Union
from urllib.parse import urlsplit

from .datamodel import (
    AUTO_CHOICE_FLOOR,
    ELSEWHERE,
    MISSING,
    AnalysisResult,
    DownloadResult,
    Failure,
    ModelReference,
    ProgressEvent,
    Resolution,
    SearchResult,
    WorkflowData,
    WorkflowRun,
)
from .errors import (
    ConfigurationError,
    NotAWorkflowError,
    RequestTooLargeError,
    ResolveCancelledError,
    UnsafePathError,
    ValidationError,
    WorkflowParseError,
)
from .folders import MODEL_FOLDERS, UNKNOWN_FOLDER, canonical_folder, check_folder_key
from .inventory import EMBEDDING_EXTENSIONS
from .pickles import (
    PICKLE_CONFIRMATION,
    PickleConsent,
    candidate_warnings,
    is_pickle_candidate,
    offer_safetensors,
)
from .pickles import consent as _pickle_consent
from .write_policy import REFUSED_KEYS, checked_target, folder_key, overlaps_protected, protected_roots
from .logs import get_logger
from .security import redact_text, redact_url
from .settings import Config, get_config

try:  # the download engine holds an flock on a .part file while it writes it
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = get_logger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
EventCallback = Callable[[ProgressEvent], None]

#: how long ``cleanup`` waits for cancelled downloads to wind down before sweeping
CLEANUP_WAIT_SECONDS = 30.0
_CANCELLED = "DownloadCancelledError"


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
        protected: Optional[Sequence[PathLike]] = None,
    ):
        self.config = config if config is not None else get_config()
        #: folders never written to besides ``<root>/output|input|temp|custom_nodes``
        #: (inside ComfyUI: its ``--output-directory`` and friends)
        self._extra_protected = list(protected or ())
        self._scanner = scanner
        self._inventory = inventory
        self._search = search
        self._downloader = downloader
        self._state = state
        self._lock = threading.RLock()
        #: components this core made itself: only those are closed by ``cleanup``
        self._owned: Set[str] = set()
        # WorkflowScanner.scan_directory reports unreadable files on the scanner itself
        self._scan_lock = threading.Lock()
        # download batches in flight (cleanup waits for them) and part files to sweep
        self._ops = 0
        self._ops_cond = threading.Condition(threading.Lock())
        self._closing = threading.Event()
        self._cancelled_targets: Set[Path] = set()

    # -- components (lazy) -----------------------------------------------------------
    @property
    def scanner(self):
        with self._lock:
            if self._scanner is None:
                from .scan import WorkflowScanner

                self._scanner = WorkflowScanner(self.config)
                self._owned.add("scanner")
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
                self._owned.add("inventory")
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
                self._owned.add("search")
            return self._search

    @property
    def state(self):
        with self._lock:
            if self._state is None:
                from .state import StateManager

                self._state = StateManager(self.config)
                self._owned.add("state")
            return self._state

    @property
    def downloader(self):
        with self._lock:
            if self._downloader is None:
                from .download import DownloadManager

                self._downloader = DownloadManager(self.config, state=self.state)
                self._owned.add("downloader")
            return self._downloader

    # -- scanning ---------------------------------------------------------------------
    def scan_paths(self, workflow_paths: Iterable[PathLike]) -> Tuple[List[WorkflowData], List[Dict[str, Any]]]:
        """Parse files and folders of workflows; unreadable ones (and folders without any
        workflow) are reported as ``{"path", "error"}``, not raised.  Files found while walking
        a folder that are not workflows carry ``"skipped": True``."""
        if isinstance(workflow_paths, (str, os.PathLike)):
            workflow_paths = [workflow_paths]
        workflows: List[WorkflowData] = []
        errors: List[Dict[str, Any]] = []
        for raw in workflow_paths:
            path = Path(raw).expanduser()
            if path.is_dir():
                with self._scan_lock:
                    found = self.scanner.scan_directory(path, recursive=True)
                    bad = list(getattr(self.scanner, "errors", []))
                workflows.extend(found)
                # in a folder, a file that holds no workflow (a settings JSON, a plain image)
                # is skipped, not fatal: it is reported with "skipped": True
                errors.extend({"path": e.path, "error": e.reason, **({"skipped": True} if isinstance(e, NotAWorkflowError)
                                                                     else {})} for e in bad)
                if not found and not bad:
                    errors.append({"path": str(path), "error": "no workflow files (.json, .png, .webp) in this folder"})
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
        """Scan workflows, check references, and rank candidates for every missing one.

        Without a ComfyUI root nothing can be checked: every reference is looked up.
        """
        workflows, errors = self.scan_paths(workflow_paths)
        return self._analyze(workflows, errors, backends=backends, resolve=resolve)

    def analyze_data(
        self,
        workflow: Union[dict, str, bytes],
        path: Optional[str] = None,
        *,
        backends: Optional[Sequence[str]] = None,
        resolve: bool = True,
        cancel: Optional[threading.Event] = None,
        limit: Optional[int] = None,
    ) -> AnalysisResult:
        """Like ``analyze_workflows`` for one workflow given as JSON (the ComfyUI panel's graph).

        ``cancel`` (set from another thread) stops resolving between references: no new hub
        lookup starts, and ``ResolveCancelledError`` is raised without waiting for the ones
        in flight.  ``limit``: most references to look up (``RequestTooLargeError`` beyond;
        the routes pass ``config.max_references``)."""
        data = self.scanner.scan_data(workflow, path=path)
        return self._analyze([data], [], backends=backends, resolve=resolve, cancel=cancel, limit=limit)

    def _analyze(self, workflows, errors, *, backends, resolve, cancel=None, limit=None) -> AnalysisResult:
        references = merge_references(ref for wf in workflows for ref in wf.model_references)
        self.check(references)
        by_key = {r.key: r for r in references}
        for wf in workflows:  # the workflows' own references get the same statuses
            for ref in wf.model_references:
                merged = by_key[ref.key]
                ref.status, ref.found_path, ref.local_path = merged.status, merged.found_path, merged.local_path
        wanted = [r for r in references if r.status in (MISSING, None)]
        if resolve and wanted:
            resolutions = self.resolve(wanted, backends=backends, cancel=cancel, limit=limit)
            for res in resolutions:
                offer_safetensors(res)
        else:
            resolutions = [Resolution(reference=r) for r in wanted]
        return AnalysisResult(workflows=workflows, references=references, resolutions=resolutions, errors=errors)

    def resolve(self, references: Sequence[ModelReference], *, backends: Optional[Sequence[str]] = None,
                cancel: Optional[threading.Event] = None, limit: Optional[int] = None) -> List[Resolution]:
        """Candidates for each reference (same order); with ``limit``, at most that many
        distinct files (``RequestTooLargeError`` beyond).  Lookups run ``search_concurrency``
        at a time, one file each, started at least ``config.hub_call_interval`` s apart;
        ``cancel`` is checked before each one."""
        refs = list(references)
        distinct = len({r.key for r in refs})
        if limit is not None and distinct > limit:
            raise RequestTooLargeError(f"{distinct} model references to look up; at most {limit} per request "
                                       "(setting max_references)")
        if cancel is None and not self.config.hub_call_interval:
            return self.search.resolve_many(refs, backends=backends)
        cancel = cancel if cancel is not None else threading.Event()
        pace = _Pacer(self.config.hub_call_interval, cancel)
        search = self.search
        results: Dict[int, Resolution] = {}

        unique: Dict[str, int] = {}  # key -> index of its first reference: one lookup per file
        for i, ref in enumerate(refs):
            unique.setdefault(ref.key, i)

        def one(i: int, ref: ModelReference) -> None:
            if not pace.wait_turn():
                return
            results[i] = search.resolve_many([ref], backends=backends)[0]

        workers = max(1, min(self.config.search_concurrency, len(unique)))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="comfyfixer-resolve")
        try:
            futures = [pool.submit(one, i, refs[i]) for i in unique.values()]
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()  # a bug in a backend surfaces here
                if cancel.is_set():
                    break
        finally:
            # queued lookups are dropped; one in flight ends on its own, nobody waits for it
            pool.shutdown(wait=False, cancel_futures=True)
        if cancel.is_set():
            raise ResolveCancelledError(f"cancelled after looking up {len(results)} of {len(unique)} references")
        out: List[Resolution] = []
        for i, ref in enumerate(refs):
            first = unique[ref.key]
            if first == i:
                out.append(results[i])
            else:  # a copy per duplicate: callers may change candidates
                out.append(Resolution(reference=ref, candidates=copy.deepcopy(results[first].candidates),
                                      errors=list(results[first].errors)))
        return out

    # -- planning -----------------------------------------------------------------------
    def threshold(self, min_confidence: Optional[float] = None) -> float:
        """The confidence a candidate needs to be downloaded without asking: ``min_confidence``
        (default ``config.min_confidence``), never below ``AUTO_CHOICE_FLOOR``."""
        value = self.config.min_confidence if min_confidence is None else float(min_confidence)
        return max(value, AUTO_CHOICE_FLOOR)

    def plan(
        self,
        analysis: AnalysisResult,
        min_confidence: Optional[float] = None,
        *,
        include_optional: bool = False,
        output_dir: Optional[PathLike] = None,
        allow_pickle: PickleConsent = None,
    ) -> Tuple[List[Dict[str, Any]], List[Failure]]:
        """Download specs for the references whose best candidate is sure enough, and why the
        others are left out.  Optional references (muted/bypassed nodes) are left out
        silently unless ``include_optional``; see ``skipped`` for the list of those.

        The folder is the reference's ``directory`` only when it is a model folder key
        (never a path, never output/input/temp); every target is checked against the real
        folder.  A pickle format (``.ckpt .pt .pth .bin``) is planned only when
        ``allow_pickle`` says yes for it (True, a set of file names/keys, or a callable given
        the spec) or ``config.allow_pickle`` is on; otherwise it is a failure of type
        ``PickleConfirmationRequired``.
        """
        threshold = self.threshold(min_confidence)
        consent = _pickle_consent(allow_pickle, self.config)
        specs: List[Dict[str, Any]] = []
        failures: List[Failure] = []
        for res in analysis.resolutions:
            ref = res.reference
            if ref.optional and not include_optional:
                continue
            if ref.expected_directory == UNKNOWN_FOLDER:
                # a file goes where its loader lists it: never guess a folder to download into
                failures.append(Failure(ref.filename, ref.expected_directory,
                                        f"its folder is unknown (node type {ref.node_type!r}): "
                                        "choose the folder by hand", "UnknownFolderError"))
                continue
            chosen = res.choose(threshold)
            if chosen is None:
                failures.append(Failure(ref.filename, ref.expected_directory, _why_not(res, threshold),
                                        _failure_type(res)))
                continue
            # the folder and the name come from the reference, whatever the URL says
            filename = _save_name(ref, chosen)
            spec = {
                "key": ref.key,
                "url": chosen.download_url,
                "filename": filename,
                "directory": ref.expected_directory,
                "sha256": _sha256(chosen.hash_sha256) or (None if chosen.metadata.get("alternative_of")
                                                          else _reference_sha256(ref)),
                "size": chosen.size_bytes,
                "source": chosen.backend,
                "source_id": chosen.model_id,
                "confidence": chosen.confidence,
                "reason": chosen.reason,
            }
            warnings = candidate_warnings(chosen, filename)
            if warnings:
                spec["warnings"] = warnings
            try:
                key = self._folder_key(ref.expected_directory, output_dir)
                spec["directory"] = key
                target = self._target(key, filename, output_dir)
                if target is not None:
                    spec["save_path"] = str(target)
            except (ValueError, OSError) as exc:  # UnsafePathError / ValidationError are ValueErrors
                failures.append(Failure(ref.filename, ref.expected_directory, redact_text(str(exc)),
                                        type(exc).__name__))
                continue
            if is_pickle_candidate(chosen, filename):
                spec["pickle"] = True
                if not consent(spec):
                    failures.append(Failure(
                        ref.filename, ref.expected_directory,
                        f"{filename} is a pickle format that can run code when ComfyUI loads it; not "
                        f"downloaded without a confirmation (--allow-pickle {ref.filename})",
                        PICKLE_CONFIRMATION))
                    continue
            specs.append(spec)
        return specs, failures

    # -- where files go ---------------------------------------------------------------------
    def protected_roots(self) -> List[str]:
        """Real paths of the folders never written to (ComfyUI's output, input, temp, custom_nodes)."""
        return protected_roots(self.config.comfyui_root, self._extra_protected)

    def model_folder_keys(self, output_dir: Optional[PathLike] = None) -> List[str]:
        """The folder keys a file may be planned into: the install's model folders, or with
        ``output_dir`` (a models root) the known model folder keys and the install's."""
        keys: List[str] = []
        if not self.has_inventory and output_dir is None:
            keys.extend(MODEL_FOLDERS)  # nothing on disk to ask (a script, a dry run): the known keys
        if self.has_inventory:
            try:
                keys.extend(self.inventory.folders)
            except ConfigurationError:
                if output_dir is None:
                    raise
        if output_dir is not None:
            keys.extend(k for k in MODEL_FOLDERS if k not in keys)
        return [k for k in keys if k not in REFUSED_KEYS]

    def _folder_key(self, directory: Any, output_dir: Optional[PathLike]) -> str:
        """``directory`` as a model folder key: one the install (or the known table) has, or
        any other well-formed key (it lives in ``<models>/<key>``); never a path or a refused key."""
        try:
            return folder_key(directory, self.model_folder_keys(output_dir))
        except UnsafePathError:
            raise
        except ValidationError as exc:
            if not isinstance(directory, str) or "unknown model folder" not in str(exc):
                raise
            key = check_folder_key(directory)  # ValidationError unless one well-formed component
            if key.lower() in REFUSED_KEYS:
                raise
            return key

    def _target(self, key: str, filename: str, output_dir: Optional[PathLike]) -> Optional[Path]:
        """The checked absolute target of ``filename`` in model folder ``key``."""
        protected = self.protected_roots()
        if output_dir is not None:
            return checked_target(Path(output_dir).expanduser(), f"{key}/{filename}", protected)
        if not self.has_inventory:
            return None
        target = self.inventory.target_path(key, filename)
        # target_path joined it under the key's folder; the real folder must not be a protected one
        checked_target(target.parent, target.name, protected)
        return target

    def check_output_dir(self, output_dir: Optional[PathLike]) -> None:
        """Refuse an ``--output-dir`` that is (or holds, or lies in) a protected ComfyUI folder."""
        if output_dir is None:
            return
        hit = overlaps_protected(Path(output_dir).expanduser(), self.protected_roots())
        if hit is not None:
            raise ConfigurationError("output_dir", f"{output_dir} overlaps {hit}: files go only into model "
                                                   "folders, never ComfyUI's output, input, temp or custom_nodes")

    @staticmethod
    def skipped(analysis: AnalysisResult, *, include_optional: bool = False) -> List[Failure]:
        """References a fix leaves alone on purpose: found in another folder (relink them),
        and, unless ``include_optional``, missing ones on muted/bypassed nodes."""
        out: List[Failure] = []
        for ref in analysis.references:
            if ref.status == ELSEWHERE:
                out.append(Failure(ref.filename, ref.expected_directory,
                                   f"found elsewhere: {ref.found_path} (point the node at it, or move the file)",
                                   "elsewhere"))
        if not include_optional:
            for res in analysis.resolutions:
                if res.reference.optional:
                    out.append(Failure(res.reference.filename, res.reference.expected_directory,
                                       "only used by muted/bypassed nodes (pass --include-optional to fetch it)",
                                       "optional"))
        return out

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
        Interrupting the calling thread (Ctrl-C) stops the downloads before the exception
        goes on; their part files stay, and the next run resumes them.
        """
        specs = [self._with_target(spec, output_dir) for spec in missing_models]
        root = Path(output_dir).expanduser() if output_dir is not None else self.config.output_dir
        started: Set[str] = set()
        with self._operation():
            if self._closing.is_set():  # cleanup() is under way: start nothing new
                results = [_cancelled_result(spec) for spec in specs]
            else:
                results = self._run_downloads(specs, root, on_event, started)
        # only downloads that had begun: a cancel while queued leaves an older, resumable
        # part file of the same target alone (this run never touched it)
        cancelled = [spec for spec, result in zip(specs, results, strict=True)
                     if result.error_type == _CANCELLED and spec.get("item_id") in started]
        if cancelled:
            self._forget_parts(cancelled)
        return results

    def _with_target(self, spec: Dict[str, Any], output_dir: Optional[PathLike]) -> Dict[str, Any]:
        """``spec`` with its absolute ``save_path`` (the folder of the install, or under
        ``output_dir``).  A hostile name or folder is left for the manager to refuse in its
        result (no save path)."""
        spec = dict(spec)
        if not spec.get("save_path") and spec.get("filename") and spec.get("directory"):
            try:
                key = self._folder_key(spec["directory"], output_dir)
                target = self._target(key, str(spec["filename"]), output_dir)
            except ConfigurationError:
                raise  # nowhere to put anything: not a per-file problem
            except (ValueError, OSError, TypeError) as exc:
                log.warning("not downloading %s: %s", spec.get("filename"), redact_text(str(exc)))
                spec["directory"] = None
                return spec
            if target is not None:
                spec["save_path"] = str(target)
        if spec.get("save_path"):
            # progress events carry it: the core learns which downloads really began
            spec.setdefault("item_id", spec["save_path"])
        return spec

    def _run_downloads(self, specs: List[Dict[str, Any]], root: Path, on_event: Optional[EventCallback],
                       started: Set[str]) -> List[DownloadResult]:
        """Run the batch on a helper thread and wait in slices, so a KeyboardInterrupt in the
        calling thread is seen at once: the manager's own wait would first let every file
        finish (ThreadPoolExecutor joins its workers on the way out).  ``started`` collects
        the item ids of downloads that got past the queue."""
        if not specs:
            return []
        box: Dict[str, Any] = {}

        def hook(event: ProgressEvent) -> None:
            if event.state not in ("queued", "cancelled", "failed") and event.item_id:
                started.add(event.item_id)
            if on_event is not None:
                on_event(event)

        # an Event, not Thread.join: a KeyboardInterrupt landing inside join() leaves the
        # Thread marked as stopped (CPython's bpo-45274 handling), and later joins return at once
        done = threading.Event()

        def work() -> None:
            try:
                box["results"] = self.downloader.download_models(
                    specs, root, concurrency=self.config.download_concurrency, on_event=hook)
            except BaseException as exc:  # handed to the caller's thread
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=work, name="comfyfixer-downloads", daemon=True).start()
        try:
            while not done.wait(0.1):
                pass
        except BaseException:
            # an interruption (Ctrl-C) stops the downloads but keeps their part files: the
            # next run resumes them, as after a crash or a dropped connection
            self.cancel(keep_partial=True)
            done.wait(CLEANUP_WAIT_SECONDS)
            raise
        if "error" in box:
            raise box["error"]
        return box["results"]

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
        allow_pickle: PickleConsent = None,
        picks: Optional[Dict[str, int]] = None,
        urls: Optional[Dict[str, str]] = None,
        choose: Optional[Callable[[Resolution], Any]] = None,
        **_: Any,
    ) -> WorkflowRun:
        """Scan, resolve and download everything missing; return what happened.

        ``picks`` (``{name: candidate number}``), ``urls`` (``{name: pasted URL}``) and
        ``choose`` (asked about each reference that is not sure enough) are a person's choices.
        ``output_dir`` is a models root (files go to ``output_dir/<folder>/<file>``); by
        default files go into the ComfyUI install's own folders.  ``confirm`` sees the
        planned run (``run.plan``) before anything is downloaded and may decline.
        A candidate below ``min_confidence`` (never below 0.8) is not downloaded: it is
        listed in ``run.failures`` with the reason.
        """
        started = time.monotonic()
        if isinstance(workflow_paths, (str, os.PathLike)):
            workflow_paths = [workflow_paths]
        paths = list(workflow_paths) if workflow_paths is not None else list(self.config.workflow_dirs)
        if not paths:
            raise ConfigurationError("workflow_dirs", "no workflow given")
        if output_dir is None and not self.has_inventory:
            # checked first: finding out after a long search that nothing can be saved is rude
            raise ConfigurationError("comfyui_root", "not set: pass --comfyui-root DIR (or an output folder) "
                                                     "to know what is missing and where it goes")
        self.check_output_dir(output_dir)
        analysis = self.analyze_workflows(paths, backends=search_backends)
        if picks or urls or choose is not None:
            from .choices import apply_choices

            # a person's choices (``--pick NAME=N``, ``--url NAME=URL``, or a question per
            # unsure reference) go first with confidence 1.0
            apply_choices(analysis, picks=picks, urls=urls, search=self.search, choose=choose,
                          threshold=self.threshold(min_confidence))
        specs, failures = self.plan(analysis, min_confidence, include_optional=include_optional,
                                    output_dir=output_dir, allow_pickle=allow_pickle)
        failures = [Failure(e["path"], "", e["error"], "WorkflowParseError")
                    for e in analysis.errors if not e.get("skipped")] + failures
        for spec in specs:
            log.info("plan: %s from %s (%.0f%%: %s) %s", spec["key"], spec.get("source"),
                     100 * float(spec.get("confidence") or 0), spec.get("reason", ""), redact_url(spec.get("url")))
        for failure in failures:
            log.info("not fixed: %s/%s: %s", failure.directory, failure.filename, failure.reason)
        run = WorkflowRun(
            workflows_scanned=len(analysis.workflows),
            models_found=len(analysis.references),
            models_present=sum(1 for r in analysis.references if r.status not in (MISSING, None)),
            models_missing=analysis.models_missing,
            plan=specs,
            failures=failures,
            dry_run=dry_run,
            skipped=self.skipped(analysis, include_optional=include_optional)
            + [Failure(e["path"], "", e["error"], "not a workflow") for e in analysis.errors if e.get("skipped")],
        )
        if not dry_run and specs and (confirm is None or confirm(run)):
            results = self.download_models(specs, output_dir, on_event=on_event)
            run.downloads = results
            self._account(run, specs, results)
        run.duration = time.monotonic() - started
        return run

    def _account(self, run: WorkflowRun, specs: List[Dict[str, Any]], results: List[DownloadResult]) -> None:
        """Count the outcomes into ``run``; failed downloads are recorded for ``retry_failed``."""
        for spec, result in zip(specs, results, strict=True):
            if result.success:
                run.models_resolved += 1
                continue
            run.failures.append(Failure(spec["filename"], spec.get("directory") or "",
                                        result.error_message or "download failed", result.error_type))
            if result.error_type != _CANCELLED and spec.get("save_path") and spec.get("url"):
                try:
                    self.state.record_download(
                        str(spec["filename"]), str(spec.get("source") or ""), str(spec.get("source_id") or ""),
                        path=spec["save_path"], url=spec["url"], sha256=spec.get("sha256"), size=spec.get("size"),
                        status="failed", directory=spec.get("directory"))
                except Exception as exc:  # the history is a convenience; the run's report stands
                    log.warning("could not record the failed download of %s: %s", spec["filename"], exc)
        if run.models_resolved and self._inventory is not None:
            self._inventory.refresh()

    def failed_downloads(self) -> List[Dict[str, Any]]:
        """Download specs of the files whose last recorded download failed and that are still
        missing, inside this install's model folders (what ``comfyfixer fix --retry-failed`` runs)."""
        latest: Dict[str, Any] = {}
        for record in self.state.get_download_history():
            if record.path:
                latest[record.path] = record
        roots = [os.path.realpath(os.fspath(p)) for paths in self.inventory.folders.values() for p in paths]
        protected = self.protected_roots()
        specs: List[Dict[str, Any]] = []
        for path, record in latest.items():
            if record.status != "failed" or not record.url or os.path.lexists(path):
                continue
            real_parent = os.path.realpath(os.path.dirname(path))
            if not any(_within(real_parent, root) for root in roots) or overlaps_protected(real_parent, protected):
                log.warning("not retrying %s: not inside a model folder of this install", path)
                continue
            specs.append({"key": record.filename, "url": record.url, "filename": record.filename,
                          "save_path": path, "sha256": record.sha256, "size": record.size,
                          "source": record.source, "source_id": record.source_id})
        return specs

    def retry_failed(self, *, on_event: Optional[EventCallback] = None, dry_run: bool = False) -> WorkflowRun:
        """Download again the files whose last recorded download failed (see ``failed_downloads``)."""
        started = time.monotonic()
        specs = self.failed_downloads()
        run = WorkflowRun(plan=specs, dry_run=dry_run, models_missing=len(specs))
        if specs and not dry_run:
            results = self.download_models(specs, on_event=on_event)
            run.downloads = results
            self._account(run, specs, results)
        run.duration = time.monotonic() - started
        return run

    # -- lifecycle ---------------------------------------------------------------------------
    @contextmanager
    def _operation(self) -> Iterator[None]:
        with self._ops_cond:
            self._ops += 1
        try:
            yield
        finally:
            with self._ops_cond:
                self._ops -= 1
                self._ops_cond.notify_all()

    def cancel(self, key: Optional[PathLike] = None, *, keep_partial: bool = False) -> int:
        """Cancel this core's running and queued downloads, or only the one of ``key`` (save
        path, item id or file name); returns how many were told.  Their part files are
        removed when the batch returns (or by ``cleanup``), unless ``keep_partial``."""
        downloader = self._downloader
        return downloader.cancel(key, keep_partial=keep_partial) if downloader is not None else 0

    def cleanup(self, timeout: float = CLEANUP_WAIT_SECONDS) -> None:
        """Cancel running downloads, wait (up to ``timeout`` s) for them to stop, remove the
        ``.part``/``.part.json`` files of downloads cancelled through this core, and release
        the HTTP sessions, pools and databases of the components it created (those passed
        to the constructor are the caller's to close).  The core may be used again afterwards."""
        self._closing.set()
        try:
            self.cancel()
            deadline = time.monotonic() + max(0.0, timeout)
            with self._ops_cond:
                while self._ops and time.monotonic() < deadline:
                    self._ops_cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            self._sweep_cancelled()
            with self._lock:
                # components given to the constructor belong to the caller: not closed here
                components = [(name, getattr(self, "_" + name)) for name in ("downloader", "search", "state")
                              if name in self._owned]
                for name, _ in components:
                    setattr(self, "_" + name, None)
                    self._owned.discard(name)
            for name, component in components:
                close = getattr(component, "close", None)
                if close is None:
                    continue
                try:
                    close()
                except Exception as exc:  # cleanup must go on
                    log.warning("closing the %s failed: %s", name, exc)
        finally:
            self._closing.clear()

    close = cleanup

    def _forget_parts(self, specs: List[Dict[str, Any]]) -> None:
        """Remember the targets of cancelled downloads and sweep their part files now."""
        with self._lock:
            self._cancelled_targets.update(Path(s["save_path"]) for s in specs if s.get("save_path"))
        self._sweep_cancelled()

    def _sweep_cancelled(self) -> None:
        """Remove leftover part files of downloads cancelled through this core.

        The engine normally deletes them itself when it notices the cancel; this catches
        the ones it had not reached yet.  A part file someone holds the engine's lock on
        (another process's or another core's live download) is left alone.
        """
        with self._lock:
            targets = list(self._cancelled_targets)
        for target in targets:
            if _remove_part_if_idle(target):
                with self._lock:
                    self._cancelled_targets.discard(target)

    def __enter__(self) -> "ComfyFixerCore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cleanup()


def _within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # another drive on Windows
        return False


class _Pacer:
    """Lets lookups start at most once per ``interval`` s; ``wait_turn`` is False once cancelled."""

    def __init__(self, interval: float, cancel: threading.Event):
        self._interval = max(0.0, float(interval))
        self._cancel = cancel
        self._lock = threading.Lock()
        self._next = 0.0

    def wait_turn(self) -> bool:
        if self._cancel.is_set():
            return False
        if not self._interval:
            return True
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        delay = start - time.monotonic()
        return not (delay > 0 and self._cancel.wait(delay)) and not self._cancel.is_set()


def merge_references(references: Iterable[ModelReference]) -> List[ModelReference]:
    """One reference per (folder, file), with every location; first-seen order kept.

    The merged references are copies: the workflows' own references stay as scanned.
    """
    merged: Dict[str, ModelReference] = {}
    for ref in references:
        seen = merged.get(ref.key)
        if seen is None:
            merged[ref.key] = copy.copy(ref)
            merged[ref.key].locations = list(ref.locations)
            continue
        seen.locations.extend(loc for loc in ref.locations if loc not in seen.locations)
        seen.optional = seen.optional and ref.optional
        seen.url = seen.url or ref.url
        if not seen.hash and ref.hash:
            seen.hash, seen.hash_type = ref.hash, ref.hash_type
        seen.confidence = max(seen.confidence, ref.confidence)
    return list(merged.values())


def _remove_part_if_idle(target: Path) -> bool:
    """Delete ``target.part`` and ``target.part.json`` unless a download holds the part's lock.
    True when nothing is left to sweep."""
    part = target.with_name(target.name + ".part")
    sidecar = target.with_name(target.name + ".part.json")
    try:
        fd = os.open(part, os.O_RDWR | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        fd = -1
    except OSError as exc:
        log.warning("cannot check %s: %s", part, exc)
        return False
    try:
        if fd >= 0 and fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False  # a live download owns it
        for path in (part, sidecar) if fd >= 0 else (sidecar,):
            # a sidecar without its part is junk either way
            try:
                os.unlink(path)
                log.info("removed %s of a cancelled download", path.name)
            except FileNotFoundError:
                pass
            except OSError as exc:  # Windows: still open elsewhere
                log.warning("cannot remove %s: %s", path, exc)
                return False
        return True
    finally:
        if fd >= 0:
            os.close(fd)


#: extensions a file named by a ``<lora:>`` tag may take (the candidate's own is kept)
_MODEL_EXTS = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin")


def _save_name(ref: ModelReference, chosen: SearchResult) -> str:
    """The reference's own name; an embedding named without extension (``embedding:name`` in a
    prompt) gets the candidate's extension: ComfyUI finds ``name.safetensors`` for it, but
    would unpickle a file saved as plain ``name``."""
    if chosen.metadata.get("alternative_of") and chosen.save_as:
        return chosen.save_as  # the safetensors version: saved under its own extension
    name = ref.filename
    embedding = canonical_folder(ref.expected_directory) == "embeddings"
    # a ``<lora:name>`` tag names its file with or without the extension; ComfyUI lists only
    # files with a model extension, so one saved as plain ``name`` would never load
    if not embedding and ref.source != "lora_tag":
        return name
    exts = EMBEDDING_EXTENSIONS if embedding else _MODEL_EXTS
    if any(name.lower().endswith(ext) for ext in exts):
        return name
    for source in (chosen.filename, urlsplit(chosen.download_url or "").path):
        ext = next((e for e in exts if (source or "").lower().endswith(e)), None)
        if ext:
            return name + ext
    return name if embedding else name + ".safetensors"


def _cancelled_result(spec: Dict[str, Any]) -> DownloadResult:
    return DownloadResult(filename=str(spec.get("filename")), success=False, save_path=str(spec.get("save_path", "")),
                          error_message="cancelled before it started", error_type=_CANCELLED)


def _sha256(value: Optional[str]) -> Optional[str]:
    text = (value or "").strip().lower()
    if text.startswith("sha256:"):
        text = text[7:]
    return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else None


def _reference_sha256(ref: ModelReference) -> Optional[str]:
    """The workflow's own hash, when it is a sha256 (other kinds cannot be verified here)."""
    if (ref.hash_type or "sha256").lower().replace("-", "") != "sha256":
        return None
    return _sha256(ref.hash)


def _failure_type(res: Resolution) -> Optional[str]:
    if res.best is not None:
        return "LowConfidenceError"
    if res.errors:
        return res.errors[0].get("type")
    return "NotFoundError"


def _why_not(res: Resolution, threshold: float) -> str:
    best = res.best
    if best is None:
        if res.errors:
            return "no candidate found; " + "; ".join(
                f"{e.get('backend', '?')}: {e.get('message', '')}" for e in res.errors[:3])
        return "no candidate found on any backend"
    return (f"best candidate {best.filename!r} from {best.backend} is only "
            f"{best.confidence:.0%} sure ({best.reason}); needs {threshold:.0%}: pick it by hand")


__all__ = ["ComfyFixerCore", "merge_references"]
