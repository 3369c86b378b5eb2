"""The ``/comfyfixer/`` HTTP routes, as a class ComfyUI (or a bare aiohttp app) mounts.

No ComfyUI import here: the folders table and the websocket emitter are passed in by
``comfyfixersmart.comfyui`` (or by a test).  Blocking work (scanning folders, talking to
the hubs) runs in threads so the event loop that also serves ComfyUI never stalls.
GET routes never change state (ComfyUI's only CSRF guard is its Origin check).
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from aiohttp import web

from .. import __version__
from ..datamodel import AUTO_CHOICE_FLOOR, AnalysisResult
from ..errors import (
    AccessDeniedError,
    APISearchError,
    AuthRequiredError,
    ComfyFixerError,
    DownloadError,
    FileExistsConflictError,
    ForeignHostError,
    HostNotAllowedError,
    JobConflictError,
    JobNotFoundError,
    NetworkError,
    RateLimitedError,
    RequestTooLargeError,
    ResolveCancelledError,
    UnsupportedMediaTypeError,
    ValidationError,
    WorkflowParseError,
)
from ..folders import canonical_folder
from ..logs import get_logger
from ..pickles import PICKLE_CONFIRMATION
from ..search.pasted import resolve_download_items
from ..security import redact_text, redact_url
from ..settings import Config, get_config
from ..write_policy import REFUSED_KEYS, model_folder_table, protected_roots
from .hostcheck import Listen, check_host_header
from .jobs import Emit, JobManager, JobStore, PlanOutcome
from .tokens import SETTING_NAMES, TokenStore
from .validation import (
    MAX_BODY_BYTES,
    check_id,
    optional_allow_pickle,
    optional_min_confidence,
    parse_json_body,
    require_workflow,
    validate_download_item,
    validate_download_items,
)

log = get_logger(__name__)

PREFIX = "/comfyfixer"

FolderTable = Mapping[str, Sequence[str]]
#: () -> {folder key: [absolute dirs]}, read on every request (extra paths may change)
FoldersProvider = Callable[[], FolderTable]
#: (config, folders) -> ComfyFixerCore
CoreFactory = Callable[[Config, FolderTable], Any]


class FolderTableWithExtensions(dict):
    """``FixerRoutes.folders()``: key -> [dirs] files may be written to (what ``GET
    /comfyfixer/folders`` shows); ``extensions``: each key's own extension set when the provider
    knows it (ComfyUI's ``folder_names_and_paths[key][1]``, a root's sources); ``readable``: the
    same table plus the folders only read (a pack's own ``models`` folder inside custom_nodes:
    ComfyUI lists its files, nothing is ever written there), for the inventory."""

    def __init__(self, table: Mapping[str, List[str]], extensions: Optional[Mapping[str, Any]] = None,
                 readable: Optional[Mapping[str, List[str]]] = None):
        super().__init__(table)
        self.readable: Dict[str, List[str]] = {k: list(v) for k, v in (readable or table).items()}
        self.extensions: Dict[str, frozenset] = {str(k): frozenset(v) for k, v in (extensions or {}).items()
                                                 if v is not None and k in self.readable}


def readable_folders(table: Mapping[str, List[str]], full: Mapping[str, Sequence[str]],
                     protected: Sequence[str], is_read_only: Optional[Callable[[str], bool]] = None
                     ) -> Dict[str, List[str]]:
    """``table`` (the write table) plus, after each key's own folders, the folders of ``full``
    that lie strictly inside a protected root (a pack's folder under custom_nodes).  Folders
    that are or contain a protected root, and refused keys, stay out."""
    out = {k: list(v) for k, v in table.items()}
    check = is_read_only or (lambda p: read_only(p, protected))
    for key, paths in full.items():
        key = str(key)
        if key in REFUSED_KEYS or canonical_folder(key) in REFUSED_KEYS:
            continue
        for p in paths:
            p = os.fspath(p)
            if check(p) and p not in out.get(key, []):
                out.setdefault(key, []).append(p)
    return out


def read_only(path: str, protected: Sequence[str]) -> bool:
    """True for a folder strictly inside a protected root (never written, still read)."""
    real = os.path.realpath(path)
    return (any(real != r and _within(real, r) for r in protected)
            and not any(_within(r, real) for r in protected))


def _within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False


def inventory_folders(folders: FolderTable) -> Dict[str, Any]:
    """``folders`` as ``ModelInventory.build_from_folders`` takes them: the readable table, with
    ``([dirs], {extensions})`` pairs for the keys whose extension set is known."""
    exts = getattr(folders, "extensions", None) or {}
    table = getattr(folders, "readable", None) or folders
    return {k: (list(v), set(exts[k])) if k in exts else list(v) for k, v in table.items()}


def default_core_factory(config: Config, folders: FolderTable, node_table: Any = None):
    """A ComfyFixerCore whose inventory is exactly ``folders`` (ComfyUI's table; each key's
    extension set from ``folders.extensions`` when given, see ``FolderTableWithExtensions``).

    ``node_table`` is the loader map of the running ComfyUI (a ``LoaderTable``); without it the
    scanner reads ``config.comfyui_root``'s sources, else uses the bundled table.
    """
    from ..core import ComfyFixerCore
    from ..inventory import ModelInventory
    from ..scan import WorkflowScanner

    inventory = ModelInventory(config).build_from_folders(inventory_folders(folders))
    return ComfyFixerCore(config, inventory=inventory, scanner=WorkflowScanner(config, node_table=node_table))


class RootFolders:
    """Folders provider outside ComfyUI: the folders of ``config.comfyui_root`` as the CLI's
    inventory sees them (``root_folders.root_folder_paths``: models/, extra_model_paths.yaml and
    the folders packs register in their own directory), with each key's extension set.

    The answer is kept until the root's ``extra_model_paths.yaml``, ``folder_paths.py``,
    ``custom_nodes`` folder, one of its entries or a pack's ``__init__.py`` changes (a few
    ``stat`` calls per request): the packs are not walked again on every request.
    """

    def __init__(self, config: Config):
        self._config = config
        self._lock = threading.Lock()
        self._signature: Optional[tuple] = None
        self._table: Dict[str, List[str]] = {}
        self._extensions: Dict[str, frozenset] = {}
        #: how many times the root was read (tests check the cache)
        self.reads = 0

    def __call__(self) -> Dict[str, List[str]]:
        return dict(self._current()[0])

    def extensions(self) -> Dict[str, frozenset]:
        return dict(self._current()[1])

    def _current(self) -> Tuple[Dict[str, List[str]], Dict[str, frozenset]]:
        root = self._config.comfyui_root
        if root is None:
            return {}, {}
        signature = _root_signature(Path(root))
        with self._lock:
            if signature != self._signature:
                from ..extra_paths import model_folders_only
                from ..root_folders import root_folder_paths

                folders, known = root_folder_paths(root, self._config)
                self._table = {k: [str(p) for p in v] for k, v in model_folders_only(folders).items()}
                self._extensions = {k: frozenset(v) for k, v in known.items() if v is not None}
                self._signature = signature
                self.reads += 1
            return self._table, self._extensions


def _stat_key(path: Path) -> tuple:
    try:
        st = path.stat()
    except OSError:
        return (str(path), None)
    return (str(path), st.st_mtime_ns, st.st_size)


def _root_signature(root: Path) -> tuple:
    """What ``RootFolders`` watches: the files ComfyUI's folder table and the packs'
    registrations come from (an edit deeper inside a pack is seen after a restart, as in ComfyUI)."""
    from ..extra_paths import EXTRA_PATHS_FILE

    custom = root / "custom_nodes"
    keys = [_stat_key(root / EXTRA_PATHS_FILE), _stat_key(root / "folder_paths.py"), _stat_key(custom)]
    try:
        entries = sorted(os.scandir(custom), key=lambda e: e.name)
    except OSError:
        entries = []
    for entry in entries:
        keys.append(_stat_key(Path(entry.path)))
        keys.append(_stat_key(Path(entry.path) / "__init__.py"))
    return tuple(keys)


def folders_from_root(config: Config) -> FoldersProvider:
    """Outside ComfyUI: a cached ``RootFolders`` provider for ``config.comfyui_root``."""
    return RootFolders(config)


# -- errors -----------------------------------------------------------------------------------

def status_for(exc: BaseException) -> int:
    """The HTTP status that tells the page what kind of failure ``exc`` is."""
    table = (
        (RequestTooLargeError, 413),
        (UnsupportedMediaTypeError, 415),
        (ForeignHostError, 403),
        (JobNotFoundError, 404),
        ((JobConflictError, FileExistsConflictError, ResolveCancelledError), 409),
        ((ValidationError, WorkflowParseError, HostNotAllowedError), 400),
        (AuthRequiredError, 401),
        (AccessDeniedError, 403),
        (RateLimitedError, 429),
        (NetworkError, 503),
        ((APISearchError, DownloadError), 502),
    )
    for types, status in table:
        if isinstance(exc, types):
            return status
    return 500


def error_response(exc: BaseException) -> web.Response:
    """``{"error": {"type", "message", ...data}}`` with the status of ``status_for``."""
    status = status_for(exc)
    if isinstance(exc, ComfyFixerError):
        # every string, not only the message: a url attribute set without redact_url must
        # not carry a signed query or a token to the page
        body = {k: (redact_url(v) if k in ("url", "help_url") else redact_text(v)) if isinstance(v, str) else v
                for k, v in exc.to_dict().items()}
    else:
        # details stay in the server log; the page gets no internals
        log.error("unexpected error in a /comfyfixer route", exc_info=exc)
        body = {"type": "InternalError", "message": "unexpected server error; see the ComfyUI log"}
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if status == 429 and retry_after:
        headers["Retry-After"] = str(int(max(1, round(float(retry_after)))))
    return web.json_response({"error": body}, status=status, headers=headers)


def _guarded(handler: Callable[..., Awaitable[web.StreamResponse]]):
    @functools.wraps(handler)
    async def wrapper(self: "FixerRoutes", request: web.Request) -> web.StreamResponse:
        try:
            return await handler(self, request)
        except web.HTTPException:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return error_response(exc)

    return wrapper


class _HostChecked:
    """A ``RouteTableDef`` view whose every handler first passes ``check_host_header``: no
    route, present or future, can be registered without the DNS-rebinding guard."""

    def __init__(self, routes: web.RouteTableDef, fixer: "FixerRoutes"):
        self._routes = routes
        self._fixer = fixer

    def _wrap(self, method: str, path: str):
        register = getattr(self._routes, method)(path)

        def decorator(handler):
            @functools.wraps(handler)
            async def checked(request: web.Request) -> web.StreamResponse:
                try:
                    check_host_header(request.headers.get("Host"), self._fixer.listen)
                except ForeignHostError as exc:
                    return error_response(exc)
                return await handler(request)

            return register(checked)

        return decorator

    def get(self, path: str):
        return self._wrap("get", path)

    def post(self, path: str):
        return self._wrap("post", path)

    def delete(self, path: str):
        return self._wrap("delete", path)

    def put(self, path: str):
        return self._wrap("put", path)


# -- the routes -------------------------------------------------------------------------------

class FixerRoutes:
    """Every ``/comfyfixer/`` route; ``add_routes`` puts them on a ``RouteTableDef``.

    ``core_factory(config, folders)`` builds the library core for a request, ``folders()``
    gives ComfyUI's folder table, ``emit(event, data)`` pushes websocket events (thread-safe).
    ``listen`` names the server's listen addresses: when all are loopback, every route
    refuses (403) a request whose ``Host`` is not a loopback name (DNS rebinding).
    """

    def __init__(
        self,
        core_factory: Optional[CoreFactory] = None,
        folders: Optional[FoldersProvider] = None,
        emit: Optional[Emit] = None,
        *,
        config: Optional[Config] = None,
        jobs: Optional[JobManager] = None,
        job_store: Optional[JobStore] = None,
        tokens: Optional[TokenStore] = None,
        canonical: Callable[[str], str] = canonical_folder,
        downloader_factory: Optional[Callable[[Config], Any]] = None,
        comfyui: bool = False,
        protected: Optional[Callable[[], Sequence[str]]] = None,
        listen: Listen = None,
    ):
        self._base_config = config
        self.core_factory: CoreFactory = core_factory or default_core_factory
        self._folders = folders
        self._root_folders: Optional[FoldersProvider] = None
        self._canonical = canonical
        self.comfyui = comfyui
        self._tokens = tokens
        self._jobs = jobs
        self._job_store = job_store
        self._emit = emit
        self._downloader_factory = downloader_factory
        #: () -> folders never written to (ComfyUI's output/input/temp/custom_nodes)
        self._protected = protected
        #: the addresses the server listens on (or a function giving them): on loopback only,
        #: a request whose Host is not a loopback name is refused (``hostcheck``)
        self.listen = listen
        # built on first use: registering inside ComfyUI starts no thread and opens no file
        self._lazy_lock = threading.Lock()

    # -- configuration ----------------------------------------------------------------------
    @property
    def base_config(self) -> Config:
        if self._base_config is None:
            self._base_config = get_config()
        return self._base_config

    @property
    def tokens(self) -> TokenStore:
        with self._lazy_lock:
            if self._tokens is None:
                self._tokens = TokenStore(self.base_config.state_dir)
            return self._tokens

    @property
    def jobs(self) -> JobManager:
        """The job manager (loads the stored jobs and starts its threads on first use)."""
        tokens = self.tokens
        with self._lazy_lock:
            if self._jobs is None:
                store = self._job_store if self._job_store is not None else _state_store(self.base_config)
                self._jobs = JobManager(lambda: tokens.apply(self.base_config), store=store, emit=self._emit,
                                        downloader_factory=self._downloader_factory, replan=self._replan)
            return self._jobs

    def effective_config(self) -> Config:
        """The Config with the tokens and min_confidence stored from the panel applied."""
        return self.tokens.apply(self.base_config)

    def known_folder_keys(self) -> Set[str]:
        """Every folder key the provider knows, refused ones included (``known_keys()``)."""
        fn = getattr(self._folders, "known_keys", None)
        return set(fn()) if callable(fn) else set()

    def protected_roots(self) -> List[str]:
        """Real paths no file is written into: ComfyUI's output, input, temp and custom_nodes."""
        extra = list(self._protected()) if self._protected is not None else []
        return protected_roots(self.base_config.comfyui_root, extra)

    def folders(self) -> FolderTableWithExtensions:
        """The model folder table: ComfyUI's keys minus the refused ones (output, input, temp,
        custom_nodes, or any folder overlapping them once resolved); ``.extensions`` holds the
        keys' extension sets when the provider has an ``extensions()`` method."""
        provider = self._folders
        if provider is None:
            with self._lazy_lock:  # one provider: it caches the root's reading
                if self._root_folders is None:
                    self._root_folders = folders_from_root(self.base_config)
                provider = self._root_folders
        raw = {str(k): [str(p) for p in v] for k, v in provider().items()}
        # a provider that filters its own table (ComfyFolders) gives the unfiltered one here
        readable = getattr(provider, "readable", None)
        full = readable() if callable(readable) else raw
        exts = getattr(provider, "extensions", None)
        protected = self.protected_roots()
        memo: Dict[str, bool] = {}  # realpath per folder once per request, not per use

        def is_read_only(p: str) -> bool:
            if p not in memo:
                memo[p] = read_only(p, protected)
            return memo[p]

        # the read-only folders are expected there: kept out of the write table without a warning
        writable = {k: [p for p in v if not is_read_only(p)] for k, v in raw.items()}
        table = model_folder_table({k: v for k, v in writable.items() if v or not raw[k]}, protected)
        return FolderTableWithExtensions(table, exts() if callable(exts) else None,
                                         readable_folders(table, full, protected, is_read_only))

    # -- mounting ---------------------------------------------------------------------------
    def add_routes(self, routes: web.RouteTableDef) -> None:
        """Register every route under ``/comfyfixer/`` (ComfyUI mirrors them under ``/api``)."""
        p = PREFIX
        routes = _HostChecked(routes, self)
        routes.get(f"{p}/health")(self.health)
        routes.get(f"{p}/folders")(self.get_folders)
        routes.post(f"{p}/scan")(self.scan)
        routes.post(f"{p}/resolve")(self.resolve)
        routes.post(f"{p}/download")(self.download)
        routes.post(f"{p}/fix")(self.fix)
        routes.get(f"{p}/jobs")(self.list_jobs)
        routes.get(f"{p}/jobs/{{job_id}}")(self.get_job)
        routes.delete(f"{p}/jobs/{{job_id}}")(self.cancel_job)
        routes.post(f"{p}/jobs/{{job_id}}/items/{{item_id}}/cancel")(self.cancel_item)
        routes.post(f"{p}/jobs/{{job_id}}/items/{{item_id}}/retry")(self.retry_item)
        routes.post(f"{p}/jobs/retry-failed")(self.retry_failed)
        routes.post(f"{p}/jobs/{{job_id}}/retry-failed")(self.retry_failed)
        routes.post(f"{p}/relink")(self.relink)
        routes.post(f"{p}/sources")(self.sources)
        routes.get(f"{p}/settings")(self.get_settings)
        routes.post(f"{p}/settings")(self.post_settings)

    def close(self) -> None:
        """Stop the job threads (cancels running downloads)."""
        with self._lazy_lock:
            jobs, self._jobs = self._jobs, None
        if jobs is not None:
            # the store stays open: cancelled workers still record their final state in it
            jobs.shutdown(wait=False)

    # -- handlers -----------------------------------------------------------------------------
    @_guarded
    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"version": __version__, "comfyui": bool(self.comfyui)})

    @_guarded
    async def get_folders(self, request: web.Request) -> web.Response:
        folders = await asyncio.to_thread(self.folders)
        return web.json_response({"folders": folders})

    @_guarded
    async def scan(self, request: web.Request) -> web.Response:
        body = await _read_json(request)
        workflow = require_workflow(body)
        result = await asyncio.to_thread(self._analyze, workflow, False, None)
        return web.json_response(result)

    @staticmethod
    def _refresh_flag(body: Mapping[str, Any]) -> bool:
        """``body["refresh"]``: True asks the hubs again instead of the search cache."""
        value = body.get("refresh", False)
        if not isinstance(value, bool):
            raise ValidationError("refresh must be true or false")
        return value

    @_guarded
    async def resolve(self, request: web.Request) -> web.Response:
        body = await _read_json(request)
        workflow = require_workflow(body)
        min_confidence = optional_min_confidence(body)
        refresh = self._refresh_flag(body)
        result = await asyncio.to_thread(self._analyze, workflow, True, min_confidence, refresh)
        return web.json_response(result)

    @_guarded
    async def download(self, request: web.Request) -> web.Response:
        body = await _read_json(request)
        config = self.effective_config()
        folders = await asyncio.to_thread(self.folders)
        # pasted hub pages (HF /blob/, hf.co, Civitai model pages) become download links first
        items = await asyncio.to_thread(resolve_download_items, body.get("items"), config)
        specs = validate_download_items(items, folders, config, canonical=self._canonical,
                                        known=self.known_folder_keys())
        job = self.jobs.submit_download(specs)
        return web.json_response({"job_id": job["id"], "job": job}, status=202)

    @_guarded
    async def fix(self, request: web.Request) -> web.Response:
        body = await _read_json(request)
        workflow = require_workflow(body)
        min_confidence = optional_min_confidence(body)
        allow_pickle = optional_allow_pickle(body)
        # refused before a job exists: a 3,000-name workflow gets a 413, not thousands of lookups
        await asyncio.to_thread(self._check_reference_count, workflow)
        cancel = threading.Event()
        job = self.jobs.submit_fix(functools.partial(self._plan_fix, workflow, min_confidence, allow_pickle, cancel),
                                   cancel=cancel, plan={"workflow": workflow, "min_confidence": min_confidence,
                                                        "allow_pickle": allow_pickle})
        return web.json_response({"job_id": job["id"], "job": job}, status=202)

    @_guarded
    async def list_jobs(self, request: web.Request) -> web.Response:
        return web.json_response({"jobs": self.jobs.list()})

    @_guarded
    async def get_job(self, request: web.Request) -> web.Response:
        return web.json_response(self.jobs.get(_path_id(request, "job_id")))

    @_guarded
    async def cancel_job(self, request: web.Request) -> web.Response:
        return web.json_response(self.jobs.cancel_job(_path_id(request, "job_id")))

    @_guarded
    async def cancel_item(self, request: web.Request) -> web.Response:
        _check_no_form(request)
        job = self.jobs.cancel_item(_path_id(request, "job_id"), _path_id(request, "item_id"))
        return web.json_response(job)

    @_guarded
    async def retry_item(self, request: web.Request) -> web.Response:
        _check_no_form(request)
        job = self.jobs.retry_item(_path_id(request, "job_id"), _path_id(request, "item_id"))
        return web.json_response(job)

    @_guarded
    async def retry_failed(self, request: web.Request) -> web.Response:
        """Every failed row of the job (or, without a job id, of all jobs) runs again."""
        _check_no_form(request)
        job_id = _path_id(request, "job_id") if "job_id" in request.match_info else None
        return web.json_response(self.jobs.retry_failed(job_id))

    def start_jobs(self) -> int:
        """Load the stored jobs now (ComfyUI start-up): interrupted downloads resume at once
        when ``auto_resume`` is on.  Returns how many jobs are known."""
        return len(self.jobs.list())

    @_guarded
    async def sources(self, request: web.Request) -> web.Response:
        """Embed sources: ``{"workflow", "min_confidence"?}`` -> a source for every file the
        workflow names, present ones included (by sha256), with canonical hub URLs:
        ``{"sources": [{"key", "name", "directory", "url", "sha256", "found_by"}], "unsourced",
        "workflow"?: the UI workflow with them written into properties.models, "count"}``."""
        body = await _read_json(request)
        workflow = require_workflow(body)
        min_confidence = optional_min_confidence(body)
        await asyncio.to_thread(self._check_reference_count, workflow)
        return web.json_response(await asyncio.to_thread(self._sources, workflow, min_confidence))

    def _sources(self, workflow: dict, min_confidence: Optional[float]) -> Dict[str, Any]:
        from ..annotate import annotate_workflow_with_count
        from ..sources import workflow_sources

        config = self.effective_config()
        core = self._core(config)
        try:
            analysis = core.analyze_data(workflow, limit=config.max_references)
            report = workflow_sources(analysis, core, self._threshold(config, min_confidence))
        finally:
            _close(core)
        out: Dict[str, Any] = {
            "sources": [{"key": s.key, "name": s.filename, "directory": s.directory, "url": s.url,
                         "sha256": s.sha256, "found_by": report.found_by.get(s.key)} for s in report.sources],
            "unsourced": report.unsourced,
        }
        if isinstance(workflow.get("nodes"), list):
            out["workflow"], out["count"] = annotate_workflow_with_count(workflow, report.sources, config=config)
        return out

    @_guarded
    async def relink(self, request: web.Request) -> web.Response:
        """``{"source", "folder", "name", "mode"}`` -> ``{"path", "mode", "sha256", "folder", "name"}``:
        an "elsewhere" file made loadable where the node looks, without a download."""
        body = await _read_json(request)
        unknown = sorted(set(body) - {"source", "folder", "name", "mode"})
        if unknown:
            raise ValidationError(f"unknown field {unknown[0][:40]!r}; accepted: source, folder, name, mode")
        mode = body.get("mode", "link")
        for field in ("source", "folder", "name"):
            if not isinstance(body.get(field), str) or not body[field].strip():
                raise ValidationError(f"{field} must be a non-empty string")
        result = await asyncio.to_thread(self._relink, body["source"], body["folder"], body["name"], mode)
        return web.json_response({"path": result.path, "mode": result.mode, "sha256": result.sha256,
                                  "folder": result.folder, "name": result.name})

    def _relink(self, source: str, folder: str, name: str, mode: Any):
        from ..inventory import ModelInventory
        from ..relink import relink_file

        config = self.effective_config()
        folders = self.folders()
        if not os.path.isabs(source):
            source = _found_path_to_absolute(source, folders)
        with ModelInventory(config) as hashes:  # the sha256 cache, no folder walk
            return relink_file(source, folders, folder, name, mode if isinstance(mode, str) else "",
                               hasher=hashes.sha256, protected=self.protected_roots())

    @_guarded
    async def get_settings(self, request: web.Request) -> web.Response:
        return web.json_response(self.tokens.public_view(self.base_config))

    @_guarded
    async def post_settings(self, request: web.Request) -> web.Response:
        body = await _read_json(request)
        allowed = SETTING_NAMES
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise ValidationError(f"unknown setting {unknown[0]!r}; accepted: {', '.join(allowed)}")
        await asyncio.to_thread(self.tokens.update, {k: body[k] for k in allowed if k in body})
        return web.json_response(self.tokens.public_view(self.base_config))

    # -- work (in threads) ----------------------------------------------------------------------
    def _core(self, config: Config):
        return self.core_factory(config, self.folders())

    def _threshold(self, config: Config, min_confidence: Optional[float]) -> float:
        value = config.min_confidence if min_confidence is None else min_confidence
        return max(value, AUTO_CHOICE_FLOOR)

    def _analyze(self, workflow: dict, resolve: bool, min_confidence: Optional[float],
                 refresh: bool = False) -> Dict[str, Any]:
        from ..report import reference_to_json, resolution_to_json, summarize

        config = self.effective_config()
        core = self._core(config)
        if refresh:
            # Re-check after failed lookups: a cached 404 or a stale answer must not come back;
            # only the search cache is skipped (file hashes stay cached).
            cache = getattr(getattr(core, "search", None), "cache", None)
            if cache is not None:
                cache.enabled = False
        try:
            analysis: AnalysisResult = core.analyze_data(workflow, resolve=resolve, limit=config.max_references)
        finally:
            _close(core)
        warnings = [w for wf in analysis.workflows for w in wf.warnings]
        out: Dict[str, Any] = {
            "references": [reference_to_json(r) for r in analysis.references],
            "summary": summarize(analysis.references),
            "warnings": warnings,
            "missing_packs": [p.to_dict() for p in self._missing_packs(analysis)],
            # <lora:> tags on nodes that do not apply them: shown, never needed
            "informational": [reference_to_json(r) for wf in analysis.workflows
                              for r in wf.informational_references],
        }
        if resolve:
            threshold = self._threshold(config, min_confidence)
            out["resolutions"] = [resolution_to_json(r, threshold, allow_pickle=config.allow_pickle)
                                  for r in analysis.resolutions]
            out["min_confidence"] = threshold
        return out

    def _missing_packs(self, analysis: AnalysisResult) -> List[Any]:
        """Packs providing the workflow's node types this ComfyUI lacks (the live node set;
        outside ComfyUI what the scanner found: a root's packs, or all non-core types)."""
        installed = None
        fn = getattr(getattr(self, "node_map", None), "node_types", None)
        if callable(fn):
            installed = fn()
        if installed is None:
            seen: Dict[Any, Any] = {}
            for wf in analysis.workflows:
                for pack in wf.missing_packs:
                    seen.setdefault((pack.url, tuple(pack.node_types)), pack)
            return list(seen.values())
        from ..scan.packs import missing_packs

        return missing_packs({t for wf in analysis.workflows for t in wf.custom_node_types}, installed)

    def _check_reference_count(self, workflow: dict) -> None:
        """``RequestTooLargeError`` when the workflow names more models than ``max_references``."""
        from ..core import merge_references
        from ..scan import WorkflowScanner

        config = self.effective_config()
        data = WorkflowScanner(config).scan_data(workflow)
        count = len(merge_references(data.model_references))
        if count > config.max_references:
            raise RequestTooLargeError(f"the workflow names {count} model files; at most {config.max_references} "
                                       "per request (setting max_references)")

    def _replan(self, plan: Dict[str, Any], cancel: threading.Event) -> Callable[[], PlanOutcome]:
        """The planner of a fix job stored while resolving (``JobManager`` resumes it)."""
        workflow = plan.get("workflow")
        if not isinstance(workflow, dict):
            raise ValidationError("the stored fix job has no workflow")
        return functools.partial(self._plan_fix, workflow, plan.get("min_confidence"), plan.get("allow_pickle"),
                                 cancel)

    def _plan_fix(self, workflow: dict, min_confidence: Optional[float], allow_pickle: Any = None,
                  cancel: Optional[threading.Event] = None) -> PlanOutcome:
        """Scan + resolve + choose, then validate each chosen download like a /download item.
        A pickle format is planned only when ``allow_pickle`` (True or names) says so;
        ``cancel`` (set by the job's Cancel) stops resolving between references."""
        config = self.effective_config()
        folders = self.folders()
        core = self.core_factory(config, folders)
        try:
            analysis = core.analyze_data(workflow, cancel=cancel, limit=config.max_references)
            specs, failures = core.plan(analysis, self._threshold(config, min_confidence), allow_pickle=allow_pickle)
        finally:
            _close(core)
        outcome = PlanOutcome()
        reasons = {(r.reference.expected_directory, r.reference.filename): r for r in analysis.resolutions}
        for i, spec in enumerate(specs):
            try:
                outcome.items.append(validate_download_item({**spec, "allow_pickle": True}, folders, config,
                                                            canonical=self._canonical, where=f"plan[{i}]",
                                                            known=self.known_folder_keys()))
            except ComfyFixerError as exc:
                outcome.unresolved.append({"key": spec.get("key"), "filename": spec.get("filename"),
                                           "directory": spec.get("directory"), "error": _item_error(exc)})
        for failure in failures:
            res = reasons.get((failure.directory, failure.filename))
            if failure.error_type in (PICKLE_CONFIRMATION, "UnsafePathError", "ValidationError"):
                kind = failure.error_type
            elif res is not None and res.best is not None:
                kind = "LowConfidenceError"
            else:
                kind = failure.error_type or "NotFoundError"
            error: Dict[str, Any] = {"type": kind, "message": redact_text(failure.reason)}
            if res is not None and res.errors and res.errors[0].get("help_url"):
                error["help_url"] = res.errors[0]["help_url"]
            outcome.unresolved.append({"key": f"{failure.directory}/{failure.filename}", "filename": failure.filename,
                                       "directory": failure.directory, "error": error})
        return outcome


# -- helpers ------------------------------------------------------------------------------------

#: Content types a cross-site page can POST without a CORS preflight (an HTML form, or
#: fetch with a string body): never accepted, so another site cannot drive these routes.
_SIMPLE_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})


def _check_json_type(request: web.Request) -> None:
    """Bodies must be ``application/json`` (any ``+json`` too): see ``_SIMPLE_TYPES``."""
    ctype = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/json" and not (ctype.startswith("application/") and ctype.endswith("+json")):
        raise UnsupportedMediaTypeError(
            f"request body must be sent as application/json, not {ctype[:60] or 'without a Content-Type'}")


def _check_no_form(request: web.Request) -> None:
    """A body-less POST (cancel, retry) may come without a type, but never as a form."""
    ctype = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if ctype in _SIMPLE_TYPES:
        raise UnsupportedMediaTypeError(f"{ctype} requests are not accepted here; send no body or JSON")


async def _read_json(request: web.Request) -> Dict[str, Any]:
    _check_json_type(request)
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise RequestTooLargeError(f"request body larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise RequestTooLargeError("request body larger than the server accepts") from None
    if len(raw) > MAX_BODY_BYTES:
        raise RequestTooLargeError(f"request body larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB")
    return parse_json_body(raw)


def _path_id(request: web.Request, name: str) -> str:
    value = request.match_info.get(name, "")
    try:
        return check_id(value, name.replace("_", " "))
    except ValidationError:
        # an id we could never have issued is simply unknown
        raise JobNotFoundError(f"no {name.replace('_id', '')} {value[:70]!r}") from None


def _item_error(exc: BaseException) -> Dict[str, Any]:
    out = {"type": type(exc).__name__, "message": redact_text(str(exc))}
    help_url = getattr(exc, "help_url", None)
    if help_url:
        out["help_url"] = help_url
    return out


def _found_path_to_absolute(found: str, folders: Mapping[str, Sequence[str]]) -> str:
    """A scan's ``found_path`` (``folder_key/relative/name``) as the absolute path of the file."""
    from ..security import safe_join

    key, _, rel = found.replace("\\", "/").partition("/")
    if key not in folders or not rel:
        raise ValidationError("source must be an absolute path or a found_path 'folder_key/relative/name'")
    for root in folders[key]:
        path = safe_join(root, rel)
        if os.path.lexists(path):
            return str(path)
    raise ValidationError(f"source {found[:120]!r} does not exist")


def _close(core: Any) -> None:
    close = getattr(core, "close", None)
    if callable(close):
        try:
            close()
        except Exception:
            log.warning("closing the core failed", exc_info=True)


def _state_store(config: Config):
    """The StateManager job queue when the state module can be used, else memory."""
    try:
        from .store import StateJobStore

        return StateJobStore.from_config(config)
    except Exception as exc:  # the panel still works, jobs just do not outlive the process
        log.warning("job history will not be kept: %s", redact_text(str(exc)))
        from .jobs import MemoryJobStore

        return MemoryJobStore()
