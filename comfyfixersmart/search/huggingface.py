"""Hugging Face backend, through ``huggingface_hub.HfApi`` (endpoint and token from Config).

The repo-id search (``/api/models?search=``) matches repo ids only, never file names, so a file
is looked for in two ways: (1) the trees of the publishers that ship ComfyUI files
(``names.PUBLISHER_TREES``), each listed once with every file name (``?author=&full=true``,
cached 24 h), found by exact file name anywhere in them; (2) repos found by search terms
derived from the file name (``names.hf_search_terms``).  The files of a repo that holds a hit
are then listed with sizes and LFS sha256 (``model_info(files_metadata=True)``: one request
per repo).  Gated repos are detected from the repo metadata
and, for the files we would pick, by a HEAD on ``/resolve/`` (``get_hf_file_metadata``).

huggingface_hub's own HTTP runs inside ``net.hf.hf_scope``: every request and redirect hop
goes through our session (URL policy, connect-time address check, token rules).
huggingface_hub's exceptions are mapped to ours in ``map_hf_error`` (through the one mapping
function ``net.status.error_for_response``); results are cached by our ``ResponseCache``.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import quote, unquote, urlsplit

from ..datamodel import ModelDetails, ModelReference, SearchResult
from ..errors import APISearchError, ComfyFixerError, GatedRepoError, NetworkError, NotFoundError, ValidationError
from ..folders import LEGACY_FOLDERS, MODEL_FOLDERS, canonical_folder, type_for
from ..logs import get_logger
from ..net import hf as hf_net
from ..security import redact_text, redact_url
from . import names, ranking
from .cache import MISS, ResponseCache
from .http import ApiClient, cached, error_for_response, fetch_and_cache, mark_unreachable

log = get_logger(__name__)

NAME = "huggingface"
#: repos whose file list is fetched per reference (most promising first)
MAX_REPOS = 4
#: repos per page of a publisher listing, and pages read at most (a publisher with more
#: than 1,000 repos is listed partly: its repo-id search still finds the rest)
PUBLISHER_PAGE = 100
MAX_PUBLISHER_PAGES = 10
#: repo-id searches per reference at most (each term is one request)
MAX_TERMS = 3
#: repos holding the wanted name in the publishers' trees whose sizes/sha256 are fetched
MAX_TREE_REPOS = 3


def _hub():
    """huggingface_hub, imported on first use with telemetry off (``net.hf.hub``)."""
    return hf_net.hub()


def map_hf_error(exc: BaseException, *, url: str, help_url: Optional[str] = None) -> ComfyFixerError:
    """Our exception for one raised by huggingface_hub (or its HTTP client)."""
    if isinstance(exc, ComfyFixerError):
        return exc
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if response is not None and isinstance(status, int):
        try:
            body = response.text[:4000]
        except Exception:  # a streamed body that was not read
            body = ""
        return error_for_response(status, headers=dict(response.headers), body=body,
                                  url=str(getattr(response, "url", url)), backend=NAME, help_url=help_url)
    kind = type(exc).__name__
    text = redact_text(str(exc).splitlines()[0] if str(exc) else kind)[:200]
    if "Timeout" in kind:
        return NetworkError(f"huggingface timed out: {text}", url=redact_url(url), backend=NAME)
    if kind in ("ConnectError", "NetworkError", "RemoteProtocolError", "ReadError", "WriteError",
                "OfflineModeIsEnabled", "ProxyError", "ConnectionError"):
        error = NetworkError(f"cannot reach {urlsplit(url).netloc}: {text}", url=redact_url(url), backend=NAME)
        if kind in ("ConnectError", "OfflineModeIsEnabled"):  # DNS failure / refused: retrying is pointless
            mark_unreachable(error)
        return error
    if kind == "HFValidationError":
        return ValidationError(f"not a Hugging Face repo id: {text}")
    if isinstance(exc, ValueError):  # JSON decoding
        return APISearchError(f"huggingface sent a malformed answer: {text}", url=redact_url(url), backend=NAME)
    return APISearchError(f"huggingface request failed: {kind}: {text}", url=redact_url(url), backend=NAME)


@dataclass(frozen=True)
class HfLocation:
    """A file on a Hub: ``repo_id``, ``revision``, ``path``."""

    repo_id: str
    revision: str
    path: str


def parse_hf_url(url: str) -> Optional[HfLocation]:
    """``/{owner}/{name}/(resolve|blob|raw)/{rev}/{path}`` of a model repo; None otherwise."""
    parts = [unquote(p) for p in urlsplit(url).path.split("/") if p]
    if len(parts) >= 5 and parts[2] in ("resolve", "blob", "raw") and parts[0] not in ("datasets", "spaces", "api"):
        return HfLocation(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
    return None


def _folder_in_path(path: str, folder: Optional[str]) -> bool:
    """The repo path names the folder (``split_files/vae/x``, ``unet/x`` for diffusion_models)."""
    if not folder:
        return False
    dirs = [d.lower() for d in path.split("/")[:-1]]
    wanted = {folder.lower()} | {k for k, v in LEGACY_FOLDERS.items() if v == folder}
    return any(d in wanted for d in dirs)


def _other_folder_in_path(path: str, folder: Optional[str]) -> Optional[str]:
    """The ComfyUI folder key another than ``folder`` that the repo path names, if any."""
    if not folder:
        return None
    for d in path.split("/")[:-1]:
        key = canonical_folder(d.lower())
        if key in MODEL_FOLDERS and key != folder:
            return key
    return None


class HuggingFaceBackend:
    """``SearchBackend`` for the Hugging Face Hub (``name = "huggingface"``)."""

    name = NAME

    def __init__(self, config, api: ApiClient):
        self.config = config
        self.api = api
        self._hf_api = None
        self._lock = threading.Lock()
        #: owners whose repo trees are searched by file name (``names.PUBLISHER_TREES``)
        self.publishers: List[str] = list(names.PUBLISHER_TREES)
        self._trees: Dict[str, Tuple[float, List[Dict[str, Any]]]] = {}

    @property
    def hf(self):
        """The ``HfApi`` (created on first use; token ``False`` = never a token from disk/env)."""
        if self._hf_api is None:
            with self._lock:
                if self._hf_api is None:
                    hub = _hub()
                    self._hf_api = hub.HfApi(endpoint=self.config.hf_endpoint, token=self.config.hf_token or False,
                                             library_name="comfyfixersmart", library_version="2.0.0")
        return self._hf_api

    def repo_page(self, repo_id: str) -> str:
        return f"{self.config.hf_endpoint}/{repo_id}"

    def resolve_url(self, repo_id: str, revision: str, path: str) -> str:
        return f"{self.config.hf_endpoint}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"

    # -- cached, retried calls ---------------------------------------------------------
    def _call(self, op: str, args: str, fn: Callable[[], Any], *, url: str, help_url: Optional[str] = None,
              retries: Optional[int] = None, cache: bool = True) -> Any:
        auth = ResponseCache.auth_fingerprint(self.config.hf_token)
        key = f"hf {self.config.hf_endpoint} {op} {args} auth={auth}"
        store = self.api.cache if cache else None
        if store is not None:
            hit = cached(store, key, url=url, backend=NAME, help_url=help_url)
            if hit is not MISS:
                return hit

        def attempt() -> Any:
            self.api.count_request()
            try:
                with hf_net.hf_scope(self.api.session, self.config):
                    return fn()
            except Exception as exc:
                raise map_hf_error(exc, url=url, help_url=help_url) from None

        return self.api.single_flight(key, lambda: fetch_and_cache(
            store, key, lambda: self.api.call_with_retries(attempt, url=url, backend=NAME, retries=retries)))

    def search_repos(self, term: str, limit: int = 20) -> List[Dict[str, Any]]:
        """Repos whose id contains ``term``, most downloaded first."""
        url = f"{self.config.hf_endpoint}/api/models?search={quote(term)}"

        def fn() -> List[Dict[str, Any]]:
            # One request for the first page through huggingface_hub's own client, NOT
            # HfApi.list_models: that pages through huggingface_hub's http_backoff, which
            # retries a refused connection or a failed DNS lookup 5 times (1+2+4+8+8 s) and
            # logs "Retrying in 8s" on stderr each time; offline, a resolve took ~25 s.
            # call_with_retries below is the only retry layer: an unreachable host fails at
            # once (and is marked down), 429/5xx/timeouts get the config's bounded retries.
            hub = _hub()
            response = hub.utils.get_session().get(
                f"{self.config.hf_endpoint}/api/models",
                params={"search": term, "limit": limit, "sort": "downloads"},
                headers=hub.utils.build_hf_headers(token=self.config.hf_token or False,
                                                   library_name="comfyfixersmart", library_version="2.0.0"),
                timeout=float(self.config.civitai_api_timeout))
            hub.utils.hf_raise_for_status(response)
            return [{"id": m["id"], "downloads": m.get("downloads") or 0, "likes": m.get("likes") or 0,
                     "gated": m.get("gated") or False}
                    for m in response.json()[:limit] if isinstance(m, dict) and isinstance(m.get("id"), str)]

        return self._call("search", f"{term}|{limit}", fn, url=url)

    def publisher_repos(self, author: str) -> List[Dict[str, Any]]:
        """Every public repo of ``author`` with its file names (``/api/models?author=&full=true``,
        all pages by ``Link: rel="next"``), cached like any answer (24 h by default).

        One listing per publisher replaces a file-tree request per repo: ``full=true`` carries
        each repo's ``siblings`` (every path, subfolders included)."""
        memo = self._trees.get(author)
        ttl = self.config.cache_ttl if self.config.cache_ttl > 0 else 24 * 3600
        if memo is not None and time.monotonic() - memo[0] < ttl:
            return memo[1]  # a listing is read by every reference: not decoded from SQLite each time
        url = f"{self.config.hf_endpoint}/api/models?author={quote(author)}"

        def fn() -> List[Dict[str, Any]]:
            hub = _hub()
            session = hub.utils.get_session()
            headers = hub.utils.build_hf_headers(token=self.config.hf_token or False,
                                                 library_name="comfyfixersmart", library_version="2.0.0")
            out: List[Dict[str, Any]] = []
            next_url: Optional[str] = f"{self.config.hf_endpoint}/api/models"
            params: Optional[Dict[str, Any]] = {"author": author, "full": "true", "limit": PUBLISHER_PAGE}
            for _ in range(MAX_PUBLISHER_PAGES):
                if next_url is None:
                    break
                response = session.get(next_url, params=params, headers=headers,
                                       timeout=float(self.config.civitai_api_timeout))
                hub.utils.hf_raise_for_status(response)
                for m in response.json():
                    if not isinstance(m, dict) or not isinstance(m.get("id"), str):
                        continue
                    paths = [s.get("rfilename") for s in m.get("siblings") or [] if isinstance(s, dict)]
                    out.append({"id": m["id"], "downloads": m.get("downloads") or 0,
                                "gated": m.get("gated") or False,
                                "paths": [p for p in paths if isinstance(p, str) and names.has_model_extension(p)]})
                link = response.links.get("next") if hasattr(response, "links") else None
                next_url, params = (link.get("url") if link else None), None
                if next_url is not None:
                    self.api.count_request()  # the first page is counted by _call
                    self.api.check_host(next_url, NAME)
            return out

        listing = self._call("author", author, fn, url=url)
        self._trees[author] = (time.monotonic(), listing)
        return listing

    def _prefetch_trees(self) -> None:
        """List every publisher not listed yet, concurrently (``search_concurrency`` at a time):
        the walk below is then a series of memory lookups instead of a chain of requests that
        every concurrent lookup would wait on.  Failures are left for the walk to meet."""
        missing = [a for a in self.publishers if a not in self._trees]
        workers = max(1, min(len(missing), int(self.config.search_concurrency)))
        if len(missing) < 2 or workers == 1 or not self.publishers:
            return
        # the first publisher alone: a Hub that fails (no network, 5xx, rate limit) fails once,
        # in the walk's own order, instead of once per publisher
        self.publisher_repos(self.publishers[0])
        missing = [a for a in missing if a != self.publishers[0]]

        def one(author: str) -> None:
            try:
                self.publisher_repos(author)
            except ComfyFixerError:
                pass

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="comfyfixer-trees") as pool:
            list(pool.map(one, missing))

    def publisher_matches(self, wanted: str, folder: Optional[str] = None, *,
                          cached_only: bool = False) -> List[Dict[str, Any]]:
        """``[{"repo": listing, "path": path}]`` for files named ``wanted`` (base name, any case)
        in the publishers' trees, most useful publisher first.  Publishers are listed lazily
        and the walk stops at the first publisher holding the name in a folder-named path
        (``split_files/vae/ae.safetensors``).  ``cached_only``: use the listings already read,
        send nothing."""
        base = names.basename(wanted).lower()
        stem = names.split_ext(base)[0]
        found: List[Dict[str, Any]] = []
        if not cached_only:
            try:
                self._prefetch_trees()
            except (NotFoundError, ValidationError):
                pass  # the walk skips that publisher
        for author in self.publishers:
            try:
                repos = self.publisher_repos(author) if not cached_only else self._trees.get(author, (0, []))[1]
            except (NotFoundError, ValidationError) as exc:
                # a publisher that vanished or was renamed: the others still count.  A server
                # error, a rate limit or no network goes up: the Hub itself is failing
                log.info("could not list %s's repos: %s", author, exc)
                continue
            for repo in repos:
                for path in repo["paths"]:
                    fname = names.basename(path).lower()
                    # a workflow naming an embedding without extension names this very file
                    if fname == base or (not names.split_ext(base)[1] and names.split_ext(fname)[0] == stem):
                        found.append({"repo": repo, "path": path})
            # a sure place ends the walk; a generic name ("diffusion_pytorch_model") looks
            # everywhere: every diffusers repo has one in its vae/ folder
            if not names.is_generic(wanted) and any(_folder_in_path(f["path"], folder) for f in found):
                break
        return found

    def repo_files(self, repo_id: str, revision: Optional[str] = None) -> Dict[str, Any]:
        """Commit, gating and files (path, size, LFS sha256) of a repo, in one request."""
        url = f"{self.config.hf_endpoint}/api/models/{repo_id}"
        timeout = float(self.config.civitai_api_timeout)

        def fn() -> Dict[str, Any]:
            info = self.hf.model_info(repo_id, revision=revision, files_metadata=True, timeout=timeout)
            files = []
            for s in info.siblings or []:
                lfs = getattr(s, "lfs", None)
                sha = getattr(lfs, "sha256", None) if lfs is not None else None
                files.append({"path": s.rfilename, "size": getattr(s, "size", None),
                              "sha256": sha.lower() if isinstance(sha, str) else None, "lfs": lfs is not None})
            return {"id": info.id or repo_id, "sha": info.sha, "gated": info.gated or False,
                    "private": bool(info.private), "downloads": info.downloads or 0, "likes": info.likes or 0,
                    "tags": list(info.tags or []), "pipeline_tag": info.pipeline_tag,
                    "library_name": info.library_name, "files": files}

        return self._call("files", f"{repo_id}@{revision or ''}", fn, url=url, help_url=self.repo_page(repo_id))

    def file_metadata(self, repo_id: str, revision: str, path: str) -> Dict[str, Any]:
        """HEAD ``/resolve/``: commit, etag (sha256 for LFS files) and size; raises GatedRepoError
        when the account may not download it.  Successes are cached; of the refusals only the
        anonymous "gated" one (the Hub never lets an anonymous client download a gated repo;
        with a token, accepting the licence changes the answer at once)."""
        url = self.resolve_url(repo_id, revision, path)
        hub = _hub()
        store = self.api.cache
        gated_key = f"hf {self.config.hf_endpoint} gated-anon {repo_id}"
        if not self.config.hf_token and store is not None:
            hit = store.get(gated_key)
            if isinstance(hit, dict) and hit.get("status") == 401:
                raise error_for_response(401, headers={"X-Error-Code": "GatedRepo",
                                                       "X-Error-Message": str(hit.get("message") or "")},
                                         url=url, backend=NAME, help_url=self.repo_page(repo_id))

        def fn() -> Dict[str, Any]:
            meta = hub.get_hf_file_metadata(url, token=self.config.hf_token or False,
                                            timeout=float(self.config.civitai_api_timeout),
                                            endpoint=self.config.hf_endpoint)
            etag = (meta.etag or "").lower()
            return {"commit": meta.commit_hash, "etag": etag, "size": meta.size,
                    "sha256": etag if len(etag) == 64 and all(c in "0123456789abcdef" for c in etag) else None}

        try:
            return self._call("head", f"{repo_id}@{revision}/{path}", fn, url=url, help_url=self.repo_page(repo_id))
        except GatedRepoError as exc:
            if not self.config.hf_token and store is not None and exc.status == 401:
                store.put(gated_key, {"status": 401, "message": f"Access to model {repo_id} is restricted. You must "
                                                                "have access to it and be authenticated to access it. "
                                                                "Please log in."}, ttl=store.negative_ttl)
            raise

    # -- results ---------------------------------------------------------------------
    def make_result(self, repo: Dict[str, Any], file: Dict[str, Any], *, folder: Optional[str], confidence: float,
                    reason: str, save_as: Optional[str]) -> SearchResult:
        repo_id = repo["id"]
        revision = repo.get("sha") or "main"
        path = file["path"]
        gated = bool(repo.get("gated"))
        page = self.repo_page(repo_id)
        if gated:
            reason += f" (gated: accept the licence at {page} and set HF_TOKEN)"
        return SearchResult(
            backend=NAME,
            model_id=repo_id,
            name=repo_id,
            filename=names.basename(path),
            model_type=type_for(folder) if folder else "unknown",
            download_url=self.resolve_url(repo_id, revision, path),
            size_bytes=file.get("size"),
            hash_sha256=file.get("sha256"),
            metadata={
                "reason": reason,
                "page_url": page,
                "repo_id": repo_id,
                "revision": revision,
                "path": path,
                "gated": gated,
                "requires_auth": gated or bool(repo.get("private")),
                "pickle": names.is_pickle(path),
                "known_publisher": ranking.is_known_publisher(repo_id),
                "downloads": repo.get("downloads") or 0,
                "lfs": bool(file.get("lfs")),
            },
            confidence=round(confidence, 4),
            directory=folder,
            save_as=save_as or names.basename(path),
        )

    def _match_repo(self, repo: Dict[str, Any], wanted: str, folder: Optional[str], known: Optional[str],
                    save_as: Optional[str]) -> List[SearchResult]:
        out = []
        publisher = ranking.is_known_publisher(repo["id"])
        for file in repo.get("files", []):
            path = file["path"]
            if not names.has_model_extension(path):
                continue
            if known and file.get("sha256") == known:
                out.append(self.make_result(repo, file, folder=folder, confidence=ranking.HASH_MATCH,
                                            reason=f"sha256 match in {repo['id']}", save_as=save_as))
                continue
            hint = _folder_in_path(path, folder)
            # a path naming another ComfyUI folder ("split_files/vae/...") says the file is not
            # for this one
            fits = False if not hint and _other_folder_in_path(path, folder) else None
            match = ranking.name_match(wanted, path, folder_fits=fits, known_publisher=publisher, path_hint=hint)
            if match is None:
                continue
            conf, words = match
            result = self.make_result(repo, file, folder=folder, confidence=conf, reason=f"{words} in {repo['id']}",
                                      save_as=save_as)
            out.append(ranking.apply_known_hash(result, known))
        return out

    def tree_candidates(self, wanted: str, folder: Optional[str], known: Optional[str],
                        save_as: Optional[str]) -> List[SearchResult]:
        """Exact-name files in the publishers' trees, with sizes and sha256 (one request per
        repo holding the name; repos whose path names the folder first)."""
        hits = self.publisher_matches(wanted, folder)
        by_repo: Dict[str, Dict[str, Any]] = {}
        for hit in hits:
            by_repo.setdefault(hit["repo"]["id"], hit)
        order = sorted(by_repo.values(), key=lambda h: (
            not _folder_in_path(h["path"], folder), names.PUBLISHER_TREES.index(h["repo"]["id"].split("/")[0])
            if h["repo"]["id"].split("/")[0] in names.PUBLISHER_TREES else 99, -(h["repo"]["downloads"] or 0)))
        results: List[SearchResult] = []
        for hit in order[:MAX_TREE_REPOS]:
            try:
                files = self.repo_files(hit["repo"]["id"])
            except NotFoundError:
                continue
            for r in self._match_repo(files, wanted, folder, known, save_as):
                # near names in the same repo come along (the .safetensors twin of a .bin)
                r.metadata["publisher_tree"] = True
                # an exact, specific name from a known publisher settles the lookup: no name
                # search elsewhere can outrank it (ranking.settle caps uncorroborated twins)
                if ranking.is_known_publisher(r.model_id) and not names.is_generic(wanted) \
                        and r.confidence >= ranking.EXACT_TYPE_UNKNOWN:
                    r.metadata["settled"] = True
                results.append(r)
        if len(order) > MAX_TREE_REPOS:
            extra = len(order) - MAX_TREE_REPOS
            for r in results:
                r.metadata["unchecked_same_name"] = extra
        return results

    def _candidates(self, wanted: str, folder: Optional[str], known: Optional[str],
                    save_as: Optional[str], trees: bool = True) -> List[SearchResult]:
        """Publisher trees first (``trees=False``: already asked); then search repos term by
        term, list the files of the most promising ones; stop at a sure hit."""
        results = self.tree_candidates(wanted, folder, known, save_as) if trees else []
        if any(r.confidence >= ranking.EXACT_KNOWN_PUBLISHER for r in results):
            return results
        core = names.core_normalized(wanted)
        # repos whose exact-name files the trees already gave (their listing is cached)
        skip = {h["repo"]["id"] for h in self.publisher_matches(wanted, folder, cached_only=not trees)}
        looked: set = set()
        for term in names.hf_search_terms(wanted, limit=MAX_TERMS):
            repos = [r for r in self.search_repos(term) if r["id"] not in looked and r["id"] not in skip]

            def promise(r: Dict[str, Any]):
                repo_name = r["id"].split("/", 1)[-1]
                return (ranking.is_known_publisher(r["id"]), names.similarity(repo_name, core), r["downloads"])

            for repo in sorted(repos, key=promise, reverse=True):
                if len(looked) >= MAX_REPOS:
                    break
                looked.add(repo["id"])
                try:
                    files = self.repo_files(repo["id"])
                except NotFoundError:
                    continue  # vanished or private since the search
                results.extend(self._match_repo(files, wanted, folder, known, save_as))
            # an exact name ends the walk (its repo's near names came along); the rest of the
            # terms are ever broader and cost a request each
            if len(looked) >= MAX_REPOS or any(r.confidence >= ranking.EXACT_TYPE_UNKNOWN - 0.03 for r in results):
                break
        return results

    def check_access(self, result: SearchResult) -> None:
        """For a gated candidate: HEAD the file; a refusal is stored as ``metadata["access_error"]``
        (the candidate stays: the user can accept the licence) and fills size/sha256 otherwise."""
        meta = result.metadata
        if not self.config.hf_token:
            # the Hub refuses every anonymous download of a gated repo (401 GatedRepo): say so
            # without asking, so a warm run costs no request either
            url = self.resolve_url(meta["repo_id"], meta.get("revision") or "main", meta["path"])
            meta["access_error"] = error_for_response(
                401, headers={"X-Error-Code": "GatedRepo", "X-Error-Message":
                              f"Access to model {meta['repo_id']} is restricted. You must have access to it "
                              "and be authenticated to access it. Please log in."},
                url=url, backend=NAME, help_url=self.repo_page(meta["repo_id"])).to_dict()
            return
        try:
            info = self.file_metadata(meta["repo_id"], meta.get("revision") or "main", meta["path"])
        except (APISearchError, ValidationError) as exc:
            meta["access_error"] = exc.to_dict()
            return
        result.size_bytes = result.size_bytes or info.get("size")
        result.hash_sha256 = result.hash_sha256 or info.get("sha256")

    # -- SearchBackend ---------------------------------------------------------------
    def resolve_known(self, reference: ModelReference) -> List[SearchResult]:
        """Exact-name hits in the publishers' trees only (asked before any backend's name
        search: ``ModelSearch`` stops there when one is sure)."""
        results = self.tree_candidates(reference.filename, canonical_folder(reference.expected_directory),
                                       _sha256_of(reference), reference.filename)
        self._check_gated(results)
        return results

    def _check_gated(self, results: List[SearchResult]) -> None:
        for result in results:
            if result.metadata.get("gated") and result.confidence >= ranking.EXACT_TYPE_UNKNOWN \
                    and "access_error" not in result.metadata:
                self.check_access(result)

    def resolve(self, reference: ModelReference) -> List[SearchResult]:
        return self._resolve(reference, trees=True)

    def resolve_rest(self, reference: ModelReference) -> List[SearchResult]:
        """``resolve`` without the publisher trees (``ModelSearch`` asked ``resolve_known`` first)."""
        return self._resolve(reference, trees=False)

    def _resolve(self, reference: ModelReference, trees: bool) -> List[SearchResult]:
        known = _sha256_of(reference)
        results = self._candidates(reference.filename, canonical_folder(reference.expected_directory), known,
                                   reference.filename, trees=trees)
        self._check_gated(results)
        return results

    def search(self, query: str, folder: Optional[str] = None) -> List[SearchResult]:
        if names.has_model_extension(query):
            return self._candidates(query, folder, None, names.basename(query))
        out: List[SearchResult] = []
        for repo in self.search_repos(query, limit=10)[:3]:
            try:
                files = self.repo_files(repo["id"])
            except NotFoundError:
                continue
            weights = [f for f in files["files"] if names.has_model_extension(f["path"])]
            if not weights:
                continue
            best = max(weights, key=lambda f: (not names.is_pickle(f["path"]),
                                               names.similarity(query, f["path"]), f.get("size") or 0))
            sim = max(names.similarity(query, repo["id"].split("/", 1)[-1]), names.similarity(query, best["path"]))
            conf = min(ranking.FUZZY_MAX, 0.4 + 0.35 * sim)
            out.append(self.make_result(files, best, folder=folder, confidence=conf,
                                        reason=f"repo matches the search {query!r}", save_as=None))
        return out

    def get_model_details(self, model_id: str) -> ModelDetails:
        repo_id = str(model_id).strip().strip("/")
        if repo_id.count("/") != 1:
            raise ValidationError(f"a Hugging Face model id is 'owner/name', not {model_id!r}")
        repo = self.repo_files(repo_id)
        revision = repo.get("sha") or "main"
        files = [{
            "name": names.basename(f["path"]),
            "path": f["path"],
            "size_bytes": f.get("size"),
            "sha256": f.get("sha256"),
            "lfs": f.get("lfs"),
            "pickle": names.is_pickle(f["path"]),
            "download_url": self.resolve_url(repo_id, revision, f["path"]),
        } for f in repo["files"]]
        return ModelDetails(
            backend=NAME,
            model_id=repo_id,
            name=repo_id,
            model_type=repo.get("pipeline_tag") or "unknown",
            page_url=self.repo_page(repo_id),
            files=files,
            versions=[{"id": revision, "name": "main"}],
            metadata={k: repo.get(k) for k in ("gated", "private", "downloads", "likes", "tags", "library_name",
                                                "pipeline_tag")},
        )


def _sha256_of(reference: ModelReference) -> Optional[str]:
    value = (reference.hash or "").strip().lower()
    if len(value) == 64 and all(c in "0123456789abcdef" for c in value) and (reference.hash_type or "sha256").lower() \
            in ("sha256", "sha-256"):
        return value
    return None
