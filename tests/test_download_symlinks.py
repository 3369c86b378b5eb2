"""Red team: links planted or swapped in a models folder never send a download's bytes
outside it.

* a ``.part`` that is a symbolic link (to a file, to a missing file) or a hard link;
* a destination that is a link (overwrite asked, or one appearing during the download);
* a sub-folder swapped for a link between planning and writing, or during the download;
* a sidecar that is a link (to ``/dev/zero``, a FIFO).

Each: a clear ``UnsafePathError`` (or the link ignored), and nothing written outside.
"""

from __future__ import annotations

import os
import shutil
import threading

import pytest

from comfyfixersmart.download import DownloadManager
from dlserver import loopback_config, payload
from dlserver.fixtures import dest, platform_api, server, sha  # noqa: F401

pytestmark = pytest.mark.skipif(os.name == "nt", reason="creating symlinks needs privileges on Windows")

DATA = payload(300_000, seed=21)
SECRET = b"not yours: keep out\n"


@pytest.fixture
def outside(tmp_path):
    path = tmp_path / "outside"
    path.mkdir()
    (path / "victim.txt").write_bytes(SECRET)
    return path


@pytest.fixture
def manager(make_config):
    with DownloadManager(loopback_config(make_config)) as mgr:
        yield mgr


def untouched(outside):
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    assert (outside / "victim.txt").read_bytes() == SECRET


# -- the part file ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["to-file", "dangling", "to-folder"])
def test_a_planted_part_symlink_is_refused(manager, server, dest, outside, kind, platform_api):
    server.add("/m.safetensors", DATA)
    link_to = {"to-file": outside / "victim.txt", "dangling": outside / "new.bin", "to-folder": outside}[kind]
    (dest / "m.safetensors.part").symlink_to(link_to)
    result = manager.download_model(server.url("/m.safetensors"), dest / "m.safetensors")
    assert not result.success and result.error_type == "UnsafePathError"
    assert "symbolic link" in result.error_message or "not a regular file" in result.error_message
    untouched(outside)
    assert not (dest / "m.safetensors").exists()
    assert (dest / "m.safetensors.part").is_symlink()  # left for the user to look at


def test_a_hard_linked_part_is_refused(manager, server, dest, outside):
    server.add("/m.safetensors", DATA)
    os.link(outside / "victim.txt", dest / "m.safetensors.part")
    result = manager.download_model(server.url("/m.safetensors"), dest / "m.safetensors")
    assert result.error_type == "UnsafePathError" and "hard link" in result.error_message
    untouched(outside)


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "outside-json"])
def test_a_sidecar_link_or_fifo_is_ignored(manager, server, dest, outside, target):
    server.add("/m.safetensors", DATA)
    sidecar = dest / "m.safetensors.part.json"
    if target == "fifo":
        os.mkfifo(sidecar)
    elif target == "outside-json":
        (outside / "s.json").write_text('{"version": 1, "url": "x"}')
        sidecar.symlink_to(outside / "s.json")
    else:
        sidecar.symlink_to(target)
    done = {}
    thread = threading.Thread(target=lambda: done.update(r=manager.download_model(
        server.url("/m.safetensors"), dest / "m.safetensors", expected_sha256=sha(DATA))), daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "hung on the sidecar"
    assert done["r"].success, done["r"].error_message
    assert (dest / "m.safetensors").read_bytes() == DATA
    assert (outside / "s.json").read_text() == '{"version": 1, "url": "x"}' if target == "outside-json" else True


# -- the destination -----------------------------------------------------------------------------

def test_a_destination_symlink_is_not_replaced_even_with_overwrite(manager, server, dest, outside):
    server.add("/m.safetensors", DATA)
    (dest / "m.safetensors").symlink_to(outside / "victim.txt")
    for overwrite in (False, True):
        result = manager.download_model(server.url("/m.safetensors"), dest / "m.safetensors", overwrite=overwrite)
        assert not result.success
        assert result.error_type == ("UnsafePathError" if overwrite else "FileExistsConflictError")
        untouched(outside)
        assert (dest / "m.safetensors").is_symlink()
    assert sorted(p.name for p in dest.iterdir()) == ["m.safetensors"]


def test_a_destination_symlink_planted_during_the_download_is_refused(manager, server, dest, outside):
    target = dest / "m.safetensors"

    def plant(_request):
        if not os.path.lexists(target):
            target.symlink_to(outside / "victim.txt")

    server.add("/m.safetensors", DATA, hook=plant)
    result = manager.download_model(server.url("/m.safetensors"), target, overwrite=True)
    assert result.error_type == "UnsafePathError" and "symbolic link" in result.error_message
    untouched(outside)
    assert target.is_symlink()


# -- folders swapped for links ---------------------------------------------------------------------

def _swap_for_link(folder, outside) -> None:
    shutil.rmtree(folder)
    folder.symlink_to(outside, target_is_directory=True)


def test_a_subfolder_swapped_between_plan_and_write_is_refused(manager, server, dest, outside, platform_api):
    """Two queued files (one slot): while the first downloads, the second one's folder
    becomes a link to a folder outside.  The second must not write there."""
    manager.config.download_concurrency = 1
    (dest / "checkpoints").mkdir()
    (dest / "loras").mkdir()
    server.add("/a.safetensors", DATA, hook=lambda _r: (dest / "loras").is_symlink()
               or _swap_for_link(dest / "loras", outside))
    server.add("/b.safetensors", payload(2000, seed=3))
    results = manager.download_models([
        {"url": server.url("/a.safetensors"), "filename": "a.safetensors", "directory": "checkpoints"},
        {"url": server.url("/b.safetensors"), "filename": "b.safetensors", "directory": "loras"},
    ], dest, concurrency=1)
    assert results[0].success
    assert results[1].error_type == "UnsafePathError" and "link" in results[1].error_message
    untouched(outside)
    assert server.requests_for("/b.safetensors") == []  # refused before any request


def test_a_single_download_whose_folder_is_swapped_after_the_call_is_refused(manager, server, dest, outside):
    folder = dest / "vae"
    folder.mkdir()
    server.add("/m.safetensors", DATA)

    def on_event(event):
        if event.state == "queued" and not folder.is_symlink():
            _swap_for_link(folder, outside)  # after planning, before the part is opened

    result = manager.download_model(server.url("/m.safetensors"), folder / "m.safetensors", on_event=on_event)
    assert result.error_type == "UnsafePathError"
    untouched(outside)


def test_a_folder_swapped_during_the_download_gets_no_rename(manager, server, dest, outside, platform_api):
    """The part is already open in the real folder when it is swapped: the bytes land in
    the (now unlinked) old folder, and the rename into the link is refused."""
    folder = dest / "vae"
    folder.mkdir()
    moved = dest / "vae-old"

    def swap(_request):
        if not folder.is_symlink():
            os.rename(folder, moved)
            folder.symlink_to(outside, target_is_directory=True)

    server.add("/m.safetensors", DATA, hook=swap)
    result = manager.download_model(server.url("/m.safetensors"), folder / "m.safetensors")
    assert result.error_type == "UnsafePathError" and "outside" in result.error_message
    untouched(outside)


def test_an_ancestor_swapped_for_a_link_creates_no_folder_outside(manager, server, dest, outside):
    """``models/a/b/c.safetensors`` where ``a`` becomes a link: ``b`` is not created outside."""
    (dest / "a").mkdir()
    server.add("/c.safetensors", DATA)

    def on_event(event):
        if event.state == "queued" and not (dest / "a").is_symlink():
            _swap_for_link(dest / "a", outside)

    result = manager.download_models([{"url": server.url("/c.safetensors"), "filename": "a/b/c.safetensors"}],
                                     dest, on_event=on_event)[0]
    assert result.error_type == "UnsafePathError"
    untouched(outside)


def test_a_folder_that_is_a_link_from_the_start_still_works(manager, server, dest, tmp_path):
    """A models folder that was a link when the download was planned (a second disk) is
    the user's choice: downloads go there."""
    disk = tmp_path / "big_disk"
    disk.mkdir()
    (dest / "checkpoints").symlink_to(disk, target_is_directory=True)
    server.add("/m.safetensors", DATA)
    result = manager.download_model(server.url("/m.safetensors"), dest / "checkpoints" / "m.safetensors")
    assert result.success, result.error_message
    assert (disk / "m.safetensors").read_bytes() == DATA
