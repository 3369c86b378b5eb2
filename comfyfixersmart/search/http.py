"""The one HTTP layer of the search backends.

* ``make_session``: a ``requests.Session`` with our User-Agent and a connection pool sized for
  the search concurrency (no urllib3 retries: retrying is done here, once).
* ``error_for_response``: the ONE mapping of status codes, ``X-Error-Code`` headers and Civitai
  error JSON to the exceptions of ``errors.py``.  The Hugging Face backend maps
  huggingface_hub's exceptions through it too.
* ``ApiClient``: GET JSON with timeouts, retries (exponential backoff on 429/5xx honouring
  ``Retry-After`` and HF's ``RateLimit: "api";r=0;t=55``; never on other 4xx), the response
  cache, fail-fast on a host that cannot be reached, and tokens only via
  ``security.auth_headers_for``.
"""

from __future__ import annotations

import email.utils
import json
from concurrent.futures import Future
import random
import re
import threading
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, TypeVar, Union
from urllib.parse import urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter

from ..errors import (
    AccessDeniedError,
    APISearchError,
    AuthRequiredError,
    EarlyAccessError,
    GatedRepoError,
    NetworkError,
    NotFoundError,
    RateLimitedError,
)
from ..logs import get_logger
from ..security import auth_headers_for, is_secret_param, redact_text, redact_url, strip_secret_params
from .cache import MISS, ResponseCache

log = get_logger(__name__)
T = TypeVar("T")

#: after a connection failure, further calls to that host fail fast for this long
HOST_DOWN_SECONDS = 30.0
_MAX_MESSAGE = 300

Params = Union[Mapping[str, Any], Sequence[Tuple[str, Any]], None]


def make_session(config, pool_size: Optional[int] = None) -> requests.Session:
    """A requests Session for API calls: our User-Agent, a pool fit for the concurrency."""
    session = requests.Session()
    session.headers["User-Agent"] = config.user_agent
    session.headers["Accept"] = "application/json"
    size = pool_size or max(10, 2 * config.search_concurrency)
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    proxy = getattr(config, "proxy", None)
    if proxy:  # Config.proxy (the panel's setting) over the environment's
        session.proxies.update({"http": proxy, "https": proxy})
    return session


# -- waiting ----------------------------------------------------------------------------

_RATELIMIT_RE = re.compile(r'"?(?P<kind>[\w-]+)"?\s*;\s*r\s*=\s*(?P<r>\d+)\s*;\s*t\s*=\s*(?P<t>\d+)')


def _header(headers: Optional[Mapping[str, str]], name: str) -> Optional[str]:
    if not headers:
        return None
    value = headers.get(name)
    if value is None:  # plain dicts are case-sensitive
        low = name.lower()
        for key, val in headers.items():
            if key.lower() == low:
                return val
    return value


def retry_after_seconds(headers: Optional[Mapping[str, str]], now: Optional[float] = None) -> Optional[float]:
    """Seconds the server asked us to wait: ``Retry-After`` (seconds or HTTP date), else the
    ``t=`` of an exhausted HF ``RateLimit`` header (``"api";r=0;t=55``); None if neither."""
    value = _header(headers, "Retry-After")
    if value:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                return max(0.0, when.timestamp() - (time.time() if now is None else now))
    rate = _header(headers, "RateLimit")
    if rate:
        match = _RATELIMIT_RE.search(rate)
        if match and int(match.group("r")) == 0:
            return float(match.group("t"))
    return None


def backoff_delay(attempt: int, config) -> float:
    """Exponential backoff for retry ``attempt`` (0-based) with +-20 % jitter, capped."""
    base = config.backoff_base * (2 ** attempt)
    return min(config.backoff_max, base) * random.uniform(0.8, 1.2)


# -- the one status -> exception mapping ----------------------------------------------------

def _server_message(body: Any) -> Tuple[str, Dict[str, Any]]:
    """Message and JSON fields of an error body (Civitai ``{"error", "message"}``, HF ``{"error"}``)."""
    data: Dict[str, Any] = {}
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        text = body.strip()
        if text.startswith("{"):
            try:
                parsed = json.loads(text)
                if isinstance(parsed, dict):
                    data = parsed
            except ValueError:
                pass
        if not data:
            return (text if not text.startswith("<") else "")[:_MAX_MESSAGE], {}
    elif isinstance(body, dict):
        data = body
    parts = []
    for key in ("error", "message", "detail"):
        value = data.get(key)
        if isinstance(value, str) and value and value not in parts:
            parts.append(value)
    return ": ".join(parts)[:_MAX_MESSAGE], data


def error_for_response(
    status: int,
    *,
    headers: Optional[Mapping[str, str]] = None,
    body: Any = None,
    url: Optional[str] = None,
    backend: Optional[str] = None,
    help_url: Optional[str] = None,
) -> APISearchError:
    """Exception for a failed HTTP answer (status, headers, body) of Civitai or Hugging Face.

    ``help_url`` is the human page to send the user to (model page, repo page).  Nothing of
    the request's credentials can appear: the URL and message are redacted.
    """
    safe_url = redact_url(url)
    code = (_header(headers, "X-Error-Code") or "").strip()
    hf_message = _header(headers, "X-Error-Message") or ""
    message, data = _server_message(body)
    message = redact_text(hf_message or message)
    where = f"{backend or 'server'} answered {status}"
    detail = f"{where}: {message}" if message else where
    kw: Dict[str, Any] = dict(status=status, url=safe_url, backend=backend, help_url=help_url)
    text = " ".join(str(v) for v in (message, data.get("error", ""), data.get("reason", ""))).lower()

    if code == "GatedRepo" or (status in (401, 403) and "gated" in text):
        page = help_url or "the repository page"
        return GatedRepoError(
            f"gated repository: accept the licence at {page} with your account, then set HF_TOKEN "
            f"to a token of that account ({detail})",
            **kw,
        )
    if code in ("RepoNotFound", "EntryNotFound", "RevisionNotFound") and status != 401:
        return NotFoundError(detail, **kw)
    if status == 401 or code == "RepoNotFound":
        # HF answers 401 RepoNotFound for private/missing repos when anonymous
        hint = {"civitai": "set CIVITAI_API_TOKEN (civitai.com > Account settings > API keys)",
                "huggingface": "set HF_TOKEN"}.get(backend or "", "a token is needed")
        if code == "RepoNotFound":
            return NotFoundError(f"{detail} (missing, or private: {hint})", **kw)
        return AuthRequiredError(f"login required: {hint} ({detail})", **kw)
    if status == 403:
        deadline = data.get("deadline") or data.get("earlyAccessEndsAt")
        if deadline or "early access" in text or "early-access" in text:
            until = f" until {deadline}" if deadline else ""
            exc: APISearchError = EarlyAccessError(f"early access{until}: {detail}", **kw)
            setattr(exc, "deadline", deadline)
            return exc
        return AccessDeniedError(detail, **kw)
    if status in (404, 410):
        return NotFoundError(detail, **kw)
    if status == 429:
        return RateLimitedError(f"rate limited: {detail}", retry_after=retry_after_seconds(headers), **kw)
    exc = APISearchError(detail, **kw)
    if status >= 500:
        wait = retry_after_seconds(headers)
        if wait is not None:
            setattr(exc, "retry_after", wait)
    return exc


def mark_unreachable(exc: NetworkError) -> NetworkError:
    """Tag a NetworkError as "the host is not there" (DNS failure, connection refused): such a
    failure is never retried, unlike a timeout or a reset connection."""
    setattr(exc, "unreachable", True)
    return exc


def is_retryable(exc: BaseException) -> bool:
    """429, 5xx (and 408) and network failures are worth another try; other 4xx never."""
    if isinstance(exc, (RateLimitedError, NetworkError)):
        return True
    if isinstance(exc, APISearchError) and type(exc) is APISearchError and exc.status is not None:
        return exc.status >= 500 or exc.status == 408
    return False


# -- the client -------------------------------------------------------------------------------

class ApiClient:
    """JSON API calls with retries, a response cache and fail-fast on unreachable hosts.

    Thread-safe: one instance is shared by the concurrent lookups of ``resolve_many``.
    ``sleep`` may be replaced (tests record the waits instead of sleeping).
    """

    def __init__(self, config, cache: Optional[ResponseCache] = None, session: Optional[requests.Session] = None):
        self.config = config
        self.cache = cache
        self._session = session
        self._session_lock = threading.Lock()
        self._down: Dict[str, Tuple[float, str]] = {}
        self._down_lock = threading.Lock()
        self.sleep: Callable[[float], None] = time.sleep
        #: number of HTTP requests actually sent (cache hits not counted)
        self.requests_sent = 0
        self._count_lock = threading.Lock()
        self._inflight: Dict[str, Future] = {}
        self._inflight_lock = threading.Lock()

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            with self._session_lock:
                if self._session is None:
                    self._session = make_session(self.config)
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    # -- host health --------------------------------------------------------------
    def _host_key(self, url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}".lower()

    def check_host(self, url: str, backend: Optional[str] = None) -> None:
        """Raise NetworkError at once if the host failed to connect a moment ago."""
        key = self._host_key(url)
        with self._down_lock:
            entry = self._down.get(key)
            if entry and time.monotonic() - entry[0] < HOST_DOWN_SECONDS:
                raise NetworkError(f"{key} is unreachable: {entry[1]}", url=redact_url(url), backend=backend)

    def mark_down(self, url: str, reason: str) -> None:
        with self._down_lock:
            self._down[self._host_key(url)] = (time.monotonic(), reason)

    def mark_up(self, url: str) -> None:
        with self._down_lock:
            self._down.pop(self._host_key(url), None)

    def count_request(self) -> None:
        with self._count_lock:
            self.requests_sent += 1

    def single_flight(self, key: str, fetch: Callable[[], T]) -> T:
        """Run ``fetch`` once for concurrent callers of the same ``key``; the others wait for
        (and share) its result or exception.  Concurrent lookups of references that share a
        search term then cost one request, not one per thread."""
        with self._inflight_lock:
            future = self._inflight.get(key)
            owner = future is None
            if owner:
                future = Future()
                self._inflight[key] = future
        if not owner:
            return future.result()
        try:
            value = fetch()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(value)
            return value
        finally:
            with self._inflight_lock:
                self._inflight.pop(key, None)

    # -- retries ---------------------------------------------------------------
    def call_with_retries(self, attempt: Callable[[], T], *, url: str, backend: Optional[str] = None,
                          retries: Optional[int] = None) -> T:
        """Run ``attempt`` (which raises our exceptions) with backoff on retryable failures.

        ``Retry-After`` / ``RateLimit t=`` are honoured up to ``backoff_max`` seconds; a server
        asking for longer is not waited for: the error goes up with ``retry_after`` so the
        caller can tell the user when to come back.
        Network failures are retried once, then the host is marked down.
        """
        retries = self.config.http_retries if retries is None else retries
        network_failures = 0
        n = 0
        while True:
            self.check_host(url, backend)
            try:
                result = attempt()
                return result
            except APISearchError as exc:
                if getattr(exc, "unreachable", False):
                    # no network or nothing listening: a retry would only make an offline
                    # run slow; later calls to this host fail at once (check_host)
                    self.mark_down(url, str(exc))
                    raise
                if not is_retryable(exc) or n >= retries:
                    if isinstance(exc, NetworkError):
                        self.mark_down(url, str(exc))
                    raise
                if isinstance(exc, NetworkError):
                    network_failures += 1
                    if network_failures > 1:
                        self.mark_down(url, str(exc))
                        raise
                hint = getattr(exc, "retry_after", None)
                if hint is not None:
                    if hint > self.config.backoff_max:
                        raise  # longer than we are willing to wait: let the caller tell the user
                    delay = hint
                else:
                    delay = backoff_delay(n, self.config)
                log.info("%s: %s; retrying in %.2fs (%d/%d)", backend or "http", exc, delay, n + 1, retries)
                self.sleep(delay)
                n += 1

    # -- JSON GET -----------------------------------------------------------------
    def cache_key(self, method: str, url: str, params: Params = None, extra: str = "") -> str:
        items = sorted((str(k), str(v)) for k, v in (params.items() if isinstance(params, Mapping) else params or []))
        auth = ResponseCache.auth_fingerprint(auth_headers_for(url, self.config).get("Authorization"))
        return f"{method} {url}?{urlencode(items)} auth={auth} {extra}".strip()

    def get_json(
        self,
        url: str,
        params: Params = None,
        *,
        backend: Optional[str] = None,
        help_url: Optional[str] = None,
        use_cache: bool = True,
    ) -> Any:
        """GET ``url`` and return its JSON body, from the cache when fresh.

        Successful bodies are cached for ``cache_ttl``; 404/410 as negative entries for a
        shorter time (a NotFoundError is raised again from the cache); auth-dependent
        failures (401/403) and errors are never cached.
        """
        url, params = self._without_secrets(url, params)
        key = self.cache_key("GET", url, params)
        cache = self.cache if use_cache else None
        if cache is not None:
            hit = cached(cache, key, url=url, backend=backend, help_url=help_url)
            if hit is not MISS:
                return hit

        def attempt() -> Any:
            return self._get_once(url, params, backend=backend, help_url=help_url)

        return self.single_flight(key, lambda: fetch_and_cache(
            cache, key, lambda: self.call_with_retries(attempt, url=url, backend=backend)))

    @staticmethod
    def _without_secrets(url: str, params: Params) -> Tuple[str, Params]:
        """``url`` and ``params`` without ``?token=``-style parameters: tokens travel only in the
        Authorization header (``auth_headers_for``); a URL is logged by urllib3 at DEBUG, outside
        our redacting logger, and kept by every proxy and server log on the way."""
        clean = strip_secret_params(url)
        if isinstance(params, Mapping):
            kept: Params = {k: v for k, v in params.items() if not is_secret_param(k)}
        elif params:
            kept = [(k, v) for k, v in params if not is_secret_param(k)]
        else:
            kept = params
        dropped = clean != url or (params and len(kept) != len(params))  # type: ignore[arg-type]
        if dropped:
            log.warning("a secret query parameter was dropped from a request to %s: tokens are sent "
                        "as headers from the settings", redact_url(clean))
        return clean, kept

    def _get_once(self, url: str, params: Params, *, backend: Optional[str], help_url: Optional[str]) -> Any:
        timeout = float(self.config.civitai_api_timeout)
        headers = auth_headers_for(url, self.config)
        try:
            self.count_request()
            response = self.session.get(url, params=params, headers=headers, timeout=(min(10.0, timeout), timeout))
        except requests.Timeout:
            raise NetworkError(f"{backend or 'server'} timed out after {timeout:g}s",
                               url=redact_url(url), backend=backend) from None
        except requests.ConnectionError as exc:
            error = NetworkError(f"cannot reach {self._host_key(url)}: {_reason(exc)}",
                                 url=redact_url(url), backend=backend)
            if _connect_failed(exc):
                mark_unreachable(error)
            raise error from None
        except requests.RequestException as exc:
            raise APISearchError(f"request failed: {_reason(exc)}", url=redact_url(url), backend=backend) from None
        with response:
            if response.status_code >= 400:
                raise error_for_response(response.status_code, headers=response.headers, body=response.text[:4000],
                                         url=response.url, backend=backend, help_url=help_url)
            try:
                return response.json(parse_constant=_no_constant)
            except (ValueError, RecursionError):  # RecursionError: '[' * 100000 from a lying server
                snippet = redact_text(response.text[:80])
                raise APISearchError(f"{backend or 'server'} sent malformed JSON ({snippet!r})",
                                     status=response.status_code, url=redact_url(url), backend=backend) from None


def _no_constant(name: str) -> Any:
    """NaN/Infinity are not JSON: a size of Infinity would crash int() further down."""
    raise ValueError(f"{name} is not a JSON value")


def _connect_failed(exc: requests.ConnectionError) -> bool:
    """True when no connection could be made (DNS failure, refused, no route), as opposed to
    one that broke mid-answer.  urllib3's NameResolutionError is a NewConnectionError."""
    from urllib3.exceptions import NewConnectionError

    reason = getattr(exc.args[0], "reason", exc.args[0]) if exc.args else None
    return isinstance(reason, NewConnectionError)


def _reason(exc: BaseException) -> str:
    """Short, token-free reason of a requests exception."""
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "Temporary failure in name resolution",
                   "timed out", "Connection reset", "Remote end closed", "No route to host"):
        if marker in text:
            return marker.lower()
    return redact_text(text)[:200]


def cached(cache: Any, key: str, *, url: str, backend: Optional[str], help_url: Optional[str] = None) -> Any:
    """The cached answer for ``key``, or ``MISS``; a cached 404/410 is raised again as the
    ``NotFoundError`` it was."""
    hit = cache.get(key)
    if isinstance(hit, dict) and hit.get("__negative__"):
        raise NotFoundError(hit.get("message", "not found (cached)"), status=hit.get("status", 404),
                            url=redact_url(url), backend=backend, help_url=help_url)
    return hit


def fetch_and_cache(cache: Any, key: str, call: Callable[[], Any]) -> Any:
    """``call()``, its answer stored under ``key``; a 404/410 is stored as a negative entry
    (shorter TTL) and raised.  ``cache=None`` just calls."""
    try:
        value = call()
    except NotFoundError as exc:
        if cache is not None and exc.status in (404, 410):
            cache.put(key, {"__negative__": True, "status": exc.status, "message": str(exc)},
                      ttl=cache.negative_ttl)
        raise
    if cache is not None:
        cache.put(key, value)
    return value
