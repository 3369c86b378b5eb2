"""The loader map inside a real ComfyUI 0.3.75: a custom-node pack of the tests' own
(tests/fixtures/custom_nodes/cfs_test_pack, every declaration style: V1 plain, ["None"] + list,
names/comprehensions, a helper method, a from-import, V3 io.Combo, keys the pack registers with
add_model_folder_path and by assigning into folder_names_and_paths, legacy clip/unet) is installed
into ComfyUI's custom_nodes/, and POST /comfyfixer/scan must put every model of a workflow using
all its loaders (UI and API form) in the right folder.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PACK = FIXTURES / "custom_nodes" / "cfs_test_pack"
WORKFLOWS = FIXTURES / "cfs_test_pack"
EXPECTED = json.loads((WORKFLOWS / "expected.json").read_text())["references"]
#: files put on disk before ComfyUI starts: their folder lists are then not empty, so the live
#: INPUT_TYPES check compares real options
PRESENT = ["cfs_face_models/cfs_face_restore.pth", "loras/cfs_lora_a.safetensors", "cfs_sam/cfs_sam_b.pth",
           "style_models/cfs_style.safetensors"]


@pytest.fixture(scope="module")
def server(start_comfyui_session, tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy-loadermap")
    shutil.copytree(PACK, base / "custom_nodes" / "cfs_test_pack")
    for rel in PRESENT:
        (base / "models" / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / "models" / rel).write_bytes(b"not a model")
    srv = start_comfyui_session(base, env={"COMFYFIXER_CACHE_DIR": str(base / "cfs-cache"),
                                           "COMFYFIXER_STATE_DIR": str(base / "cfs-state")})
    yield srv
    srv.stop()


def test_the_pack_loaded_in_comfyui(server):
    info = server.get_json("/object_info")
    types = set(EXPECTED.values())
    assert types <= set(info), (types - set(info), server.log_tail())
    # ComfyUI itself lists the pack's own key for its loader
    assert info["CFSFaceUpscaleLoader"]["input"]["required"]["model_name"][0] == ["cfs_face_restore.pth"]


@pytest.mark.parametrize("form", ["ui", "api"])
def test_scan_route_finds_every_model_in_its_folder(server, form):
    folders_before = server.get_json("/comfyfixer/folders")
    workflow = json.loads((WORKFLOWS / f"workflow_{form}.json").read_text())
    r = server.http("POST", "/comfyfixer/scan", {"workflow": workflow}, timeout=120)
    assert r.status == 200, r.text[:1000]
    refs = r.json()["references"]
    got = {f"{x['directory']}/{x['filename']}": x["node_type"] for x in refs}
    assert got == EXPECTED
    status = {f"{x['directory']}/{x['filename']}": x["status"] for x in refs}
    assert {k for k, v in status.items() if v == "present"} == set(PRESENT)
    assert {x["source"] for x in refs} == {"custom"}
    assert r.json()["missing_packs"] == []  # the pack is installed in this ComfyUI
    # the map came from the running ComfyUI (its per-file cache), not from reading the folder
    cache = server.base_directory / "cfs-cache"
    assert (cache / "nodedefs-live.json").is_file() and not (cache / "nodedefs.json").exists()
    # the map is built without changing ComfyUI's folder lists or its node set
    assert server.get_json("/comfyfixer/folders") == folders_before
    assert set(EXPECTED.values()) <= set(server.get_json("/object_info"))


def test_static_widget_positions_agree_with_object_info(server, comfyui_install):
    """The reader's widget positions for every core loader (and the pack's) are the ones the
    running ComfyUI's node definitions give."""
    from comfyfixersmart.comfyui.nodemap import _live_inputs
    from comfyfixersmart.scan.rootdefs import read_root

    info = server.get_json("/object_info")
    core = read_root(comfyui_install.comfyui_dir, None).core
    pack = read_root(server.base_directory, None).packs["cfs_test_pack"]
    checked = []
    for defs in (core, pack):
        for node_type, node in defs.nodes.items():
            if node_type not in info:
                continue
            _, positions = _live_inputs(info[node_type]["input"])
            for inp in node.inputs:
                assert inp.index is not None, (node_type, inp)
                assert positions.get(inp.input) == inp.index, (node_type, inp, positions)
                checked.append(node_type)
    assert len(set(checked)) >= 30, checked
