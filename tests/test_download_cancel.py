"""Red team: cancel stops within 2 s, whatever the server does (trickles, goes silent, is
being retried), and a stalled body is resumed with Range, then fails clearly.

The servers are ``dlserver.FileServer`` resources that trickle 64 KiB bursts every few
seconds or go silent with the socket open.  Times are measured from the cancel (or Ctrl-C)
to the return of the call, and the bound (2 s) holds with both cores busy: the engine's
reads return at least every second (READ_TICK) whatever arrives.
"""

from __future__ import annotations

import _thread
import threading
import time

import pytest

from comfyfixersmart.download import DownloadManager
from dlserver import loopback_config, payload
from dlserver.fixtures import dest, server, sha  # noqa: F401

SIZE = 1024 * 1024
CANCEL_BOUND = 2.0


def wait_for(predicate, timeout: float = 60.0) -> None:
    """Generous: on a busy machine the download may take long to start.  A helper thread that
    gives up sends no Ctrl-C, and the test then fails far from the cause."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def started(part) -> bool:
    return part.exists() and part.stat().st_size > 0


@pytest.fixture
def manager(make_config, tmp_path):
    config = loopback_config(make_config, download_timeout=30,
                             chunk_size=64 * 1024, segment_min_size=64 * 1024)
    with DownloadManager(config) as mgr:
        yield mgr


# -- cancel -----------------------------------------------------------------------------------

SLOW_SERVERS = {
    # 64 KiB, then the next 64 KiB 4 s later: a trickle whose gaps outlast a read tick
    "trickle": dict(rate=16 * 1024),
    # 100 KiB, then nothing, socket open
    "stalled": dict(stall_after=100 * 1024),
    # the body stalls before its first byte
    "silent": dict(stall_after=0),
}


def _start(manager, server, dest, how: str, *, segmented: bool = False, cancel_event=None):
    data = payload(SIZE, seed=3)
    server.add("/m.safetensors", data, **SLOW_SERVERS[how])
    manager.config.download_segments = 4 if segmented else 1
    target = dest / "m.safetensors"
    out = {}

    def run():
        out["result"] = manager.download_model(server.url("/m.safetensors"), target, cancel_event=cancel_event)
        out["returned"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, target, out


@pytest.mark.parametrize("how", sorted(SLOW_SERVERS))
@pytest.mark.parametrize("segmented", [False, True], ids=["single", "segmented"])
def test_cancel_returns_within_two_seconds(manager, server, dest, how, segmented):
    thread, target, out = _start(manager, server, dest, how, segmented=segmented)
    part = target.with_name(target.name + ".part")
    # the body is really in flight: requested, part file open (bytes for the talkative ones)
    wait_for(lambda: server.requests_for("/m.safetensors") and part.exists()
             and (how == "silent" or started(part)))
    time.sleep(0.3)  # inside a read, not between two
    cancelled = time.monotonic()
    assert manager.cancel() == 1
    thread.join(10)
    assert not thread.is_alive()
    took = out["returned"] - cancelled
    assert took < CANCEL_BOUND, took
    result = out["result"]
    assert not result.success and result.error_type == "DownloadCancelledError"
    assert sorted(p.name for p in dest.iterdir()) == []  # an explicit cancel discards


@pytest.mark.parametrize("how", ["trickle", "stalled"])
def test_callers_cancel_event_is_noticed_as_fast(manager, server, dest, how):
    event = threading.Event()
    thread, target, out = _start(manager, server, dest, how, cancel_event=event)
    wait_for(lambda: started(target.with_name(target.name + ".part")))
    time.sleep(0.3)
    cancelled = time.monotonic()
    event.set()
    thread.join(10)
    assert out["returned"] - cancelled < CANCEL_BOUND
    assert out["result"].error_type == "DownloadCancelledError"


def test_cancel_during_the_retry_wait_is_immediate(manager, server, dest):
    # the body drops every time: the engine waits (backoff) between attempts
    manager.config.backoff_base = 20.0
    manager.config.backoff_max = 20.0
    server.add("/m.safetensors", payload(SIZE), drop_after=1000, drops=100)
    out = {}
    thread = threading.Thread(target=lambda: out.update(
        r=manager.download_model(server.url("/m.safetensors"), dest / "m.safetensors")), daemon=True)
    thread.start()
    wait_for(lambda: len(server.requests_for("/m.safetensors")) >= 1 and started(dest / "m.safetensors.part"))
    time.sleep(0.3)
    cancelled = time.monotonic()
    manager.cancel()
    thread.join(10)
    assert time.monotonic() - cancelled < CANCEL_BOUND + 0.5
    assert out["r"].error_type == "DownloadCancelledError"


def test_cancel_frees_queued_batch_items_at_once(manager, server, dest):
    """One slot, three stalled files: cancel() ends the running one and the two queued ones."""
    manager.config.download_concurrency = 1
    for name in ("a", "b", "c"):
        server.add(f"/{name}.safetensors", payload(SIZE), stall_after=0)
    out = {}

    def run():
        out["results"] = manager.download_models(
            [{"url": server.url(f"/{n}.safetensors"), "filename": f"{n}.safetensors"} for n in "abc"], dest)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_for(lambda: server.requests_for("/a.safetensors"))
    cancelled = time.monotonic()
    assert manager.cancel() == 3
    thread.join(10)
    assert time.monotonic() - cancelled < CANCEL_BOUND
    assert [r.error_type for r in out["results"]] == ["DownloadCancelledError"] * 3


# -- Ctrl-C on the main thread ----------------------------------------------------------------

def _interrupt_when(predicate) -> dict:
    stamp = {}

    def go():
        wait_for(predicate)
        time.sleep(0.3)
        stamp["at"] = time.monotonic()
        _thread.interrupt_main()

    threading.Thread(target=go, daemon=True).start()
    return stamp


@pytest.mark.parametrize("how", ["trickle", "stalled", "silent"])
@pytest.mark.parametrize("segmented", [False, True], ids=["single", "segmented"])
def test_ctrl_c_in_download_model_on_the_main_thread(manager, server, dest, how, segmented):
    server.add("/m.safetensors", payload(SIZE, seed=4), **SLOW_SERVERS[how])
    manager.config.download_segments = 4 if segmented else 1
    part = dest / "m.safetensors.part"
    stamp = _interrupt_when(lambda: server.requests_for("/m.safetensors") and part.exists()
                            and (how == "silent" or started(part)))
    with pytest.raises(KeyboardInterrupt):
        manager.download_model(server.url("/m.safetensors"), dest / "m.safetensors")
    assert time.monotonic() - stamp["at"] < CANCEL_BOUND
    if how != "silent":  # an interruption keeps what arrived: the next run resumes it
        assert started(part) and (dest / "m.safetensors.part.json").exists()
    assert not (dest / "m.safetensors").exists()


@pytest.mark.parametrize("how", ["trickle", "stalled"])
def test_ctrl_c_in_download_models_on_the_main_thread(manager, server, dest, how):
    server.add("/a.safetensors", payload(SIZE, seed=5), **SLOW_SERVERS[how])
    server.add("/b.safetensors", payload(SIZE, seed=6), **SLOW_SERVERS[how])
    manager.config.download_segments = 1  # the part's size is what arrived
    part = dest / "a.safetensors.part"
    stamp = _interrupt_when(lambda: started(part))
    with pytest.raises(KeyboardInterrupt):
        manager.download_models([{"url": server.url(f"/{n}.safetensors"), "filename": f"{n}.safetensors"}
                                 for n in "ab"], dest, concurrency=2)
    assert time.monotonic() - stamp["at"] < CANCEL_BOUND
    assert started(part)  # kept for the next run
    # the workers really stopped: nothing keeps writing after the call returned
    size = part.stat().st_size
    time.sleep(1.5)
    assert part.stat().st_size == size
    # and the next run resumes with Range
    server.resources["/a.safetensors"].rate = None
    server.resources["/a.safetensors"].stall_after = None
    result = manager.download_model(server.url("/a.safetensors"), dest / "a.safetensors")
    assert result.success and result.resumed_from == size
    assert (dest / "a.safetensors").read_bytes() == payload(SIZE, seed=5)


# -- stalls -----------------------------------------------------------------------------------

@pytest.mark.parametrize("segmented", [False, True], ids=["single", "segmented"])
def test_a_stalled_body_is_resumed_with_range(manager, server, dest, segmented):
    manager.config.stall_timeout = 1.0
    manager.config.download_segments = 4 if segmented else 1
    data = payload(SIZE, seed=7)
    server.add("/m.safetensors", data, stall_after=300 * 1024, stalls=1)
    began = time.monotonic()
    result = manager.download_model(server.url("/m.safetensors"), dest / "m.safetensors",
                                    expected_sha256=sha(data))
    assert result.success, result.error_message
    assert time.monotonic() - began < 15
    assert (dest / "m.safetensors").read_bytes() == data
    ranges = [r.header("Range") for r in server.requests_for("/m.safetensors")]
    # the stalled response's bytes were kept: one request resumed at 300 KiB (or later)
    assert any(r and r.startswith("bytes=") and int(r[6:].split("-")[0]) >= 300 * 1024 for r in ranges), ranges


@pytest.mark.parametrize("stall_after", [0, 1000, 300 * 1024])
def test_a_server_that_keeps_stalling_fails_clearly(manager, server, dest, stall_after):
    manager.config.stall_timeout = 1.0
    manager.config.http_retries = 2
    manager.config.download_segments = 1
    server.add("/m.safetensors", payload(SIZE), stall_after=stall_after)
    began = time.monotonic()
    result = manager.download_model(server.url("/m.safetensors"), dest / "m.safetensors")
    took = time.monotonic() - began
    assert not result.success and result.error_type == "DownloadStalledError"
    assert "no data for 1 s" in result.error_message and "gave up after 3 attempts" in result.error_message
    assert took < 20, took
    assert len(server.requests_for("/m.safetensors")) == 3
    assert not (dest / "m.safetensors").exists()
    if stall_after:  # each attempt resumed where the last stopped; what arrived stays resumable
        assert (dest / "m.safetensors.part").stat().st_size == 3 * stall_after


def test_stall_timeout_setting_is_validated_and_read_from_the_environment(make_config):
    from comfyfixersmart.errors import ConfigurationError
    from comfyfixersmart.settings import Config

    assert make_config().stall_timeout == 30.0
    assert Config.load(env={"COMFYFIXER_STALL_TIMEOUT": "5"}).stall_timeout == 5.0
    for bad in (0, -1, "soon"):
        with pytest.raises(ConfigurationError, match="stall_timeout"):
            make_config(stall_timeout=bad)
