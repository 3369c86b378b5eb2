"""Property tests: arbitrary JSON, mangled workflows and random bytes never crash the scanner."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from comfyfixersmart.datamodel import ModelReference, WorkflowData
from comfyfixersmart.errors import WorkflowParseError
from comfyfixersmart.scan import WorkflowScanner
from comfyfixersmart.scan.loading import parse_workflow_bytes
from comfyfixersmart.settings import Config

SCANNER = WorkflowScanner(Config(output_dir="/tmp/cfs-fuzz", log_dir="/tmp/cfs-fuzz", state_dir="/tmp/cfs-fuzz",
                                 cache_dir="/tmp/cfs-fuzz"))
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False),
                    st.sampled_from(["", "None", "a.safetensors", "x\\y.ckpt", "../evil.pt", "C:\\a.pt",
                                     "embedding:neg:1.2", "<lora:z:0.5>", "bbox/f.pt", "taesd", "-10", "s1"]),
                    st.text(max_size=20))
json_values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=5),
                                                      st.dictionaries(st.text(max_size=8), c, max_size=5)),
                           max_leaves=12)
node_types = st.sampled_from(["CheckpointLoaderSimple", "LoraLoader", "VAELoader", "DualCLIPLoader", "PrimitiveNode",
                              "Reroute", "Power Lora Loader (rgthree)", "LoRA Stacker", "CR LoRA Stack", "Note",
                              "CLIPTextEncode", "Unknown Node", "s1", "s2", "workflow>G", "workflow/G"])
ids = st.one_of(st.integers(-20, 20), st.sampled_from(["1", "2", "-10", "x"]), json_values)
links = st.one_of(st.lists(st.one_of(ids, json_values), max_size=6),
                  st.fixed_dictionaries({"id": ids, "origin_id": ids, "origin_slot": ids, "target_id": ids,
                                         "target_slot": ids}), json_values)
inputs = st.lists(st.one_of(st.fixed_dictionaries({"name": st.sampled_from(["ckpt_name", "lora_name", "unet_name", "x"]),
                                                   "link": ids, "widget": json_values}), json_values), max_size=4)
nodes = st.one_of(st.fixed_dictionaries(
    {"id": ids, "type": node_types, "mode": st.one_of(st.sampled_from([0, 2, 4]), json_values),
     "widgets_values": json_values, "inputs": inputs,
     "properties": st.one_of(json_values, st.fixed_dictionaries({"proxyWidgets": json_values, "models": json_values}))}),
    json_values)
subgraph = st.fixed_dictionaries({"id": st.sampled_from(["s1", "s2"]), "nodes": st.lists(nodes, max_size=5),
                                  "links": st.lists(links, max_size=4), "inputs": json_values})
ui_graphs = st.fixed_dictionaries({
    "nodes": st.lists(nodes, max_size=8), "links": st.lists(links, max_size=6),
    "definitions": st.one_of(json_values, st.fixed_dictionaries({"subgraphs": st.lists(subgraph, max_size=3)})),
    "extra": st.one_of(json_values, st.fixed_dictionaries({"groupNodes": st.fixed_dictionaries(
        {"G": st.fixed_dictionaries({"nodes": st.lists(nodes, max_size=3)})})})),
    "models": json_values})
api_graphs = st.dictionaries(st.text(max_size=4), st.one_of(json_values, st.fixed_dictionaries(
    {"class_type": node_types, "inputs": st.one_of(json_values, st.dictionaries(
        st.sampled_from(["ckpt_name", "lora_name", "lora_1", "text", "vae_name"]), json_values, max_size=4))})),
    max_size=6)


def _check(result: WorkflowData) -> None:
    assert result.format in ("ui", "api")
    for ref in result.model_references:
        assert isinstance(ref, ModelReference)
        assert ref.filename and "\\" not in ref.filename and ".." not in ref.filename.split("/")
        assert not ref.filename.startswith("/") and ":" not in ref.filename.split("/")[0][1:2]
        assert ref.locations and ref.optional == all(loc.optional for loc in ref.locations)
    json.dumps(result.to_dict(), default=str)  # serialisable for the CLI / routes


def _scan(data):
    try:
        _check(SCANNER.scan_data(data))
    except WorkflowParseError as exc:
        assert exc.reason
    SCANNER.validate_workflow(data)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ui_graphs)
def test_fuzz_ui_graphs(graph):
    _scan(graph)


@FAST
@given(api_graphs)
@example({"\u00b2": {"class_type": "CheckpointLoaderSimple", "inputs": {"": ""}}})  # a digit int() refuses
def test_fuzz_api_graphs(graph):
    _scan(graph)


@FAST
@given(json_values)
def test_fuzz_any_json(value):
    try:
        _scan(value if isinstance(value, dict) else json.dumps(value))
    except WorkflowParseError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBP", b"{"]))
def test_fuzz_bytes(raw, prefix):
    try:
        parse_workflow_bytes(prefix + raw, "fuzz.bin")
    except WorkflowParseError as exc:
        assert exc.path == "fuzz.bin"
