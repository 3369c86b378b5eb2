"""Bad and huge input: a clear WorkflowParseError or a result, never a crash or a hang."""

from __future__ import annotations

import json
import time

import pytest

from comfyfixersmart.errors import WorkflowParseError
from comfyfixersmart.scan import WorkflowScanner


@pytest.fixture
def scanner(make_config):
    return WorkflowScanner(make_config())


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"),
    (b"   \n", "empty file"),
    (b'{"nodes": [', "invalid JSON"),
    (b"[1, 2, 3]", "expected a JSON object"),
    (b'"text"', "expected a JSON object"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"foo": 1}', "not a ComfyUI workflow"),
    (b"{}", "empty workflow"),
    (b"\x89PNG\r\n\x1a\n", "no embedded"),
], ids=["empty", "blank", "truncated", "array", "string", "binary", "deep", "foreign", "emptyobj", "png-header"])
def test_bad_files_raise_parse_error(scanner, tmp_path, content, reason):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(WorkflowParseError) as info:
        scanner.scan_workflow(path)
    assert reason in info.value.reason
    assert info.value.path == str(path) and str(path) in str(info.value)


def test_directory_and_unreadable_paths(scanner, tmp_path):
    with pytest.raises(WorkflowParseError, match="is a directory"):
        scanner.scan_workflow(tmp_path)
    with pytest.raises(WorkflowParseError, match="not a directory"):
        scanner.scan_directory(tmp_path / "nope")


@pytest.mark.parametrize("widgets", [None, 1, "x", True, [], {}, [None, [1, [2]], {"a": {"b": None}}, 1e308, -1],
                                     {"ckpt_name": ["1", 0]}, {"ckpt_name": {"nested": True}}, [["sd.safetensors"]]])
def test_widgets_of_any_json_type(scanner, widgets):
    wf = {"nodes": [{"id": 1, "type": "CheckpointLoaderSimple", "widgets_values": widgets, "inputs": widgets,
                     "properties": widgets, "mode": widgets}, None, 5, "node", {"type": None}, {"id": [1]}],
          "links": [None, [1], {"id": None}, "x"], "definitions": widgets, "extra": widgets, "models": widgets}
    data = scanner.scan_data(wf)
    assert data.format == "ui" and data.model_references == []
    scanner.validate_workflow(wf)


def test_api_nodes_of_any_shape(scanner):
    api = {"1": {"class_type": "LoraLoader", "inputs": {"lora_name": ["9", 0]}},
           "2": {"class_type": "LoraLoader", "inputs": {"lora_name": ["2", 0]}},  # self link
           "3": {"class_type": "LoraLoader", "inputs": None}, "4": None, "5": {"class_type": 3, "inputs": {}},
           "6": {"class_type": "VAELoader", "inputs": {"vae_name": 12}}}
    assert scanner.scan_data(api).model_references == []


def test_100k_node_graph_is_fast(scanner):
    nodes = []
    for i in range(100_000):
        kind = i % 4
        if kind == 0:
            nodes.append({"id": i, "type": "LoraLoader", "mode": 0, "widgets_values": [f"l/{i % 500}.safetensors", 1, 1]})
        elif kind == 1:
            nodes.append({"id": i, "type": "CLIPTextEncode", "mode": 0, "widgets_values": [f"prompt {i}, embedding:e{i % 50}"]})
        elif kind == 2:
            nodes.append({"id": i, "type": "KSampler", "mode": 0, "widgets_values": [i, "fixed", 20, 8, "euler", "normal", 1]})
        else:
            nodes.append({"id": i, "type": "SomeCustomNode", "mode": 4, "widgets_values": ["x", 3, f"c{i}.txt"]})
    links = [[i, i, 0, i + 1, 0, "MODEL"] for i in range(100_000)]
    wf = {"nodes": nodes, "links": links}
    text = json.dumps(wf)
    # A ratio against json.loads of the same graph, measured in the same process, holds on a
    # busy machine where a wall-clock bound does not (it failed with both cores loaded).
    baseline = min(_timed(json.loads, text) for _ in range(2))
    elapsed = _timed(scanner.scan_data, wf)
    data = scanner.scan_data(wf)
    assert len(data.model_references) == 150  # 125 loras (i % 500, i multiple of 4) + 25 embeddings
    assert data.metadata["node_count"] == 100_000
    assert elapsed < 5 * baseline, f"100k nodes took {elapsed:.2f}s, json.loads {baseline:.2f}s"
    start = time.perf_counter()
    assert len(scanner.scan_data(text).model_references) == 150  # 125 loras (i % 500, i multiple of 4) + 25 embeddings
    assert scanner.validate_workflow(wf).valid
    assert time.perf_counter() - start < 12 * baseline


def _timed(fn, arg) -> float:
    start = time.perf_counter()
    fn(arg)
    return time.perf_counter() - start


def _nested(depth: int) -> dict:
    subs = []
    for level in range(depth):
        inner = [{"id": 1, "type": "LoraLoader", "mode": 0, "widgets_values": [f"level{level}.safetensors", 1, 1]}]
        if level + 1 < depth:
            inner.append({"id": 2, "type": f"sg-{level + 1}", "mode": 0})
        subs.append({"id": f"sg-{level}", "nodes": inner, "links": []})
    return {"nodes": [{"id": 1, "type": "sg-0", "mode": 0}], "links": [], "definitions": {"subgraphs": subs}}


def test_50_level_nesting(scanner):
    refs = scanner.extract_models(_nested(50))
    assert len(refs) == 50
    deepest = next(r for r in refs if r.filename == "level49.safetensors")
    assert deepest.subgraph_path == [1] + [2] * 49


def test_too_deep_nesting_is_cut_with_a_warning(scanner):
    data = scanner.scan_data(_nested(80))
    assert len(data.model_references) == 64
    assert any("nested deeper" in w for w in data.warnings)


def test_exponential_fan_out_is_bounded(scanner, monkeypatch):
    from comfyfixersmart.scan import extract

    monkeypatch.setattr(extract, "MAX_VISITS", 50_000)
    # each level holds two instances of the next: 2**40 paths must not be walked
    subs = [{"id": f"s{i}", "nodes": [{"id": 1, "type": f"s{i + 1}"}, {"id": 2, "type": f"s{i + 1}"},
                                        {"id": 3, "type": "VAELoader", "widgets_values": [f"v{i}.safetensors"]}]}
            for i in range(40)]
    wf = {"nodes": [{"id": 1, "type": "s0"}], "definitions": {"subgraphs": subs}}
    start = time.perf_counter()
    data = scanner.scan_data(wf)
    assert time.perf_counter() - start < 5
    assert any("too large" in w for w in data.warnings)
    assert {r.filename for r in data.model_references} == {f"v{i}.safetensors" for i in range(40)}
