"""The one session factory and the one single-request primitive.

* ``make_session(config, purpose)``: a ``requests.Session`` whose connections go through
  ``CheckedAdapter``: each new connection resolves its host once, checks the resolved
  addresses (``addresses.resolve_checked``) and connects to exactly those addresses, with
  the original name kept for the ``Host`` header and TLS (SNI, certificate check).  No
  environment credentials (``trust_env=False``: no ``~/.netrc``), no urllib3 retries.
* ``send(session, method, url, config, ...)``: one request, no redirect followed, after
  ``check_url`` with the config's policy; the proxy (``Config.proxy``, else the environment's
  ``HTTPS_PROXY``/``NO_PROXY``...) and CA bundle (``REQUESTS_CA_BUNDLE``) are applied here.  A refusal by the connect-time
  check surfaces as ``HostNotAllowedError``.

Through a proxy the connection goes to the proxy, which resolves the target itself: the
URL policy still checks the target name, port and scheme, but its addresses cannot be
checked (a proxy is a deliberate setting of the machine's owner).
"""

from __future__ import annotations

import os
import socket
import threading
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Optional, Union

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from ..errors import DownloadCancelledError, HostNotAllowedError
from ..security import redact_text, redact_url
from . import addresses
from .urls import check_url, policy_for

Timeout = Union[float, tuple]

#: how often a cancel watcher looks at its request's end (it sees a cancel at once)
WATCH_TICK = 0.25
_watching = threading.local()


def _shut(sock: Any) -> None:
    """Make a recv blocked on ``sock`` in another thread return at once (with b"")."""
    if isinstance(sock, socket.socket):
        try:
            # socket.socket's own shutdown: SSLSocket's would drop its SSL object under the
            # reading thread; shutting the descriptor down is enough to wake that read
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass


class _CancelWatch:
    """While one request waits for its response headers, a cancel shuts its socket down: a
    server that accepted and stays silent cannot hold the cancel for the read timeout."""

    def __init__(self, cancel: threading.Event):
        self.cancel = cancel
        self._lock = threading.Lock()
        self._sock: Any = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cfs-cancel-watch", daemon=True)

    def attach(self, sock: Any) -> None:
        with self._lock:
            self._sock = sock
            if self.cancel.is_set():
                _shut(sock)

    def detach(self) -> None:
        with self._lock:
            self._sock = None

    def _run(self) -> None:
        while not self._done.is_set():
            if self.cancel.wait(WATCH_TICK):
                with self._lock:
                    if self._sock is not None:
                        _shut(self._sock)
                return  # a socket attached later is shut by attach()


@contextmanager
def _watched(cancel: Optional[threading.Event]) -> Iterator[None]:
    if cancel is None:
        yield
        return
    watch = _CancelWatch(cancel)
    previous = getattr(_watching, "watch", None)
    _watching.watch = watch
    watch._thread.start()
    try:
        yield
    finally:
        _watching.watch = previous
        watch._done.set()


class _CheckedConnection:
    """Mixin for urllib3 connections: resolve, check, connect to the checked address."""

    _config: Any = None
    _scheme = "http"

    def _new_conn(self):  # type: ignore[no-untyped-def]
        if getattr(self, "proxy", None) is not None:
            # connecting to the proxy, not the target (see the module docstring)
            return super()._new_conn()  # type: ignore[misc]
        host = self._dns_host  # type: ignore[attr-defined]
        port = self.port  # type: ignore[attr-defined]
        policy = policy_for(self._config)
        try:
            found = addresses.resolve_checked(host.strip("[]"), port, policy, self._scheme)
            return addresses.connect(found, self.timeout, self.source_address,  # type: ignore[attr-defined]
                                     self.socket_options)  # type: ignore[attr-defined]
        except HostNotAllowedError:
            raise
        except TimeoutError as exc:
            raise ConnectTimeoutError(self, f"Connection to {host} timed out") from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc

    def getresponse(self, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
        # the wait for the headers is where a silent server holds a request: let a cancel
        # watcher of this thread's request (see send) shut the socket down
        watch = getattr(_watching, "watch", None)
        if watch is None:
            return super().getresponse(*args, **kwargs)  # type: ignore[misc]
        watch.attach(getattr(self, "sock", None))
        try:
            return super().getresponse(*args, **kwargs)  # type: ignore[misc]
        finally:
            watch.detach()


def _pool_classes(config) -> dict:
    conn = type("CheckedHTTPConnection", (_CheckedConnection, HTTPConnection), {"_config": config})
    sconn = type("CheckedHTTPSConnection", (_CheckedConnection, HTTPSConnection),
                 {"_config": config, "_scheme": "https"})
    return {
        "http": type("CheckedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": conn}),
        "https": type("CheckedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": sconn}),
    }


class CheckedAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose direct connections pass the connect-time address check."""

    def __init__(self, config, **kwargs: Any):
        self._config = config
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self._config)


def make_session(config, *, purpose: str = "api", pool_size: Optional[int] = None) -> requests.Session:
    """The session of a client: ``purpose="api"`` (JSON, pool for the search concurrency) or
    ``"download"`` (identity encoding: bytes go to disk as sent; a big pool)."""
    session = requests.Session()
    session.trust_env = False  # proxies/CA bundle are applied per request by send()
    if purpose == "download":
        size = pool_size or 32
        session.headers.update({"User-Agent": config.user_agent, "Accept-Encoding": "identity"})
    else:
        size = pool_size or max(10, 2 * config.search_concurrency)
        session.headers.update({"User-Agent": config.user_agent, "Accept": "application/json"})
    proxy = getattr(config, "proxy", None)
    if proxy:  # also passed per request by send(); kept here for callers using the session directly
        session.proxies.update({"http": proxy, "https": proxy})
    adapter = CheckedAdapter(config, pool_connections=8, pool_maxsize=size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def proxies_for(url: str, config=None) -> Mapping[str, str]:
    """The proxies for ``url``: ``Config.proxy`` (also set in the panel), else the
    environment's (``HTTPS_PROXY``..., ``NO_PROXY`` honoured)."""
    proxy = getattr(config, "proxy", None)
    if proxy:
        return {"http": proxy, "https": proxy}
    return get_environ_proxies(url)


def _verify() -> Union[bool, str]:
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True


def policy_refusal(exc: BaseException) -> Optional[HostNotAllowedError]:
    """The ``HostNotAllowedError`` raised by the connect-time check inside ``exc`` (urllib3
    and requests wrap it), or None."""
    seen = set()
    todo = [exc]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, HostNotAllowedError):
            return item
        todo.extend(a for a in getattr(item, "args", ()) if isinstance(a, BaseException))
        for attr in ("reason", "__cause__", "__context__"):
            value = getattr(item, attr, None)
            if isinstance(value, BaseException):
                todo.append(value)
    return None


def send(session: requests.Session, method: str, url: str, config, *,
         headers: Optional[Mapping[str, str]] = None, data: Any = None, stream: bool = True,
         timeout: Optional[Timeout] = None, cancel: Optional[threading.Event] = None) -> requests.Response:
    """One request to ``url`` after the URL policy check; redirects are not followed (see
    ``redirects.follow``).  Raises ``HostNotAllowedError`` or requests' exceptions, and
    ``DownloadCancelledError`` when ``cancel`` is set while the request waits for its
    response headers (its socket is shut down: the wait ends at once)."""
    url = check_url(url, policy_for(config))
    try:
        with _watched(cancel):
            return session.request(method, url, headers=dict(headers or {}), data=data, stream=stream,
                                   allow_redirects=False, timeout=timeout, proxies=proxies_for(url, config),
                                   verify=_verify())
    except requests.RequestException as exc:
        refusal = policy_refusal(exc)
        if refusal is not None:
            raise refusal from None
        if cancel is not None and cancel.is_set():
            raise DownloadCancelledError("cancelled", url=redact_url(url)) from None
        raise


def connect_failed(exc: requests.ConnectionError) -> bool:
    """True when no connection could be made (DNS failure, refused, no route), as opposed to
    one that broke mid-answer.  urllib3's NameResolutionError is a NewConnectionError."""
    reason = getattr(exc.args[0], "reason", exc.args[0]) if exc.args else None
    return isinstance(reason, NewConnectionError)


def short_reason(exc: BaseException) -> str:
    """Short, token-free reason of a requests exception."""
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "Temporary failure in name resolution",
                   "timed out", "Connection reset", "Remote end closed", "No route to host"):
        if marker in text:
            return marker.lower()
    return redact_text(text)[:200]
