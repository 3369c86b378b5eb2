"""relink: "elsewhere" files made loadable without a download (issue 11.7).

Every action is checked by sha256 and never deletes the only copy; cross-device links fall
back to a verified copy (EXDEV simulated), a full disk is refused before writing, an
existing target is never replaced, and symlinks cannot lead reads or writes outside.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections import namedtuple
from pathlib import Path

import pytest

from comfyfixersmart import relink as relink_mod
from comfyfixersmart.errors import (
    FileExistsConflictError,
    InsufficientSpaceError,
    IntegrityError,
    UnsafePathError,
    ValidationError,
)
from comfyfixersmart.relink import relink_file
from comfyfixersmart.service.routes import FixerRoutes
from routes_support import mount_routes

DATA = b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "ComfyUI"
    for key in ("checkpoints", "loras", "diffusion_models", "unet"):
        (root / "models" / key).mkdir(parents=True)
    (root / "output").mkdir()
    (root / "models" / "checkpoints" / "style.safetensors").write_bytes(DATA)
    return root


@pytest.fixture
def folders(root):
    m = root / "models"
    return {"checkpoints": [str(m / "checkpoints")], "loras": [str(m / "loras")],
            "diffusion_models": [str(m / "diffusion_models"), str(m / "unet")]}


def src(root, name="style.safetensors"):
    return str(root / "models" / "checkpoints" / name)


def no_leftovers(directory: Path):
    return not [p for p in directory.rglob("*") if p.name.endswith(".relink")]


def test_link_makes_a_hard_link_and_keeps_the_source(root, folders):
    res = relink_file(src(root), folders, "loras", "sub/style.safetensors", "link")
    target = root / "models" / "loras" / "sub" / "style.safetensors"
    assert (res.mode, res.sha256, res.path, res.name) == ("link", SHA, str(target), "sub/style.safetensors")
    assert os.path.samefile(target, src(root)) and Path(src(root)).read_bytes() == DATA
    # again: the same bytes are there, nothing to do
    assert relink_file(src(root), folders, "loras", "sub/style.safetensors", "link").sha256 == SHA


@pytest.fixture
def exdev(monkeypatch, root):
    """os.link of the source fails like a link across devices; other links work."""
    real_link = os.link

    def link(a, b, *args, **kwargs):
        if os.path.realpath(a) == os.path.realpath(src(root)):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_link(a, b, *args, **kwargs)

    monkeypatch.setattr(relink_mod.os, "link", link)


def test_cross_device_link_falls_back_to_a_verified_copy(root, folders, exdev):
    res = relink_file(src(root), folders, "loras", "style.safetensors", "link")
    target = Path(res.path)
    assert res.mode == "copy" and res.sha256 == SHA and target.read_bytes() == DATA
    assert not os.path.samefile(target, src(root)) and Path(src(root)).exists()
    assert no_leftovers(root)


def test_move_across_devices_copies_verifies_then_removes(root, folders, exdev):
    res = relink_file(src(root), folders, "loras", "style.safetensors", "move")
    assert res.mode == "move" and Path(res.path).read_bytes() == DATA
    assert not Path(src(root)).exists()


def test_move_on_one_device(root, folders):
    res = relink_file(src(root), folders, "loras", "style.safetensors", "move")
    assert Path(res.path).read_bytes() == DATA and not Path(src(root)).exists()
    assert os.stat(res.path).st_nlink == 1


def test_a_bad_copy_keeps_the_source_and_leaves_nothing(root, folders, exdev, monkeypatch):
    real_read = relink_mod.open if hasattr(relink_mod, "open") else open

    class Flip:
        def __init__(self, fh):
            self.fh = fh

        def read(self, n):
            chunk = self.fh.read(n)
            return chunk[:-1] + b"\x00" if chunk else chunk  # a bit flipped on the way

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(relink_mod, "open", lambda p, mode="r", *a, **k: Flip(real_read(p, mode, *a, **k)),
                        raising=False)
    for mode in ("link", "move"):
        with pytest.raises(IntegrityError):
            relink_file(src(root), folders, "loras", "style.safetensors", mode)
        assert Path(src(root)).read_bytes() == DATA
        assert not (root / "models" / "loras" / "style.safetensors").exists() and no_leftovers(root)


def test_no_space_is_refused_before_writing(root, folders, exdev, monkeypatch):
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(relink_mod.shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - 1000, 1000))
    for mode in ("link", "move"):
        with pytest.raises(InsufficientSpaceError):
            relink_file(src(root), folders, "loras", "style.safetensors", mode)
        assert Path(src(root)).exists() and not (root / "models" / "loras" / "style.safetensors").exists()
    assert no_leftovers(root)


@pytest.mark.parametrize("mode", ["link", "move", "symlink"])
def test_target_with_other_bytes_is_never_replaced(root, folders, mode):
    target = root / "models" / "loras" / "style.safetensors"
    target.write_bytes(b"other weights")
    with pytest.raises(FileExistsConflictError):
        relink_file(src(root), folders, "loras", "style.safetensors", mode)
    assert target.read_bytes() == b"other weights" and Path(src(root)).read_bytes() == DATA


def test_target_that_is_a_symlink_is_refused(root, folders, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep me")
    target = root / "models" / "loras" / "style.safetensors"
    target.symlink_to(victim)
    with pytest.raises((FileExistsConflictError, UnsafePathError)):
        relink_file(src(root), folders, "loras", "style.safetensors", "link")
    assert victim.read_bytes() == b"keep me"


def test_same_bytes_already_there_counts_as_done(root, folders):
    (root / "models" / "loras" / "style.safetensors").write_bytes(DATA)
    res = relink_file(src(root), folders, "loras", "style.safetensors", "move")
    assert res.sha256 == SHA and not Path(src(root)).exists()
    assert (root / "models" / "loras" / "style.safetensors").read_bytes() == DATA


def test_symlink_only_on_request(root, folders):
    res = relink_file(src(root), folders, "loras", "style.safetensors", "symlink")
    target = root / "models" / "loras" / "style.safetensors"
    assert res.mode == "symlink" and target.is_symlink() and target.read_bytes() == DATA


# -- symlink attacks and hostile input -------------------------------------------------------------------

def test_source_that_is_a_symlink_is_refused(root, folders, tmp_path):
    secret = tmp_path / "secret.key"
    secret.write_bytes(b"credentials")
    link = root / "models" / "checkpoints" / "innocent.safetensors"
    link.symlink_to(secret)
    with pytest.raises(UnsafePathError):
        relink_file(str(link), folders, "loras", "innocent.safetensors", "link")
    assert not (root / "models" / "loras" / "innocent.safetensors").exists()


@pytest.mark.parametrize("where", ["outside", "output", "through_a_linked_dir", "relative", "folder_itself"])
def test_source_outside_the_model_folders_is_refused(root, folders, tmp_path, where):
    if where == "outside":
        path = tmp_path / "x.safetensors"
        path.write_bytes(DATA)
    elif where == "output":
        path = root / "output" / "x.safetensors"
        path.write_bytes(DATA)
    elif where == "through_a_linked_dir":
        (tmp_path / "private").mkdir()
        (tmp_path / "private" / "x.safetensors").write_bytes(DATA)
        (root / "models" / "checkpoints" / "door").symlink_to(tmp_path / "private")
        path = root / "models" / "checkpoints" / "door" / "x.safetensors"
    elif where == "relative":
        path = "models/checkpoints/style.safetensors"
    else:
        path = root / "models" / "checkpoints"
    with pytest.raises(ValidationError):
        relink_file(str(path), folders, "loras", "x.safetensors", "link")


def test_target_folder_swapped_for_a_symlink_is_refused(root, folders, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "models" / "loras" / "sub").symlink_to(outside)
    with pytest.raises(UnsafePathError):
        relink_file(src(root), folders, "loras", "sub/style.safetensors", "link")
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("folder", ["output", "../loras", "models/loras", "custom_nodes", "nope", "/tmp"])
def test_folder_must_be_a_model_folder_key(root, folders, folder):
    folders = {**folders, "output": [str(root / "output")]}
    with pytest.raises(ValidationError):
        relink_file(src(root), folders, folder, "style.safetensors", "link")


@pytest.mark.parametrize("name", ["../style.safetensors", "/etc/x.safetensors", "C:\\x.safetensors", "a/../../b"])
def test_name_must_stay_in_the_folder(root, folders, name):
    with pytest.raises(UnsafePathError):
        relink_file(src(root), folders, "loras", name, "link")


def test_relink_only_where_the_folder_lists_the_file(root, folders):
    unet_file = root / "models" / "unet" / "flux.safetensors"
    unet_file.write_bytes(DATA)
    res = relink_file(str(unet_file), folders, "diffusion_models", "flux.safetensors", "relink")
    assert (res.mode, res.name, res.path, res.sha256) == ("relink", "flux.safetensors", str(unet_file), SHA)
    with pytest.raises(ValidationError):
        relink_file(src(root), folders, "loras", "style.safetensors", "relink")
    with pytest.raises(ValidationError):
        relink_file(src(root), folders, "loras", "style.safetensors", "copy-everything")


def test_hasher_is_used(root, folders):
    seen = []

    def hasher(path):
        seen.append(path)
        return SHA

    relink_file(src(root), folders, "loras", "style.safetensors", "link", hasher=hasher)
    assert seen == [os.path.realpath(src(root))]


# -- route and CLI ----------------------------------------------------------------------------------------

@pytest.fixture
async def api(aiohttp_client, make_config, root, folders):
    fixer = FixerRoutes(folders=lambda: folders, config=make_config(comfyui_root=root))
    client = await mount_routes(aiohttp_client, fixer)
    yield client
    fixer.close()


async def test_relink_route(api, root):
    body = {"source": src(root), "folder": "loras", "name": "style.safetensors", "mode": "link"}
    resp = await api.post("/comfyfixer/relink", json=body)
    assert resp.status == 200, await resp.text()
    out = await resp.json()
    assert out["sha256"] == SHA and out["mode"] == "link" and out["name"] == "style.safetensors"
    assert Path(out["path"]) == root / "models" / "loras" / "style.safetensors"
    (root / "models" / "checkpoints" / "other.safetensors").write_bytes(b"different")
    resp = await api.post("/comfyfixer/relink", json={**body, "source": src(root, "other.safetensors")})
    assert resp.status == 409
    for bad in ({**body, "folder": "output"}, {**body, "name": "../x.safetensors"}, {**body, "mode": "delete"},
                {**body, "source": "/etc/hostname"}, {**body, "extra": 1}, {"folder": "loras"}):
        resp = await api.post("/comfyfixer/relink", json=bad)
        assert resp.status == 400, (bad, await resp.text())
    resp = await api.post("/comfyfixer/relink", data="source=x", headers={"Content-Type": "text/plain"})
    assert resp.status == 415


async def test_relink_route_takes_the_scans_found_path(api, root):
    body = {"source": "checkpoints/style.safetensors", "folder": "loras", "name": "style.safetensors", "mode": "link"}
    resp = await api.post("/comfyfixer/relink", json=body)
    assert resp.status == 200, await resp.text()
    assert os.path.samefile((await resp.json())["path"], src(root))
    for bad in ("checkpoints/../../x.safetensors", "nope/style.safetensors", "checkpoints/missing.safetensors",
                "checkpoints"):
        resp = await api.post("/comfyfixer/relink", json={**body, "source": bad})
        assert resp.status == 400, (bad, await resp.text())


async def test_scan_reports_the_local_path_relink_takes(api, root):
    wf = {"last_node_id": 1, "links": [], "version": 0.4, "nodes": [
        {"id": 1, "type": "LoraLoader", "mode": 0, "properties": {}, "widgets_values": ["style.safetensors", 1, 1]}]}
    refs = (await (await api.post("/comfyfixer/scan", json={"workflow": wf})).json())["references"]
    (ref,) = refs
    assert ref["status"] == "elsewhere" and ref["local_path"] == src(root)


def test_cli_relink_fixes_every_elsewhere_reference(root, tmp_path, capsys):
    from comfyfixersmart.cli import main

    wf = {"last_node_id": 2, "links": [], "version": 0.4, "nodes": [
        {"id": 1, "type": "LoraLoader", "mode": 0, "properties": {}, "widgets_values": ["style.safetensors", 1, 1]},
        {"id": 2, "type": "CheckpointLoaderSimple", "mode": 0, "properties": {},
         "widgets_values": ["style.safetensors"]}]}
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(wf))
    code = main(["relink", str(path), "--comfyui-root", str(root), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    assert [r["key"] for r in out["relinked"]] == ["loras/style.safetensors"]
    assert out["relinked"][0]["result"]["sha256"] == SHA
    assert os.path.samefile(root / "models" / "loras" / "style.safetensors", src(root))
    code = main(["relink", str(path), "--comfyui-root", str(root)])
    assert code == 0 and "nothing to relink" in capsys.readouterr().out


def test_filesystem_refusals_are_clear_errors(root, folders, monkeypatch):
    from comfyfixersmart.relink import RelinkError

    def no_link(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(relink_mod.os, "link", no_link)
    with pytest.raises(RelinkError) as info:
        relink_file(src(root), folders, "loras", "style.safetensors", "link")
    assert "Read-only" in str(info.value) and Path(src(root)).exists()

    def no_symlink(*a, **k):
        raise OSError(errno.EPERM, "A required privilege is not held by the client")

    monkeypatch.setattr(relink_mod.os, "symlink", no_symlink)
    with pytest.raises(RelinkError):
        relink_file(src(root), folders, "loras", "style.safetensors", "symlink")


def test_a_target_appearing_meanwhile_is_a_conflict(root, folders, monkeypatch):
    real_link = os.link
    target = root / "models" / "loras" / "style.safetensors"

    def racing_link(a, b, *args, **kwargs):
        Path(b).write_bytes(b"someone else's file")  # created between the check and the link
        return real_link(a, b, *args, **kwargs)

    monkeypatch.setattr(relink_mod.os, "link", racing_link)
    with pytest.raises(FileExistsConflictError):
        relink_file(src(root), folders, "loras", "style.safetensors", "link")
    assert target.read_bytes() == b"someone else's file" and Path(src(root)).read_bytes() == DATA
