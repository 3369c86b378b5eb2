"""``<lora:NAME:w>`` prompt tags (issue 9.6): required only on nodes that apply them (or text
wired into one), informational elsewhere; matched with or without the extension; a file
downloaded for a tag keeps its real extension."""

from __future__ import annotations

import pytest

from comfyfixersmart.core import ComfyFixerCore
from comfyfixersmart.datamodel import AnalysisResult, ModelReference, Resolution, SearchResult
from comfyfixersmart.inventory import ModelInventory
from comfyfixersmart.scan import WorkflowScanner
from comfyfixersmart.scan.prompts import LORA_TAG_NODES
from routes_support import mount_routes


@pytest.fixture
def scanner(make_config):
    return WorkflowScanner(make_config())


def node(nid, ntype, values, inputs=()):
    return {"id": nid, "type": ntype, "mode": 0, "widgets_values": list(values), "inputs": list(inputs)}


TEXT = "a cat, <lora:add_detail:0.6>, <LORA:styles/ink_wash:0.4:0.2>"


@pytest.mark.parametrize("ntype", ["CLIPTextEncode", "CLIPTextEncodeSDXL", "PrimitiveStringMultiline",
                                   "ImpactWildcardProcessor", "SomeUnknownTextNode", "Note"])
def test_tags_on_nodes_that_do_not_apply_them_are_informational(scanner, ntype):
    data = scanner.scan_data({"nodes": [node(1, ntype, [TEXT])], "links": []})
    assert data.model_references == []
    if ntype != "Note":
        info = {r.key: r for r in data.informational_references}
        assert set(info) == {"loras/add_detail", "loras/styles/ink_wash"}
        assert all(r.optional and r.source == "lora_tag_ignored" for r in info.values())


@pytest.mark.parametrize("ntype", sorted(LORA_TAG_NODES))
def test_tags_on_nodes_that_apply_them_are_required(scanner, ntype):
    data = scanner.scan_data({"nodes": [node(1, ntype, [TEXT])], "links": []})
    refs = {r.key: r for r in data.model_references}
    assert set(refs) == {"loras/add_detail", "loras/styles/ink_wash"}
    assert all(not r.optional and r.source == "lora_tag" for r in refs.values())
    assert data.informational_references == []


def test_text_wired_into_a_tag_loader_is_required_ui(scanner):
    wf = {"nodes": [
        node(1, "PrimitiveStringMultiline", ["<lora:from_primitive:1>"]),
        node(2, "Reroute", [], inputs=[{"name": "", "link": 10}]),
        node(3, "StringConcatenate", ["<lora:from_concat:1>", ""], inputs=[{"name": "string_a", "link": 11}]),
        node(4, "LoraTagLoader", [""], inputs=[{"name": "text", "link": 12}]),
        node(5, "CLIPTextEncode", ["<lora:only_words:1>"]),
    ], "links": [[10, 1, 0, 2, 0, "STRING"], [11, 2, 0, 3, 0, "STRING"], [12, 3, 0, 4, 0, "STRING"]]}
    data = scanner.scan_data(wf)
    assert {r.key for r in data.model_references} == {"loras/from_primitive", "loras/from_concat"}
    assert [r.key for r in data.informational_references] == ["loras/only_words"]


def test_text_wired_into_a_tag_loader_is_required_api(scanner):
    prompt = {
        "1": {"class_type": "PrimitiveString", "inputs": {"value": "<lora:wired:0.7>"}},
        "2": {"class_type": "ImpactWildcardEncode", "inputs": {"wildcard_text": ["1", 0], "populated_text": ""}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "<lora:ignored:1>", "clip": ["9", 1]}},
    }
    data = scanner.scan_data(prompt)
    assert [r.key for r in data.model_references] == ["loras/wired"]
    assert [r.key for r in data.informational_references] == ["loras/ignored"]


def test_the_same_name_required_elsewhere_is_not_informational(scanner):
    wf = {"nodes": [node(1, "CLIPTextEncode", ["<lora:x.safetensors:1>"]),
                    node(2, "LoraLoader", ["x.safetensors", 1, 1])], "links": []}
    data = scanner.scan_data(wf)
    assert [r.key for r in data.model_references] == ["loras/x.safetensors"]
    assert data.informational_references == []


# -- presence: with or without the extension -----------------------------------------------------

@pytest.mark.parametrize("tag,on_disk,present", [
    ("add_detail", "add_detail.safetensors", True),
    ("add_detail", "add_detail.pt", True),
    ("add_detail.safetensors", "add_detail.safetensors", True),
    ("styles/ink", "styles/ink.safetensors", True),
    ("ink", "styles/ink.safetensors", True),  # the loaders match the base name in sub-folders
    ("add_detail", "add_detail.txt", False),  # not a model file: ComfyUI does not list it
    ("add_detail", "Add_Detail.safetensors", False),  # another name
    ("add_detail", "add_detail_v2.safetensors", False),
    ("styles/ink", "other/ink.safetensors", False),
])
def test_tag_names_match_with_or_without_extension(make_config, tmp_path, scanner, tag, on_disk, present):
    root = tmp_path / "ComfyUI"
    target = root / "models" / "loras" / on_disk
    target.parent.mkdir(parents=True)
    target.write_bytes(b"lora")
    [ref] = scanner.scan_data({"nodes": [node(1, "LoraTagLoader", [f"<lora:{tag}:0.6>"])], "links": []}).model_references
    inv = ModelInventory(make_config()).build(root)
    assert (inv.check(ref).status == "present") is present


def test_a_loader_widget_name_still_needs_its_exact_name(make_config, tmp_path, scanner):
    root = tmp_path / "ComfyUI"
    (root / "models" / "loras").mkdir(parents=True)
    (root / "models" / "loras" / "add_detail.safetensors").write_bytes(b"l")
    ref = ModelReference(filename="add_detail", node_type="LoraLoader", expected_type="lora",
                         expected_directory="loras", source="core")
    assert ModelInventory(make_config()).build(root).check(ref).status != "present"


# -- downloads keep the real extension -----------------------------------------------------------

def _cand(filename, url):
    return SearchResult(backend="civitai", model_id="1", name="n", filename=filename, model_type="lora",
                        download_url=url, confidence=0.97, metadata={"reason": "exact name"})


@pytest.mark.parametrize("filename,url,saved", [
    ("add_detail.safetensors", "https://civitai.com/api/download/models/1", "add_detail.safetensors"),
    ("Add Detail v2.SAFETENSORS", "https://civitai.com/api/download/models/1", "add_detail.safetensors"),
    ("weird", "https://huggingface.co/o/r/resolve/main/add_detail.safetensors", "add_detail.safetensors"),
    ("add_detail.ckpt", "https://civitai.com/api/download/models/1", "add_detail.ckpt"),
])
def test_a_file_downloaded_for_a_tag_keeps_its_real_extension(make_config, tmp_path, filename, url, saved):
    root = tmp_path / "ComfyUI"
    (root / "models" / "loras").mkdir(parents=True)
    config = make_config(comfyui_root=root, allow_pickle=True)
    ref = ModelReference(filename="add_detail", node_type="LoraTagLoader", expected_type="lora",
                         expected_directory="loras", source="lora_tag")
    analysis = AnalysisResult(resolutions=[Resolution(reference=ref, candidates=[_cand(filename, url)])])
    with ComfyFixerCore(config, inventory=ModelInventory(config).build(root)) as core:
        specs, failures = core.plan(analysis)
    assert not failures, failures
    [spec] = specs
    assert spec["filename"] == saved
    assert spec["save_path"] == str(root / "models" / "loras" / saved)


async def test_the_scan_route_lists_ignored_tags_as_informational(aiohttp_client, make_config, tmp_path):

    from comfyfixersmart.service.routes import FixerRoutes

    root = tmp_path / "ComfyUI"
    (root / "models" / "loras").mkdir(parents=True)
    fixer = FixerRoutes(folders=lambda: {"loras": [str(root / "models" / "loras")]}, config=make_config())
    client = await mount_routes(aiohttp_client, fixer)
    try:
        wf = {"nodes": [node(1, "CLIPTextEncode", ["<lora:words_only:1>"]),
                        node(2, "LoraTagLoader", ["<lora:applied:1>"])], "links": []}
        body = await (await client.post("/comfyfixer/scan", json={"workflow": wf})).json()
        assert [r["key"] for r in body["references"]] == ["loras/applied"]
        assert [r["key"] for r in body["informational"]] == ["loras/words_only"]
        assert body["summary"]["total"] == 1
    finally:
        fixer.close()
