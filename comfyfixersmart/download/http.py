"""HTTP for downloads: one session factory, redirects followed by hand, status -> exception.

Redirects are followed here rather than by requests so that every hop is checked against
the host allow-list and gets its headers rebuilt: the token from ``auth_headers_for`` goes
only to its own host, and caller-given credentials only to the first URL's origin.
"""

from __future__ import annotations

import http.client
import io
import json
import re
import threading
from dataclasses import dataclass, field
from email.message import Message
from typing import Dict, List, Mapping, Optional, Tuple
from urllib.parse import unquote, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies

from ..errors import (
    AccessDeniedError,
    AuthRequiredError,
    DownloadCancelledError,
    DownloadError,
    DownloadStalledError,
    EarlyAccessError,
    GatedRepoError,
    NotFoundError,
    RateLimitedError,
    UnsafePathError,
)
from ..security import (auth_headers_for, check_url, redact_text, redact_url, same_origin, strip_secret_params,
                        validate_relative_path)
from .verify import sha256_or_none

MAX_REDIRECTS = 10
_REDIRECTS = (301, 302, 303, 307, 308)
_CREDENTIAL_HEADERS = {"authorization", "cookie", "proxy-authorization"}


def make_session(config, pool_size: int = 32) -> requests.Session:
    """A requests Session for downloads (no env credentials, big connection pool)."""
    session = requests.Session()
    # trust_env would add ~/.netrc credentials and env proxies behind our back; proxies are
    # passed explicitly per request instead (see open_url).
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"User-Agent": config.user_agent, "Accept-Encoding": "identity"})
    return session


@dataclass
class Opened:
    """An open streaming response and what the redirect chain told us."""

    response: requests.Response
    #: the URL that answered (may hold a signed query: never log or store it unredacted)
    url: str
    #: sha256 / size promised by a hop (HF ``X-Linked-Etag`` / ``X-Linked-Size``)
    hinted_sha256: Optional[str] = None
    hinted_size: Optional[int] = None
    hops: List[str] = field(default_factory=list)

    @property
    def status(self) -> int:
        return self.response.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self.response.headers

    def close(self) -> None:
        self.response.close()


def open_url(
    session: requests.Session,
    url: str,
    config,
    *,
    headers: Optional[Mapping[str, str]] = None,
    range_start: Optional[int] = None,
    range_end: Optional[int] = None,
    if_range: Optional[str] = None,
    timeout: Optional[float] = None,
    cancel: Optional[threading.Event] = None,
) -> Opened:
    """GET ``url`` streaming, following redirects by hand with per-hop checks.

    Returns the response of the last hop (2xx or 416); raises the mapped exception for
    other statuses, ``HostNotAllowedError`` for a hop outside the allow-list.
    """
    allowed = config.effective_allowed_hosts
    timeout = timeout or config.download_timeout
    # a token pasted into a URL must not travel (the caller's own URL; signed storage URLs keep
    # their signatures, redirect hops are checked below)
    first = check_url(strip_secret_params(url, keep_signatures=True), allowed)
    current = first
    opened = Opened(response=None, url=current)  # type: ignore[arg-type]
    for _hop in range(MAX_REDIRECTS + 1):
        if cancel is not None and cancel.is_set():
            raise DownloadCancelledError("cancelled", url=redact_url(url))
        check_url(current, allowed)
        hop_headers = _hop_headers(first, current, headers, config)
        if range_start is not None:
            end = "" if range_end is None else str(range_end)
            hop_headers["Range"] = f"bytes={range_start}-{end}"
            if if_range:
                hop_headers["If-Range"] = if_range
        resp = session.get(
            current,
            headers=hop_headers,
            stream=True,
            allow_redirects=False,
            timeout=(min(timeout, 30), timeout),
            # the configured proxy (Config.proxy, set in the panel too), else the environment's
            proxies=({"http": config.proxy, "https": config.proxy} if getattr(config, "proxy", None)
                     else get_environ_proxies(current)),
        )
        _collect_hints(opened, resp)
        if resp.status_code in _REDIRECTS and resp.headers.get("Location"):
            location = resp.headers["Location"]
            resp.close()
            opened.hops.append(redact_url(current) or "")
            current = urljoin(current, location)
            continue
        if resp.status_code >= 400 and resp.status_code != 416:
            try:
                raise_for_status(resp, url)
            finally:
                resp.close()
        opened.response = resp
        opened.url = current
        return opened
    raise DownloadError(f"more than {MAX_REDIRECTS} redirects", url=redact_url(url))


def _hop_headers(first: str, current: str, extra: Optional[Mapping[str, str]], config) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for key, value in (extra or {}).items():
        if key.lower() in _CREDENTIAL_HEADERS and not same_origin(first, current):
            continue  # caller credentials never follow a redirect to another origin
        if key.lower() in ("range", "if-range"):
            continue
        out[key] = value
    # auth_headers_for only answers for the Civitai base host / HF endpoint host
    out.update(auth_headers_for(current, config))
    return out


def _collect_hints(opened: Opened, resp: requests.Response) -> None:
    linked = sha256_or_none(resp.headers.get("X-Linked-Etag"))
    if linked is None and resp.headers.get("X-Repo-Commit"):
        # HF resolve of an LFS file answered directly: its ETag is the sha256
        linked = sha256_or_none(resp.headers.get("ETag"))
    if linked and opened.hinted_sha256 is None:
        opened.hinted_sha256 = linked
    size = resp.headers.get("X-Linked-Size")
    if size and size.isdigit() and opened.hinted_size is None:
        opened.hinted_size = int(size)


# -- status mapping ----------------------------------------------------------------------

def raise_for_status(resp: requests.Response, url: str) -> None:
    """Turn an error response into our exception (the one mapping of this layer)."""
    status = resp.status_code
    if status < 400:
        return
    safe_url = redact_url(url)
    message = _server_message(resp)
    text = f"HTTP {status} from {urlsplit(resp.url or url).hostname}" + (f": {message}" if message else "")
    error_code = resp.headers.get("X-Error-Code", "")
    if status == 401:
        if error_code == "GatedRepo":
            raise GatedRepoError(text, status=status, url=safe_url, backend="download")
        raise AuthRequiredError(text + " (set CIVITAI_API_TOKEN or HF_TOKEN)", status=status, url=safe_url,
                                backend="download")
    if status == 403:
        if error_code == "GatedRepo":
            raise GatedRepoError(text, status=status, url=safe_url, backend="download")
        if "early access" in message.lower() or "deadline" in message.lower():
            raise EarlyAccessError(text, status=status, url=safe_url, backend="download")
        raise AccessDeniedError(text, status=status, url=safe_url, backend="download")
    if status in (404, 410):
        raise NotFoundError(text, status=status, url=safe_url, backend="download")
    if status == 429:
        raise RateLimitedError(text, retry_after=_retry_after(resp), status=status, url=safe_url,
                               backend="download")
    raise DownloadError(text, url=safe_url, status=status)


def _server_message(resp: requests.Response) -> str:
    header = resp.headers.get("X-Error-Message")
    if header:
        return redact_text(header)[:300]
    try:
        body = resp.raw.read(4096, decode_content=True) or b""
    except Exception:
        return ""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return redact_text(text[:200])
    if isinstance(data, dict):
        parts = [str(data[k]) for k in ("error", "message", "detail", "deadline") if data.get(k)]
        if data.get("deadline"):
            parts.insert(0, "early access")
        return redact_text("; ".join(parts))[:300]
    return ""


def _retry_after(resp: requests.Response) -> Optional[float]:
    value = resp.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def is_transient(exc: BaseException) -> bool:
    """Worth retrying (with resume): network drops, timeouts, 5xx, 429."""
    if isinstance(exc, RateLimitedError):
        return True
    if isinstance(exc, DownloadError) and type(exc) is DownloadError and (exc.status or 0) >= 500:
        return True
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                        TruncatedError, DownloadStalledError)):
        return True
    try:
        from urllib3.exceptions import HTTPError as Urllib3Error

        if isinstance(exc, Urllib3Error):
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(exc, (ConnectionError, TimeoutError))


class TruncatedError(DownloadError):
    """The server closed the stream before the promised length (retried with Range)."""


class IdleRead(Exception):
    """Internal: no body byte arrived within ``READ_TICK``; nothing was lost, read again
    (the caller checks its cancel flag and stall budget first)."""


#: a body read returns (bytes or ``IdleRead``) at least this often, so cancel is noticed
READ_TICK = 1.0
#: no larger than the buffer of ``socket.makefile("rb")`` (http.client's reader)
_IO_BUFFER = io.DEFAULT_BUFFER_SIZE


# -- body --------------------------------------------------------------------------------

class BodyReader:
    """Reads a response body straight into caller buffers.

    For an identity-encoded, non-chunked body (what a model CDN sends), bytes go from the
    socket's buffered reader into the caller's buffer (``readinto1``: one ``recv``; with
    ``whole=True`` ``readinto``, whose loop runs in C, which matters for TLS's 16 KiB
    records): no ``bytes`` object per chunk and none of requests'/urllib3's decode and
    copy layers (with them, loopback throughput was half of what it is now).  Anything else (gzip, chunked, an
    unexpected urllib3 internals layout) falls back to ``urllib3``'s ``read``, which
    decodes.  Reads never go past Content-Length; what the caller does with a short body
    is its business (the engine resumes it).  Socket and protocol failures surface as
    ``TruncatedError``, which the engine retries with Range.
    """

    def __init__(self, opened: Opened, *, fallback_chunk: int = 1 << 20, tick: Optional[float] = READ_TICK):
        self._opened = opened
        self._raw = opened.response.raw
        self._fallback_chunk = fallback_chunk
        self._http: Optional[http.client.HTTPResponse] = None
        self._stream = None
        self._socket_io = None
        #: the BufferedReader may hold body bytes (read with the headers, or left over)
        self._maybe_buffered = True
        self._ended = False
        fp = getattr(self._raw, "_fp", None)
        encoding = (opened.headers.get("Content-Encoding") or "identity").strip().lower()
        if (isinstance(fp, http.client.HTTPResponse) and not fp.chunked and encoding == "identity"
                and getattr(self._raw, "_fp_bytes_read", None) == 0
                and hasattr(getattr(fp, "fp", None), "readinto1")):
            self._http = fp
            self._stream = fp.fp
            io = getattr(fp.fp, "raw", None)
            sock = getattr(io, "_sock", None)
            if tick is not None and sock is not None and hasattr(io, "_timeout_occurred"):
                # Short socket timeouts: a silent server cannot hold a read (and so a cancel)
                # for the whole read timeout.  A timed-out recv read nothing, so the read is
                # simply repeated (see _readinto_fast).
                sock.settimeout(tick)
                self._socket_io = io

    @property
    def fast(self) -> bool:
        """True when bytes go from the socket to the caller's buffer without a copy."""
        return self._stream is not None

    def readinto(self, view: memoryview, *, whole: bool = False) -> int:
        """Read at most ``len(view)`` body bytes into ``view``; 0 means the body ended.

        ``whole=False`` returns after one socket read; ``whole=True`` waits until ``view``
        is full or the body ends (bytes read before a failure are then lost: keep the
        view small on slow links).
        """
        if not len(view) or self._ended:
            return 0
        try:
            if self._stream is not None:
                return self._readinto_fast(view, whole)
            data = self._raw.read(min(len(view), self._fallback_chunk), decode_content=True)
            n = len(data)
            view[:n] = data
            if not n:
                self._ended = True
            return n
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, DownloadError):
                raise
            raise TruncatedError(f"connection failed while reading the body: {type(exc).__name__}: "
                                 f"{redact_text(str(exc))[:200]}",
                                 url=redact_url(self._opened.url)) from None
        except Exception as exc:
            if is_transient(exc):  # urllib3's wrapped socket errors (fallback path)
                raise TruncatedError(f"connection failed while reading the body: {type(exc).__name__}",
                                     url=redact_url(self._opened.url)) from None
            raise

    def _readinto_fast(self, view: memoryview, whole: bool) -> int:
        resp = self._http
        assert resp is not None and self._stream is not None
        left = resp.length
        if left is not None and len(view) > left:
            view = view[:left]
        if self._maybe_buffered and len(view) > _IO_BUFFER:
            # BufferedReader.readinto1 copies what it holds, then (for a view larger than its
            # buffer) makes a raw read too; a timeout in that read would lose the copied
            # bytes.  A view no larger than its buffer never reads after copying.
            view = view[:_IO_BUFFER]
        if not len(view):
            n = 0
        else:
            try:
                n = self._stream.readinto(view) if whole else self._stream.readinto1(view)
                # less than asked: the reader's buffer is empty, later reads go to the socket
                self._maybe_buffered = n == len(view)
            except TimeoutError:
                if whole or self._socket_io is None:
                    # a filling read may have taken bytes before the timeout: they are gone,
                    # so this connection cannot go on (the engine resumes with Range)
                    raise TruncatedError("no data within the read timeout during a buffered read",
                                         url=redact_url(self._opened.url)) from None
                # readinto1 made one recv, which timed out having read nothing: the stream is
                # intact.  socket.SocketIO refuses reads after any timeout; re-arm it.
                self._socket_io._timeout_occurred = False
                raise IdleRead() from None
        if left is not None:
            # keep http.client's own count right, as its readinto would
            resp.length = left - n
        if not n or resp.length == 0:
            self._end()
        return n

    def _end(self) -> None:
        """Let http.client/urllib3 see the end of the body: the connection goes back to
        the pool for the next request (a truncated body closes it instead)."""
        self._ended = True
        try:
            self._raw.read()
        except Exception:  # a short body: urllib3 drops the connection, the caller retries
            pass


# -- headers -----------------------------------------------------------------------------

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)\s*/\s*(\d+|\*)\s*$", re.I)


def parse_content_range(value: Optional[str]) -> Tuple[Optional[int], Optional[int], Optional[int]]:
    """``bytes 5-9/10`` -> (5, 9, 10); ``bytes */10`` -> (None, None, 10); bad -> Nones."""
    if not value:
        return None, None, None
    m = _CONTENT_RANGE.match(value)
    if not m:
        return None, None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    end = int(m.group(2)) if m.group(2) is not None else None
    total = int(m.group(3)) if m.group(3) != "*" else None
    return start, end, total


def content_length(resp: requests.Response) -> Optional[int]:
    value = resp.headers.get("Content-Length", "")
    return int(value) if value.strip().isdigit() else None


def filename_from_disposition(value: Optional[str]) -> Optional[str]:
    """The file name of a Content-Disposition header (RFC 6266 ``filename*`` preferred)."""
    if not value:
        return None
    msg = Message()
    msg["Content-Disposition"] = value
    try:
        name = msg.get_filename()  # decodes filename*=UTF-8''... (RFC 2231)
    except Exception:
        name = None
    if name is None:
        m = re.search(r'filename\s*=\s*"?([^";]+)"?', value, re.I)
        name = m.group(1) if m else None
    return name


def filename_from_url(url: str) -> Optional[str]:
    path = urlsplit(url).path
    name = unquote(path.rsplit("/", 1)[-1]) if path else ""
    return name or None


_RESERVED = re.compile(r"^(con|prn|aux|nul|com[1-9]|lpt[1-9])(\..*)?$", re.I)


def safe_server_filename(name: Optional[str]) -> str:
    """A plain file name (no folders) from an untrusted server-given name.

    Directory parts are dropped (``../../etc/passwd`` -> ``passwd``), control characters and
    characters Windows forbids are replaced, reserved device names get a ``_`` prefix.  What
    cannot be made safe raises UnsafePathError.
    """
    if not name:
        raise UnsafePathError("the server gave no file name")
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join("_" if (ord(c) < 32 or c in '<>:"|?*\x7f') else c for c in base).strip().rstrip(". ")
    if base in ("", ".", ".."):
        raise UnsafePathError(f"no usable file name in {name[:80]!r}")
    if _RESERVED.match(base):
        base = "_" + base
    return validate_relative_path(base, allow_subdirs=False)
