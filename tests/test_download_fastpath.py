"""The single-stream fast path (socket -> pooled buffer -> pwrite -> sha256 thread) and
the segmented prefix hashing, against real loopback servers."""

from __future__ import annotations

import gzip
import os
import socket
import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import List, Optional

import pytest
from dlserver import loopback_config, payload
from dlserver.fixtures import dest, platform_api, server, sha  # noqa: F401
from hypothesis import given, settings
from hypothesis import strategies as st

from comfyfixersmart.download import DownloadManager, engine
from comfyfixersmart.download.engine import contiguous_prefix
from comfyfixersmart.download.http import BodyReader, TruncatedError, is_transient, make_session, open_url
from comfyfixersmart.download.partfile import Segment, part_path, sidecar_path
from comfyfixersmart.download.verify import PrefixHasher, StreamHasher
from comfyfixersmart.errors import DownloadCancelledError

MB = 1024 * 1024





# -- a tiny server for what FileServer does not do: chunked bodies, client ports ---------

class _Wire(ThreadingHTTPServer):
    daemon_threads = True
    body = b""
    chunked = False
    ports: List[int]


class _WireHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Wire

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        self.server.ports.append(self.client_address[1])
        body = self.server.body
        self.send_response(200)
        if self.server.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 100_000):
                piece = body[i:i + 100_000]
                self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@pytest.fixture
def wire():
    srv = _Wire(("127.0.0.1", 0), _WireHandler)
    srv.ports = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def wire_url(srv: _Wire, path: str = "/f") -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"


def read_all(reader: BodyReader, size: int = 64 * 1024) -> bytes:
    out = bytearray()
    buf = memoryview(bytearray(size))
    while True:
        n = reader.readinto(buf)
        if not n:
            return bytes(out)
        out += buf[:n]


# -- BodyReader ----------------------------------------------------------------------------

def test_identity_body_takes_the_fast_path_and_stops_at_content_length(server, make_config):
    data = payload(3 * MB + 7)
    server.add("/f", data)
    config = loopback_config(make_config)
    with make_session(config) as session:
        opened = open_url(session, server.url("/f"), config)
        try:
            reader = BodyReader(opened)
            assert reader.fast
            assert read_all(reader) == data
            assert reader.readinto(memoryview(bytearray(10))) == 0  # stays ended
        finally:
            opened.close()


def test_gzip_body_falls_back_to_the_decoding_reader(server, make_config):
    data = payload(300_000)
    server.add("/z", gzip.compress(data), headers={"Content-Encoding": "gzip"})
    config = loopback_config(make_config)
    with make_session(config) as session:
        opened = open_url(session, server.url("/z"), config)
        try:
            reader = BodyReader(opened, fallback_chunk=50_000)
            assert not reader.fast
            assert read_all(reader) == data
        finally:
            opened.close()


def test_chunked_body_is_read_whole_through_the_fallback(wire, make_config, dest):
    wire.body = payload(2 * MB + 3)
    wire.chunked = True
    config = loopback_config(make_config)
    with make_session(config) as session:
        opened = open_url(session, wire_url(wire), config)
        try:
            reader = BodyReader(opened)
            assert not reader.fast
            assert read_all(reader) == wire.body
        finally:
            opened.close()
    with DownloadManager(loopback_config(make_config, download_segments=1)) as m:
        result = m.download_model(wire_url(wire), dest / "c.safetensors", expected_sha256=sha(wire.body))
    assert result.success, result.error_message


def test_fast_path_hands_the_connection_back_for_the_next_download(wire, make_config, dest):
    wire.body = payload(2 * MB)
    with DownloadManager(loopback_config(make_config, download_segments=1)) as m:
        for name in ("a", "b", "c"):
            result = m.download_model(wire_url(wire, "/" + name), dest / f"{name}.safetensors",
                                      expected_sha256=sha(wire.body))
            assert result.success, result.error_message
    # like urllib3's own reads: a body read to its end leaves a reusable keep-alive connection
    assert len(wire.ports) == 3 and len(set(wire.ports)) == 1


def test_a_dropped_socket_is_a_transient_truncated_error(make_config):
    """A raw socket server that sends half the promised body, then resets."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 400_000)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()  # linger 0: an RST, like a dying proxy

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    config = loopback_config(make_config)
    with make_session(config) as session:
        opened = open_url(session, f"http://127.0.0.1:{port}/f", config)
        try:
            reader = BodyReader(opened)
            assert reader.fast
            buf = memoryview(bytearray(MB))
            with pytest.raises(TruncatedError) as caught:
                while reader.readinto(buf):
                    pass
        finally:
            opened.close()
    t.join(5)
    listener.close()
    assert is_transient(caught.value)  # the engine resumes it with Range
    assert "ConnectionResetError" in str(caught.value)


# -- the engine's single stream --------------------------------------------------------------

@pytest.mark.usefixtures("platform_api")  # again as on Windows (dlserver.portable)
def test_bytes_before_a_drop_are_all_on_disk_for_the_resume(server, make_config, dest):
    data = payload(5 * MB + 11)
    cut = 3 * MB + 12345  # mid-buffer on purpose
    server.add("/f", data, drop_after=cut, drops=1)
    with DownloadManager(loopback_config(make_config, download_segments=1)) as m:
        result = m.download_model(server.url("/f"), dest / "f.safetensors", expected_sha256=sha(data))
    assert result.success, result.error_message
    assert result.resumed_from == cut
    assert [r.header("Range") for r in server.requests_for("/f")] == ["bytes=0-", f"bytes={cut}-"]
    assert (dest / "f.safetensors").read_bytes() == data


def test_bytes_before_a_read_timeout_are_written_before_the_error(make_config, dest):
    """The server stalls mid-buffer: the reads completed before the timeout are kept and
    resumed (only the read cut by the timeout, a few KiB on a slow link, is fetched again)."""
    data = payload(3 * MB)
    cut = 300_001  # well inside the first buffer
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(2)
    port = listener.getsockname()[1]
    ranges: List[str] = []

    def serve():
        for attempt in range(2):
            conn, _ = listener.accept()
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(65536)
            rng = [ln.split(b":", 1)[1].strip().decode() for ln in head.split(b"\r\n")
                   if ln.lower().startswith(b"range:")]
            ranges.append(rng[0] if rng else "")
            common = 'ETag: "v1"\r\nAccept-Ranges: bytes\r\n'.encode()
            if attempt == 0:
                conn.sendall(b"HTTP/1.1 206 Partial Content\r\n" + common
                             + f"Content-Range: bytes 0-{len(data) - 1}/{len(data)}\r\n"
                               f"Content-Length: {len(data)}\r\n\r\n".encode() + data[:cut])
                conn.settimeout(10)
                try:
                    conn.recv(1)  # stall until the client gives up and closes
                except OSError:
                    pass
            else:
                start = int(ranges[-1].split("=")[1].split("-")[0])
                conn.sendall(b"HTTP/1.1 206 Partial Content\r\n" + common
                             + f"Content-Range: bytes {start}-{len(data) - 1}/{len(data)}\r\n"
                               f"Content-Length: {len(data) - start}\r\n\r\n".encode() + data[start:])
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    config = loopback_config(make_config, download_segments=1, download_timeout=1)
    try:
        with DownloadManager(config) as m:
            result = m.download_model(f"http://127.0.0.1:{port}/f", dest / "f.safetensors",
                                      expected_sha256=sha(data))
    finally:
        t.join(5)
        listener.close()
    assert result.success, result.error_message
    assert 0 < result.resumed_from <= cut
    assert ranges == ["bytes=0-", f"bytes={result.resumed_from}-"]
    assert (dest / "f.safetensors").read_bytes() == data


@pytest.mark.usefixtures("platform_api")  # again as on Windows (dlserver.portable)
def test_many_buffers_verified_with_a_small_writeback_window(server, make_config, dest, monkeypatch):
    monkeypatch.setattr(engine, "WRITEBACK_WINDOW", 256 * 1024)  # many sync_file_range calls
    data = payload(24 * MB + 5)
    server.add("/big", data)
    with DownloadManager(loopback_config(make_config, download_segments=1)) as m:
        result = m.download_model(server.url("/big"), dest / "big.safetensors", expected_sha256=sha(data))
    assert result.success and result.verified and result.sha256 == sha(data)
    assert (dest / "big.safetensors").read_bytes() == data


@pytest.mark.usefixtures("platform_api")  # again as on Windows (dlserver.portable)
def test_no_hash_path_writes_the_same_bytes(server, make_config, dest):
    data = payload(6 * MB + 1)
    server.add("/f", data)
    with DownloadManager(loopback_config(make_config, download_segments=1, verify_downloads=False)) as m:
        result = m.download_model(server.url("/f"), dest / "f.safetensors")
    assert result.success and result.sha256 is None and not result.verified
    assert (dest / "f.safetensors").read_bytes() == data


def test_memory_stays_bounded_while_streaming(server, make_config, dest):
    data = payload(48 * MB)
    server.add("/f", data)
    expected = sha(data)
    with DownloadManager(loopback_config(make_config, download_segments=1)) as m:
        tracemalloc.start()
        try:
            result = m.download_model(server.url("/f"), dest / "f.safetensors", expected_sha256=expected)
            _now, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.success, result.error_message
    pool = engine.STREAM_BUFFER * (engine.HASH_BUFFERS + 1)
    assert peak < pool + 8 * MB, f"peak {peak / MB:.1f} MiB for a 48 MiB download"


def test_slow_body_still_reports_progress_and_cancels_mid_buffer(server, make_config, dest):
    # 64 KB/s: a 1 MiB buffer would take 16 s to fill; progress and cancel must not wait for it
    # (at 256 KB/s the buffer took 4 s against a 3 s bound: too close on a busy machine)
    server.add("/slow", payload(4 * MB), rate=64 * 1024)
    cancel = threading.Event()
    seen: List[int] = []
    started: List[float] = []

    def on_event(ev):
        if ev.state == "downloading" and ev.downloaded:
            seen.append(ev.downloaded)
            if not started:
                started.append(time.monotonic())
            if ev.downloaded >= 128 * 1024:
                cancel.set()

    target = dest / "slow.safetensors"
    t0 = time.monotonic()
    with DownloadManager(loopback_config(make_config, download_segments=1)) as m:
        result = m.download_model(server.url("/slow"), target, on_event=on_event, cancel_event=cancel)
    assert result.error_type == "DownloadCancelledError"
    assert seen and seen[0] < engine.STREAM_BUFFER
    assert time.monotonic() - t0 < 8.0  # 128 KiB arrive in ~1 s; a full buffer would take 16 s
    assert not target.exists() and not part_path(target).exists() and not sidecar_path(target).exists()


# -- StreamHasher pool -------------------------------------------------------------------------

def test_pooled_hasher_matches_hashlib_and_reuses_its_buffers():
    data = payload(3 * MB + 100)
    hasher = StreamHasher(buffer_size=64 * 1024, buffers=3).start()
    seen = set()
    for i in range(0, len(data), 64 * 1024):
        buf = hasher.acquire()
        seen.add(id(buf))
        piece = data[i:i + 64 * 1024]
        buf[:len(piece)] = piece
        hasher.feed(buf, len(piece))
    hasher.feed(b"tail")  # plain bytes still work
    assert hasher.result() == sha(data + b"tail")
    assert len(seen) <= 3


def test_pooled_hasher_blocks_the_feeder_when_every_buffer_is_in_use():
    hasher = StreamHasher(buffer_size=1024, buffers=2).start()
    held = [hasher.acquire(), hasher.acquire()]
    got: List[Optional[bytearray]] = []
    waiter = threading.Thread(target=lambda: got.append(hasher.acquire()), daemon=True)
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and not got  # back-pressure: no third buffer is made
    hasher.feed(held[0], 10)
    waiter.join(2)
    assert got and got[0] is held[0]
    hasher.abort()


def test_pooled_hasher_resumed_prefix_then_buffers(tmp_path):
    data = payload(2 * MB)
    part = tmp_path / "p"
    part.write_bytes(data[:MB + 3])
    hasher = StreamHasher(buffer_size=4096, buffers=2).start(part, MB + 3)
    rest = data[MB + 3:]
    for i in range(0, len(rest), 4096):
        buf = hasher.acquire()
        piece = rest[i:i + 4096]
        buf[:len(piece)] = piece
        hasher.feed(buf, len(piece))
    assert hasher.result() == sha(data)


def test_hasher_error_still_releases_buffers(tmp_path):
    # the resumed prefix is missing: the helper fails, but feeders must never hang
    hasher = StreamHasher(buffer_size=1024, buffers=2).start(tmp_path / "missing", 10)
    for _ in range(10):
        buf = hasher.acquire()
        hasher.feed(buf, 5)
    with pytest.raises(FileNotFoundError):
        hasher.result()


# -- segmented: prefix hashing -----------------------------------------------------------------

def test_contiguous_prefix_examples():
    assert contiguous_prefix([]) == 0
    assert contiguous_prefix([Segment(0, 9, 10), Segment(10, 19, 3)]) == 13
    assert contiguous_prefix([Segment(10, 19, 10), Segment(0, 9, 4)]) == 4  # order-free
    assert contiguous_prefix([Segment(0, 9, 10), Segment(10, 19, 10), Segment(20, 29, 0)]) == 20
    assert contiguous_prefix([Segment(5, 9, 5)]) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 50), st.integers(0, 60)), min_size=1, max_size=8), st.randoms())
def test_contiguous_prefix_matches_a_byte_map(pieces, rnd):
    segments, start = [], 0
    for length, done in pieces:
        segments.append(Segment(start, start + length - 1, min(done, length)))
        start += length
    written = bytearray(start)
    for s in segments:
        written[s.start:s.start + s.done] = b"\1" * s.done
    oracle = written.find(0) if 0 in written else len(written)
    rnd.shuffle(segments)
    assert contiguous_prefix(segments) == oracle


def test_prefix_hasher_hashes_while_the_file_grows(tmp_path):
    data = payload(6 * MB)
    path = tmp_path / "part"
    path.write_bytes(b"\0" * len(data))  # preallocated, like a segmented part
    hasher = PrefixHasher(path).start()
    with open(path, "r+b") as fh:
        for i in range(0, len(data), MB):
            fh.seek(i)
            fh.write(data[i:i + MB])
            fh.flush()
            hasher.extend(i + MB)
            if i == 3 * MB:
                deadline = time.monotonic() + 5
                while hasher.hashed < 4 * MB:  # hashing keeps up before the end
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
    assert hasher.result(len(data)) == sha(data)


def test_prefix_hasher_reports_a_short_file_and_cancel(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(b"abc")
    with pytest.raises(OSError):
        PrefixHasher(path).start().result(10)
    cancel = threading.Event()
    cancel.set()
    path.write_bytes(b"x" * MB)
    hasher = PrefixHasher(path, cancel).start()
    with pytest.raises(DownloadCancelledError):
        hasher.result(MB)


@pytest.mark.usefixtures("platform_api")  # again as on Windows (dlserver.portable)
def test_segmented_download_verified_from_the_prefix_hash(server, make_config, dest):
    data = payload(16 * MB + 9)
    server.add("/seg", data, rate=16 * MB)
    config = loopback_config(make_config, download_segments=4, segment_min_size=4 * MB)
    with DownloadManager(config) as m:
        good = m.download_model(server.url("/seg"), dest / "s.safetensors", expected_sha256=sha(data))
        assert good.success and good.verified and good.sha256 == sha(data), good.error_message
        # the same bytes against a wrong expectation: the prefix hash must catch it
        bad = m.download_model(server.url("/seg"), dest / "t.safetensors", expected_sha256=sha(data[:-1]))
    assert not bad.success and bad.error_type == "IntegrityError"
    assert (dest / "s.safetensors").read_bytes() == data
    assert sorted(p.name for p in dest.iterdir()) == ["s.safetensors"]
    assert len([r for r in server.requests_for("/seg") if r.header("Range") != "bytes=0-"]) >= 3


def test_sync_file_range_helper_is_harmless(tmp_path):
    start = engine._sync_file_range()
    if start is None:
        pytest.skip("no sync_file_range on this OS")
    path = tmp_path / "w"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"x" * 100_000)
        start(fd, 0, 100_000)
        start(fd, 0, 0)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"x" * 100_000
