"""Adversarial local file servers for download tests.

``FileServer`` is a threaded HTTP/1.1 server on 127.0.0.1 whose resources can misbehave on
purpose: ignore Range, drop the connection mid-body, trickle at a capped rate, redirect
(to another host name), change their ETag, send hostile Content-Disposition names, answer
errors.  It records every request (method, path, headers) for assertions and the peak
number of bodies in flight.

``fast`` holds an aiohttp sendfile server for the benchmark.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, Optional

__all__ = ["FileServer", "Resource", "RecordedRequest", "payload", "loopback_config"]


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic, incompressible-looking bytes that form a valid ``.safetensors`` file
    (header + one U8 tensor filling the rest) when ``size`` leaves room for the header: the
    engine refuses a ``.safetensors`` download whose first bytes are not one."""
    out = bytearray()
    block = hashlib.sha256(f"seed-{seed}".encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 32  # 1 KiB per hash keeps generation fast
    header = safetensors_header(size, seed)
    if header is not None:
        out[:len(header)] = header
    return bytes(out[:size])


def safetensors_header(size: int, seed: int = 0) -> Optional[bytes]:
    """The 8-byte length + JSON header of a ``size``-byte safetensors file with one U8
    tensor, or None when ``size`` is too small for one."""
    small = '{"__metadata__":{"s":"%d"}}' % seed
    if size < 8 + 8 * 11:  # too small for a tensor: a file that is all header (still valid)
        if size < 10:
            return None
        text = small if len(small) <= size - 8 else "{}"
        return (size - 8).to_bytes(8, "little") + (text[:-1].ljust(size - 9) + "}").encode()
    for width in range(1, 21):
        body = size - 8 - 8 * width  # the header padded to a multiple of 8 bytes
        meta = ('{"__metadata__":{"seed":"%d"},"t":{"dtype":"U8","shape":[%d],"data_offsets":[0,%d]}}'
                % (seed, max(body, 0), max(body, 0)))
        if body >= 0 and len(meta) <= 8 * width:
            text = meta.ljust(8 * width).encode()
            return (8 * width).to_bytes(8, "little") + text
        if body < 0:
            return None
    return None


@dataclass
class Resource:
    """One URL path and how it behaves."""

    data: bytes = b""
    etag: Optional[str] = None  # None: a strong ETag from the content; "" for none
    last_modified: Optional[str] = "Wed, 01 Jan 2025 00:00:00 GMT"
    ranges: bool = True  # honour Range (else always 200 full body)
    if_range: bool = True  # honour If-Range (else resume even when the validator differs)
    disposition: Optional[str] = None  # Content-Disposition value
    drop_after: Optional[int] = None  # close the socket after this many body bytes...
    drops: int = 1  # ...for this many responses
    rate: Optional[float] = None  # bytes per second per connection
    stall_after: Optional[int] = None  # go silent (socket open) after this many body bytes...
    stalls: int = 1 << 30  # ...for this many responses (default: every one)
    stall_for: float = 60.0  # ...for this long (or until the server stops), then close
    status: Optional[int] = None  # force this status (with ``body``)
    body: bytes = b""
    redirect: Optional[str] = None  # 302 to this URL (absolute or relative)
    headers: Dict[str, str] = field(default_factory=dict)
    send_length: bool = True  # False: no Content-Length, body ends at close
    hook: Optional[Callable[["RecordedRequest"], None]] = None  # called before answering

    def current_etag(self) -> Optional[str]:
        if self.etag is None:
            return '"' + hashlib.sha1(self.data).hexdigest() + '"'
        return self.etag or None


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: Dict[str, str]
    host: str
    status: int = 0

    def header(self, name: str) -> Optional[str]:
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return None


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, fmt, *args):  # keep pytest output clean
        pass

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        rec = RecordedRequest(self.command, self.path, dict(self.headers.items()),
                              (self.headers.get("Host") or "").rsplit(":", 1)[0])
        with owner.lock:
            owner.requests.append(rec)
            res = owner.resources.get(path)
        if res is None:
            return self._simple(rec, 404, b'{"error":"Model not found"}')
        if res.hook is not None:
            res.hook(rec)
        if res.redirect:
            return self._simple(rec, 302, b"", {**res.headers, "Location": res.redirect})
        if res.status:
            return self._simple(rec, res.status, res.body, res.headers)
        data = res.data
        total = len(data)
        etag = res.current_etag()
        headers = {"Accept-Ranges": "bytes" if res.ranges else "none"}
        if etag:
            headers["ETag"] = etag
        if res.last_modified:
            headers["Last-Modified"] = res.last_modified
        if res.disposition:
            headers["Content-Disposition"] = res.disposition
        headers.update(res.headers)
        status, start, end = 200, 0, total - 1
        rng = self.headers.get("Range")
        if rng and res.ranges:
            if_range = self.headers.get("If-Range")
            valid = not if_range or not res.if_range or if_range in (etag, res.last_modified)
            m = _RANGE.match(rng.strip())
            if valid and m and (m.group(1) or m.group(2)):
                if m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)), total - 1) if m.group(2) else total - 1
                else:  # suffix range
                    start, end = max(0, total - int(m.group(2))), total - 1
                if start >= total or start > end:
                    return self._simple(rec, 416, b"", {"Content-Range": f"bytes */{total}", **headers})
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{total}"
        body_len = end - start + 1
        rec.status = status
        drop_at = None
        stall_at = None
        with owner.lock:
            if res.drop_after is not None and res.drops > 0:
                res.drops -= 1
                drop_at = res.drop_after
            if res.stall_after is not None and res.stalls > 0:
                res.stalls -= 1
                stall_at = res.stall_after
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if res.send_length:
            self.send_header("Content-Length", str(body_len))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if head:
            return
        owner._enter()
        try:
            self._send_body(memoryview(data)[start:end + 1], res.rate, drop_at, stall_at, res.stall_for)
        finally:
            owner._leave()

    def _send_body(self, view: memoryview, rate: Optional[float], drop_at: Optional[int],
                   stall_at: Optional[int] = None, stall_for: float = 60.0) -> None:
        sent = 0
        step = 64 * 1024 if rate else 1024 * 1024
        began = time.monotonic()
        try:
            while sent < len(view):
                if drop_at is not None and sent >= drop_at:
                    # an abrupt close mid-body, like a proxy or a flaky network
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if stall_at is not None and sent >= stall_at:
                    # a stalled body: the connection stays open, nothing more comes
                    self.wfile.flush()
                    self.server.owner.stopping.wait(stall_for)
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                n = min(step, len(view) - sent)
                if drop_at is not None:
                    n = min(n, drop_at - sent)
                if stall_at is not None:
                    n = min(n, stall_at - sent)
                self.wfile.write(view[sent:sent + n])
                sent += n
                if rate and sent < len(view):  # no pause after the last byte: the body is complete
                    ahead = sent / rate - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def _simple(self, rec: RecordedRequest, status: int, body: bytes, headers: Optional[dict] = None) -> None:
        rec.status = status
        self.send_response(status)
        for k, v in (headers or {}).items():
            if k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        if status >= 400 and body.startswith(b"{"):
            self.send_header("Content-Type", "application/json")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, addr, owner: "FileServer"):
        self.owner = owner
        super().__init__(addr, _Handler)


class FileServer:
    """A resource-serving HTTP server on 127.0.0.1 (use as a context manager)."""

    def __init__(self) -> None:
        self.resources: Dict[str, Resource] = {}
        self.requests: List[RecordedRequest] = []
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        #: set when the server stops: stalled responses end
        self.stopping = threading.Event()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> "FileServer":
        self._server = _Server(("127.0.0.1", 0), self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="dlserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FileServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- helpers --------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def add(self, path: str, data: bytes = b"", **behaviour) -> Resource:
        res = Resource(data=data, **behaviour)
        with self.lock:
            self.resources[path] = res
        return res

    def requests_for(self, path: str) -> List[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.path.split("?", 1)[0] == path]

    def _enter(self) -> None:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def _leave(self) -> None:
        with self.lock:
            self.active -= 1


def loopback_config(make_config, **overrides):
    """A Config for download tests: both loopback names allowed, fast retries, small segments."""
    base = dict(allowed_hosts=["127.0.0.1:*", "localhost:*"], backoff_base=0.01, backoff_max=0.05,
                segment_min_size=4 * 1024 * 1024, download_timeout=10)
    base.update(overrides)
    return make_config(**base)
