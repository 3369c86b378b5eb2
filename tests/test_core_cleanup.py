"""Cancelling through ComfyFixerCore: ``cleanup()`` from another thread, Ctrl-C in the calling
thread, and part files of other processes' live downloads left alone.

The files come from ``dlserver.FileServer`` trickling at a capped rate, so a download is
really in flight (``.part`` on disk, bytes arriving) when it is cancelled; the one cancelled
goes silent half-way, so it cannot finish first however slow a busy machine is.
"""

from __future__ import annotations

import _thread
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from comfyfixersmart.core import ComfyFixerCore
from dlserver import FileServer, loopback_config, payload

SIZE = 2 * 1024 * 1024
RATE = 256 * 1024  # 8 s for the whole file: always cancelled mid-way


@pytest.fixture
def server():
    with FileServer() as srv:
        srv.add("/slow.safetensors", payload(SIZE, seed=1), rate=RATE, stall_after=SIZE // 2)
        srv.add("/other.safetensors", payload(SIZE, seed=2), rate=RATE)
        yield srv


@pytest.fixture
def config(make_config, tmp_path):
    # small chunks: the engine checks for a cancel between chunks
    return loopback_config(make_config, chunk_size=16 * 1024, download_concurrency=1)


def spec(server, name: str) -> dict:
    return {"url": server.url(f"/{name}", host="localhost"), "filename": name, "directory": "checkpoints"}


def parts(folder: Path):
    return sorted(p.name for p in folder.rglob("*.part*"))


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def started(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


def test_cleanup_from_another_thread_cancels_and_removes_part_files(server, config, tmp_path):
    out = tmp_path / "models"
    part = out / "checkpoints" / "slow.safetensors.part"
    results = []
    core = ComfyFixerCore(config)
    worker = threading.Thread(
        target=lambda: results.extend(core.download_models([spec(server, "slow.safetensors")], out)))
    worker.start()
    wait_for(lambda: started(part))
    began = time.monotonic()
    core.cleanup()
    # when cleanup returns the download has stopped and left nothing behind
    assert parts(out) == []
    assert time.monotonic() - began < 5
    worker.join(10)
    assert [(r.success, r.error_type) for r in results] == [(False, "DownloadCancelledError")]
    assert not (out / "checkpoints" / "slow.safetensors").exists()
    # the core is usable again after cleanup (fresh sessions)
    server.add("/quick.safetensors", payload(1000, seed=3))
    assert core.download_models([spec(server, "quick.safetensors")], out)[0].success
    core.cleanup()


def test_ctrl_c_in_the_calling_thread_stops_downloads_and_keeps_them_resumable(server, config, tmp_path):
    out = tmp_path / "models"
    part = out / "checkpoints" / "slow.safetensors.part"

    def interrupt():
        wait_for(lambda: started(part))
        _thread.interrupt_main()

    threading.Thread(target=interrupt, daemon=True).start()
    with ComfyFixerCore(config) as core:
        with pytest.raises(KeyboardInterrupt):
            core.download_models([spec(server, "slow.safetensors"), spec(server, "other.safetensors")], out)
        # it stopped at once, not after the batch (concurrency 1): the second file was never
        # asked for (a wall-clock bound here failed under load; this holds at any speed)
        assert server.requests_for("/other.safetensors") == []
        # an interruption is not a cancel: the started download stays resumable, the queued one
        # never began
        assert parts(out) == ["slow.safetensors.part", "slow.safetensors.part.json"]


@pytest.mark.parametrize("how", ["ctrl-c", "cleanup"])
def test_live_download_of_another_process_is_not_touched(server, config, tmp_path, how):
    """Two downloads (concurrency 1); the second one's part file belongs to another process
    that holds the engine's lock on it.  Cancelling through the core removes our part file
    (an interruption keeps it for the next run), never theirs (theirs never got past the queue, so the core does not sweep it; and if it
    did, the lock would stop it: see test_sweep_leaves_a_locked_part_file_alone)."""
    out = tmp_path / "models"
    ours = out / "checkpoints" / "slow.safetensors.part"
    theirs = out / "checkpoints" / "other.safetensors.part"
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"x" * 1000)
    (out / "checkpoints" / "other.safetensors.part.json").write_text("{}")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time\n"
         f"fd = os.open({str(theirs)!r}, os.O_RDWR)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "print('locked', flush=True)\n"
         "time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True)
    batch = [spec(server, "slow.safetensors"), spec(server, "other.safetensors")]
    try:
        assert holder.stdout.readline().strip() == "locked"
        core = ComfyFixerCore(config)
        if how == "ctrl-c":
            def interrupt():
                wait_for(lambda: started(ours))
                _thread.interrupt_main()

            threading.Thread(target=interrupt, daemon=True).start()
            with pytest.raises(KeyboardInterrupt):
                core.download_models(batch, out)
        else:
            results = []
            worker = threading.Thread(target=lambda: results.extend(core.download_models(batch, out)))
            worker.start()
            wait_for(lambda: started(ours))
            core.cleanup()
            worker.join(10)
            assert results[0].error_type == "DownloadCancelledError" and not results[1].success
        core.cleanup()
        if how == "ctrl-c":  # interrupted, not cancelled: ours stays resumable
            assert ours.exists() and ours.with_name("slow.safetensors.part.json").exists()
        else:
            assert not ours.exists() and not ours.with_name("slow.safetensors.part.json").exists()
        assert theirs.read_bytes() == b"x" * 1000  # still there, untouched
        assert (out / "checkpoints" / "other.safetensors.part.json").exists()
    finally:
        holder.kill()
        holder.wait()


def test_context_manager_releases_components(make_config, tmp_path):
    config = make_config(comfyui_root=tmp_path)
    (tmp_path / "models").mkdir()
    with ComfyFixerCore(config) as core:
        search = core.search
        assert core.downloader.state is core.state  # downloads are recorded in the core's history
        assert core.search is search  # created once, reused
    # after the block the components were closed and dropped; new ones are made on demand
    assert core._search is None and core._state is None and core._downloader is None
    assert core.search is not search
    core.cleanup()


def test_components_passed_in_are_left_open(make_config, tmp_path):
    from comfyfixersmart.state import StateManager

    config = make_config()
    with StateManager(config) as state:
        with ComfyFixerCore(config, state=state) as core:
            assert core.state is state
            assert core.search is not None  # made by the core: closed and dropped on exit
        assert core.state is state  # still the caller's, still open
        state.record_download("x.safetensors", "civitai", "1")
        assert state.is_downloaded("x.safetensors")


def test_a_hostile_spec_fails_alone(server, config, tmp_path):
    out = tmp_path / "models"
    server.add("/ok.safetensors", payload(2000, seed=4))
    evil = dict(spec(server, "ok.safetensors"), filename="../../evil.safetensors")
    with ComfyFixerCore(config) as core:
        bad, good = core.download_models([evil, spec(server, "ok.safetensors")], out)
    assert not bad.success and bad.error_type == "UnsafePathError"
    assert good.success and (out / "checkpoints" / "ok.safetensors").read_bytes() == payload(2000, seed=4)
    assert not (tmp_path / "evil.safetensors").exists()


def test_sweep_leaves_a_locked_part_file_alone(tmp_path):
    """The sweep's guard: a part file whose lock another process holds is a live download."""
    from comfyfixersmart.core import _remove_part_if_idle

    target = tmp_path / "model.safetensors"
    part, sidecar = tmp_path / "model.safetensors.part", tmp_path / "model.safetensors.part.json"
    part.write_bytes(b"p" * 100)
    sidecar.write_text("{}")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, time\n"
         f"fd = os.open({str(part)!r}, os.O_RDWR)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "print('locked', flush=True)\n"
         "time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert _remove_part_if_idle(target) is False
        assert part.read_bytes() == b"p" * 100 and sidecar.exists()
    finally:
        holder.kill()
        holder.wait()
    assert _remove_part_if_idle(target) is True  # nobody holds it any more
    assert not part.exists() and not sidecar.exists()
    assert _remove_part_if_idle(target) is True  # nothing left: fine
