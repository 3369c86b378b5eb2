"""FakeHub: a little Civitai + Hugging Face + storage/CDN server on loopback.

Three aiohttp listeners run in one background thread with its own event loop, so synchronous
clients (requests, huggingface_hub) and async ones can call it:

* ``civitai_url``  http://127.0.0.1:P1   Civitai REST API v1 + /api/download/models/{versionId}
* ``hf_url``       http://127.0.0.1:P2   Hugging Face Hub API + /{repo}/resolve/{rev}/{path}
* ``storage_url``  http://localhost:P3   signed-URL storage / CDN the downloads redirect to
                                          (another host name, so clients must drop tokens)

See README.md in this folder for the API.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Pattern, Sequence, Union
from urllib.parse import quote

from aiohttp import web

from .registry import (
    CivitaiFile,
    CivitaiIds,
    CivitaiModel,
    CivitaiVersion,
    HfFile,
    HfRepo,
    as_bytes,
    civitai_model_json,
    civitai_version_json,
    dumps,
    is_lfs_path,
)

FileSpec = Union[bytes, Mapping[str, Any]]


@dataclass
class RequestRecord:
    """One request the hub received."""

    listener: str  # "civitai", "hf" or "storage"
    method: str
    path: str
    query: str
    headers: Dict[str, str]
    status: Optional[int] = None
    time: float = field(default_factory=time.time)

    @property
    def authorization(self) -> Optional[str]:
        for k, v in self.headers.items():
            if k.lower() == "authorization":
                return v
        return None


@dataclass
class Fault:
    """An injected misbehaviour for requests whose path matches ``pattern``."""

    pattern: Union[str, Pattern[str]]
    status: Optional[int] = None
    headers: Dict[str, str] = field(default_factory=dict)
    body: Any = None
    times: Optional[int] = 1  # None = every time
    delay: float = 0.0
    listener: Optional[str] = None
    method: Optional[str] = None
    #: serve only this many bytes of a file, then drop the connection
    truncate_after: Optional[int] = None
    content_type: str = "application/json"
    hits: int = 0

    def matches(self, listener: str, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.listener and self.listener != listener:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        if isinstance(self.pattern, str):
            return fnmatch.fnmatchcase(path, self.pattern)
        return bool(self.pattern.search(path))


class _Pacer:
    """Sleeps so that the bytes written since the rate last changed average ``rate`` per second."""

    def __init__(self) -> None:
        self.rate: Optional[float] = None
        self.start = 0.0
        self.paced = 0

    async def wait(self, nbytes: int, rate: Optional[float]) -> None:
        loop = asyncio.get_running_loop()
        if not rate or rate <= 0:
            self.rate = None
            return
        if rate != self.rate:  # first throttled chunk, or the test changed the limit
            self.rate, self.start, self.paced = rate, loop.time(), 0
        self.paced += nbytes
        delay = self.start + self.paced / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)


class FakeHub:
    """A fresh, empty hub; ``start()`` it (or use ``with FakeHub() as hub``)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.civitai_models: Dict[int, CivitaiModel] = {}
        self.hf_repos: Dict[str, HfRepo] = {}
        #: HF token -> repos (gated or private) that token may read
        self.hf_tokens: Dict[str, set] = {}
        #: Civitai token -> version ids of early-access versions it unlocked
        self.civitai_tokens: Dict[str, set] = {}
        #: seconds added to every request (all listeners)
        self.latency: float = 0.0
        #: LFS files on /resolve/ answer 302 to the storage listener (like the real Hub)
        self.hf_cdn_redirect: bool = True
        #: signed storage URLs stop working after this many seconds
        self.signed_url_ttl: float = 3600.0
        #: Civitai sends nextCursor as a number instead of a string
        self.civitai_numeric_cursor: bool = False
        #: page size of the HF tree API (to exercise its cursor pagination)
        self.hf_tree_page_size: int = 1000
        #: bandwidth of every served file body, per response (None/0: as fast as possible);
        #: read between chunks, so a test may lift or change it while a download runs
        self.rate_limit_bytes_per_s: Optional[float] = None
        self.faults: List[Fault] = []
        self._log: List[RequestRecord] = []
        self._signatures: Dict[str, tuple] = {}
        self._next_ids = {"model": 1000, "version": 5000, "file": 9000}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._runners: List[web.AppRunner] = []
        self.ports: Dict[str, int] = {}

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> "FakeHub":
        if self._loop is not None:
            return self
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fakehub", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start_sites(), self._loop).result(15)
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def cleanup() -> None:
            for runner in self._runners:
                await runner.cleanup()

        try:
            asyncio.run_coroutine_threadsafe(cleanup(), loop).result(15)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(15)
            loop.close()
            self._loop = None
            self._runners = []

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def _start_sites(self) -> None:
        apps = {"civitai": self._civitai_app(), "hf": self._hf_app(), "storage": self._storage_app()}
        for name, app in apps.items():
            runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self._runners.append(runner)
            self.ports[name] = runner.addresses[0][1]

    @property
    def civitai_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['civitai']}"

    @property
    def hf_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['hf']}"

    @property
    def storage_url(self) -> str:
        # another host name for the same loopback address: a cross-host redirect
        return f"http://localhost:{self.ports['storage']}"

    # -- registry: Civitai ---------------------------------------------------------
    def _new_id(self, kind: str) -> int:
        with self._lock:
            self._next_ids[kind] += 1
            return self._next_ids[kind]

    def _civitai_file(self, name: str, spec: FileSpec, index: int) -> CivitaiFile:
        if isinstance(spec, (bytes, bytearray)):
            spec = {"data": bytes(spec)}
        opts = dict(spec)
        return CivitaiFile(
            id=opts.pop("id", None) or self._new_id("file"),
            name=name,
            data=bytes(opts.pop("data", b"")),
            type=opts.pop("type", "Model"),
            format=opts.pop("format", None),
            fp=opts.pop("fp", None),
            size_kind=opts.pop("size_kind", "pruned"),
            primary=opts.pop("primary", index == 0),
            **opts,
        )

    def add_civitai_model(
        self,
        name: str,
        files: Optional[Mapping[str, FileSpec]] = None,
        *,
        type: str = "Checkpoint",
        version_name: str = "v1.0",
        base_model: str = "SD 1.5",
        requires_auth: bool = False,
        login_redirect: bool = False,
        early_access_until: Optional[str] = None,
        nsfw: bool = False,
        tags: Sequence[str] = (),
        creator: str = "someone",
        downloads: int = 0,
        stats_null: bool = False,
        commercial_use_as: str = "array",
    ) -> CivitaiIds:
        """Add a model with one version holding ``files`` (name -> bytes or a dict with
        ``data`` and optional ``type`` ("Model", "VAE", "Pruned Model"...), ``fp``, ``format``,
        ``primary`` (True/False, or None to omit the key), ``size_kind``).  The first file
        is primary unless told otherwise."""
        model = CivitaiModel(id=self._new_id("model"), name=name, type=type, nsfw=nsfw,
                             requires_auth=requires_auth, login_redirect=login_redirect, tags=list(tags),
                             creator=creator,
                             downloads=downloads, stats_null=stats_null, commercial_use_as=commercial_use_as)
        with self._lock:
            self.civitai_models[model.id] = model
        return self.add_civitai_version(model.id, files or {}, name=version_name, base_model=base_model,
                                        early_access_until=early_access_until)

    def add_civitai_version(
        self,
        model_id: int,
        files: Mapping[str, FileSpec],
        *,
        name: str = "v1.0",
        base_model: str = "SD 1.5",
        early_access_until: Optional[str] = None,
        trained_words: Sequence[str] = (),
    ) -> CivitaiIds:
        """Add a version (newest first, like Civitai) to an existing model."""
        with self._lock:
            model = self.civitai_models[model_id]
            version = CivitaiVersion(id=self._new_id("version"), model_id=model_id, name=name,
                                     base_model=base_model, early_access_until=early_access_until,
                                     trained_words=list(trained_words))
            version.files = [self._civitai_file(n, spec, i) for i, (n, spec) in enumerate(files.items())]
            model.versions.insert(0, version)
        return CivitaiIds(model_id, version.id, {f.name: f.id for f in version.files})

    def add_civitai_token(self, token: str, early_access: Iterable[int] = ()) -> None:
        """A valid Civitai API key; ``early_access``: version ids it has bought access to."""
        with self._lock:
            self.civitai_tokens[token] = set(early_access)

    def civitai_file(self, file_id: int) -> CivitaiFile:
        for _, version, f in self._civitai_files():
            if f.id == file_id:
                return f
        raise KeyError(file_id)

    def _civitai_files(self):
        with self._lock:
            for model in self.civitai_models.values():
                for version in model.versions:
                    for f in version.files:
                        yield model, version, f

    def _civitai_version(self, version_id: int):
        with self._lock:
            for model in self.civitai_models.values():
                for version in model.versions:
                    if version.id == version_id:
                        return model, version
        return None, None

    # -- registry: Hugging Face ---------------------------------------------------------
    def add_hf_repo(
        self,
        repo_id: str,
        files: Optional[Mapping[str, bytes]] = None,
        *,
        gated: Union[bool, str] = False,
        private: bool = False,
        downloads: int = 0,
        likes: int = 0,
        tags: Sequence[str] = (),
        lfs: Optional[bool] = None,
        gitattributes: bool = True,
    ) -> HfRepo:
        """Add a model repo.  ``gated`` True means ``"auto"``; ``lfs`` None decides per file
        like the Hub's default .gitattributes (weights and files > 10 MB in LFS)."""
        if repo_id.count("/") != 1:
            raise ValueError("repo_id must be 'owner/name'")
        repo = HfRepo(repo_id=repo_id, gated="auto" if gated is True else gated, private=private,
                      downloads=downloads, likes=likes, tags=list(tags))
        with self._lock:
            self.hf_repos[repo_id] = repo
        if gitattributes:
            self.add_hf_file(repo_id, ".gitattributes", b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
                             lfs=False)
        for path, data in (files or {}).items():
            self.add_hf_file(repo_id, path, data, lfs=lfs)
        return repo

    def add_hf_file(self, repo_id: str, path: str, data: bytes, *, lfs: Optional[bool] = None) -> HfFile:
        """Add (or replace) one file; the repo's commit id changes."""
        with self._lock:
            repo = self.hf_repos[repo_id]
            f = HfFile(path=path.strip("/"), data=bytes(data),
                       lfs=is_lfs_path(path, len(data)) if lfs is None else lfs)
            repo.files[f.path] = f
            return f

    def add_hf_token(self, token: str, repos: Iterable[str] = ()) -> None:
        """A valid HF token; ``repos``: gated/private repos this account may read."""
        with self._lock:
            self.hf_tokens[token] = set(repos)

    # -- knobs -------------------------------------------------------------------------
    def inject(
        self,
        pattern: Union[str, Pattern[str]],
        status: Optional[int] = None,
        *,
        times: Optional[int] = 1,
        headers: Optional[Mapping[str, str]] = None,
        body: Any = None,
        delay: float = 0.0,
        listener: Optional[str] = None,
        method: Optional[str] = None,
        truncate_after: Optional[int] = None,
        content_type: str = "application/json",
    ) -> Fault:
        """Make the next ``times`` requests (None: all) whose path matches ``pattern`` (a glob
        like ``/api/v1/models*`` or a compiled regex) misbehave: answer ``status`` with
        ``headers``/``body``, or with ``status=None`` wait ``delay`` and/or truncate a file
        after ``truncate_after`` bytes, then answer normally."""
        fault = Fault(pattern=pattern, status=status, headers=dict(headers or {}), body=body, times=times,
                      delay=delay, listener=listener, method=method, truncate_after=truncate_after,
                      content_type=content_type)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    # -- request log ---------------------------------------------------------------------
    @property
    def requests(self) -> List[RequestRecord]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    def request_count(self, pattern: str = "*", *, listener: Optional[str] = None,
                      method: Optional[str] = None) -> int:
        """How many requests matched a path glob (and listener/method)."""
        return len(self.find_requests(pattern, listener=listener, method=method))

    def find_requests(self, pattern: str = "*", *, listener: Optional[str] = None,
                      method: Optional[str] = None) -> List[RequestRecord]:
        return [r for r in self.requests
                if fnmatch.fnmatchcase(r.path, pattern)
                and (listener is None or r.listener == listener)
                and (method is None or r.method == method.upper())]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    # -- plumbing ------------------------------------------------------------------------
    def _middleware(self, listener: str):
        @web.middleware
        async def middleware(request: web.Request, handler):
            record = RequestRecord(listener, request.method, request.path, request.query_string,
                                   {k: v for k, v in request.headers.items()})
            with self._lock:
                self._log.append(record)
                fault = next((f for f in self.faults if f.matches(listener, request.method, request.path)), None)
                if fault is not None:
                    fault.hits += 1
            if self.latency:
                await asyncio.sleep(self.latency)
            if fault is not None and fault.delay:
                await asyncio.sleep(fault.delay)
            if fault is not None and fault.status is not None:
                response: web.StreamResponse = web.Response(
                    status=fault.status, body=as_bytes(fault.body), headers=fault.headers,
                    content_type=None if "Content-Type" in fault.headers else fault.content_type)
            else:
                request["fault"] = fault
                try:
                    response = await handler(request)
                except web.HTTPException as exc:
                    response = exc
            record.status = response.status
            return response

        return middleware

    def _app(self, listener: str) -> web.Application:
        return web.Application(middlewares=[self._middleware(listener)], client_max_size=16 << 20)

    @staticmethod
    def _bearer(request: web.Request) -> Optional[str]:
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return None

    @staticmethod
    def _json(data: Any, status: int = 200, headers: Optional[Mapping[str, str]] = None) -> web.Response:
        return web.Response(status=status, body=dumps(data), content_type="application/json", headers=headers)

    def _sign(self, target: tuple) -> str:
        sig = secrets.token_hex(16)
        with self._lock:
            self._signatures[sig] = (target, time.time() + self.signed_url_ttl)
        return sig

    async def _serve_bytes(self, request: web.Request, data: bytes, headers: Dict[str, str]) -> web.StreamResponse:
        """Answer GET/HEAD for ``data`` with Range support (single range) and fault truncation."""
        total = len(data)
        headers = dict(headers)
        headers.setdefault("Accept-Ranges", "bytes")
        headers.setdefault("Content-Type", "application/octet-stream")
        start, end, status = 0, total - 1, 200
        rng = request.headers.get("Range")
        if rng:
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not match or (not match.group(1) and not match.group(2)):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{total}"})
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), total - 1) if match.group(2) else total - 1
            else:
                start, end = max(0, total - int(match.group(2))), total - 1
            if start >= total or start > end:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{total}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{total}"
        body = data[start:end + 1]
        headers["Content-Length"] = str(len(body))
        response = web.StreamResponse(status=status, headers=headers)
        if request.method == "HEAD":
            await response.prepare(request)
            return response
        await response.prepare(request)
        fault: Optional[Fault] = request.get("fault")
        limit = fault.truncate_after if fault is not None and fault.truncate_after is not None else None
        rate = self.rate_limit_bytes_per_s
        # ~10 writes a second when throttled, so clients see a smooth byte stream
        chunk = min(256 * 1024, max(4096, int(rate // 10))) if rate else 256 * 1024
        pacer = _Pacer()
        sent = 0
        for pos in range(0, len(body), chunk):
            piece = body[pos:pos + chunk]
            if limit is not None and sent + len(piece) > limit:
                await response.write(piece[: max(0, limit - sent)])
                if request.transport is not None:
                    request.transport.close()  # the client sees a short read
                return response
            await response.write(piece)
            sent += len(piece)
            await pacer.wait(len(piece), self.rate_limit_bytes_per_s)
        await response.write_eof()
        return response

    # -- Civitai -------------------------------------------------------------------------
    def _civitai_app(self) -> web.Application:
        app = self._app("civitai")
        r = app.router
        r.add_get("/api/v1/models", self._cv_search)
        r.add_get("/api/v1/models/{id}", self._cv_model)
        r.add_get("/api/v1/model-versions/by-hash/{hash}", self._cv_by_hash)
        r.add_post("/api/v1/model-versions/by-hash", self._cv_by_hash_bulk)
        r.add_post("/api/v1/model-versions/by-hash/ids", self._cv_by_hash_ids)
        r.add_get("/api/v1/model-versions/{id}", self._cv_version)
        r.add_route("GET", "/api/download/models/{id}", self._cv_download)
        r.add_route("HEAD", "/api/download/models/{id}", self._cv_download)
        r.add_get("/login", self._cv_login)
        r.add_get("/models/{id}", self._cv_page)
        r.add_get("/models/{id}/{slug}", self._cv_page)
        return app

    async def _cv_search(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            limit = int(q.get("limit", "100"))
            page = int(q["page"]) if "page" in q else None
            cursor = int(q["cursor"]) if "cursor" in q else 0
        except ValueError:
            return self._json({"error": "Invalid pagination parameters"}, 400)
        if not 0 <= limit <= 100:
            return self._json({"error": "limit must be between 0 and 100"}, 400)
        if page is not None and q.get("query"):
            return self._json({"error": "Cannot use page param with query search. Use cursor-based pagination."}, 400)
        if page is not None and page * limit > 1000:
            return self._json({"error": "Too many pages requested, use cursor-based pagination"}, 429)
        types = set(q.getall("types", []))
        words = [re.sub(r"[^0-9a-z]", "", w) for w in q.get("query", "").lower().split()]
        words = [w for w in words if w]
        tag = q.get("tag", "").lower()
        username = q.get("username", "").lower()
        base_models = set(q.getall("baseModels", []))
        with self._lock:
            models = list(self.civitai_models.values())
            hits = []
            for m in models:
                hay = re.sub(r"[^0-9a-z]", "", m.name.lower())
                if types and m.type not in types:
                    continue
                if any(w not in hay for w in words):
                    continue
                if tag and tag not in [t.lower() for t in m.tags]:
                    continue
                if username and username != m.creator.lower():
                    continue
                if base_models and not any(v.base_model in base_models for v in m.versions):
                    continue
                if q.get("nsfw") == "false" and m.nsfw:
                    continue
                hits.append(m)
            sort = q.get("sort", "Highest Rated")
            if sort in ("Most Downloaded", "Highest Rated"):
                hits.sort(key=lambda m: -m.downloads)
            elif sort == "Newest":
                hits.sort(key=lambda m: -m.id)
            offset = (page - 1) * limit if page else cursor
            chunk = hits[offset: offset + limit]
            items = [civitai_model_json(self.civitai_url, m) for m in chunk]
        if q.get("primaryFileOnly") == "true":
            for item in items:
                for v in item["modelVersions"]:
                    v["files"] = [f for f in v["files"] if f.get("primary")][:1]
        meta: Dict[str, Any] = {"currentPage": page or 1, "pageSize": limit}
        if offset + limit < len(hits):
            nxt = offset + limit
            meta["nextCursor"] = nxt if self.civitai_numeric_cursor else str(nxt)
            meta["nextPage"] = f"{self.civitai_url}/api/v1/models?{request.query_string}&cursor={nxt}"
        return self._json({"items": items, "metadata": meta})

    async def _cv_model(self, request: web.Request) -> web.Response:
        try:
            model_id = int(request.match_info["id"])
        except ValueError:
            return self._json({"error": "Invalid id"}, 400)
        with self._lock:
            model = self.civitai_models.get(model_id)
            if model is None:
                return self._json({"error": f"No model with id {model_id}"}, 404)
            return self._json(civitai_model_json(self.civitai_url, model))

    async def _cv_version(self, request: web.Request) -> web.Response:
        try:
            version_id = int(request.match_info["id"])
        except ValueError:
            return self._json({"error": "Invalid id"}, 400)
        model, version = self._civitai_version(version_id)
        if version is None:
            return self._json({"error": f"No model version with id {version_id}"}, 404)
        with self._lock:
            return self._json(civitai_version_json(self.civitai_url, model, version, with_model=True))

    def _find_by_hash(self, value: str):
        value = value.strip().upper()
        for model, version, f in self._civitai_files():
            if value in (h.upper() for h in f.hashes.values()):
                return model, version, f
        return None, None, None

    async def _cv_by_hash(self, request: web.Request) -> web.Response:
        model, version, _ = self._find_by_hash(request.match_info["hash"])
        if version is None:
            return self._json({"error": "Model not found"}, 404)
        with self._lock:
            return self._json(civitai_version_json(self.civitai_url, model, version, with_model=True))

    async def _cv_by_hash_bulk(self, request: web.Request) -> web.Response:
        hashes = await request.json()
        if not isinstance(hashes, list) or len(hashes) > 100:
            return self._json({"error": "Expected a list of at most 100 hashes"}, 400)
        out, seen = [], set()
        for h in hashes:
            model, version, _ = self._find_by_hash(str(h))
            if version is not None and version.id not in seen:
                seen.add(version.id)
                with self._lock:
                    out.append(civitai_version_json(self.civitai_url, model, version, with_model=True))
        return self._json(out)

    async def _cv_by_hash_ids(self, request: web.Request) -> web.Response:
        hashes = await request.json()
        out = []
        for h in hashes if isinstance(hashes, list) else []:
            _, version, f = self._find_by_hash(str(h))
            if version is not None:
                out.append({"modelVersionId": version.id, "hash": f.hashes["SHA256"]})
        return self._json(out)

    async def _cv_page(self, request: web.Request) -> web.Response:
        return web.Response(text=f"<html><body>Civitai model {request.match_info['id']}</body></html>",
                            content_type="text/html")

    async def _cv_login(self, request: web.Request) -> web.Response:
        return web.Response(text="<!DOCTYPE html><html><head><title>Sign in | Civitai</title></head>"
                                 "<body><form action=\"/api/auth/signin\">Sign in</form></body></html>",
                            content_type="text/html")

    async def _cv_download(self, request: web.Request) -> web.StreamResponse:
        try:
            version_id = int(request.match_info["id"])
        except ValueError:
            return self._json({"error": "Invalid id"}, 400)
        model, version = self._civitai_version(version_id)
        if version is None:
            return self._json({"error": "Model not found", "message": f"No model version with id {version_id}"}, 404)
        token = self._bearer(request) or request.query.get("token")
        with self._lock:
            valid = token in self.civitai_tokens
            unlocked = valid and version_id in self.civitai_tokens.get(token, set())
        if version.archived:
            return self._json({"error": "Model archived", "message": "This model has been archived"}, 410)
        if model.requires_auth and not valid and model.login_redirect:
            # what civitai.com does for a browser-style request: 307 to its HTML login page
            return web.Response(status=307, headers={
                "Location": f"/login?returnUrl=%2Fapi%2Fdownload%2Fmodels%2F{version_id}&reason=download-auth"})
        if model.requires_auth and not valid:
            return self._json({"error": "Unauthorized",
                               "message": "The creator of this asset requires you to be logged in to download it"},
                              401)
        if version.early_access_until and not unlocked:
            return self._json({"error": "Early Access",
                               "message": "This asset is in Early Access. You can purchase early access or wait "
                                          "until it is released.",
                               "deadline": version.early_access_until}, 403)
        q = request.query
        f: Optional[CivitaiFile] = None
        if "fileId" in q:
            f = next((x for x in version.files if str(x.id) == q["fileId"]), None)
            if f is None:
                return self._json({"error": "File not found"}, 404)
        else:
            candidates = version.files
            if "type" in q:
                candidates = [x for x in candidates if x.type == q["type"]]
            if "format" in q:
                candidates = [x for x in candidates if (x.format or "") == q["format"]
                              or (q["format"] == "SafeTensor" and x.name.endswith(".safetensors"))]
            f = next((x for x in candidates if x.primary), None) or (candidates[0] if candidates else None)
            if f is None:
                return self._json({"error": "No file matches"}, 404)
        sig = self._sign(("civitai", f.id))
        location = f"{self.storage_url}/civitai/{f.id}/{quote(f.name)}?X-Amz-Signature={sig}&X-Amz-Expires=" \
                   f"{int(self.signed_url_ttl)}"
        return web.Response(status=307, headers={"Location": location})

    # -- Hugging Face ------------------------------------------------------------------------
    def _hf_app(self) -> web.Application:
        app = self._app("hf")
        r = app.router
        r.add_get("/api/models", self._hf_list)
        r.add_get("/api/models/{owner}/{name}", self._hf_info)
        r.add_get("/api/models/{owner}/{name}/revision/{rev}", self._hf_info)
        r.add_get("/api/models/{owner}/{name}/tree/{rev}", self._hf_tree)
        r.add_get("/api/models/{owner}/{name}/tree/{rev}/{path:.+}", self._hf_tree)
        r.add_post("/api/models/{owner}/{name}/paths-info/{rev}", self._hf_paths_info)
        r.add_route("GET", "/{owner}/{name}/resolve/{rev}/{path:.+}", self._hf_resolve)
        r.add_route("HEAD", "/{owner}/{name}/resolve/{rev}/{path:.+}", self._hf_resolve)
        r.add_get("/{owner}/{name}/blob/{rev}/{path:.+}", self._hf_page)
        r.add_get("/{owner}/{name}", self._hf_page)
        return app

    def _hf_error(self, status: int, code: Optional[str], message: str) -> web.Response:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        return self._json({"error": message}, status, headers)

    def _hf_repo(self, request: web.Request, *, download: bool):
        """(repo, None) or (None, error response) applying private/gated rules like the Hub."""
        repo_id = f"{request.match_info['owner']}/{request.match_info['name']}"
        token = self._bearer(request)
        with self._lock:
            repo = self.hf_repos.get(repo_id)
            known = token in self.hf_tokens if token else False
            allowed = known and repo_id in self.hf_tokens.get(token, set())
        if token and not known:
            return None, self._hf_error(401, None, "Invalid credentials in Authorization header")
        if repo is None or (repo.private and not allowed):
            status = 404 if token else 401
            return None, self._hf_error(status, "RepoNotFound", "Repository not found")
        if download and repo.gated and not allowed:
            if not token:
                return None, self._hf_error(
                    401, "GatedRepo",
                    f"Access to model {repo_id} is restricted. You must have access to it and be authenticated "
                    "to access it. Please log in.")
            return None, self._hf_error(
                403, "GatedRepo",
                f"Access to model {repo_id} is restricted and you are not in the authorized list. "
                f"Visit {self.hf_url}/{repo_id} to ask for access.")
        rev = request.match_info.get("rev")
        if rev is not None and rev not in ("main", repo.sha):
            return None, self._hf_error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return repo, None

    async def _hf_list(self, request: web.Request) -> web.Response:
        q = request.query
        # like the Hub: the whole search string is ONE case-insensitive substring of the repo
        # id (``owner/name``); file names inside repos are never searched
        needle = q.get("search", "").strip().lower()
        author = (q.get("author") or "").lower()
        try:
            limit = int(q.get("limit", "1000"))
            offset = int(q.get("cursor", "0"))
        except ValueError:
            return self._hf_error(400, None, "Invalid limit")
        token = self._bearer(request)
        with self._lock:
            visible = [r for r in self.hf_repos.values()
                       if not r.private or (token and r.repo_id in self.hf_tokens.get(token, set()))]
            hits = [r for r in visible
                    if needle in r.repo_id.lower() and (not author or r.author.lower() == author)]
            if q.get("sort") in ("downloads", "likes"):
                key = q["sort"]
                hits.sort(key=lambda r: getattr(r, key), reverse=q.get("direction", "-1") == "-1")
            chunk = hits[offset: offset + limit]
            full = q.get("full") in ("True", "true", "1")
            items = []
            for repo in chunk:
                item = repo.list_json()
                if full:
                    item["siblings"] = [{"rfilename": p} for p in sorted(repo.files)]
                    item["gated"] = repo.gated
                    item["sha"] = repo.sha
                items.append(item)
        headers = {}
        if offset + limit < len(hits):
            nxt = request.url.update_query({"cursor": str(offset + limit)})
            headers["Link"] = f'<{nxt}>; rel="next"'
        return self._json(items, headers=headers)

    async def _hf_info(self, request: web.Request) -> web.Response:
        repo, error = self._hf_repo(request, download=False)
        if error is not None:
            return error
        with self._lock:
            return self._json(repo.info_json(blobs=request.query.get("blobs") in ("True", "true", "1")))

    async def _hf_tree(self, request: web.Request) -> web.Response:
        repo, error = self._hf_repo(request, download=False)
        if error is not None:
            return error
        path = request.match_info.get("path", "")
        recursive = request.query.get("recursive") in ("True", "true", "1")
        with self._lock:
            if path and path not in repo.files and not any(p.startswith(path.rstrip("/") + "/") for p in repo.files):
                return self._hf_error(404, "EntryNotFound", f"{path} does not exist on \"main\"")
            entries = repo.tree(path, recursive=recursive)
        offset = int(request.query.get("cursor", "0") or 0)
        size = max(1, self.hf_tree_page_size)
        headers = {}
        if offset + size < len(entries):
            nxt = request.url.update_query({"cursor": str(offset + size)})
            headers["Link"] = f'<{nxt}>; rel="next"'
        return self._json(entries[offset: offset + size], headers=headers)

    async def _hf_paths_info(self, request: web.Request) -> web.Response:
        repo, error = self._hf_repo(request, download=False)
        if error is not None:
            return error
        form = await request.post()
        paths = form.getall("paths", [])
        out = []
        with self._lock:
            for p in paths:
                p = str(p).strip("/")
                if p in repo.files:
                    out.append(repo.files[p].tree_json())
                elif any(x.startswith(p + "/") for x in repo.files):
                    out.append({"type": "directory", "oid": hashlib.sha1(p.encode()).hexdigest(), "size": 0,
                                "path": p})
        return self._json(out)

    async def _hf_resolve(self, request: web.Request) -> web.StreamResponse:
        repo, error = self._hf_repo(request, download=True)
        if error is not None:
            return error
        path = request.match_info["path"]
        with self._lock:
            f = repo.files.get(path)
            sha = repo.sha
        if f is None:
            return self._hf_error(404, "EntryNotFound", f"{path} does not exist on \"main\"")
        name = path.rsplit("/", 1)[-1]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{f.etag}"',
                   "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}; filename=\"{name}\";"}
        if f.lfs:
            headers["X-Linked-Etag"] = f'"{f.sha256}"'
            headers["X-Linked-Size"] = str(f.size)
            if self.hf_cdn_redirect:
                sig = self._sign(("hf", f.sha256))
                headers["Location"] = f"{self.storage_url}/hf-cdn/{f.sha256}?X-Amz-Signature={sig}" \
                                      f"&response-content-disposition=attachment%3B%20filename%3D%22{quote(name)}%22"
                return web.Response(status=302, headers=headers)
        return await self._serve_bytes(request, f.data, headers)

    async def _hf_page(self, request: web.Request) -> web.Response:
        return web.Response(text=f"<html><body>{request.path}</body></html>", content_type="text/html")

    # -- storage / CDN ----------------------------------------------------------------------------
    def _storage_app(self) -> web.Application:
        app = self._app("storage")
        r = app.router
        r.add_route("GET", "/civitai/{file_id}/{name}", self._st_civitai)
        r.add_route("HEAD", "/civitai/{file_id}/{name}", self._st_civitai)
        r.add_route("GET", "/hf-cdn/{sha256}", self._st_hf)
        r.add_route("HEAD", "/hf-cdn/{sha256}", self._st_hf)
        return app

    def _check_signature(self, request: web.Request, target: tuple) -> Optional[web.Response]:
        sig = request.query.get("X-Amz-Signature", "")
        with self._lock:
            entry = self._signatures.get(sig)
        if entry is None or entry[0] != target:
            return web.Response(status=403, text="<Error><Code>SignatureDoesNotMatch</Code></Error>",
                                content_type="application/xml")
        if entry[1] < time.time():
            return web.Response(status=403, text="<Error><Code>AccessDenied</Code><Message>Request has expired"
                                                 "</Message></Error>", content_type="application/xml")
        return None

    async def _st_civitai(self, request: web.Request) -> web.StreamResponse:
        try:
            file_id = int(request.match_info["file_id"])
            f = self.civitai_file(file_id)
        except (ValueError, KeyError):
            return web.Response(status=404, text="<Error><Code>NoSuchKey</Code></Error>")
        error = self._check_signature(request, ("civitai", file_id))
        if error is not None:
            return error
        headers = {"Content-Disposition": f"attachment; filename=\"{f.name}\"", "ETag": f'"{f.sha256[:32]}"'}
        return await self._serve_bytes(request, f.data, headers)

    async def _st_hf(self, request: web.Request) -> web.StreamResponse:
        sha = request.match_info["sha256"]
        error = self._check_signature(request, ("hf", sha))
        if error is not None:
            return error
        with self._lock:
            f = next((f for r in self.hf_repos.values() for f in r.files.values() if f.lfs and f.sha256 == sha), None)
        if f is None:
            return web.Response(status=404, text="<Error><Code>NoSuchKey</Code></Error>")
        name = f.path.rsplit("/", 1)[-1]
        headers = {"Content-Disposition": f"attachment; filename=\"{name}\"", "ETag": f'"{sha}"'}
        return await self._serve_bytes(request, f.data, headers)
