"""Red team, local input (issue 10.5): only regular files are read, with a size cap, and a
model file is "present" only when ComfyUI would load it under the name the workflow spells.

ComfyUI (folder_paths.py, execution.py of v0.3.75) lists a folder with ``os.walk`` and checks a
combo widget with ``value in get_filename_list(key)``: no case folding, no Unicode
normalisation, and ``get_full_path`` needs ``os.path.isfile``.
"""

from __future__ import annotations

import json
import os
import threading
import unicodedata

import pytest

from comfyfixersmart.core import ComfyFixerCore
from comfyfixersmart.datamodel import ModelReference
from comfyfixersmart.errors import WorkflowParseError
from comfyfixersmart.inventory import ModelInventory
from comfyfixersmart.scan import WorkflowScanner

posix_only = pytest.mark.skipif(os.name == "nt", reason="FIFOs and /dev need a POSIX system")

WF = {"nodes": [{"id": 1, "type": "LoraLoader", "mode": 0, "widgets_values": ["a.safetensors", 1, 1]}], "links": []}


@pytest.fixture
def scanner(make_config):
    return WorkflowScanner(make_config())


def _bounded(fn, timeout=60.0):
    """Run ``fn`` on a thread; fail (instead of hanging the suite) if it does not return."""
    box = {}
    done = threading.Event()

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(timeout), "the scanner blocked"
    if "error" in box:
        raise box["error"]
    return box["value"]


# -- only regular files -------------------------------------------------------------------------

@posix_only
@pytest.mark.parametrize("name", ["wf.json", "wf.png", "wf.webp", "WF.JSON"])
def test_a_fifo_named_like_a_workflow_is_refused_without_blocking(scanner, tmp_path, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    with pytest.raises(WorkflowParseError, match="FIFO"):
        _bounded(lambda: scanner.scan_workflow(fifo))
    # in a folder scan it is one unreadable file among the good ones, not a hang
    (tmp_path / "good.json").write_text(json.dumps(WF))
    results = _bounded(lambda: scanner.scan_directory(tmp_path))
    assert [r.model_references[0].key for r in results] == ["loras/a.safetensors"]
    assert [os.path.basename(e.path) for e in scanner.errors] == [name]


@posix_only
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null", "/dev/tty"])
def test_a_link_to_a_device_is_never_read(scanner, tmp_path, device):
    if not os.path.exists(device):
        pytest.skip(f"{device} does not exist here")
    link = tmp_path / "wf.json"
    link.symlink_to(device)
    with pytest.raises(WorkflowParseError, match="not a regular file|device|cannot read"):
        _bounded(lambda: scanner.scan_workflow(link))


@posix_only
def test_a_link_chain_to_a_fifo_and_a_socket_are_refused(scanner, tmp_path):
    import socket

    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "hop").symlink_to(tmp_path / "pipe")
    (tmp_path / "wf.json").symlink_to(tmp_path / "hop")
    with pytest.raises(WorkflowParseError, match="FIFO"):
        _bounded(lambda: scanner.scan_workflow(tmp_path / "wf.json"))
    sock_path = tmp_path / "s.json"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        with pytest.raises(WorkflowParseError):
            _bounded(lambda: scanner.scan_workflow(sock_path))


def test_a_link_to_a_regular_workflow_is_read(scanner, tmp_path):
    real = tmp_path / "real.json"
    real.write_text(json.dumps(WF))
    (tmp_path / "link.json").symlink_to(real)
    assert [r.key for r in scanner.scan_workflow(tmp_path / "link.json").model_references] == ["loras/a.safetensors"]


@pytest.mark.parametrize("size,ok", [(4096, True), (4097, False), (10 << 20, False)])
def test_size_cap_is_a_setting_with_a_clear_error(make_config, tmp_path, size, ok):
    body = json.dumps(WF)
    path = tmp_path / "wf.json"
    path.write_text(body + " " * (size - len(body)))
    scanner = WorkflowScanner(make_config(max_workflow_bytes=4096))
    if ok:
        assert scanner.scan_workflow(path).model_references
    else:
        with pytest.raises(WorkflowParseError, match="too large.*4096.*COMFYFIXER_MAX_WORKFLOW_BYTES"):
            scanner.scan_workflow(path)


def test_size_cap_from_the_environment(monkeypatch, tmp_path):
    from comfyfixersmart.settings import Config

    monkeypatch.setenv("COMFYFIXER_MAX_WORKFLOW_BYTES", "2048")
    assert Config.load().max_workflow_bytes == 2048
    monkeypatch.setenv("COMFYFIXER_MAX_WORKFLOW_BYTES", "12")
    with pytest.raises(Exception, match="max_workflow_bytes"):
        Config.load()


def test_a_directory_named_like_a_workflow(scanner, tmp_path):
    (tmp_path / "wf.json").mkdir()
    with pytest.raises(WorkflowParseError, match="directory"):
        scanner.scan_workflow(tmp_path / "wf.json")


@posix_only
def test_the_cli_scan_of_a_folder_with_a_fifo_finishes(tmp_path, capsys):
    from comfyfixersmart.cli import main

    os.mkfifo(tmp_path / "evil.json")
    (tmp_path / "good.json").write_text(json.dumps(WF))
    code = _bounded(lambda: main(["scan", str(tmp_path)]))
    assert isinstance(code, int)
    assert "FIFO" in " ".join(capsys.readouterr().err.split())


# -- present means "ComfyUI would load it" ------------------------------------------------------

def _ref(name, folder="loras"):
    return ModelReference(filename=name, node_type="LoraLoader", expected_type="lora", expected_directory=folder)


def _inventory(make_config, tmp_path, files):
    root = tmp_path / "ComfyUI"
    for rel in files:
        p = root / "models" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"w")
    (root / "models" / "loras").mkdir(parents=True, exist_ok=True)
    return root, ModelInventory(make_config()).build(root)


NFC = unicodedata.normalize("NFC", "café_ñ_Å.safetensors")
NFD = unicodedata.normalize("NFD", NFC)


@pytest.mark.parametrize("on_disk,in_workflow,present", [
    (NFD, NFC, False),  # the red team's case: NFD on disk, NFC in the workflow
    (NFC, NFD, False),
    (NFC, NFC, True),
    (NFD, NFD, True),
    ("sub/" + NFD, "sub/" + NFC, False),
    ("Détail.safetensors", "détail.safetensors", False),  # another case is another name
    ("MODEL.safetensors", "model.safetensors", False),
    ("model.SAFETENSORS", "model.SAFETENSORS", True),  # extensions are matched without case, names not
])
def test_names_compare_as_comfyui_compares_them(make_config, tmp_path, on_disk, in_workflow, present):
    _root, inv = _inventory(make_config, tmp_path, ["loras/" + on_disk])
    ref = inv.check(_ref(in_workflow))
    assert (ref.status == "present") is present, (ref.status, ref.found_path)
    if not present:
        # the near miss is worth a relink: reported elsewhere, with the spelling on disk
        assert ref.status == "elsewhere" and ref.found_path == "loras/" + on_disk


@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_the_scanner_keeps_the_workflow_spelling(scanner, form):
    name = unicodedata.normalize(form, "café.safetensors")
    wf = {"nodes": [{"id": 1, "type": "LoraLoader", "widgets_values": [name, 1, 1]}], "links": [],
          "models": [{"name": name, "directory": "loras", "url": "https://huggingface.co/a/b/resolve/main/x.safetensors"}]}
    [ref] = scanner.scan_data(wf).model_references
    assert ref.filename == name and ref.url  # metadata attached to the same spelling


def test_a_download_is_saved_under_the_workflow_spelling(make_config, tmp_path):
    root, _ = _inventory(make_config, tmp_path, [])
    with ComfyFixerCore(make_config(comfyui_root=root)) as core:
        target = core.inventory.target_path("loras", NFD)
    assert target.name == NFD


@posix_only
@pytest.mark.parametrize("kind", ["fifo", "broken_link", "dir_named_like_a_model", "link_to_dev_null"])
def test_only_regular_files_are_present(make_config, tmp_path, kind):
    root, _ = _inventory(make_config, tmp_path, [])
    target = root / "models" / "loras" / "x.safetensors"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "broken_link":
        target.symlink_to(tmp_path / "gone.safetensors")
    elif kind == "dir_named_like_a_model":
        target.mkdir()
    else:
        target.symlink_to("/dev/null")
    inv = ModelInventory(make_config()).build(root)
    assert inv.check(_ref("x.safetensors")).status != "present"
    assert not inv.has_model("x.safetensors", "loras")


@posix_only
def test_a_link_to_a_regular_file_is_present(make_config, tmp_path):
    root, _ = _inventory(make_config, tmp_path, [])
    store = tmp_path / "store.safetensors"
    store.write_bytes(b"w")
    (root / "models" / "loras" / "x.safetensors").symlink_to(store)
    inv = ModelInventory(make_config()).build(root)
    assert inv.check(_ref("x.safetensors")).status == "present"
