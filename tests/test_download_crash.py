"""Crashes and full disks: kill -9 mid-download then resume; ENOSPC; space preflight."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from comfyfixersmart.download import DownloadManager
from comfyfixersmart.download.partfile import part_path, sidecar_path
from dlserver import loopback_config, payload
from dlserver.fixtures import platform_api, server  # noqa: F401

MB = 1024 * 1024
REPO = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent("""
    import os, sys
    if os.environ.get("CFS_PORTABLE"):  # as on Windows: see dlserver.portable
        sys.path.insert(0, os.environ["CFS_TESTS"])
        import dlserver.portable
        dlserver.portable.install()
    from comfyfixersmart.settings import Config
    from comfyfixersmart.download import DownloadManager
    url, target, state, segments = sys.argv[1:5]
    cfg = Config(allowed_hosts=["127.0.0.1:*"], state_dir=state, download_segments=int(segments),
                 segment_min_size=4 * 1024 * 1024, backoff_base=0.01)
    DownloadManager(cfg).download_model(url, target)
    print("finished unexpectedly")
""")



def _kill_when_grown(proc, target: Path, segmented: bool, min_bytes: int) -> None:
    deadline = time.monotonic() + 60  # generous: the child starts slowly on a busy machine
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if sidecar_path(target).exists():
            info = json.loads(sidecar_path(target).read_text())
            done = sum(s["done"] for s in info["segments"]) if segmented else part_path(target).stat().st_size
            if done >= min_bytes:
                proc.send_signal(signal.SIGKILL)
                proc.wait(5)
                return
        time.sleep(0.02)
    proc.kill()
    pytest.fail("the part file never grew")


@pytest.mark.parametrize("segments", [1, 4])
def test_kill_9_mid_download_then_resume(server, make_config, tmp_path, segments, platform_api):
    data = payload(12 * MB)
    # slow enough to be caught mid-way (segment progress is checkpointed every 2 s), and each
    # response goes silent part-way so the child cannot finish before the kill, however late
    # a busy machine delivers it (at 6 MB/s the whole file took 2 s: a race)
    res = server.add("/m.safetensors", data, rate=6 * MB if segments == 1 else 1 * MB,
                     stall_after=4 * MB if segments == 1 else 2 * MB)
    target = tmp_path / "models" / "m.safetensors"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if platform_api is not None:
        env.update(CFS_PORTABLE="1", CFS_TESTS=str(REPO / "tests"))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, server.url("/m.safetensors"), str(target),
                             str(tmp_path / "child-state"), str(segments)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _kill_when_grown(proc, target, segments > 1, 2 * MB)
    assert not target.exists()
    assert part_path(target).exists()
    served_before = len(server.requests)

    res.rate = res.stall_after = None
    with DownloadManager(loopback_config(make_config, download_segments=segments)) as m:
        result = m.download_model(server.url("/m.safetensors"), target,
                                  expected_sha256=hashlib.sha256(data).hexdigest())
    assert result.success, result.error_message
    assert result.resumed_from >= 2 * MB
    assert result.size_downloaded == len(data) - result.resumed_from
    assert hashlib.sha256(target.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    resumed = server.requests[served_before:]
    assert resumed and all(r.header("Range") and not r.header("Range").startswith("bytes=0-") for r in resumed)
    assert all(r.header("If-Range") for r in resumed)
    assert sorted(p.name for p in target.parent.iterdir()) == ["m.safetensors"]


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode})")


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "tiny"
    _mount_tmpfs(mnt, "2m")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_mid_stream_is_a_clear_error_and_frees_the_space(server, make_config, small_disk):
    # no Content-Length: the preflight cannot know, so the write itself hits ENOSPC
    server.add("/f", payload(3 * MB), send_length=False, ranges=False)
    with DownloadManager(loopback_config(make_config)) as m:
        r = m.download_model(server.url("/f"), small_disk / "f.safetensors")
    assert not r.success and r.error_type == "InsufficientSpaceError"
    assert "disk full" in r.error_message
    assert list(small_disk.iterdir()) == []


def test_preflight_refuses_a_file_larger_than_the_free_space(server, make_config, small_disk):
    server.add("/f", payload(3 * MB), ranges=False)
    with DownloadManager(loopback_config(make_config)) as m:
        r = m.download_model(server.url("/f"), small_disk / "f.safetensors")
    assert r.error_type == "InsufficientSpaceError" and "needed" in r.error_message
    assert list(small_disk.iterdir()) == []
    assert len(server.requests) == 1  # one probe, no body read to disk


def test_preallocation_for_segments_refuses_early(server, make_config, small_disk):
    server.add("/f", payload(5 * MB))
    with DownloadManager(loopback_config(make_config, segment_min_size=1 * MB)) as m:
        r = m.download_model(server.url("/f"), small_disk / "f.safetensors")
    assert r.error_type == "InsufficientSpaceError"
    assert list(small_disk.iterdir()) == []


def test_a_file_that_fits_still_downloads_on_the_small_disk(server, make_config, small_disk):
    data = payload(MB)
    server.add("/f", data)
    with DownloadManager(loopback_config(make_config)) as m:
        r = m.download_model(server.url("/f"), small_disk / "f.safetensors")
    assert r.success and (small_disk / "f.safetensors").read_bytes() == data
