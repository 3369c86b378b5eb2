"""Graph features: subgraphs (nested, proxyWidgets, host widgets), group nodes, modes, prompts,
metadata, the unknown-node fallback, user loader tables and validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfyfixersmart.errors import ConfigurationError
from comfyfixersmart.scan import WorkflowScanner

FIXTURES = Path(__file__).parent / "fixtures" / "workflows"


@pytest.fixture
def scanner(make_config):
    return WorkflowScanner(make_config())


def by_key(refs):
    return {r.key: r for r in refs}


def ui(*nodes, **extra):
    return {"nodes": list(nodes), "links": [], **extra}


def node(nid, ntype, values, mode=0, **kw):
    return {"id": nid, "type": ntype, "mode": mode, "widgets_values": values, **kw}


def test_nested_subgraphs_with_proxy_widgets(scanner):
    data = scanner.scan_workflow(FIXTURES / "subgraph_nested_proxy.json")
    refs = by_key(data.model_references)
    assert set(refs) == {
        "diffusion_models/host/flux.safetensors", "diffusion_models/bypassed/other.safetensors",
        "checkpoints/inner/base.safetensors", "loras/deep/muted.safetensors", "vae/ae.safetensors",
    }
    # value promoted from a subgraph input: the host's widget wins over the inner node's stale one
    flux = refs["diffusion_models/host/flux.safetensors"]
    assert (flux.node_id, flux.node_type, flux.subgraph_path) == (20, "UNETLoader", [10])
    assert [(loc.node_id, loc.where) for loc in flux.locations] == [(10, "proxyWidgets[0]")]
    assert not flux.optional
    assert refs["diffusion_models/bypassed/other.safetensors"].optional  # host 11 is bypassed
    # one reference for the inner widget + the proxy widgets of both hosts + top-level metadata
    base = refs["checkpoints/inner/base.safetensors"]
    places = {(loc.node_id, loc.where, tuple(loc.subgraph_path)) for loc in base.locations}
    assert {(10, "proxyWidgets[1]", ()), (21, "widgets_values[0]", (10,)), (21, "widgets_values[0]", (11,))} <= places
    assert not base.optional  # optional only if every place is
    assert base.url == "https://civitai.com/api/download/models/1"
    muted = refs["loras/deep/muted.safetensors"]
    assert muted.optional and muted.subgraph_path == [10, 22]
    assert {tuple(loc.subgraph_path) for loc in muted.locations} == {(10, 22), (11, 22)}
    vae = refs["vae/ae.safetensors"]
    assert vae.hash == "ab12" * 16 and vae.hash_type == "sha256" and vae.url.endswith("/ae.safetensors")
    assert data.custom_node_types == set()
    assert data.metadata["subgraphs"] == ["aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"]


def test_subgraph_host_widget_without_proxy(scanner):
    sub = {"id": "s1", "inputs": [{"name": "ckpt", "type": "COMBO"}], "outputs": [],
           "nodes": [node(1, "CheckpointLoaderSimple", ["inner.safetensors"],
                          inputs=[{"name": "ckpt_name", "widget": {"name": "ckpt_name"}, "link": 5}])],
           "links": [[5, -10, 0, 1, 0, "COMBO"]]}
    host = node(7, "s1", ["from_host.safetensors"], inputs=[{"name": "ckpt", "widget": {"name": "ckpt"}, "link": None}])
    [ref] = scanner.extract_models(ui(host, definitions={"subgraphs": [sub]}))
    assert ref.key == "checkpoints/from_host.safetensors"
    assert [(loc.node_id, loc.where) for loc in ref.locations] == [(7, "widgets_values[0]")]


def test_subgraph_input_linked_outside(scanner):
    sub = {"id": "s1", "inputs": [{"name": "lora"}], "outputs": [],
           "nodes": [node(1, "LoraLoader", ["x.safetensors", 1, 1],
                          inputs=[{"name": "lora_name", "widget": {"name": "lora_name"}, "link": 2}])],
           "links": [{"id": 2, "origin_id": -10, "origin_slot": 0, "target_id": 1, "target_slot": 0}]}
    wf = ui(node(1, "PrimitiveNode", ["outer.safetensors"]),
            node(2, "s1", [], inputs=[{"name": "lora", "link": 9}]),
            definitions={"subgraphs": [sub]})
    wf["links"] = [[9, 1, 0, 2, 0, "COMBO"]]
    assert [r.key for r in scanner.extract_models(wf)] == ["loras/outer.safetensors"]


def test_cyclic_and_self_referencing_subgraphs_terminate(scanner):
    a = {"id": "A", "nodes": [node(1, "B", []), node(2, "VAELoader", ["a.safetensors"])], "links": []}
    b = {"id": "B", "nodes": [node(1, "A", []), node(2, "B", [])], "links": []}
    data = scanner.scan_data(ui(node(1, "A", []), definitions={"subgraphs": [a, b]}))
    assert [r.key for r in data.model_references] == ["vae/a.safetensors"]
    assert any("cycle" in w for w in data.warnings)
    assert any("cycle" in w for w in scanner.validate_workflow(ui(node(1, "A", []), definitions={"subgraphs": [a, b]})).warnings)


def test_group_nodes_both_spellings(scanner):
    groups = {"Loaders": {"nodes": [
        {"index": 0, "type": "CheckpointLoaderSimple", "widgets_values": ["template.safetensors"]},
        {"index": 1, "type": "RandomNoise", "widgets_values": [1, "randomize"]},
        {"index": 2, "type": "LoraLoaderModelOnly", "widgets_values": ["template_lora.safetensors", 1.0]},
    ], "links": [], "external": []}}
    wf = ui(node(5, "workflow>Loaders", ["real.safetensors", 42, "fixed", "real_lora.safetensors", 0.5]),
            node(6, "workflow/Loaders", ["muted.safetensors", 1, "fixed", "None", 1.0], mode=2),
            extra={"groupNodes": groups})
    data = scanner.scan_data(wf)
    refs = by_key(data.model_references)
    assert set(refs) == {"checkpoints/real.safetensors", "loras/real_lora.safetensors", "checkpoints/muted.safetensors"}
    assert refs["checkpoints/real.safetensors"].node_id == "5:0"
    assert refs["checkpoints/real.safetensors"].subgraph_path == [5]
    assert refs["checkpoints/muted.safetensors"].optional
    assert data.custom_node_types == set() and data.metadata["group_nodes"] == ["Loaders"]


def test_modes_windows_paths_and_named_widgets(scanner):
    wf = ui(node(1, "LoraLoader", ["sub\\dir\\a.safetensors", 1, 1], mode=2),
            node(2, "LoraLoader", {"lora_name": "b.safetensors", "strength_model": 1}, mode=4),
            node(3, "VAELoader", ["ignored-by-named"], widgets_values_named={"vae_name": "named.vae.pt"}),
            node(4, "LoraLoader", ["a/../../../etc/passwd.safetensors", 1, 1]),
            node(5, "LoraLoader", ["sub/dir/a.safetensors", 1, 1]))
    data = scanner.scan_data(wf)
    refs = by_key(data.model_references)
    assert set(refs) == {"loras/sub/dir/a.safetensors", "loras/b.safetensors", "vae/named.vae.pt"}
    assert not refs["loras/sub/dir/a.safetensors"].optional  # node 5 is active
    assert [loc.optional for loc in refs["loras/sub/dir/a.safetensors"].locations] == [True, False]
    assert refs["loras/b.safetensors"].optional
    assert refs["loras/b.safetensors"].locations[0].where == "widgets_values.lora_name"
    assert any("unsafe" in w for w in data.warnings)


def test_core_loader_table_details(scanner):
    wf = ui(node(1, "VAELoader", ["taesdxl"]), node(2, "VAELoader", ["pixel_space"]),
            node(3, "VAELoader", ["lighttaew2_1.safetensors"]), node(4, "TripleCLIPLoader", ["g.sft", "l.sft", "t5.sft"]),
            node(5, "QuadrupleCLIPLoader", ["1.safetensors", "2.safetensors", "3.safetensors", "4.safetensors"]),
            node(6, "LTXAVTextEncoderLoader", ["gemma.safetensors", "ltx2.safetensors", "default"]),
            node(7, "CheckpointLoader", ["v1.yaml", "old.ckpt"]), node(8, "SAMLoader", ["ESAM", "AUTO"]),
            node(9, "DiffusersLoader", ["stable-diffusion-2-1"]), node(10, "UNETLoader", ["model.gguf", "default"]))
    keys = {r.key for r in scanner.extract_models(wf)}
    assert keys == {"vae_approx/taesdxl_encoder.pth", "vae_approx/taesdxl_decoder.pth", "vae_approx/lighttaew2_1.safetensors",
                    "text_encoders/g.sft", "text_encoders/l.sft", "text_encoders/t5.sft",
                    "text_encoders/1.safetensors", "text_encoders/2.safetensors", "text_encoders/3.safetensors",
                    "text_encoders/4.safetensors", "text_encoders/gemma.safetensors", "checkpoints/ltx2.safetensors",
                    "configs/v1.yaml", "checkpoints/old.ckpt", "diffusers/stable-diffusion-2-1",
                    "diffusion_models/model.gguf"}


def test_custom_loader_shapes(scanner):
    power = [{}, {"type": "PowerLoraLoaderHeaderWidget"},
             {"on": True, "lora": "on.safetensors", "strength": 1}, {"on": False, "lora": "off.safetensors", "strength": 1},
             {}, ""]
    stack = ["simple", 2] + ["a.safetensors", 1, 1, 1, "b.safetensors", 1, 1, 1, "c.safetensors", 1, 1, 1]
    wf = ui(node(1, "Power Lora Loader (rgthree)", power),
            node(2, "CR LoRA Stack", ["On", "x.safetensors", 1, 1, "Off", "y.safetensors", 1, 1, "On", "None", 1, 1]),
            node(3, "LoRA Stacker", stack),
            node(4, "UltralyticsDetectorProvider", ["bbox/face_yolov8m.pt"]),
            node(5, "Efficient Loader", ["ckpt.safetensors", "Baked VAE", -1, "None", 1, 1, "p", "n"]))
    refs = by_key(scanner.extract_models(wf))
    assert {k: r.optional for k, r in refs.items()} == {
        "loras/on.safetensors": False, "loras/off.safetensors": True,
        "loras/x.safetensors": False, "loras/y.safetensors": True,
        "loras/a.safetensors": False, "loras/b.safetensors": False, "loras/c.safetensors": True,  # beyond lora_count
        "ultralytics/bbox/face_yolov8m.pt": False, "checkpoints/ckpt.safetensors": False}
    assert refs["loras/on.safetensors"].source == "custom"
    api = {"1": {"class_type": "Power Lora Loader (rgthree)",
                 "inputs": {"lora_1": {"on": True, "lora": "p.safetensors", "strength": 1}, "➕ Add Lora": ""}}}
    [ref] = scanner.extract_models(api)
    assert ref.key == "loras/p.safetensors" and ref.locations[0].where == "inputs.lora_1"


def test_embeddings_and_lora_tags(scanner):
    text = "(embedding:EasyNegative:1.2), embedding:sub\\neg.pt, embedding:bad-hands-5. <lora:detail:0.6> <lora:x y>"
    wf = ui(node(1, "CLIPTextEncode", [text]), node(2, "MarkdownNote", ["embedding:Nope <lora:no:1>"]),
            node(3, "Note", ["embedding:Nope2"]), node(4, "LoraTagLoader", ["<lora:detail:0.6> <lora:x y>"]))
    refs = by_key(scanner.extract_models(wf))
    assert set(refs) == {"embeddings/EasyNegative", "embeddings/sub/neg.pt", "embeddings/bad-hands-5",
                         "loras/detail", "loras/x y"}
    assert refs["embeddings/EasyNegative"].source == "embedding" and refs["embeddings/EasyNegative"].expected_type == "embedding"
    assert refs["loras/detail"].source == "lora_tag"
    assert {loc.node_id for loc in refs["loras/detail"].locations} == {4}  # CLIPTextEncode ignores tags


def test_unknown_node_fallback_and_mapping(make_config):
    wf = ui(node(1, "MyFancyLoraNode", ["fancy.safetensors", 0.5, "not a model"]),
            node(2, "SomethingElse", ["thing.onnx"]),
            node(3, "CheckpointLoaderSimple", ["shared.safetensors"]),
            node(4, "Workflow Component", ["shared.safetensors"]),
            node(5, "LoadImage", ["photo.png", "image"]),
            node(6, "KSampler", [1, "fixed", 20, 8, "euler", "normal", 1.0]))
    refs = by_key(WorkflowScanner(make_config()).extract_models(wf))
    assert set(refs) == {"loras/fancy.safetensors", "unknown/thing.onnx", "checkpoints/shared.safetensors"}
    fancy = refs["loras/fancy.safetensors"]
    assert (fancy.source, fancy.confidence, fancy.expected_type) == ("fallback", 0.5, "lora")
    assert "node type 'MyFancyLoraNode'" in fancy.folder_reason
    assert refs["unknown/thing.onnx"].expected_type == "unknown"
    assert refs["unknown/thing.onnx"].confidence == 0.3 and "choose it by hand" in refs["unknown/thing.onnx"].folder_reason
    # the unknown node naming a file a real loader names is one more place of that reference
    assert {loc.node_id for loc in refs["checkpoints/shared.safetensors"].locations} == {3, 4}
    mapped = WorkflowScanner(make_config(model_type_mapping={"SomethingElse": "upscale_models"}))
    ref = by_key(mapped.extract_models(wf))["upscale_models/thing.onnx"]
    assert (ref.source, ref.confidence) == ("mapping", 0.9)


def test_custom_node_types(scanner):
    data = scanner.scan_data(ui(node(1, "KSampler", []), node(2, "IPAdapterAdvanced", []), node(3, "Reroute", []),
                                node(4, "PrimitiveNode", []), node(5, "TripleCLIPLoader", [])))
    assert data.custom_node_types == {"IPAdapterAdvanced"}


def test_user_loader_table(make_config, tmp_path):
    table = {"loaders": {"MyLoader": [{"input": "model", "folder": "unet", "index": 1,
                                       "prefixes": {"xl/": "checkpoints"}}],
                         "LoraLoader": [{"input": "lora_name", "folder": "custom_loras", "index": 0}]}}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(table))
    scanner = WorkflowScanner(make_config(), loader_tables=[path])
    wf = ui(node(1, "MyLoader", [3, "a.safetensors"]), node(2, "MyLoader", [3, "xl/b.safetensors"]),
            node(3, "LoraLoader", ["c.safetensors", 1, 1]))
    refs = by_key(scanner.extract_models(wf))
    assert set(refs) == {"diffusion_models/a.safetensors", "checkpoints/b.safetensors", "custom_loras/c.safetensors"}
    assert refs["diffusion_models/a.safetensors"].source == "user"
    path.write_text(json.dumps({"loaders": {"X": [{"folder": "loras"}]}}))
    with pytest.raises(ConfigurationError, match="'input'"):
        WorkflowScanner(make_config(), loader_tables=[path]).extract_models(wf)


def test_shifted_widget_falls_back_to_extension(scanner):
    # an older node version with an extra widget first: the indexed value is not a file name
    [ref] = scanner.extract_models(ui(node(1, "UpscaleModelLoader", ["auto", "4x_foo.pth"])))
    assert ref.key == "upscale_models/4x_foo.pth" and ref.confidence == 0.9


def test_validate_workflow(scanner):
    ok = scanner.validate_workflow(ui(node(1, "KSampler", [])))
    assert ok.valid and ok.format == "ui" and bool(ok)
    bad = scanner.validate_workflow({"nodes": [None, {"id": 1}, {"id": 1, "type": "A"}, {"id": 1, "type": "B"}],
                                     "links": [[1, 1, 0, 99, 0, "X"], "junk"]})
    assert not bad.valid and len(bad.errors) == 2
    assert any("duplicate node id" in w for w in bad.warnings)
    assert any("missing node 99" in w for w in bad.warnings)
    assert not scanner.validate_workflow({"foo": 1}).valid
    assert not scanner.validate_workflow([1, 2]).valid  # type: ignore[arg-type]
    api = scanner.validate_workflow({"1": {"class_type": "X", "inputs": {"a": ["2", 0]}}})
    assert api.valid and api.format == "api" and "missing node" in api.warnings[0]


def test_host_widget_values_follow_the_subgraph_inputs_that_feed_widgets(scanner):
    """The frontend saves one host value per subgraph input feeding an inner widget, in the
    subgraph's input order; the host's own ``inputs`` list may lack some (as in ComfyUI's
    official templates), so it cannot be the index."""
    sub = {"id": "S", "inputs": [
        {"name": "image", "type": "IMAGE", "linkIds": []},
        {"name": "unet_name", "type": "COMBO", "linkIds": [1]},
        {"name": "vae_name", "type": "COMBO", "linkIds": [2]},
        {"name": "vae_name_1", "type": "COMBO", "linkIds": [3]},
        {"name": "coords", "type": "STRING", "linkIds": [4]},  # a socket-only string: no host value
        {"name": "model_name", "type": "COMBO", "linkIds": [5]}],
        "nodes": [
            {"id": 10, "type": "UNETLoader", "inputs": [{"name": "unet_name", "widget": {"name": "unet_name"}, "link": 1}],
             "widgets_values": ["inner-unet.safetensors", "default"]},
            {"id": 11, "type": "VAELoader", "inputs": [{"name": "vae_name", "widget": {"name": "vae_name"}, "link": 2}],
             "widgets_values": ["inner-a.safetensors"]},
            {"id": 12, "type": "VAELoader", "inputs": [{"name": "vae_name", "widget": {"name": "vae_name"}, "link": 3}],
             "widgets_values": ["inner-b.safetensors"]},
            {"id": 13, "type": "SomeNode", "inputs": [{"name": "coords", "link": 4}], "widgets_values": []},
            {"id": 14, "type": "LatentUpscaleModelLoader",
             "inputs": [{"name": "model_name", "widget": {"name": "model_name"}, "link": 5}],
             "widgets_values": ["inner-up.safetensors"]}],
        "links": [{"id": i, "origin_id": -10, "origin_slot": s, "target_id": t, "target_slot": 0, "type": "*"}
                  for i, s, t in ((1, 1, 10), (2, 2, 11), (3, 3, 12), (4, 4, 13), (5, 5, 14))]}
    host = {"id": 1, "type": "S", "mode": 0,
            "inputs": [{"name": "vae_name", "widget": {"name": "vae_name"}, "link": None},  # unet_name missing
                       {"name": "model_name", "widget": {"name": "model_name"}, "link": None}],
            "widgets_values": ["unet.safetensors", "video-vae.safetensors", "audio-vae.safetensors", "up.safetensors"]}
    wf = {"nodes": [host], "links": [], "definitions": {"subgraphs": [sub]}}
    assert {r.key for r in scanner.extract_models(wf)} == {
        "diffusion_models/unet.safetensors", "vae/video-vae.safetensors", "vae/audio-vae.safetensors",
        "latent_upscale_models/up.safetensors"}
