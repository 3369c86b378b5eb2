"""The JSON API client of the search backends, on the network layer (``..net``).

``ApiClient``: GET JSON through ``net.redirects.follow`` (every redirect hop checked), with
the response cache, single-flight for concurrent identical lookups, ``net.retry``'s retry
policy and fail-fast on a host that cannot be reached; errors mapped by
``net.status.error_for_response``; tokens only via ``security.auth_headers_for``.

The names that lived here before ``net`` existed (``error_for_response``,
``retry_after_seconds``, ``make_session``...) are re-exported for callers.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, TypeVar, Union
from urllib.parse import urlencode

import requests

from ..errors import APISearchError, DownloadError, HostNotAllowedError, NetworkError, NotFoundError
from ..logs import get_logger
from ..net import retry
from ..net.redirects import follow
from ..net.retry import HOST_DOWN_SECONDS, backoff_delay, is_retryable, mark_unreachable, retry_after_seconds
from ..net.session import connect_failed, short_reason
from ..net.session import make_session as _make_session
from ..net.status import error_for_response
from ..security import auth_headers_for, is_secret_param, redact_text, redact_url, strip_secret_params
from .cache import MISS, ResponseCache

__all__ = ["ApiClient", "cached", "fetch_and_cache", "error_for_response", "retry_after_seconds", "backoff_delay",
           "is_retryable", "mark_unreachable", "make_session", "HOST_DOWN_SECONDS"]

log = get_logger(__name__)
T = TypeVar("T")

Params = Union[Mapping[str, Any], Sequence[Tuple[str, Any]], None]


def make_session(config, pool_size: Optional[int] = None) -> requests.Session:
    """The API session of ``net.session.make_session``."""
    return _make_session(config, purpose="api", pool_size=pool_size)


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
        self.hosts = retry.HostHealth()
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

    # -- host health (net.retry.HostHealth) ------------------------------------------
    def check_host(self, url: str, backend: Optional[str] = None) -> None:
        """Raise NetworkError at once if the host failed to connect a moment ago."""
        self.hosts.check(url, backend)

    def mark_down(self, url: str, reason: str) -> None:
        self.hosts.mark_down(url, reason)

    def mark_up(self, url: str) -> None:
        self.hosts.mark_up(url)

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
        """``attempt`` under the one retry policy (``net.retry.call_with_retries``)."""
        return retry.call_with_retries(attempt, config=self.config, url=url, hosts=self.hosts,
                                       sleep=lambda s: self.sleep(s), backend=backend, retries=retries)

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
        host = retry.HostHealth.key(url)
        try:
            self.count_request()
            followed = follow(self.session, url, self.config, params=params, stream=False,
                              timeout=(min(10.0, timeout), timeout))
        except HostNotAllowedError:
            raise
        except DownloadError as exc:  # too many redirects
            raise APISearchError(str(exc), url=redact_url(url), backend=backend) from None
        except requests.Timeout:
            raise NetworkError(f"{backend or 'server'} timed out after {timeout:g}s",
                               url=redact_url(url), backend=backend) from None
        except requests.ConnectionError as exc:
            error = NetworkError(f"cannot reach {host}: {short_reason(exc)}", url=redact_url(url), backend=backend)
            if connect_failed(exc):
                mark_unreachable(error)
            raise error from None
        except requests.RequestException as exc:
            raise APISearchError(f"request failed: {short_reason(exc)}", url=redact_url(url), backend=backend) from None
        with followed.response as response:
            if response.status_code >= 400:
                raise error_for_response(response.status_code, headers=response.headers, body=response.text[:4000],
                                         url=followed.url, backend=backend, help_url=help_url)
            try:
                return response.json(parse_constant=_no_constant)
            except (ValueError, RecursionError):  # RecursionError: '[' * 100000 from a lying server
                snippet = redact_text(response.text[:80])
                raise APISearchError(f"{backend or 'server'} sent malformed JSON ({snippet!r})",
                                     status=response.status_code, url=redact_url(url), backend=backend) from None


def _no_constant(name: str) -> Any:
    """NaN/Infinity are not JSON: a size of Infinity would crash int() further down."""
    raise ValueError(f"{name} is not a JSON value")


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
