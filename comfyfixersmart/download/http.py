"""HTTP for downloads, on the network layer (``..net``): the streaming open with Range,
the redirect hints of Hugging Face, the body reader and header helpers.

Sessions come from ``net.session.make_session``, redirects are followed (and every hop
checked) by ``net.redirects.follow``, statuses are mapped by ``net.status.raise_for_status``.
"""

from __future__ import annotations

import http.client
import io
import re
import threading
from dataclasses import dataclass, field
from email.message import Message
from typing import List, Mapping, Optional, Tuple
from urllib.parse import unquote, urlsplit

import requests

from ..errors import DownloadError, DownloadStalledError, UnsafePathError
from ..net.redirects import MAX_REDIRECTS, follow
from ..net.retry import is_retryable
from ..net.session import make_session as _make_session
from ..net.status import raise_for_status
from ..security import redact_text, redact_url, strip_secret_params, validate_relative_path
from .verify import sha256_or_none

__all__ = ["MAX_REDIRECTS", "make_session", "Opened", "open_url", "raise_for_status", "is_transient", "TruncatedError",
           "BodyReader", "parse_content_range", "content_length", "filename_from_disposition", "filename_from_url",
           "safe_server_filename"]


def make_session(config, pool_size: int = 32) -> requests.Session:
    """The download session of ``net.session.make_session`` (identity encoding, big pool)."""
    return _make_session(config, purpose="download", pool_size=pool_size)


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
    """GET ``url`` streaming through ``net.redirects.follow`` (every hop checked).

    Returns the response of the last hop (2xx or 416); raises the mapped exception for
    other statuses, ``HostNotAllowedError`` for a hop the URL or address policy refuses.
    """
    timeout = timeout or config.download_timeout
    hop_headers = {k: v for k, v in (headers or {}).items() if k.lower() not in ("range", "if-range")}
    if range_start is not None:
        end = "" if range_end is None else str(range_end)
        hop_headers["Range"] = f"bytes={range_start}-{end}"
        if if_range:
            hop_headers["If-Range"] = if_range
    opened = Opened(response=None, url=url)  # type: ignore[arg-type]
    # a token pasted into a URL must not travel (the caller's own URL; signed storage URLs keep
    # their signatures)
    followed = follow(session, strip_secret_params(url, keep_signatures=True), config, headers=hop_headers,
                      stream=True, timeout=(min(timeout, 30), timeout), cancel=cancel,
                      on_response=lambda resp: _collect_hints(opened, resp))
    resp = followed.response
    opened.hops = followed.hops
    if resp.status_code >= 400 and resp.status_code != 416:
        try:
            raise_for_status(resp, url)
        finally:
            resp.close()
    opened.response = resp
    opened.url = followed.url
    return opened


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


def is_transient(exc: BaseException) -> bool:
    """Worth retrying (with resume): the retry policy's classes plus a truncated body."""
    return isinstance(exc, (TruncatedError, DownloadStalledError)) or is_retryable(exc)


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
        if not len(view):
            n = 0
        else:
            try:
                if whole:
                    n = self._stream.readinto(view)
                elif self._maybe_buffered or len(view) <= _IO_BUFFER:
                    # BufferedReader.readinto1 copies what it holds and then, for a view
                    # larger than its buffer, reads the socket too: a timeout there would
                    # lose the copied bytes.  read1(<= buffer size) returns what is held (at
                    # most one buffer: the rest of the headers' read) or makes one direct
                    # socket read, and never refills the buffer; so after this first call
                    # the buffer stays empty and big reads go straight into ``view``.
                    asked = min(len(view), _IO_BUFFER)
                    data = self._stream.read1(asked)
                    n = len(data)
                    view[:n] = data
                    # it held at most one buffer: asking that much (or getting less) emptied it
                    self._maybe_buffered = asked < _IO_BUFFER and n == asked
                else:
                    n = self._stream.readinto1(view)
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


_RESERVED = re.compile(r"^(con|prn|aux|nul|com[1-9\u00b9\u00b2\u00b3]|lpt[1-9\u00b9\u00b2\u00b3])(\..*)?$", re.I)


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
