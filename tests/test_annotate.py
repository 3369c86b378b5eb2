"""annotate_workflow: ComfyUI's properties.models metadata written on the loader nodes."""

from __future__ import annotations

import copy
import json

import pytest

from comfyfixersmart.annotate import (
    ModelSource,
    annotate_workflow,
    annotate_workflow_with_count,
    sources_from_analysis,
    to_source,
)
from comfyfixersmart.datamodel import AnalysisResult, Resolution, SearchResult
from comfyfixersmart.errors import HostNotAllowedError, ValidationError, WorkflowParseError
from comfyfixersmart.scan import WorkflowScanner

SHA = "ab" * 32
HF = "https://huggingface.co/org/repo/resolve/main/"


def load(fixtures_dir, name):
    return json.loads((fixtures_dir / "workflows" / name).read_text())


def strip_models(doc):
    """The document with every properties.models removed (and emptied properties dropped
    when they were created by us)."""
    doc = copy.deepcopy(doc)

    def walk(graph):
        for node in graph.get("nodes") or []:
            props = node.get("properties")
            if isinstance(props, dict):
                props.pop("models", None)
        for sub in (graph.get("definitions") or {}).get("subgraphs") or []:
            walk(sub)

    walk(doc)
    return doc


@pytest.fixture
def subgraph_wf(fixtures_dir):
    return load(fixtures_dir, "Comfy-Org__ComfyUI_frontend__missing_models_in_subgraph.json")


@pytest.fixture
def wyrde(fixtures_dir):
    return load(fixtures_dir, "wyrde__wyrde-comfyui-workflows__model-compare-hrf-pixel-v0.8.json")


def test_nodes_inside_subgraph_definitions_are_annotated(subgraph_wf):
    before = copy.deepcopy(subgraph_wf)
    source = {"directory": "checkpoints", "filename": "fake_model.safetensors",
              "url": HF + "fake_model.safetensors", "sha256": SHA.upper()}
    out, count = annotate_workflow_with_count(subgraph_wf, [source])
    assert subgraph_wf == before  # the input is not modified
    assert count == 2
    inner = out["definitions"]["subgraphs"][0]["nodes"]
    expected = {"name": "fake_model.safetensors", "url": HF + "fake_model.safetensors",
                "directory": "checkpoints", "hash": SHA, "hash_type": "sha256"}
    for node in inner:
        assert node["properties"]["models"] == [expected]
        assert node["properties"]["Node name for S&R"] == "CheckpointLoaderSimple"
    # the top-level nodes (a sampler and the subgraph instance) are not loaders
    assert all("models" not in n["properties"] for n in out["nodes"])
    # nothing else changed, key order included
    assert json.dumps(strip_models(out)) == json.dumps(strip_models(before))
    assert out["models"] == before["models"]


def test_only_properties_models_change_on_a_real_workflow(wyrde):
    sources = [
        {"directory": "loras", "filename": "_style__/fashionGirl_v47.safetensors",
         "url": "https://civitai.com/api/download/models/1?type=Model&format=SafeTensor"},
        {"directory": "vae", "filename": "blessed2.vae.pt", "url": HF + "blessed2.vae.pt", "sha256": SHA},
        {"directory": "upscale_models", "filename": "2x-PSNR.pth", "url": HF + "2x-PSNR.pth"},
    ]
    out, count = annotate_workflow_with_count(wyrde, sources)
    assert count == 3
    nodes = {n["id"]: n for n in out["nodes"]}
    # the name is what the loader holds, Windows separator included: that is what ComfyUI compares
    assert nodes[192]["properties"]["models"] == [{
        "name": "_style__\\fashionGirl_v47.safetensors", "directory": "loras",
        "url": "https://civitai.com/api/download/models/1?type=Model&format=SafeTensor"}]
    assert nodes[181]["properties"]["models"][0]["hash"] == SHA
    assert "hash" not in nodes[227]["properties"]["models"][0]
    originals = {n["id"]: n for n in wyrde["nodes"]}
    for node_id, node in nodes.items():
        if node_id not in (192, 181, 227):
            assert node == originals[node_id]
    assert strip_models(out) == strip_models(wyrde)


def test_prompt_embeddings_are_not_put_on_text_encoders(wyrde):
    out, count = annotate_workflow_with_count(
        wyrde, [{"directory": "embeddings", "filename": "EasyNegative", "url": HF + "EasyNegative.safetensors"}])
    assert count == 0
    assert out == wyrde


def test_existing_entry_is_updated_not_duplicated(subgraph_wf):
    node = subgraph_wf["definitions"]["subgraphs"][0]["nodes"][0]
    node["properties"]["models"] = [
        {"name": "fake_model.safetensors", "url": "https://old.example/x", "directory": "checkpoints",
         "hash": "cd" * 32, "hash_type": "sha256"},
        {"name": "other.safetensors", "url": "https://huggingface.co/o/r/resolve/main/other.safetensors",
         "directory": "vae"},
    ]
    out = annotate_workflow(subgraph_wf, [ModelSource("checkpoints", "fake_model.safetensors",
                                                      HF + "fake_model.safetensors")])
    models = out["definitions"]["subgraphs"][0]["nodes"][0]["properties"]["models"]
    assert models == [
        {"name": "fake_model.safetensors", "url": HF + "fake_model.safetensors", "directory": "checkpoints"},
        {"name": "other.safetensors", "url": "https://huggingface.co/o/r/resolve/main/other.safetensors",
         "directory": "vae"},
    ]
    # annotating twice gives the same document
    assert annotate_workflow(out, [ModelSource("checkpoints", "fake_model.safetensors",
                                               HF + "fake_model.safetensors")]) == out


def test_plan_spec_key_names_the_file_as_the_workflow_does(subgraph_wf):
    spec = {"key": "checkpoints/fake_model.safetensors", "filename": "renamed_on_hub.safetensors",
            "directory": "checkpoints", "url": HF + "renamed_on_hub.safetensors", "sha256": None}
    out = annotate_workflow(subgraph_wf, [spec])
    entry = out["definitions"]["subgraphs"][0]["nodes"][1]["properties"]["models"][0]
    assert entry["name"] == "fake_model.safetensors" and entry["url"].endswith("renamed_on_hub.safetensors")


def test_round_trip_through_the_scanner(subgraph_wf, make_config):
    url = HF + "fake_model.safetensors"
    del subgraph_wf["models"]  # only the node metadata we write may carry the source
    out = annotate_workflow(subgraph_wf, [{"directory": "checkpoints", "filename": "fake_model.safetensors",
                                           "url": url, "sha256": SHA}])
    refs = WorkflowScanner(make_config()).scan_data(out).model_references
    ref = next(r for r in refs if r.key == "checkpoints/fake_model.safetensors")
    assert ref.url == url and ref.hash.lower() == SHA and (ref.hash_type or "sha256").lower() == "sha256"


def test_api_format_is_refused():
    api = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}}}
    with pytest.raises(WorkflowParseError):
        annotate_workflow(api, [])
    with pytest.raises(WorkflowParseError):
        annotate_workflow([], [])  # type: ignore[arg-type]


@pytest.mark.parametrize("source,error", [
    ({"directory": "vae", "filename": "v.pt", "url": "ftp://huggingface.co/v.pt"}, HostNotAllowedError),
    ({"directory": "vae", "filename": "v.pt", "url": "https://u:p@huggingface.co/v.pt"}, HostNotAllowedError),
    ({"directory": "vae", "filename": "v.pt"}, ValidationError),
    ({"filename": "v.pt", "url": HF + "v.pt"}, ValidationError),
    (42, ValidationError),
])
def test_bad_sources(subgraph_wf, source, error):
    with pytest.raises(error):
        annotate_workflow(subgraph_wf, [source])


def test_non_sha256_hash_is_not_claimed_as_sha256():
    source = to_source({"directory": "loras", "filename": "x.safetensors", "url": HF + "x", "sha256": "ABCDEF0123"})
    assert source.sha256 is None
    assert to_source({"directory": "unet", "filename": "a\\b.safetensors", "url": HF + "b"}).key == \
        "diffusion_models/a/b.safetensors"


def test_sources_from_analysis_takes_the_chosen_candidates(subgraph_wf, make_config):
    config = make_config()
    data = WorkflowScanner(config).scan_data(subgraph_wf)
    ref = data.model_references[0]
    sure = SearchResult("huggingface", "org/repo", "repo", "fake_model.safetensors", "checkpoint",
                        HF + "fake_model.safetensors", hash_sha256=SHA, confidence=0.97)
    unsure = SearchResult("civitai", "1", "m", "fake_model.safetensors", "checkpoint",
                          "https://civitai.com/api/download/models/1", confidence=0.85)
    analysis = AnalysisResult(workflows=[data], references=[ref], resolutions=[Resolution(ref, [sure])])
    sources = sources_from_analysis(analysis, None, 0.9)
    assert [(s.key, s.url, s.sha256) for s in sources] == [
        ("checkpoints/fake_model.safetensors", sure.download_url, SHA)]
    # below the threshold: the workflow's own metadata URL is kept instead
    analysis.resolutions = [Resolution(ref, [unsure])]
    sources = sources_from_analysis(analysis, None, 0.9)
    assert [s.url for s in sources] == ["http://localhost:8188/api/devtools/fake_model.safetensors"]
    out, count = annotate_workflow_with_count(subgraph_wf, sources)
    assert count == 2
