"""The bundled example (README's first command): its workflow and ComfyUI folder agree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfyfixersmart.datamodel import ELSEWHERE, MISSING, PRESENT, ModelReference
from comfyfixersmart.inventory import ModelInventory

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
WORKFLOW = EXAMPLES / "workflows" / "example_workflow.json"
COMFYUI = EXAMPLES / "ComfyUI"

#: (folder, file as written in the workflow) -> (status, found_path)
EXPECTED = {
    ("checkpoints", "sd_xl_base_1.0.safetensors"): (PRESENT, None),
    ("loras", "sdxl/add-detail-xl.safetensors"): (ELSEWHERE, "loras/style/add-detail-xl.safetensors"),
    ("embeddings", "negativeXL_D"): (MISSING, None),
    ("vae", "sdxl_vae.safetensors"): (MISSING, None),
    ("upscale_models", "4x-UltraSharp.pth"): (PRESENT, None),  # via extra_model_paths.yaml
}


@pytest.fixture
def inventory(make_config, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the yaml's relative base_path must not depend on the cwd
    return ModelInventory(make_config(), case_sensitive=True).build(COMFYUI)


def test_example_statuses(inventory):
    for (folder, name), (status, found) in EXPECTED.items():
        r = inventory.check(ModelReference(name, "Loader", folder.rstrip("s"), folder))
        assert (r.status, r.found_path) == (status, found), (folder, name)
    up = inventory.get_model_info("4x-UltraSharp.pth", "upscale_models")
    assert Path(up.path) == EXAMPLES / "extra_models" / "upscale_models" / "4x-UltraSharp.pth"
    assert inventory.folders["upscale_models"] == [
        COMFYUI / "models" / "upscale_models", EXAMPLES / "extra_models" / "upscale_models"]


def test_example_placeholders_are_tiny_and_not_indexed_noise(inventory):
    files = [p for p in EXAMPLES.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".pth", ".pt")]
    assert files and all(p.stat().st_size < 100 for p in files)
    assert sorted(i.basename for i in inventory) == [
        "4x-UltraSharp.pth", "add-detail-xl.safetensors", "sd_xl_base_1.0.safetensors"]


def test_example_workflow_is_a_consistent_ui_graph():
    wf = json.loads(WORKFLOW.read_text())
    nodes = {n["id"]: n for n in wf["nodes"]}
    assert wf["last_node_id"] == max(nodes) and wf["last_link_id"] == max(link[0] for link in wf["links"])
    for link_id, src, src_slot, dst, dst_slot, kind in wf["links"]:
        assert link_id in nodes[src]["outputs"][src_slot]["links"]
        assert nodes[src]["outputs"][src_slot]["type"] == kind
        assert nodes[dst]["inputs"][dst_slot]["link"] == link_id
    (meta,) = wf["models"]
    assert meta["directory"] == "vae" and meta["url"].startswith("https://huggingface.co/")
    assert len(meta["hash"]) == 64 and meta["hash_type"] == "sha256"
    prompts = " ".join(str(v) for n in wf["nodes"] if n["type"] == "CLIPTextEncode" for v in n["widgets_values"])
    assert "embedding:negativeXL_D" in prompts


def test_example_through_the_scanner(inventory):
    scan = pytest.importorskip("comfyfixersmart.scan")
    data = scan.WorkflowScanner().scan_workflow(str(WORKFLOW))
    got = {(r.expected_directory, r.filename): r for r in inventory.check_all(data.model_references)}
    assert set(got) == set(EXPECTED)
    for key, (status, found) in EXPECTED.items():
        assert (got[key].status, got[key].found_path) == (status, found), key
    vae = got[("vae", "sdxl_vae.safetensors")]
    assert vae.url and vae.hash and vae.hash_type == "sha256"
