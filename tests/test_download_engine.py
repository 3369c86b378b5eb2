"""The download engine against an adversarial local server: resume, restarts, integrity."""

from __future__ import annotations

import json
import threading
import time

import pytest

from comfyfixersmart.download import DownloadManager
from comfyfixersmart.download.partfile import PartInfo, Segment, part_path, save, sidecar_path
from dlserver import loopback_config, payload
from dlserver.fixtures import dest, platform_api, server, sha  # noqa: F401

# every test here runs twice: with this system's APIs and as on Windows (dlserver.portable)
pytestmark = pytest.mark.usefixtures("platform_api")

MB = 1024 * 1024




@pytest.fixture
def manager(make_config):
    with DownloadManager(loopback_config(make_config)) as m:
        yield m



def leftovers(target):
    return [p.name for p in target.parent.iterdir() if p.name != target.name]


def test_plain_download_verified_and_atomic(server, manager, dest):
    data = payload(3 * MB + 17)
    server.add("/m.safetensors", data)
    target = dest / "models" / "sub" / "m.safetensors"
    calls = []
    result = manager.download_model(server.url("/m.safetensors"), target, lambda *a: calls.append(a),
                                    expected_sha256=sha(data).upper(), expected_size=len(data))
    assert result.success, result.error_message
    assert result.verified and result.sha256 == sha(data)
    assert result.size_downloaded == len(data) and result.resumed_from == 0
    assert target.read_bytes() == data
    assert leftovers(target) == []
    assert calls and calls[-1] == ("m.safetensors", len(data), len(data))


def test_sha256_computed_without_expectation(server, manager, dest):
    data = payload(1000)
    server.add("/f", data)
    result = manager.download_model(server.url("/f"), dest / "f.safetensors")
    assert result.success and not result.verified and result.sha256 == sha(data)


def test_wrong_hash_removes_part_and_reports_integrity(server, manager, dest):
    data = payload(2 * MB)
    server.add("/f", data)
    target = dest / "f.safetensors"
    result = manager.download_model(server.url("/f"), target, expected_sha256="0" * 64)
    assert not result.success
    assert result.error_type == "IntegrityError"
    assert "sha256 mismatch" in result.error_message
    assert list(dest.iterdir()) == []


def test_announced_size_differs_from_expected_fails_before_download(server, manager, dest):
    server.add("/f", payload(3 * MB))
    target = dest / "f.safetensors"
    result = manager.download_model(server.url("/f"), target, expected_size=123)
    assert result.error_type == "IntegrityError"
    assert list(dest.iterdir()) == []
    assert result.size_downloaded == 0


def test_dropped_connection_resumes_with_range(server, manager, dest):
    data = payload(6 * MB)
    server.add("/f", data, drop_after=2 * MB + 5000, drops=2, headers={"Accept-Ranges": "bytes"})
    manager.config.download_segments = 1
    target = dest / "f.safetensors"
    result = manager.download_model(server.url("/f"), target, expected_sha256=sha(data))
    assert result.success, result.error_message
    assert target.read_bytes() == data
    ranges = [r.header("Range") for r in server.requests_for("/f")]
    assert ranges[0] == "bytes=0-"
    assert len(ranges) == 3 and all(r and not r.startswith("bytes=0-") for r in ranges[1:])
    # the resumed requests carry the validator so a changed file is not spliced
    assert all(r.header("If-Range") for r in server.requests_for("/f")[1:])


def test_drop_without_retries_keeps_part_for_next_run(server, make_config, dest):
    data = payload(5 * MB)
    res = server.add("/f", data, drop_after=3 * MB, drops=1)

    def outage(_rec):  # after the drop the server is down (500) until we say so
        if len(server.requests_for("/f")) > 1:
            res.status = 500
    res.hook = outage
    target = dest / "f.safetensors"
    with DownloadManager(loopback_config(make_config, http_retries=0, download_segments=1)) as m:
        first = m.download_model(server.url("/f"), target)
        assert not first.success and first.error_type == "DownloadError"
        res.hook, res.status = None, None
        assert not target.exists()
        kept = part_path(target).stat().st_size
        assert 0 < kept <= 3 * MB
        info = json.loads(sidecar_path(target).read_text())
        assert info["url"] == server.url("/f") and info["etag"] == res.current_etag()
        second = m.download_model(server.url("/f"), target, expected_sha256=sha(data))
    assert second.success, second.error_message
    assert second.resumed_from == kept
    assert second.size_downloaded == len(data) - kept
    assert server.requests_for("/f")[-1].header("Range") == f"bytes={kept}-"
    assert target.read_bytes() == data and leftovers(target) == []


def _leave_part(target, data, cut, url, etag, **kw):
    part_path(target).write_bytes(data[:cut])
    save(sidecar_path(target), PartInfo(url=url, etag=etag, total=len(data), **kw))


def test_server_ignoring_range_restarts_cleanly(server, manager, dest):
    data = payload(3 * MB)
    res = server.add("/f", data, ranges=False)
    target = dest / "f.safetensors"
    # a part file of garbage: if the engine appended the 200 body to it, the hash would fail
    part_path(target).write_bytes(b"x" * MB)
    save(sidecar_path(target), PartInfo(url=server.url("/f"), etag=res.current_etag(), total=len(data)))
    result = manager.download_model(server.url("/f"), target, expected_sha256=sha(data))
    assert result.success, result.error_message
    assert result.resumed_from == 0
    assert target.read_bytes() == data and leftovers(target) == []


def test_changed_etag_restarts(server, manager, dest):
    old, new = payload(3 * MB, seed=1), payload(3 * MB, seed=2)
    server.add("/f", new, etag='"v2"', if_range=False)  # a server that ignores If-Range
    target = dest / "f.safetensors"
    _leave_part(target, old, MB, server.url("/f"), '"v1"')
    result = manager.download_model(server.url("/f"), target)
    assert result.success, result.error_message
    assert target.read_bytes() == new
    ranges = [r.header("Range") for r in server.requests_for("/f")]
    assert ranges == [f"bytes={MB}-", "bytes=0-"]


def test_changed_file_with_if_range_gets_full_body(server, manager, dest):
    old, new = payload(2 * MB, seed=1), payload(2 * MB, seed=2)
    server.add("/f", new, etag='"v2"')
    target = dest / "f.safetensors"
    _leave_part(target, old, MB, server.url("/f"), '"v1"')
    result = manager.download_model(server.url("/f"), target)
    assert result.success and target.read_bytes() == new
    assert len(server.requests_for("/f")) == 1  # If-Range mismatch -> 200 -> start over in one go


def test_416_on_complete_part_finishes_without_refetch(server, manager, dest):
    data = payload(MB)
    res = server.add("/f", data)
    target = dest / "f.safetensors"
    _leave_part(target, data, len(data), server.url("/f"), res.current_etag())
    result = manager.download_model(server.url("/f"), target, expected_sha256=sha(data))
    assert result.success and result.verified
    assert result.size_downloaded == 0 and result.resumed_from == len(data)
    assert server.requests_for("/f")[0].status == 416
    assert target.read_bytes() == data


def test_416_on_part_longer_than_file_restarts(server, manager, dest):
    data = payload(MB)
    res = server.add("/f", data)
    target = dest / "f.safetensors"
    part_path(target).write_bytes(b"y" * (2 * MB))
    save(sidecar_path(target), PartInfo(url=server.url("/f"), etag=res.current_etag(), total=None))
    result = manager.download_model(server.url("/f"), target, expected_sha256=sha(data))
    assert result.success, result.error_message
    assert target.read_bytes() == data


def test_sidecar_for_another_url_is_not_trusted(server, manager, dest):
    data = payload(2 * MB)
    server.add("/f", data)
    target = dest / "f.safetensors"
    _leave_part(target, b"z" * len(data), MB, server.url("/other"), None)
    result = manager.download_model(server.url("/f"), target)
    assert result.success and target.read_bytes() == data
    assert server.requests_for("/f")[0].header("Range") == "bytes=0-"


def test_segmented_download_uses_parallel_ranges(server, make_config, dest):
    data = payload(16 * MB + 3)
    # each connection capped at 4 MB/s: each segment takes ~1 s, so they overlap even when
    # the workers start late on a loaded machine
    server.add("/big.safetensors", data, rate=4 * MB)
    cfg = loopback_config(make_config, download_segments=4, segment_min_size=4 * MB)
    target = dest / "big.safetensors"
    started = time.monotonic()
    with DownloadManager(cfg) as m:
        result = m.download_model(server.url("/big.safetensors"), target, expected_sha256=sha(data))
    elapsed = time.monotonic() - started
    assert result.success, result.error_message
    assert target.read_bytes() == data and leftovers(target) == []
    ranges = sorted(r.header("Range") for r in server.requests_for("/big.safetensors"))
    assert len(ranges) >= 4
    # parallel bodies in flight prove the segments (a wall-clock bound would fail under load)
    assert server.max_active >= 3
    assert elapsed < 30


def test_segmented_resume_continues_each_segment(server, make_config, dest):
    data = payload(12 * MB)
    res = server.add("/f", data)
    target = dest / "f.safetensors"
    segs = [Segment(0, 4 * MB - 1, MB), Segment(4 * MB, 8 * MB - 1, 4 * MB), Segment(8 * MB, 12 * MB - 1, 0)]
    part = bytearray(len(data))
    part[0:MB] = data[0:MB]
    part[4 * MB:8 * MB] = data[4 * MB:8 * MB]
    part_path(target).write_bytes(bytes(part))
    save(sidecar_path(target), PartInfo(url=server.url("/f"), etag=res.current_etag(), total=len(data),
                                        mode="segmented", segments=segs))
    with DownloadManager(loopback_config(make_config)) as m:
        result = m.download_model(server.url("/f"), target, expected_sha256=sha(data))
    assert result.success, result.error_message
    assert result.resumed_from == 5 * MB and result.size_downloaded == 7 * MB
    ranges = sorted(r.header("Range") for r in server.requests_for("/f"))
    assert f"bytes={MB}-{4 * MB - 1}" in ranges and f"bytes={8 * MB}-{12 * MB - 1}" in ranges
    assert not any(r.startswith(f"bytes={4 * MB}") for r in ranges)
    assert target.read_bytes() == data


def test_segmented_with_a_changed_file_restarts(server, make_config, dest):
    data = payload(8 * MB, seed=3)
    server.add("/f", data, etag='"new"', if_range=False)
    target = dest / "f.safetensors"
    part_path(target).write_bytes(b"\0" * len(data))
    save(sidecar_path(target), PartInfo(url=server.url("/f"), etag='"old"', total=len(data), mode="segmented",
                                        segments=[Segment(0, 4 * MB - 1, MB), Segment(4 * MB, 8 * MB - 1, 0)]))
    with DownloadManager(loopback_config(make_config)) as m:
        result = m.download_model(server.url("/f"), target, expected_sha256=sha(data))
    assert result.success, result.error_message
    assert target.read_bytes() == data


def test_segment_dropped_mid_stream_is_retried(server, make_config, dest):
    data = payload(16 * MB)
    server.add("/f", data, drop_after=MB + 100, drops=3)
    with DownloadManager(loopback_config(make_config)) as m:
        result = m.download_model(server.url("/f"), dest / "f.safetensors", expected_sha256=sha(data))
    assert result.success, result.error_message
    assert (dest / "f.safetensors").read_bytes() == data


def test_hf_linked_etag_is_used_as_expected_sha256(server, manager, dest):
    """HF's resolve hop promises the LFS sha256 (X-Linked-Etag) before redirecting to the CDN."""
    data = payload(MB)
    server.add("/cdn/m", data)
    hop = server.add("/repo/resolve/main/m.safetensors", redirect=server.url("/cdn/m"),
                     headers={"X-Linked-Etag": '"' + "a" * 64 + '"', "X-Repo-Commit": "c" * 40,
                              "X-Linked-Size": str(len(data))})
    target = dest / "m.safetensors"
    result = manager.download_model(server.url("/repo/resolve/main/m.safetensors"), target)
    assert result.error_type == "IntegrityError"  # the promised sha256 was checked
    assert not target.exists()
    hop.headers["X-Linked-Etag"] = '"' + sha(data) + '"'
    result = manager.download_model(server.url("/repo/resolve/main/m.safetensors"), target)
    assert result.success and result.verified and target.read_bytes() == data


@pytest.mark.parametrize("status,body,headers,error_type", [
    (401, b'{"error":"Unauthorized"}', {}, "AuthRequiredError"),
    (403, b'{"error":"Early Access","deadline":"2030-01-01"}', {}, "EarlyAccessError"),
    (403, b"", {"X-Error-Code": "GatedRepo", "X-Error-Message": "gated"}, "GatedRepoError"),
    (404, b'{"error":"Model not found"}', {}, "NotFoundError"),
    (410, b"", {}, "NotFoundError"),
    (500, b"boom", {}, "DownloadError"),
])
def test_http_errors_map_to_our_exceptions(server, manager, dest, status, body, headers, error_type):
    server.add("/e", status=status, body=body, headers=headers)
    result = manager.download_model(server.url("/e"), dest / "e.safetensors")
    assert not result.success and result.error_type == error_type
    assert str(status) in result.error_message
    assert list(dest.iterdir()) == []


def test_429_is_retried_then_succeeds(server, manager, dest):
    data = payload(1000)
    res = server.add("/f", data, status=429, headers={"Retry-After": "0"})

    def heal(_rec):
        if len(server.requests_for("/f")) >= 2:
            res.status = None
    res.hook = heal
    result = manager.download_model(server.url("/f"), dest / "f.safetensors")
    assert result.success, result.error_message


def test_existing_file_is_skipped_when_verified_and_never_overwritten_otherwise(server, manager, dest):
    data = payload(1000)
    server.add("/f", data)
    target = dest / "f.safetensors"
    target.write_bytes(data)
    skipped = manager.download_model(server.url("/f"), target, expected_sha256=sha(data))
    assert skipped.success and skipped.skipped and skipped.verified
    target.write_bytes(b"old content")
    conflict = manager.download_model(server.url("/f"), target, expected_sha256=sha(data))
    assert not conflict.success and conflict.error_type == "FileExistsConflictError"
    assert target.read_bytes() == b"old content"
    assert server.requests_for("/f") == []
    # overwrite, but the new bytes fail verification: the old file survives
    bad = manager.download_model(server.url("/f"), target, expected_sha256="1" * 64, overwrite=True)
    assert bad.error_type == "IntegrityError" and target.read_bytes() == b"old content"
    good = manager.download_model(server.url("/f"), target, expected_sha256=sha(data), overwrite=True)
    assert good.success and target.read_bytes() == data


def test_cancel_mid_download_leaves_nothing_under_final_name(server, manager, dest):
    data = payload(8 * MB)
    server.add("/slow", data, rate=2 * MB, ranges=False)
    target = dest / "slow.safetensors"
    cancel = threading.Event()
    events = []

    def on_event(ev):
        events.append(ev)
        if ev.downloaded > MB:
            cancel.set()

    result = manager.download_model(server.url("/slow"), target, on_event=on_event, cancel_event=cancel)
    assert not result.success and result.error_type == "DownloadCancelledError"
    assert not target.exists() and list(dest.iterdir()) == []
    assert events[-1].state == "cancelled"


def test_cancel_by_key_from_another_thread(server, manager, dest):
    server.add("/slow", payload(8 * MB), rate=2 * MB)
    target = dest / "slow.safetensors"
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", manager.download_model(server.url("/slow"), target)))
    t.start()
    deadline = time.monotonic() + 5
    while not part_path(target).exists() or part_path(target).stat().st_size == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert manager.cancel(str(target)) == 1
    t.join(5)
    assert out["r"].error_type == "DownloadCancelledError"
    assert list(dest.iterdir()) == []


def test_progress_events_are_throttled_and_complete(server, manager, dest):
    data = payload(8 * MB)
    server.add("/f", data, rate=16 * MB, ranges=False)
    events = []
    result = manager.download_model(server.url("/f"), dest / "f.safetensors", on_event=events.append)
    assert result.success
    states = [e.state for e in events]
    assert states[0] == "queued" and states[-1] == "done"
    assert "connecting" in states and "downloading" in states and "verifying" in states
    moving = [e for e in events if e.state == "downloading"]
    assert 1 <= len(moving) <= 4 / 0.25 + 3  # ~0.5 s at <= 4 events/s
    assert all(e.total == len(data) for e in moving)
    assert [e.downloaded for e in moving] == sorted(e.downloaded for e in moving)
    assert any(e.speed > 0 and e.eta is not None for e in moving)
    assert events[-1].downloaded == len(data)


def test_unknown_length_body_is_accepted(server, manager, dest):
    data = payload(MB + 1)
    server.add("/f", data, send_length=False, ranges=False)
    result = manager.download_model(server.url("/f"), dest / "f.safetensors", expected_sha256=sha(data))
    assert result.success, result.error_message


def test_verify_download(manager, dest):
    import struct

    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    good = dest / "ok.safetensors"
    good.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    assert manager.verify_download(good)
    assert manager.verify_download(good, sha(good.read_bytes()))
    assert not manager.verify_download(good, "0" * 64)
    truncated = dest / "cut.safetensors"
    truncated.write_bytes(good.read_bytes()[:-3])
    assert not manager.verify_download(truncated)
    assert not manager.verify_download(dest / "missing.safetensors")
    with pytest.raises(ValueError):
        manager.verify_download(good, "not-a-hash")
