"""The scanner against real workflows from public repositories (shared/workflows, see SOURCES.tsv)."""

from __future__ import annotations

import json

import pytest

from comfyfixersmart.folders import canonical_folder
from comfyfixersmart.scan import WorkflowScanner
from comfyfixersmart.scan.prompts import find_embeddings


@pytest.fixture
def scanner(make_config):
    return WorkflowScanner(make_config())


def _workflow_files(fixtures_dir):
    return sorted(p for p in (fixtures_dir / "workflows").iterdir()
                  if p.suffix in (".json", ".png", ".webp") and p.name != "LABELS.json")


def test_every_shared_workflow_parses(scanner, fixtures_dir):
    files = _workflow_files(fixtures_dir)
    assert len(files) >= 30
    for path in files:
        data = scanner.scan_workflow(path)
        assert data.format in ("ui", "api"), path.name
        assert data.metadata["node_count"] > 0, path.name
        assert data.model_references, f"{path.name}: no model found"
        for ref in data.model_references:
            assert "\\" not in ref.filename
            assert ref.locations, ref


def test_scan_directory_collects_unreadable_files(scanner, fixtures_dir):
    results = scanner.scan_directory(fixtures_dir / "workflows", recursive=False)
    assert len(results) == len(_workflow_files(fixtures_dir))
    # LABELS.json is JSON but not a workflow: reported, not fatal
    assert [e.path.rsplit("/", 1)[-1] for e in scanner.errors] == ["LABELS.json"]


def _expected_name(value: str) -> str:
    if value.startswith("embedding:"):
        return next(find_embeddings(value))
    return value.replace("\\", "/")


def _labels(fixtures_dir):
    data = json.loads((fixtures_dir / "workflows" / "LABELS.json").read_text())
    for wf in data["workflows"]:
        for ref in wf["refs"]:
            yield wf["workflow"], wf["format"], ref


def test_labelled_references_are_found_in_the_right_folder(scanner, fixtures_dir):
    checked = 0
    cache = {}
    for name, fmt, label in _labels(fixtures_dir):
        if label["file_value"].startswith("(implicit)"):
            # no file name in the workflow (InstantID's insightface/antelopev2): out of a scanner's reach
            continue
        if name not in cache:
            cache[name] = scanner.scan_workflow(fixtures_dir / "workflows" / name)
        data = cache[name]
        assert fmt.startswith(data.format)
        want_file = _expected_name(label["file_value"])
        want_folder = canonical_folder(label["folder"])
        matches = [r for r in data.model_references
                   if r.filename == want_file and r.expected_directory == want_folder]
        assert matches, f"{name}: {want_folder}/{want_file} not found in {[r.key for r in data.model_references]}"
        ref = matches[0]
        ids = {str(loc.node_id) for loc in ref.locations}
        assert str(label["node_id"]) in ids, f"{name}: {want_file} not located on node {label['node_id']}"
        assert ref.optional == (label.get("node_mode") in (2, 4))
        checked += 1
    assert checked >= 30


def test_png_and_extracted_json_agree(scanner, fixtures_dir):
    wf = fixtures_dir / "workflows"
    for png in wf.glob("*.png"):
        from_png = {r.key for r in scanner.scan_workflow(png).model_references}
        from_json = {r.key for r in scanner.scan_workflow(wf / (png.name + ".workflow.json")).model_references}
        from_prompt = {r.key for r in scanner.scan_workflow(wf / (png.name + ".prompt.json")).model_references}
        assert from_png == from_json == from_prompt, png.name


def test_metadata_urls_attach_to_references(scanner, fixtures_dir):
    data = scanner.scan_workflow(fixtures_dir / "workflows" / "comfyanonymous__ComfyUI_examples__hunyuan_video_image_to_video.json")
    by_key = {r.key: r for r in data.model_references}
    ref = by_key["diffusion_models/hunyuan_video_image_to_video_720p_bf16.safetensors"]
    assert ref.url.startswith("https://huggingface.co/Comfy-Org/HunyuanVideo_repackaged/")
    assert any(loc.where == "models" for loc in ref.locations)  # top-level metadata
    assert all(r.url for r in data.model_references)


def test_frontend_subgraph_fixture(scanner, fixtures_dir):
    data = scanner.scan_workflow(fixtures_dir / "workflows" / "Comfy-Org__ComfyUI_frontend__missing_models_in_subgraph.json")
    [ref] = data.model_references
    assert ref.key == "checkpoints/fake_model.safetensors"
    assert ref.url == "http://localhost:8188/api/devtools/fake_model.safetensors"
    inner = [loc for loc in ref.locations if loc.where.startswith("widgets_values")]
    assert {loc.node_id for loc in inner} == {1, 5}
    assert all(loc.subgraph_path == [2] for loc in inner)
    assert data.custom_node_types == set()
