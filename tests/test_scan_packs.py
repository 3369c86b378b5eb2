"""Naming the custom-node pack a missing node type comes from (issue 9.5), from the bundled
extract of ComfyUI-Manager's extension-node-map, in the scanner, the CLI, the JSON report and
the scan route."""

from __future__ import annotations

import json

import pytest

from comfyfixersmart.datamodel import MissingPack
from comfyfixersmart.report import scan_to_json
from comfyfixersmart.scan import WorkflowScanner
from comfyfixersmart.scan.packs import MAP_FILE, ExtensionMap, extension_map, missing_packs
from comfyfixersmart.service.routes import FixerRoutes
from routes_support import mount_routes

SMALL = ExtensionMap({
    "packs": [["https://github.com/a/pack-a", "Pack A"], ["https://github.com/b/pack-b", "Pack B"],
              ["https://github.com/c/suffixed", "Suffixed"]],
    "nodes": {"OnlyA": 0, "Both": [0, 1], "OnlyB": 1, "AlsoB": 1},
    "patterns": [[r" \(sfx\)$", 2], ["[", 2]],  # a broken pattern is skipped
})


def test_fewest_packs_cover_the_node_types():
    packs = missing_packs(["Both", "OnlyB", "AlsoB", "Nobody", "Thing (sfx)"], ext_map=SMALL)
    assert [(p.title, p.node_types) for p in packs] == [
        ("Pack B", ["AlsoB", "Both", "OnlyB"]),  # B covers three: "Both" goes with it, not with A
        ("Suffixed", ["Thing (sfx)"]),
        (None, ["Nobody"]),  # no pack known: listed last, without url
    ]
    assert packs[-1].url is None and "no known custom-node pack" in packs[-1].message
    assert "Pack B (https://github.com/b/pack-b)" in packs[0].message and "once it is installed" in packs[0].message


@pytest.mark.parametrize("installed,expected", [
    (None, ["Pack A", "Pack B"]),
    ({"OnlyA"}, ["Pack B"]),
    ({"OnlyA", "OnlyB"}, []),
    (set(), ["Pack A", "Pack B"]),
])
def test_installed_node_types_are_not_missing(installed, expected):
    assert [p.title for p in missing_packs(["OnlyA", "OnlyB"], installed, ext_map=SMALL)] == expected


def test_junk_is_ignored():
    assert missing_packs(["", None, 5], ext_map=SMALL) == []  # type: ignore[list-item]
    broken = ExtensionMap({"packs": "x", "nodes": [], "patterns": [[1]]})
    assert broken.packs_for("OnlyA") == []


def test_the_bundled_map_records_its_provenance():
    data = json.loads(MAP_FILE.read_text(encoding="utf-8"))
    src = data["source"]
    assert src["package"] == "comfyui-manager" and src["version"] and "GPL" in src["license"]
    assert src["files"] == ["extension-node-map.json", "custom-node-list.json"]
    assert len(data["nodes"]) > 10_000 and len(data["packs"]) > 1_000


@pytest.mark.parametrize("node_type,url_part", [
    ("IPAdapterUnifiedLoader", "cubiq/ComfyUI_IPAdapter_plus"),
    ("FaceDetailer", "ltdrdata/ComfyUI-Impact-Pack"),
    ("Power Prompt (rgthree)", "rgthree/rgthree-comfy"),  # by the pack's name pattern
    ("UnetLoaderGGUF", "city96/ComfyUI-GGUF"),
])
def test_real_packs_are_named(node_type, url_part):
    [pack] = missing_packs([node_type])
    assert url_part in pack.url and pack.title and pack.node_types == [node_type]


def test_the_map_is_read_once():
    assert extension_map() is extension_map()


UI = {"nodes": [{"id": 1, "type": "IPAdapterUnifiedLoader", "widgets_values": ["PLUS (high strength)"]},
                {"id": 2, "type": "CheckpointLoaderSimple", "widgets_values": ["sd15.safetensors"]},
                {"id": 3, "type": "NoPackHasThisNode", "widgets_values": []}], "links": []}


def test_the_scanner_lists_packs_for_non_core_nodes(make_config):
    data = WorkflowScanner(make_config()).scan_data(UI)
    assert [(p.url, p.node_types) for p in data.missing_packs] == [
        ("https://github.com/cubiq/ComfyUI_IPAdapter_plus", ["IPAdapterUnifiedLoader"]),
        (None, ["NoPackHasThisNode"]),
    ]
    report = scan_to_json([data], [])
    assert report["report_version"] == 1
    assert report["workflows"][0]["missing_packs"][0] == {
        "node_types": ["IPAdapterUnifiedLoader"], "title": "ComfyUI_IPAdapter_plus",
        "url": "https://github.com/cubiq/ComfyUI_IPAdapter_plus"}


def test_with_a_comfyui_root_its_installed_packs_are_not_missing(make_config, tmp_path):
    root = tmp_path / "ComfyUI"
    (root / "models" / "checkpoints").mkdir(parents=True)
    (root / "nodes.py").write_text("NODE_CLASS_MAPPINGS = {'CheckpointLoaderSimple': object}\n")
    pack = root / "custom_nodes" / "ComfyUI_IPAdapter_plus"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text("class L:\n    pass\nNODE_CLASS_MAPPINGS = {'IPAdapterUnifiedLoader': L}\n")
    data = WorkflowScanner(make_config(comfyui_root=root)).scan_data(UI)
    assert [(p.url, p.node_types) for p in data.missing_packs] == [(None, ["NoPackHasThisNode"])]


def test_the_cli_names_the_pack(tmp_path, capsys):
    from comfyfixersmart.cli import main

    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(UI))
    main(["scan", str(wf)])
    text = " ".join(capsys.readouterr().out.split())
    assert "needs pack:" in text and "ComfyUI_IPAdapter_plus" in text and "once it is installed" in text
    main(["scan", "--json", str(wf)])
    report = json.loads(capsys.readouterr().out)
    assert report["workflows"][0]["missing_packs"][0]["title"] == "ComfyUI_IPAdapter_plus"


class LiveNodes:
    def __init__(self, types):
        self.types = types

    def node_types(self):
        return self.types


@pytest.mark.parametrize("live,expected", [
    (None, ["https://github.com/cubiq/ComfyUI_IPAdapter_plus", None]),  # outside ComfyUI: the scanner's view
    ({"CheckpointLoaderSimple", "IPAdapterUnifiedLoader"}, [None]),  # the running ComfyUI has the pack
    ({"CheckpointLoaderSimple"}, ["https://github.com/cubiq/ComfyUI_IPAdapter_plus", None]),
])
async def test_the_scan_route_returns_missing_packs(aiohttp_client, make_config, tmp_path, live, expected):
    root = tmp_path / "ComfyUI"
    (root / "models" / "checkpoints").mkdir(parents=True)
    fixer = FixerRoutes(folders=lambda: {"checkpoints": [str(root / "models" / "checkpoints")]}, config=make_config())
    if live is not None:
        fixer.node_map = LiveNodes(live)
    client = await mount_routes(aiohttp_client, fixer)
    try:
        resp = await client.post("/comfyfixer/scan", json={"workflow": UI})
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert [p["url"] for p in body["missing_packs"]] == expected
        assert all(set(p) == {"node_types", "title", "url"} for p in body["missing_packs"])
        assert body["informational"] == []
    finally:
        fixer.close()


def test_missing_pack_is_a_data_class():
    assert MissingPack(["X"], "T", "u").to_dict() == {"node_types": ["X"], "title": "T", "url": "u"}
