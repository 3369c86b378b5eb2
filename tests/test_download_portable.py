"""Downloads without the POSIX-only APIs (as on Windows), and Windows' path rules.

The engine's own tests run a second time under ``dlserver.portable`` (see the
``platform_api`` fixture); these check the fallbacks themselves: the simulation really
takes the APIs away, the lock file keeps a second process off a part file and is taken
over when its holder died, positional writes from many threads land right, long paths
get their prefix.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from comfyfixersmart.download import DownloadManager
from comfyfixersmart.download.fileio import PartLock, long_path, open_part, pread, pwrite_all
from comfyfixersmart.errors import DownloadError, UnsafePathError
from comfyfixersmart.security import validate_relative_path
from dlserver import loopback_config, payload, portable
from dlserver.fixtures import dest, server, sha  # noqa: F401


@pytest.fixture
def windows_like():
    undo = portable.install()
    try:
        yield undo.handles
    finally:
        undo()


def test_the_simulation_takes_the_apis_away_and_refuses_renaming_open_parts(windows_like, tmp_path):
    assert not hasattr(os, "pwrite") and not hasattr(os, "O_NOFOLLOW")
    with pytest.raises(ImportError):
        import fcntl  # noqa: F401
    part = tmp_path / "x.part"
    fd = os.open(part, os.O_RDWR | os.O_CREAT)
    with pytest.raises(PermissionError):
        os.replace(part, tmp_path / "x")
    with pytest.raises(PermissionError):
        os.unlink(part)
    os.close(fd)
    os.replace(part, tmp_path / "x")
    windows_like.refusals.clear()


def test_a_download_without_posix_apis_uses_a_lock_file_and_leaves_nothing(windows_like, server, dest,
                                                                           make_config):
    data = payload(3 * 1024 * 1024, seed=31)
    seen = []
    server.add("/m.safetensors", data, hook=lambda _r: seen.append(sorted(p.name for p in dest.iterdir())))
    with DownloadManager(loopback_config(make_config, download_segments=4, segment_min_size=1024 * 1024)) as m:
        result = m.download_model(server.url("/m.safetensors"), dest / "m.safetensors", expected_sha256=sha(data))
    assert result.success, result.error_message
    assert "m.safetensors.part.lock" in seen[0]  # held while it ran
    assert sorted(p.name for p in dest.iterdir()) == ["m.safetensors"]
    assert windows_like.refusals == []


def test_a_second_process_is_kept_off_by_the_lock_file(windows_like, tmp_path):
    part = tmp_path / "m.safetensors.part"
    fd = open_part(part)
    lock = PartLock(part, fd).acquire()
    try:
        child = subprocess.run(
            [sys.executable, "-c",
             "import sys; sys.path[:0] = sys.argv[2:4]\n"
             "import dlserver.portable as p; p.install()\n"
             "from pathlib import Path\n"
             "from comfyfixersmart.download.fileio import PartLock, open_part\n"
             "part = Path(sys.argv[1])\n"
             "try:\n"
             "    PartLock(part, open_part(part)).acquire()\n"
             "except Exception as exc:\n"
             "    print(type(exc).__name__, exc)\n",
             str(part), str(Path(__file__).parents[1]), str(Path(__file__).parent)],
            capture_output=True, text=True, timeout=60)
        assert "being downloaded by another process" in child.stdout, child
    finally:
        os.close(fd)
        lock.release()
    assert not (tmp_path / "m.safetensors.part.lock").exists()


def test_a_stale_lock_file_of_a_dead_process_is_taken_over(windows_like, tmp_path):
    part = tmp_path / "m.safetensors.part"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    (tmp_path / "m.safetensors.part.lock").write_text(f"{dead.stdout.strip()} {socket.gethostname()}\n")
    fd = open_part(part)
    try:
        lock = PartLock(part, fd).acquire()
        lock.release()
    finally:
        os.close(fd)
    # a live holder (this test's parent process stands in for one) is respected
    (tmp_path / "m.safetensors.part.lock").write_text(f"{os.getppid()} {socket.gethostname()}\n")
    fd = open_part(part)
    try:
        with pytest.raises(DownloadError, match="another process"):
            PartLock(part, fd).acquire()
    finally:
        os.close(fd)


def test_positional_writes_from_many_threads_without_pwrite(windows_like, tmp_path):
    path = tmp_path / "f.part"
    fd = open_part(path)
    blocks = [bytes([i]) * 70_001 for i in range(32)]
    try:
        threads = [threading.Thread(target=pwrite_all, args=(fd, blocks[i], i * 70_001)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert pread(fd, 70_001, 5 * 70_001) == blocks[5]
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(blocks)


def test_open_part_refuses_a_link_without_o_nofollow(windows_like, tmp_path):
    (tmp_path / "victim").write_bytes(b"v")
    (tmp_path / "x.part").symlink_to(tmp_path / "victim")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        open_part(tmp_path / "x.part")
    assert (tmp_path / "victim").read_bytes() == b"v"


@pytest.mark.parametrize("path,expected", [
    ("C:\\models\\" + "a" * 300 + ".safetensors", "\\\\?\\C:\\models\\" + "a" * 300 + ".safetensors"),
    ("C:/models/" + "b" * 300, "\\\\?\\C:\\models\\" + "b" * 300),
    ("\\\\server\\share\\" + "c" * 300, "\\\\?\\UNC\\server\\share\\" + "c" * 300),
    ("\\\\?\\C:\\" + "d" * 300, "\\\\?\\C:\\" + "d" * 300),
    ("C:\\short.safetensors", "C:\\short.safetensors"),
])
def test_long_windows_paths_get_the_extended_prefix(path, expected):
    assert long_path(path, windows=True) == expected
    assert long_path(path, windows=False) == path


@pytest.mark.parametrize("name", ["CON", "nul.safetensors", "COM1.ckpt", "lpt9", "aux.txt", "model.",
                                  "sub /x.safetensors", "dir./x.sft", "sub/PRN/x.safetensors", "a:b.safetensors", "x?.gguf"])
def test_windows_reserved_and_trailing_names_are_refused(name):
    with pytest.raises(UnsafePathError):
        validate_relative_path(name)
