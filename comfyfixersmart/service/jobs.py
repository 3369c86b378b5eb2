"""Background download jobs of the ComfyUI panel: queue, progress, cancel, retry, persistence.

A job is a list of items (one file each).  Items run on a thread pool (the downloads are
blocking ``requests`` code); the aiohttp loop only submits and reads.

Updates cost O(1) per item change, whatever the size of the job:

* an item's state change writes that item only to the ``JobStore`` (the StateManager's job
  queue in ComfyUI) and is pushed as one ``comfyfixer.progress`` event (the row: bytes,
  state, error, save path); byte progress is pushed the same way, at most
  ``1/progress_interval`` times a second per item, never persisted;
* the whole job (``comfyfixer.job``, what ``GET /jobs/{id}`` returns) is stored and pushed
  at once when a job-level field changes (state queued/resolving/running/done/failed/
  cancelled, error, cancel request, item list), otherwise at most ``1/snapshot_interval``
  times a second while its items change (the summary counts of the Downloads list).  The
  final state of a job is job-level, so it always goes out.

Jobs found unfinished in the store at start-up (ComfyUI was restarted mid-download) are
queued again and resume from their ``.part`` files (``Config.auto_resume``, default on);
with it off they are marked failed with a ``JobInterruptedError`` and Retry resumes them.
A fix job cut off while still resolving keeps its input in the record (``Job.plan``: the
workflow and options, at most ``MAX_PLAN_BYTES`` of JSON, dropped once resolving is over) and
resolves again the same way (``replan``); without it, it is marked failed.
"""

from __future__ import annotations

import collections
import copy
import json
import queue
import threading
import time
import uuid
from pathlib import Path
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple, Union

from ..datamodel import DownloadResult, ProgressEvent
from ..errors import (
    ComfyFixerError,
    DownloadCancelledError,
    JobConflictError,
    JobNotFoundError,
    ResolveCancelledError,
)
from ..logs import get_logger
from ..security import redact_text, redact_url, safe_join
from ..settings import Config
from .validation import DownloadItemSpec

log = get_logger(__name__)

JOB_KINDS = ("download", "fix")
JOB_STATES = ("queued", "resolving", "running", "done", "failed", "cancelled")
ITEM_STATES = ("queued", "connecting", "downloading", "verifying", "done", "failed", "cancelled", "skipped")
ITEM_ACTIVE = frozenset({"queued", "connecting", "downloading", "verifying"})
ITEM_FINAL = frozenset({"done", "failed", "cancelled", "skipped"})
JOB_FINAL = frozenset({"done", "failed", "cancelled"})

EVENT_JOB = "comfyfixer.job"
EVENT_PROGRESS = "comfyfixer.progress"

Emit = Callable[[str, Dict[str, Any]], None]
ConfigSource = Union[Config, Callable[[], Config]]


def _error_dict(exc: BaseException) -> Dict[str, Any]:
    """``{"type", "message", "help_url"?}`` of an exception, secrets removed."""
    out: Dict[str, Any] = {"type": type(exc).__name__, "message": redact_text(str(exc)) or type(exc).__name__}
    help_url = getattr(exc, "help_url", None)
    if help_url:
        out["help_url"] = help_url
    return out


# -- records ------------------------------------------------------------------------------------

def _check_still_inside(it: "JobItem") -> None:
    """Raise UnsafePathError when a folder on the way from the row's model folder to its file
    was swapped for a link leading outside while the row waited (validated at submission, the
    path is planned again only when the row starts: a link planted meanwhile would be followed).
    The model folder's own link is trusted, as at submission (``safe_join``)."""
    if not it.save_path or not it.filename:
        return
    rel = [p for p in it.filename.replace("\\", "/").split("/") if p]
    path = Path(it.save_path)
    if not rel or list(path.parts[-len(rel):]) != rel:
        return  # not a model-folder row (a fix row planned elsewhere): the engine checks it
    safe_join(path.parents[len(rel) - 1], "/".join(rel))


@dataclass
class JobItem:
    """One file of a job.  ``url`` is kept whole here; ``to_dict`` shows it redacted."""

    id: str
    key: str
    filename: str
    directory: str
    url: str
    save_path: str
    sha256: Optional[str] = None
    size: Optional[int] = None
    state: str = "queued"
    downloaded: int = 0
    total: Optional[int] = None
    speed: float = 0.0
    eta: Optional[float] = None
    error: Optional[Dict[str, Any]] = None
    source: Optional[str] = None
    source_id: Optional[str] = None
    folder_index: int = 0

    @classmethod
    def from_spec(cls, item_id: str, spec: DownloadItemSpec) -> "JobItem":
        return cls(id=item_id, key=spec.key, filename=spec.filename, directory=spec.directory, url=spec.url,
                   save_path=spec.save_path, sha256=spec.sha256, size=spec.size, total=spec.size,
                   source=spec.source, source_id=spec.source_id, folder_index=spec.folder_index)

    def to_dict(self) -> Dict[str, Any]:
        """The Item of the route contract."""
        return {
            "id": self.id, "key": self.key, "filename": self.filename, "directory": self.directory,
            "url": redact_url(self.url) or "", "state": self.state, "downloaded": self.downloaded,
            "total": self.total, "speed": self.speed, "eta": self.eta, "save_path": self.save_path,
            "sha256": self.sha256, "error": self.error, "source": self.source, "source_id": self.source_id,
        }

    def to_record(self) -> Dict[str, Any]:
        """Everything needed to retry the item after a restart."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_record(cls, data: Dict[str, Any]) -> "JobItem":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Job:
    """A background job: ``kind`` download (items given) or fix (items found by resolving)."""

    id: str
    kind: str
    state: str = "queued"
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    items: List[JobItem] = field(default_factory=list)
    error: Optional[Dict[str, Any]] = None
    cancel_requested: bool = False
    #: a fix job's input while it resolves (stored, never sent to the page): resumes it after a restart
    plan: Optional[Dict[str, Any]] = None

    def item(self, item_id: str) -> JobItem:
        for it in self.items:
            if it.id == item_id:
                return it
        raise JobNotFoundError(f"job {self.id} has no item {item_id!r}")

    def summary(self) -> Dict[str, int]:
        states = [it.state for it in self.items]
        return {
            "total": len(states),
            "done": sum(s in ("done", "skipped") for s in states),
            "failed": states.count("failed"),
            "cancelled": states.count("cancelled"),
        }

    def to_dict(self) -> Dict[str, Any]:
        """The Job of the route contract (``created``/``updated`` are Unix seconds)."""
        out: Dict[str, Any] = {
            "id": self.id, "kind": self.kind, "state": self.state, "created": self.created,
            "updated": self.updated, "items": [it.to_dict() for it in self.items], "summary": self.summary(),
        }
        if self.error is not None:
            out["error"] = self.error
        return out

    def to_record(self) -> Dict[str, Any]:
        record = {"id": self.id, "kind": self.kind, "state": self.state, "created": self.created,
                  "updated": self.updated, "error": self.error, "cancel_requested": self.cancel_requested,
                  "items": [it.to_record() for it in self.items]}
        record["plan"] = self.plan  # None once resolving is over: the stored row shrinks again
        return record

    @classmethod
    def from_record(cls, data: Dict[str, Any]) -> "Job":
        return cls(id=str(data["id"]), kind=str(data.get("kind") or "download"),
                   state=str(data.get("state") or "failed"),
                   created=float(data.get("created") or 0.0), updated=float(data.get("updated") or 0.0),
                   items=[JobItem.from_record(i) for i in data.get("items") or []],
                   error=data.get("error"), cancel_requested=bool(data.get("cancel_requested")),
                   plan=data.get("plan") if isinstance(data.get("plan"), dict) else None)


@dataclass
class PlanOutcome:
    """What resolving a fix job produced: downloads to run, and references left unresolved
    (``{"key", "filename", "directory", "error": {"type", "message"}}``)."""

    items: List[DownloadItemSpec] = field(default_factory=list)
    unresolved: List[Dict[str, Any]] = field(default_factory=list)


# -- persistence --------------------------------------------------------------------------------

class JobStore(Protocol):
    """Where jobs outlive the process (the StateManager job queue in ComfyUI)."""

    def create(self, kind: str, record: Dict[str, Any]) -> str:
        """Store a new job; returns its id."""

    def save(self, record: Dict[str, Any], item_ids: Optional[Sequence[str]] = None) -> None:
        """Store a job-level change (``record`` is the whole job); ``item_ids``: only these
        items changed (None: all)."""

    def save_item(self, job_id: str, item: Dict[str, Any]) -> None:
        """Store one item's change (``JobItem.to_record()``); the job row is left as it is."""

    def load(self, limit: int) -> List[Dict[str, Any]]:
        """Recent jobs, newest first; a job whose process died has ``"interrupted": True``."""


class MemoryJobStore:
    """A JobStore that forgets everything at exit (tests, or when no state dir is usable)."""

    def __init__(self) -> None:
        self._jobs: Dict[str, Dict[str, Any]] = {}  # job fields, without the items
        self._items: Dict[str, Dict[str, Dict[str, Any]]] = {}  # job id -> item id -> item (in order)
        self._lock = threading.Lock()

    def create(self, kind: str, record: Dict[str, Any]) -> str:
        job_id = uuid.uuid4().hex
        self.save({**record, "id": job_id, "kind": kind})
        return job_id

    def save(self, record: Dict[str, Any], item_ids: Optional[Sequence[str]] = None) -> None:
        wanted = None if item_ids is None else set(item_ids)
        with self._lock:
            self._jobs[record["id"]] = copy.deepcopy({k: v for k, v in record.items() if k != "items"})
            items = self._items.setdefault(record["id"], {})
            for item in record.get("items") or []:
                if wanted is None or item["id"] in wanted:
                    items[item["id"]] = copy.deepcopy(item)

    def save_item(self, job_id: str, item: Dict[str, Any]) -> None:
        with self._lock:
            if job_id not in self._jobs:
                raise JobNotFoundError(f"no stored job {job_id!r}")
            self._items[job_id][item["id"]] = copy.deepcopy(item)

    def load(self, limit: int) -> List[Dict[str, Any]]:
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda r: r.get("created") or 0, reverse=True)[:limit]
            return [copy.deepcopy({**job, "items": list(self._items.get(job["id"], {}).values())})
                    for job in jobs]


# -- the manager --------------------------------------------------------------------------------

#: the largest fix input (workflow + options, as JSON) kept in the job record to resume resolving
MAX_PLAN_BYTES = 4 * 1024 * 1024
#: (stored fix input, cancel event) -> the planner that resolves it again
Replan = Callable[[Dict[str, Any], threading.Event], Callable[[], "PlanOutcome"]]


def _plan_record(plan: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """``plan`` if it is JSON of at most ``MAX_PLAN_BYTES``, else None (not resumable)."""
    if plan is None:
        return None
    try:
        size = len(json.dumps(plan, separators=(",", ":")).encode("utf-8"))
    except (TypeError, ValueError):
        return None
    if size > MAX_PLAN_BYTES:
        log.info("fix input of %d bytes not stored: the job cannot resume resolving after a restart", size)
        return None
    return plan


class Downloader(Protocol):
    def download_model(self, url: str, save_path: str, **kwargs: Any) -> DownloadResult: ...


class JobManager:
    """Runs jobs in threads; all public methods are thread-safe and return Job dicts."""

    def __init__(
        self,
        config: ConfigSource,
        *,
        store: Optional[JobStore] = None,
        emit: Optional[Emit] = None,
        downloader_factory: Optional[Callable[[Config], Downloader]] = None,
        replan: Optional[Replan] = None,
        progress_interval: float = 0.25,
        snapshot_interval: float = 0.5,
        max_workers: Optional[int] = None,
        history_limit: int = 200,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._config_source = config
        self._store: JobStore = store if store is not None else MemoryJobStore()
        self._emit_fn = emit
        self._downloader_factory = downloader_factory or _default_downloader
        self._replan = replan
        self._interval = progress_interval
        self._history_limit = history_limit
        self._clock = clock
        self._lock = threading.RLock()
        self._persist_lock = threading.Lock()
        # one lock for both events: each snapshot is taken and sent under it, so the page
        # never gets an older row or job after a newer one
        self._emit_lock = threading.Lock()
        self._jobs: Dict[str, Job] = {}
        self._cancel: Dict[Tuple[str, str], threading.Event] = {}
        #: fix job id -> the event its planner watches while resolving
        self._plan_cancel: Dict[str, threading.Event] = {}
        self._last_progress: Dict[Tuple[str, str], float] = {}
        # job-level fields as last stored: a change of them is what makes an update job-level
        self._stored_head: Dict[str, Tuple[Any, ...]] = {}
        # the same clock paces rows and snapshots (tests drive both with a manual one)
        self._snapshots = Coalescer(snapshot_interval, self._flush_snapshot, "comfyfixer-events", clock=clock)
        #: None: the pool follows ``download_concurrency`` (the panel may change it)
        self._fixed_workers = max_workers
        workers = max_workers or self._config().download_concurrency
        # a cancelled row gives its slot back at once, even while its thread winds down
        self._pool = SlotPool(workers, "comfyfixer-download")
        # resolving talks to the hubs and may be slow: keep it off the download threads
        self._planner_pool = WorkerPool(2, "comfyfixer-resolve")
        self._closed = False
        self._recover()

    # -- public API ---------------------------------------------------------------------------
    @property
    def store(self) -> JobStore:
        return self._store

    def submit_download(self, specs: Sequence[DownloadItemSpec]) -> Dict[str, Any]:
        """Queue the (validated) downloads as one job; returns the Job dict."""
        with self._lock:
            self._check_open()
        job = self._create("download", [JobItem.from_spec(str(i + 1), spec) for i, spec in enumerate(specs)])
        for it in job.items:
            self._start_item(job, it)
        return self.get(job.id)

    def submit_fix(self, planner: Callable[[], PlanOutcome], *,
                   cancel: Optional[threading.Event] = None, plan: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Queue a fix: ``planner`` (scan + resolve + plan, run in a thread) gives the items.
        ``cancel`` is set when the job is cancelled while resolving (the planner watches it).
        ``plan`` (JSON: the workflow and options) is stored while resolving so that a restart
        resolves it again through ``replan``."""
        with self._lock:
            self._check_open()
        job = self._create("fix", [], plan=_plan_record(plan))
        with self._lock:
            self._plan_cancel[job.id] = cancel if cancel is not None else threading.Event()
        self._planner_pool.submit(self._run_planner, job, planner)
        return self.get(job.id)

    def get(self, job_id: str) -> Dict[str, Any]:
        with self._lock:
            return self._job(job_id).to_dict()

    def list(self) -> List[Dict[str, Any]]:
        """Every known job, newest first (finished ones included)."""
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: (j.created, j.id), reverse=True)
            return [j.to_dict() for j in jobs]

    def cancel_job(self, job_id: str) -> Dict[str, Any]:
        """Cancel every unfinished item (and the resolving step); finished jobs are left as they are."""
        with self._lock:
            job = self._job(job_id)
            if job.state in JOB_FINAL:
                return job.to_dict()
            job.cancel_requested = True
            plan_cancel = self._plan_cancel.get(job.id)
            if plan_cancel is not None:
                plan_cancel.set()
            for it in job.items:
                self._cancel_item_locked(job, it)
            self._refresh_state_locked(job)
        self._changed(job)
        return self.get(job_id)

    def cancel_item(self, job_id: str, item_id: str) -> Dict[str, Any]:
        """Cancel one row; a finished row is left as it is."""
        with self._lock:
            job = self._job(job_id)
            it = job.item(item_id)
            if it.state in ITEM_FINAL:
                return job.to_dict()
            self._cancel_item_locked(job, it)
            self._refresh_state_locked(job)
        self._changed(job, [it])
        return self.get(job_id)

    def retry_item(self, job_id: str, item_id: str) -> Dict[str, Any]:
        """Run a failed or cancelled row again (a kept ``.part`` file is resumed)."""
        with self._lock:
            self._check_open()
            job = self._job(job_id)
            it = job.item(item_id)
            if it.state not in ("failed", "cancelled"):
                raise JobConflictError(f"item {item_id} is {it.state}; only failed or cancelled items can be retried")
            if not it.url:
                raise JobConflictError(f"item {item_id} has no download source to retry; pick one by hand")
            it.state, it.error, it.speed, it.eta = "queued", None, 0.0, None
            job.cancel_requested = False
            job.error = None
            self._cancel[(job.id, it.id)] = threading.Event()
            self._refresh_state_locked(job)
        self._changed(job, [it])
        self._start_item(job, it)
        return self.get(job_id)

    def retry_failed(self, job_id: Optional[str] = None) -> Dict[str, Any]:
        """Run every failed row again (of one job, or of all jobs) that has a download source;
        returns ``{"retried": n, "jobs": [Job dicts of the jobs touched]}``."""
        with self._lock:
            self._check_open()
            jobs = [self._job(job_id)] if job_id is not None else list(self._jobs.values())
            wanted = [(job, it) for job in jobs for it in job.items if it.state == "failed" and it.url]
        touched: Dict[str, None] = {}
        retried = 0
        for job, it in wanted:
            try:
                self.retry_item(job.id, it.id)
            except JobConflictError:  # changed meanwhile (retried by another request)
                continue
            retried += 1
            touched[job.id] = None
        ids = list(touched) if job_id is None else [job_id]
        return {"retried": retried, "jobs": [self.get(i) for i in ids]}

    def shutdown(self, wait: bool = False) -> None:
        """Cancel running downloads and stop the threads (ComfyUI exit, test teardown)."""
        with self._lock:
            self._closed = True
            for event in self._cancel.values():
                event.set()
        for event in list(self._plan_cancel.values()):
            event.set()
        self._planner_pool.shutdown(wait=wait)
        self._pool.shutdown(wait=wait)
        self._snapshots.close()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until no job is unfinished (tests, CLI); False on timeout.  The last
        events of a job may go out a moment after it is seen finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(j.state in JOB_FINAL for j in self._jobs.values()):
                    return True
            time.sleep(0.01)
        return False

    # -- running ----------------------------------------------------------------------------------
    def _run_planner(self, job: Job, planner: Callable[[], PlanOutcome]) -> None:
        with self._lock:
            if job.cancel_requested:
                return
            job.state = "resolving"
        self._changed(job, [])
        try:
            outcome = planner()
        except Exception as exc:  # the job records why; the thread must survive
            with self._lock:
                self._plan_cancel.pop(job.id, None)
            if isinstance(exc, ResolveCancelledError) and job.cancel_requested:
                with self._lock:
                    job.state, job.plan = "cancelled", None
                self._changed(job, [])
                return
            if not isinstance(exc, ComfyFixerError):
                log.exception("resolving fix job %s failed", job.id)
            with self._lock:
                job.error = _error_dict(exc) if isinstance(exc, ComfyFixerError) else {
                    "type": type(exc).__name__, "message": "resolving failed unexpectedly; see the server log"}
                job.state = "cancelled" if job.cancel_requested else "failed"
                job.plan = None
            self._changed(job, [])
            return
        with self._lock:
            self._plan_cancel.pop(job.id, None)
            job.plan = None
            n = 0
            for spec in outcome.items:
                n += 1
                it = JobItem.from_spec(str(n), spec)
                job.items.append(it)
                self._cancel[(job.id, it.id)] = threading.Event()
            for miss in outcome.unresolved:
                n += 1
                job.items.append(JobItem(
                    id=str(n), key=str(miss.get("key") or ""), filename=str(miss.get("filename") or ""),
                    directory=str(miss.get("directory") or ""), url="", save_path="", state="failed",
                    error=miss.get("error") or {"type": "NotFoundError", "message": "no source found"}))
            if job.cancel_requested:
                for it in job.items:
                    self._cancel_item_locked(job, it)
            job.state = "running"
            self._refresh_state_locked(job)
            to_start = [it for it in job.items if it.state == "queued"]
        self._changed(job)
        for it in to_start:
            self._start_item(job, it)

    def _start_item(self, job: Job, it: JobItem) -> None:
        if self._fixed_workers is None:
            try:
                self._pool.resize(self._config().download_concurrency)
            except Exception:  # a broken settings file keeps the current size
                log.warning("could not read download_concurrency; keeping %d workers", self._pool.size)
        try:
            self._pool.submit((job.id, it.id), self._run_item, job, it)
        except RuntimeError:  # pool shut down between the check and the submit
            with self._lock:
                it.state, it.error = "cancelled", {"type": "DownloadCancelledError", "message": "server is stopping"}
                self._refresh_state_locked(job)
            self._changed(job, [it])

    def _run_item(self, job: Job, it: JobItem) -> None:
        key = (job.id, it.id)
        with self._lock:
            cancel = self._cancel.get(key)
            if cancel is None or cancel.is_set() or it.state != "queued":
                return
            it.state = "connecting"
            self._refresh_state_locked(job)
        self._changed(job, [it])
        try:
            _check_still_inside(it)
            config = self._config()
            downloader = self._downloader_factory(config)
            try:
                result = downloader.download_model(
                    it.url, it.save_path, expected_sha256=it.sha256, expected_size=it.size,
                    on_event=lambda ev: self._on_progress(job, it, ev, cancel),
                    # no job_id: this manager persists the job itself (the engine would
                    # otherwise mirror its own item states into the same queue)
                    cancel_event=cancel, item_id=it.id,
                )
            finally:
                close = getattr(downloader, "close", None)
                if callable(close):
                    close()
            self._finish_item(job, it, cancel, result=result)
        except DownloadCancelledError as exc:
            self._finish_item(job, it, cancel, exc=exc)
        except Exception as exc:  # every failure ends up on the row, never kills the worker
            if not isinstance(exc, ComfyFixerError):
                log.exception("download of %s failed", it.key)
            self._finish_item(job, it, cancel, exc=exc)

    def _on_progress(self, job: Job, it: JobItem, event: ProgressEvent, cancel: threading.Event) -> None:
        if cancel.is_set():
            # stops the engine between chunks even if it only checks callbacks
            raise DownloadCancelledError("cancelled by the user")
        state_changed = False
        with self._lock:
            if it.state in ITEM_FINAL:
                return
            it.downloaded = int(event.downloaded or 0)
            if event.total is not None:
                it.total = int(event.total)
            it.speed = float(event.speed or 0.0)
            it.eta = event.eta
            # terminal states come from the result, not from the event stream
            if event.state in ("connecting", "downloading", "verifying") and event.state != it.state:
                it.state = event.state
                state_changed = True
            now = self._clock()
            last = self._last_progress.get((job.id, it.id), float("-inf"))
            due = state_changed or now - last >= self._interval
            if due:
                self._last_progress[(job.id, it.id)] = now
        if state_changed:
            # active -> active: a restart fails the item whichever it was, so nothing to store
            self._changed(job, [it], persist=False)
        elif due:
            self._emit_progress(job, it)

    def _finish_item(self, job: Job, it: JobItem, cancel: threading.Event, *,
                     result: Optional[DownloadResult] = None, exc: Optional[BaseException] = None) -> None:
        with self._lock:
            if self._cancel.get((job.id, it.id)) is not cancel:
                return  # a run the row was retried after: its late outcome is not the row's
            if it.state in ITEM_FINAL and not (result is not None and result.success):
                return  # cancelled while the transfer wound down: the row was settled then
            it.speed, it.eta = 0.0, None
            if result is not None and result.success:
                it.state = "skipped" if result.skipped else "done"
                it.error = None
                it.save_path = result.save_path or it.save_path
                it.sha256 = result.sha256 or it.sha256
                if result.size_downloaded and not result.skipped:
                    it.downloaded = max(it.downloaded, int(result.size_downloaded))
                if it.total is None and it.downloaded:
                    it.total = it.downloaded
            elif cancel.is_set() or isinstance(exc, DownloadCancelledError) or (
                    result is not None and result.error_type == "DownloadCancelledError"):
                it.state = "cancelled"
                it.error = None
            else:
                it.state = "failed"
                if exc is not None:
                    it.error = _error_dict(exc) if isinstance(exc, ComfyFixerError) else {
                        "type": type(exc).__name__, "message": "download failed unexpectedly; see the server log"}
                else:
                    assert result is not None
                    it.error = {"type": result.error_type or "DownloadError",
                                "message": redact_text(result.error_message) or "download failed"}
            self._refresh_state_locked(job)
            self._last_progress.pop((job.id, it.id), None)
        self._changed(job, [it])

    # -- state ------------------------------------------------------------------------------------
    def _cancel_item_locked(self, job: Job, it: JobItem) -> None:
        if it.state in ITEM_FINAL:
            return
        event = self._cancel.get((job.id, it.id))
        if event is not None:
            event.set()
        # settled here, queued or running: the row is final at once and its worker slot goes
        # to the next queued download; a running transfer stops on its own (its late result
        # is ignored, the row is already final)
        it.state, it.speed, it.eta = "cancelled", 0.0, None
        it.error = None
        self._pool.release((job.id, it.id))

    def _refresh_state_locked(self, job: Job) -> None:
        """Derive the job state from its items (once resolving is over)."""
        if job.state in ("queued", "resolving") and job.kind == "fix" and not job.items:
            return
        states = [it.state for it in job.items]
        if any(s in ITEM_ACTIVE for s in states):
            started = any(s in ITEM_ACTIVE - {"queued"} or s in ITEM_FINAL for s in states)
            job.state = "running" if started or job.kind == "fix" else "queued"
        elif job.cancel_requested and "cancelled" in states:
            job.state = "cancelled"
        elif "failed" in states:
            job.state = "failed"
        elif states and all(s == "cancelled" for s in states):
            job.state = "cancelled"
        elif job.cancel_requested and not states:
            job.state = "cancelled"
        else:
            job.state = "done"

    def _changed(self, job: Job, items: Optional[Sequence[JobItem]] = None, *, persist: bool = True) -> None:
        """Store and announce a state change.  ``items``: the rows that changed (None: all).

        Cost O(len(items)) unless a job-level field changed (a handful of times per job):
        the changed rows are stored one by one and sent as progress events, and the whole
        job is only marked for the next coalesced snapshot.  On a job-level change the job
        is stored and its snapshot sent at once, after the rows.  Snapshot and save happen
        under one lock, so the store never receives an older state after a newer one.
        """
        with self._persist_lock:
            with self._lock:
                job.updated = time.time()
                head = self._head_locked(job)
                job_level = items is None or head != self._stored_head.get(job.id)
                if job_level:
                    record = job.to_record()
                    self._stored_head[job.id] = head
                elif persist:
                    rows = [it.to_record() for it in items or ()]
            try:
                if job_level:
                    self._store.save(record, None if items is None else [it.id for it in items])
                elif persist:
                    for row in rows:
                        self._store.save_item(job.id, row)
            except Exception:  # a full disk must not stop the download itself
                log.exception("could not persist job %s", job.id)
        for it in items or ():
            self._emit_progress(job, it)
        if job_level:
            self._emit_job(job.id)
        else:
            self._snapshots.mark(job.id)

    @staticmethod
    def _head_locked(job: Job) -> Tuple[Any, ...]:
        """The job-level fields: their change is stored and sent at once."""
        return (job.state, job.error, job.cancel_requested, len(job.items), job.plan is None)

    def _emit_job(self, job_id: str) -> None:
        """Send the whole job now (it also stands for any snapshot still pending)."""
        with self._emit_lock:
            # before the snapshot: a change marked after this point gets a later one
            self._snapshots.discard(job_id)
            with self._lock:
                job = self._jobs.get(job_id)
                public = job.to_dict() if job is not None else None
            if public is not None:
                self._emit(EVENT_JOB, public)

    def _flush_snapshot(self, job_id: str) -> None:
        """The coalesced snapshot of a job whose rows changed (Coalescer thread)."""
        with self._emit_lock:
            with self._lock:
                job = self._jobs.get(job_id)
                public = job.to_dict() if job is not None else None
            if public is not None:
                self._emit(EVENT_JOB, public)

    def _emit_progress(self, job: Job, it: JobItem) -> None:
        """Send the item's current row; ordered, so ``downloaded`` never goes back."""
        with self._emit_lock:
            with self._lock:
                progress = self._progress_dict(job, it)
            self._emit(EVENT_PROGRESS, progress)

    def _progress_dict(self, job: Job, it: JobItem) -> Dict[str, Any]:
        return {"job_id": job.id, "item_id": it.id, "key": it.key, "filename": it.filename,
                "downloaded": it.downloaded, "total": it.total, "speed": it.speed, "eta": it.eta,
                "state": it.state, "error": it.error, "save_path": it.save_path, "sha256": it.sha256}

    def _emit(self, event: str, data: Dict[str, Any]) -> None:
        if self._emit_fn is None:
            return
        try:
            self._emit_fn(event, data)
        except Exception:  # the page missing an event is better than a dead download
            log.exception("emitting %s failed", event)

    def _recover(self) -> None:
        """Load stored jobs; unfinished ones were cut off by a restart.  Their downloads are
        queued again and resume from their ``.part`` files (``config.auto_resume``), or are
        marked failed with ``JobInterruptedError`` (Retry resumes them)."""
        try:
            records = self._store.load(self._history_limit)
        except Exception:
            log.exception("could not load stored jobs")
            return
        try:
            resume = bool(self._config().auto_resume)
        except Exception:  # a broken settings file must not lose the jobs
            resume = False
        interrupted: List[Job] = []
        to_start: List[Tuple[Job, JobItem]] = []
        to_plan: List[Job] = []
        for record in records:
            try:
                job = Job.from_record(record)
            except (KeyError, TypeError, ValueError):
                log.warning("skipping a malformed stored job")
                continue
            if not record.get("interrupted") and job.state not in JOB_FINAL:
                continue  # run by another live process sharing the state dir: not ours to show
            if record.get("interrupted") or any(it.state in ITEM_ACTIVE for it in job.items):
                for it in job.items:
                    if it.state not in ITEM_ACTIVE:
                        continue
                    it.speed, it.eta = 0.0, None
                    if resume and it.url and it.save_path and not job.cancel_requested:
                        it.state, it.error = "queued", None
                        self._cancel[(job.id, it.id)] = threading.Event()
                        to_start.append((job, it))
                    else:
                        it.state = "failed"
                        it.error = {"type": "JobInterruptedError",
                                    "message": "interrupted by a restart; retry to resume the download"}
                if not job.items and job.state not in JOB_FINAL:
                    if (resume and job.kind == "fix" and job.plan is not None and self._replan is not None
                            and not job.cancel_requested):
                        job.state, job.error = "queued", None  # resolved again below
                        to_plan.append(job)
                    else:
                        job.error = {"type": "JobInterruptedError",
                                     "message": "interrupted by a restart while resolving"}
                        job.state, job.plan = "failed", None
                else:
                    self._refresh_state_locked(job)
                interrupted.append(job)
            self._jobs[job.id] = job
        for job in interrupted:
            self._changed(job)
        for job in to_plan:
            cancel = threading.Event()
            try:
                planner = self._replan(job.plan, cancel)  # type: ignore[misc]
            except Exception as exc:  # a stored input that no longer reads: the job fails, the rest goes on
                with self._lock:
                    job.error = _error_dict(exc) if isinstance(exc, ComfyFixerError) else {
                        "type": "JobInterruptedError", "message": "interrupted by a restart while resolving"}
                    job.state, job.plan = "failed", None
                self._changed(job, [])
                continue
            with self._lock:
                self._plan_cancel[job.id] = cancel
            log.info("resolving fix job %s again after a restart", job.id)
            self._planner_pool.submit(self._run_planner, job, planner)
        if to_start:
            log.info("resuming %d download(s) interrupted by a restart", len(to_start))
        for job, it in to_start:
            self._start_item(job, it)

    def _create(self, kind: str, items: List[JobItem], plan: Optional[Dict[str, Any]] = None) -> Job:
        """A new job, stored first so that its id comes from the store."""
        draft = Job(id="", kind=kind, items=items, plan=plan)
        job_id = self._store.create(kind, draft.to_record())
        job = Job(id=job_id, kind=kind, created=draft.created, updated=draft.updated, items=items, plan=plan)
        with self._lock:
            self._jobs[job.id] = job
            self._stored_head[job.id] = self._head_locked(job)
            for it in items:
                self._cancel[(job.id, it.id)] = threading.Event()
            self._prune_locked()
        self._emit_job(job.id)
        return job

    def _prune_locked(self) -> None:
        """Forget the oldest finished jobs beyond ``history_limit`` (the store keeps them)."""
        finished = sorted((j for j in self._jobs.values() if j.state in JOB_FINAL), key=lambda j: j.created)
        for job in finished[:max(0, len(self._jobs) - self._history_limit)]:
            del self._jobs[job.id]
            self._stored_head.pop(job.id, None)
            self._snapshots.forget(job.id)
            for it in job.items:
                self._cancel.pop((job.id, it.id), None)

    def _job(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(f"no job {job_id!r}")
        return job

    def _check_open(self) -> None:
        if self._closed:
            raise JobConflictError("the job manager is shut down")

    def _config(self) -> Config:
        source = self._config_source
        return source() if callable(source) else source


class Coalescer:
    """Calls ``flush(key)`` for marked keys, at most once per ``interval`` per key.

    A burst of marks costs one flush; the first mark after a quiet period flushes at once.
    ``flush`` runs on one daemon thread, started on the first mark.  A mark made while a
    flush of its key runs gets a flush of its own (the key is unmarked before ``flush``).
    """

    def __init__(self, interval: float, flush: Callable[[str], None], name: str,
                 clock: Callable[[], float] = time.monotonic):
        self._interval = interval
        self._flush = flush
        self._name = name
        self._clock = clock
        self._cond = threading.Condition()
        self._due: Dict[str, float] = {}  # marked key -> when it may flush
        self._last: Dict[str, float] = {}  # key -> when it last flushed (or was sent otherwise)
        self._thread: Optional[threading.Thread] = None
        self._closed = False

    def mark(self, key: str) -> None:
        with self._cond:
            if self._closed or key in self._due:
                return
            self._due[key] = self._last.get(key, float("-inf")) + self._interval
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def discard(self, key: str) -> None:
        """The caller is about to send ``key`` itself: drop its pending flush, restart its interval."""
        with self._cond:
            self._due.pop(key, None)
            self._last[key] = self._clock()

    def forget(self, key: str) -> None:
        with self._cond:
            self._due.pop(key, None)
            self._last.pop(key, None)

    def close(self) -> None:
        """Stop the thread; pending flushes are dropped."""
        with self._cond:
            self._closed = True
            self._due.clear()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    now = self._clock()
                    ready = [k for k, t in self._due.items() if t <= now]
                    if ready:
                        break
                    wait = min(self._due.values()) - now if self._due else None
                    self._cond.wait(wait)
                for key in ready:
                    del self._due[key]
                    self._last[key] = now
            for key in ready:
                try:
                    self._flush(key)
                except Exception:  # one bad flush must not stop the others
                    log.exception("flushing %s failed", key)


class SlotPool:
    """Runs tasks on daemon threads, at most ``size`` holding a slot at a time.

    A task's slot is given back when it returns *or* when ``release(key)`` is called (a
    cancelled download whose transfer is still winding down): the next queued task then
    starts at once.  ``release`` of a queued task drops it.
    """

    def __init__(self, size: int, name: str):
        self._size = max(1, int(size))
        self._name = name
        self._cond = threading.Lock()
        self._queue: "collections.OrderedDict[Any, Tuple[Callable[..., Any], tuple]]" = collections.OrderedDict()
        self._running: set = set()
        self._threads: set = set()
        self._closed = False
        self._count = 0

    @property
    def size(self) -> int:
        return self._size

    def resize(self, size: int) -> None:
        """Change how many tasks may hold a slot (running ones are never stopped)."""
        with self._cond:
            self._size = max(1, int(size))
        self._fill()

    @property
    def active(self) -> int:
        """Tasks holding a slot now."""
        with self._cond:
            return len(self._running)

    def submit(self, key: Any, fn: Callable[..., Any], *args: Any) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("worker pool is shut down")
            self._queue[key] = (fn, args)
        self._fill()

    def release(self, key: Any) -> None:
        """Free ``key``'s slot now (running) or forget it (queued)."""
        with self._cond:
            self._queue.pop(key, None)
            self._running.discard(key)
        self._fill()

    def shutdown(self, wait: bool = False, timeout: float = 60.0) -> None:
        """Start nothing more; with ``wait``, join the threads still running (their tasks
        were told to stop by the caller), up to ``timeout`` s in all."""
        with self._cond:
            self._closed = True
            self._queue.clear()
            threads = list(self._threads)
        if wait:
            deadline = time.monotonic() + timeout
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))

    def _fill(self) -> None:
        while True:
            with self._cond:
                if self._closed or not self._queue or len(self._running) >= self._size:
                    return
                key, (fn, args) = self._queue.popitem(last=False)
                self._running.add(key)
                self._count += 1
                thread = threading.Thread(target=self._work, args=(key, fn, args),
                                          name=f"{self._name}-{self._count}", daemon=True)
                self._threads.add(thread)
            thread.start()

    def _work(self, key: Any, fn: Callable[..., Any], args: tuple) -> None:
        try:
            fn(*args)
        except Exception:  # the task records its own failures; this is a last resort
            log.exception("background task failed")
        finally:
            with self._cond:
                self._threads.discard(threading.current_thread())
            self.release(key)


class WorkerPool:
    """A fixed set of daemon threads draining a queue.

    Daemon on purpose: ``concurrent.futures`` joins its (non-daemon) workers at interpreter
    exit, so a long download would keep ComfyUI from quitting; here an exit just leaves the
    ``.part`` file behind, which a retry resumes.
    """

    def __init__(self, size: int, name: str):
        self._queue: "queue.Queue[Optional[Tuple[Callable[..., Any], tuple]]]" = queue.Queue()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(size)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._closed:
            raise RuntimeError("worker pool is shut down")
        self._queue.put((fn, args))

    def shutdown(self, wait: bool = False) -> None:
        self._closed = True
        # drop what never started, then wake every worker with a stop marker
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            fn, args = task
            try:
                fn(*args)
            except Exception:  # the task records its own failures; this is a last resort
                log.exception("background task failed")


def _default_downloader(config: Config) -> Downloader:
    from ..download import DownloadManager

    return DownloadManager(config)
