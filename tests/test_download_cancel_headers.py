"""Red team: cancel and Ctrl-C stop a download within 2 s also while the server has accepted
the connection but not sent its response headers (a silent server, or one that answers only
after 30 s), single-stream and segmented.  The request's socket is shut down by the cancel
watcher of ``net.session.send``; the engine reports DownloadCancelledError, no retry.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest

from comfyfixersmart.download import DownloadManager
from dlserver import loopback_config
from dlserver.fixtures import dest  # noqa: F401

SIZE = 32 * 1024 * 1024  # four segments of at least MIN_PIECE
CANCEL_BOUND = 2.0


class HoldingServer:
    """A raw HTTP server on 127.0.0.1: the first ``answered`` requests get 206 headers (and then
    no body byte); the others get nothing, or their headers after ``headers_after`` seconds."""

    def __init__(self, *, answered: int = 0, headers_after: float = 0.0):
        self.answered = answered
        self.headers_after = headers_after
        self.heads: list = []
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._conns: list = []
        self._threads: list = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._accepting = threading.Thread(target=self._accept, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self):
        self._accepting.start()
        return self

    def __exit__(self, *exc):
        self._closing.set()
        self._accepting.join(5)
        for t in self._threads:
            t.join(5)
        for c in self._conns:
            c.close()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        head = b""
        while b"\r\n\r\n" not in head and not self._closing.is_set():
            try:
                got = conn.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if not got:
                return
            head += got
        with self._lock:
            self.heads.append(head)
            answer = len(self.heads) <= self.answered
        if not answer:
            if not self.headers_after or self._closing.wait(self.headers_after):
                return  # never answers (the socket stays open until the server closes)
        try:
            # 206 to the first "bytes=0-": the engine then splits the file into segments
            conn.sendall(b"HTTP/1.1 206 Partial Content\r\nContent-Length: %d\r\nAccept-Ranges: bytes\r\n"
                         b"Content-Range: bytes 0-%d/%d\r\nETag: \"x\"\r\n\r\n" % (SIZE, SIZE - 1, SIZE))
        except OSError:
            pass
        self._closing.wait()  # and then no body byte


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def watchers() -> list:
    return [t for t in threading.enumerate() if t.name == "cfs-cancel-watch"]


@pytest.fixture
def manager(make_config):
    config = loopback_config(make_config, download_timeout=60, http_retries=3,
                             chunk_size=64 * 1024, segment_min_size=64 * 1024)
    with DownloadManager(config) as mgr:
        yield mgr


CASES = {
    # accepted, never answers
    "silent": dict(answered=0),
    # answers its headers only after 30 s
    "late": dict(answered=0, headers_after=30.0),
    # segmented: the first request is answered (its body never comes), the ranges are not
    "segmented": dict(answered=1),
}


@pytest.mark.parametrize("how", sorted(CASES))
@pytest.mark.parametrize("via", ["cancel", "event"])
def test_cancel_before_the_headers_returns_within_two_seconds(manager, dest, how, via):
    manager.config.download_segments = 4 if how == "segmented" else 1
    event = threading.Event() if via == "event" else None
    out = {}
    with HoldingServer(**CASES[how]) as srv:
        def run():
            out["result"] = manager.download_model(srv.url("/m.safetensors"), dest / "m.safetensors",
                                                   cancel_event=event)
            out["returned"] = time.monotonic()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        # waiting for headers: one request (single) or the ranges after the first (segmented)
        wait_for(lambda: len(srv.heads) >= (3 if how == "segmented" else 1))
        time.sleep(0.3)
        cancelled = time.monotonic()
        if event is not None:
            event.set()
        else:
            assert manager.cancel() == 1
        thread.join(15)
        assert not thread.is_alive()
        took = out["returned"] - cancelled
        assert took < CANCEL_BOUND, took
        result = out["result"]
        assert not result.success and result.error_type == "DownloadCancelledError", result.error_message
        requests_seen = len(srv.heads)
        if how != "segmented":
            assert requests_seen == 1  # a cancel is no network error: no retry
    assert sorted(p.name for p in dest.iterdir()) == []  # an explicit cancel discards
    wait_for(lambda: not watchers(), timeout=10)  # no watcher thread is left running


@pytest.mark.parametrize("how", ["silent", "segmented"])
def test_ctrl_c_before_the_headers_on_the_main_thread(manager, dest, how):
    manager.config.download_segments = 4 if how == "segmented" else 1
    with HoldingServer(**CASES[how]) as srv:
        stamp = {}

        def go():
            wait_for(lambda: len(srv.heads) >= (3 if how == "segmented" else 1))
            time.sleep(0.3)
            stamp["at"] = time.monotonic()
            # a real SIGINT (as from the terminal): the kernel gives it to the main thread,
            # whose blocked recv returns EINTR; _thread.interrupt_main() only sets Python's
            # flag, which a thread blocked in C does not see until its call returns
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=go, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            manager.download_model(srv.url("/m.safetensors"), dest / "m.safetensors")
        assert time.monotonic() - stamp["at"] < CANCEL_BOUND
    assert not (dest / "m.safetensors").exists()
    wait_for(lambda: not watchers(), timeout=10)


def test_a_request_answered_in_time_is_unaffected(manager, dest):
    """The watcher of a finished request ends and never touches the connection again."""
    from comfyfixersmart.net.session import make_session, send

    with HoldingServer(answered=1) as srv:
        event = threading.Event()
        session = make_session(manager.config, purpose="download")
        resp = send(session, "GET", srv.url("/m"), manager.config, cancel=event)
        assert resp.status_code == 206 and resp.headers["Content-Length"] == str(SIZE)
        wait_for(lambda: not watchers(), timeout=10)
        event.set()  # a cancel after the headers is the body reader's business
        time.sleep(0.3)
        assert resp.raw._fp.fp is not None  # the connection was not shut
        resp.close()
        session.close()
