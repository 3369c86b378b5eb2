"""The one rate-limit/retry policy.

* ``retry_after_seconds``: the wait a server asked for: ``Retry-After`` (seconds or an HTTP
  date), else the ``t=`` of an exhausted HF ``RateLimit: "api";r=0;t=55`` header.
* ``backoff_delay``: exponential backoff with jitter, capped by ``backoff_max``.
* ``is_retryable``: only 429, 5xx (and 408) answers and network failures are retried; other
  4xx never (a 403 asked twice stays a 403).
* ``call_with_retries``: runs an attempt under that policy; a server asking for longer than
  ``backoff_max`` is not waited for (the error carries ``retry_after``); a host that cannot
  be reached is marked down in a ``HostHealth`` and later calls fail at once.
"""

from __future__ import annotations

import email.utils
import random
import re
import threading
import time
from typing import Callable, Dict, Mapping, Optional, Tuple, TypeVar
from urllib.parse import urlsplit

from ..errors import APISearchError, DownloadError, NetworkError, RateLimitedError
from ..logs import get_logger
from ..security import redact_url

log = get_logger(__name__)
T = TypeVar("T")

#: after a connection failure, further calls to that host fail fast for this long
HOST_DOWN_SECONDS = 30.0

_RATELIMIT_RE = re.compile(r'"?(?P<kind>[\w-]+)"?\s*;\s*r\s*=\s*(?P<r>\d+)\s*;\s*t\s*=\s*(?P<t>\d+)')


def header(headers: Optional[Mapping[str, str]], name: str) -> Optional[str]:
    """A header value by case-insensitive name (plain dicts are case-sensitive)."""
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        low = name.lower()
        for key, val in headers.items():
            if key.lower() == low:
                return val
    return value


def retry_after_seconds(headers: Optional[Mapping[str, str]], now: Optional[float] = None) -> Optional[float]:
    """Seconds the server asked us to wait: ``Retry-After`` (seconds or HTTP date), else the
    ``t=`` of an exhausted HF ``RateLimit`` header (``"api";r=0;t=55``); None if neither."""
    value = header(headers, "Retry-After")
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
    rate = header(headers, "RateLimit")
    if rate:
        match = _RATELIMIT_RE.search(rate)
        if match and int(match.group("r")) == 0:
            return float(match.group("t"))
    return None


def backoff_delay(attempt: int, config) -> float:
    """Exponential backoff for retry ``attempt`` (0-based) with +-20 % jitter, capped."""
    base = config.backoff_base * (2 ** attempt)
    return min(config.backoff_max, base) * random.uniform(0.8, 1.2)


def mark_unreachable(exc: NetworkError) -> NetworkError:
    """Tag a NetworkError as "the host is not there" (DNS failure, connection refused): such a
    failure is never retried, unlike a timeout or a reset connection."""
    setattr(exc, "unreachable", True)
    return exc


def is_retryable(exc: BaseException) -> bool:
    """429, 5xx (and 408) and network failures are worth another try; other 4xx never."""
    if isinstance(exc, (RateLimitedError, NetworkError)):
        return True
    if type(exc) in (APISearchError, DownloadError):
        status = getattr(exc, "status", None)
        return status is not None and (status >= 500 or status == 408)
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    try:
        import requests
        from urllib3.exceptions import HTTPError as Urllib3Error
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                            Urllib3Error))


class HostHealth:
    """Hosts that failed to connect a moment ago: calls to them fail at once for a while."""

    def __init__(self) -> None:
        self._down: Dict[str, Tuple[float, str]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}".lower()

    def check(self, url: str, backend: Optional[str] = None) -> None:
        """Raise NetworkError at once if the host failed to connect a moment ago."""
        key = self.key(url)
        with self._lock:
            entry = self._down.get(key)
            if entry and time.monotonic() - entry[0] < HOST_DOWN_SECONDS:
                raise NetworkError(f"{key} is unreachable: {entry[1]}", url=redact_url(url), backend=backend)

    def mark_down(self, url: str, reason: str) -> None:
        with self._lock:
            self._down[self.key(url)] = (time.monotonic(), reason)

    def mark_up(self, url: str) -> None:
        with self._lock:
            self._down.pop(self.key(url), None)


def call_with_retries(attempt: Callable[[], T], *, config, url: str, hosts: HostHealth,
                      sleep: Callable[[float], None] = time.sleep, backend: Optional[str] = None,
                      retries: Optional[int] = None) -> T:
    """Run ``attempt`` (which raises our exceptions) with backoff on retryable failures.

    ``Retry-After`` / ``RateLimit t=`` are honoured up to ``backoff_max`` seconds; a server
    asking for longer is not waited for: the error goes up with ``retry_after`` so the
    caller can tell the user when to come back.
    Network failures are retried once, then the host is marked down.
    """
    retries = config.http_retries if retries is None else retries
    network_failures = 0
    n = 0
    while True:
        hosts.check(url, backend)
        try:
            return attempt()
        except APISearchError as exc:
            if getattr(exc, "unreachable", False):
                # no network or nothing listening: a retry would only make an offline
                # run slow; later calls to this host fail at once (hosts.check)
                hosts.mark_down(url, str(exc))
                raise
            if not is_retryable(exc) or n >= retries:
                if isinstance(exc, NetworkError):
                    hosts.mark_down(url, str(exc))
                raise
            if isinstance(exc, NetworkError):
                network_failures += 1
                if network_failures > 1:
                    hosts.mark_down(url, str(exc))
                    raise
            hint = getattr(exc, "retry_after", None)
            if hint is not None:
                if hint > config.backoff_max:
                    raise  # longer than we are willing to wait: let the caller tell the user
                delay = hint
            else:
                delay = backoff_delay(n, config)
            log.info("%s: %s; retrying in %.2fs (%d/%d)", backend or "http", exc, delay, n + 1, retries)
            sleep(delay)
            n += 1
