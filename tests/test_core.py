"""ComfyFixerCore end to end: real scanner, inventory, search (fake Civitai + HF on 127.0.0.1),
download engine and state DB; nothing of ours is mocked."""

from __future__ import annotations

import asyncio
import json

import pytest

from comfyfixersmart.core import ComfyFixerCore, merge_references
from comfyfixersmart.errors import ConfigurationError
from comfyfixersmart.report import analysis_to_json, run_to_json
from comfyfixersmart.state import StateManager
from fakehub import blob
from fakehub.fixtures import config_for_hub, fake_hub  # noqa: F401
from test_core_support import (
    DETAIL,
    MY_VAE,
    OPTIONAL,
    build_world,
    node,
    sha,
    ui_workflow,
    write_json,
)


@pytest.fixture
def world(fake_hub, tmp_path):
    return build_world(fake_hub, tmp_path)


@pytest.fixture
def config(world, fake_hub, tmp_path):
    return config_for_hub(fake_hub, tmp_path, comfyui_root=world.root)


def test_analyze_ranks_candidates_for_each_missing_reference(world, config):
    with ComfyFixerCore(config) as core:
        analysis = core.analyze_workflows([world.workflow])
    statuses = {r.key: r.status for r in analysis.references}
    assert statuses == {
        "checkpoints/present.safetensors": "present",
        "loras/sdxl/detail_tweaker.safetensors": "missing",
        "vae/my_vae.safetensors": "missing",
        "upscale_models/4x-elsewhere.pth": "elsewhere",
        "controlnet/fuzzy_cn.safetensors": "missing",
        "loras/optional_lora.safetensors": "missing",
    }
    by_key = {r.reference.key: r for r in analysis.resolutions}
    assert set(by_key) == {k for k, v in statuses.items() if v == "missing"}  # elsewhere is not looked up
    vae = by_key["vae/my_vae.safetensors"].best
    assert (vae.backend, vae.confidence, vae.save_as) == ("workflow", 1.0, "my_vae.safetensors")
    assert "sha256 match" in vae.reason and vae.hash_sha256 == sha(MY_VAE)
    detail = by_key["loras/sdxl/detail_tweaker.safetensors"]
    assert detail.best.backend == "civitai" and detail.best.confidence >= 0.9
    assert "exact file name" in detail.best.reason
    fuzzy = by_key["controlnet/fuzzy_cn.safetensors"]
    assert fuzzy.best.filename == "fuzzy_cn_v2.safetensors" and fuzzy.best.confidence < 0.8
    for res in analysis.resolutions:  # ranked best first
        assert [c.confidence for c in res.candidates] == sorted((c.confidence for c in res.candidates), reverse=True)
    report = analysis_to_json(analysis, 0.9)
    assert report["summary"] == {"total": 6, "present": 1, "elsewhere": 1, "missing": 3, "optional_missing": 1}
    chosen = {r["key"]: r["chosen"] for r in report["resolutions"]}
    assert chosen["controlnet/fuzzy_cn.safetensors"] is None and chosen["vae/my_vae.safetensors"] == 0
    # the workflow's own references got the statuses too
    assert {r.key: r.status for r in analysis.workflows[0].model_references} == statuses


def test_run_downloads_into_the_reference_folders_and_records_history(world, config, fake_hub):
    with ComfyFixerCore(config) as core:
        run = core.run([world.workflow])
    assert (run.workflows_scanned, run.models_found, run.models_present, run.models_missing) == (1, 6, 2, 4)
    assert run.models_resolved == 2 and not run.dry_run
    # sub-folder of the reference kept, folder from the reference
    lora = world.models / "loras" / "sdxl" / "detail_tweaker.safetensors"
    assert lora.read_bytes() == DETAIL
    # the URL names other_name.safetensors: saved under the reference's name, hash verified
    vae = world.models / "vae" / "my_vae.safetensors"
    assert vae.read_bytes() == MY_VAE and not (world.models / "vae" / "other_name.safetensors").exists()
    assert all(d.success and d.verified for d in run.downloads)
    # elsewhere: the file is in loras/, nothing fetched for it
    assert not (world.models / "upscale_models" / "4x-elsewhere.pth").exists()
    assert fake_hub.request_count("*4x-elsewhere.pth*") == 0
    # below the threshold: a failure that says why; optional: skipped, not failed
    assert [(f.directory, f.filename, f.error_type) for f in run.failures] == [
        ("controlnet", "fuzzy_cn.safetensors", "LowConfidenceError")]
    assert "61%" in run.failures[0].reason and "needs 90%" in run.failures[0].reason
    assert {(s.filename, s.error_type) for s in run.skipped} == {("4x-elsewhere.pth", "elsewhere"),
                                                                 ("optional_lora.safetensors", "optional")}
    assert not (world.models / "loras" / "optional_lora.safetensors").exists()
    assert not list(world.models.rglob("*.part*"))
    with StateManager(config) as state:
        history = {r.filename: r for r in state.get_download_history()}
    assert set(history) == {"sdxl/detail_tweaker.safetensors", "my_vae.safetensors"}
    assert history["sdxl/detail_tweaker.safetensors"].source == "civitai"
    assert history["my_vae.safetensors"].sha256 == sha(MY_VAE)
    report = run_to_json(run)
    json.dumps(report)  # plain JSON
    assert report["models_resolved"] == 2 and len(report["failures"]) == 1 and len(report["skipped"]) == 2


def test_include_optional_fetches_models_of_bypassed_nodes(world, config):
    with ComfyFixerCore(config) as core:
        run = core.run([world.workflow], include_optional=True)
    assert (world.models / "loras" / "optional_lora.safetensors").read_bytes() == OPTIONAL
    assert run.models_resolved == 3
    assert [s.error_type for s in run.skipped] == ["elsewhere"]


def test_higher_min_confidence_turns_a_name_match_into_a_failure(world, config):
    with ComfyFixerCore(config) as core:
        run = core.run([world.workflow], min_confidence=0.95)
    # 95 %: the 90 % Civitai name match is not sure enough any more; the hash-matched URL is
    assert not (world.models / "loras" / "sdxl" / "detail_tweaker.safetensors").exists()
    assert (world.models / "vae" / "my_vae.safetensors").read_bytes() == MY_VAE
    failure = {f.filename: f for f in run.failures}["sdxl/detail_tweaker.safetensors"]
    assert failure.error_type == "LowConfidenceError"
    assert "is only 90% sure" in failure.reason and "needs 95%" in failure.reason


def test_min_confidence_is_never_taken_below_the_floor(world, config):
    with ComfyFixerCore(config) as core:
        assert core.threshold(0.1) == 0.8
        run = core.run([world.workflow], min_confidence=0.0)
    assert not (world.models / "controlnet" / "fuzzy_cn.safetensors").exists()
    assert "needs 80%" in {f.filename: f.reason for f in run.failures}["fuzzy_cn.safetensors"]


def test_dry_run_plans_and_downloads_nothing(world, config, fake_hub):
    with ComfyFixerCore(config) as core:
        run = core.run([world.workflow], dry_run=True)
    assert run.dry_run and not run.downloads and run.models_resolved == 0
    plan = {s["key"]: s for s in run.plan}
    assert set(plan) == {"loras/sdxl/detail_tweaker.safetensors", "vae/my_vae.safetensors"}
    assert plan["vae/my_vae.safetensors"]["save_path"] == str(world.models / "vae" / "my_vae.safetensors")
    assert plan["vae/my_vae.safetensors"]["sha256"] == sha(MY_VAE)
    assert fake_hub.request_count("/api/download/*") == 0
    assert fake_hub.find_requests(listener="storage") == []
    assert not list((world.models / "loras").rglob("*.safetensors"))


def test_wrong_hash_from_the_workflow_fails_and_leaves_nothing(fake_hub, tmp_path):
    """A URL on a plain host (no hash there): the workflow's sha256 is checked after download."""
    from dlserver import FileServer

    root = tmp_path / "ComfyUI"
    (root / "models" / "vae").mkdir(parents=True)
    with FileServer() as server:
        server.add("/files/vae.safetensors", blob(50_000, seed=3))
        doc = ui_workflow([node(1, "VAELoader", ["vae.safetensors"])], models=[
            {"name": "vae.safetensors", "directory": "vae",
             "url": server.url("/files/vae.safetensors", host="localhost"),
             "hash": sha(b"something else"), "hash_type": "sha256"}])
        wf = write_json(tmp_path / "wf.json", doc)
        config = config_for_hub(fake_hub, tmp_path, comfyui_root=root)
        with ComfyFixerCore(config) as core:
            run = core.run([wf])
    assert run.models_resolved == 0
    assert [(f.filename, f.error_type) for f in run.failures] == [("vae.safetensors", "IntegrityError")]
    assert not list((root / "models" / "vae").iterdir())  # no file, no part file


def test_embedding_without_extension_is_saved_with_the_candidates_extension(fake_hub, tmp_path):
    data = blob(5000, seed=21)
    ids = fake_hub.add_civitai_model("negativeXL", {"negativeXL_D.safetensors": data}, type="TextualInversion")
    root = tmp_path / "ComfyUI"
    (root / "models" / "embeddings").mkdir(parents=True)
    doc = ui_workflow([node(1, "CLIPTextEncode", ["embedding:negativeXL_D, blurry"])], models=[
        {"name": "negativeXL_D", "directory": "embeddings",
         "url": f"https://civitai.com/api/download/models/{ids.version_id}"}])
    wf = write_json(tmp_path / "wf.json", doc)
    with ComfyFixerCore(config_for_hub(fake_hub, tmp_path, comfyui_root=root)) as core:
        run = core.run([wf])
        assert run.models_resolved == 1, run.failures
        # ComfyUI loads "embedding:negativeXL_D" from negativeXL_D.safetensors; the inventory agrees
        assert (root / "models" / "embeddings" / "negativeXL_D.safetensors").read_bytes() == data
        assert core.analyze_workflows([wf]).models_missing == 0


def test_run_needs_somewhere_to_put_files(fake_hub, tmp_path, world):
    config = config_for_hub(fake_hub, tmp_path)  # no comfyui_root
    with ComfyFixerCore(config) as core:
        with pytest.raises(ConfigurationError) as info:
            core.run([world.workflow])
        assert info.value.setting == "comfyui_root"
        assert fake_hub.requests == []  # refused before any search
        # with an output folder it works: nothing checked, so every reference is fetched if found
        run = core.run([world.workflow], output_dir=tmp_path / "out")
    # nothing could be checked, so even present.safetensors was looked up (and is nowhere to find)
    assert run.models_missing == 6 and run.models_resolved == 2
    assert "present.safetensors" in {f.filename for f in run.failures}
    assert (tmp_path / "out" / "loras" / "sdxl" / "detail_tweaker.safetensors").read_bytes() == DETAIL
    assert (tmp_path / "out" / "vae" / "my_vae.safetensors").read_bytes() == MY_VAE


def test_unreadable_workflows_are_reported_not_fatal(world, config, tmp_path):
    broken = tmp_path / "workflows" / "broken.json"
    broken.write_text('{"nodes": [', encoding="utf-8")
    with ComfyFixerCore(config) as core:
        workflows, errors = core.scan_paths([tmp_path / "workflows", tmp_path / "nope.json", tmp_path / "empty"])
        assert [wf.path for wf in workflows] == [str(world.workflow)]
        assert {e["path"] for e in errors} == {str(broken), str(tmp_path / "nope.json"), str(tmp_path / "empty")}
        run = core.run([broken, world.workflow], dry_run=True)
    assert run.workflows_scanned == 1
    assert run.failures[0].error_type == "WorkflowParseError" and run.failures[0].filename == str(broken)


def test_merge_references_copies_and_combines(world, config):
    with ComfyFixerCore(config) as core:
        a = core.scanner.scan_workflow(world.workflow)
        b = core.scanner.scan_workflow(world.workflow)
    merged = merge_references([*a.model_references, *b.model_references])
    assert len(merged) == len(a.model_references)
    assert all(m is not r for m, r in zip(merged, a.model_references, strict=True))
    assert len(a.model_references[0].locations) == 1  # the workflow's own reference is untouched
    optional = next(m for m in merged if m.filename == "optional_lora.safetensors")
    assert optional.optional


def test_several_threads_share_one_core(fake_hub, tmp_path, world, config):
    """Three runs at once through asyncio.to_thread: each file is fetched once, all succeed."""
    second = write_json(tmp_path / "workflows" / "second.json", ui_workflow(
        [node(1, "LoraLoader", ["sdxl/detail_tweaker.safetensors", 1, 1]),
         node(2, "VAELoader", ["my_vae.safetensors"])],
        models=world.document["models"]))
    third = write_json(tmp_path / "workflows" / "third.json", ui_workflow(
        [node(1, "LoraLoader", ["sdxl/detail_tweaker.safetensors", 1, 1])]))

    async def main():
        with ComfyFixerCore(config) as core:
            return await asyncio.gather(*(asyncio.to_thread(core.run, [wf]) for wf in (world.workflow, second, third)))

    runs = asyncio.run(main())
    assert all(not any(f.error_type != "LowConfidenceError" for f in r.failures) for r in runs), \
        [r.failures for r in runs]
    assert (world.models / "loras" / "sdxl" / "detail_tweaker.safetensors").read_bytes() == DETAIL
    assert (world.models / "vae" / "my_vae.safetensors").read_bytes() == MY_VAE
    assert fake_hub.request_count("/api/download/models/*", method="GET") == 1  # the shared LoRA, once
    assert not list(world.models.rglob("*.part*"))


@pytest.mark.parametrize("widget,models_dir", [
    ("mystery_weights.safetensors", None),  # no hint anywhere: folder unknown
    ("mystery_weights.safetensors", "unknown"),  # metadata naming the "unknown" folder itself
])
def test_a_reference_of_unknown_folder_is_never_auto_downloaded(fake_hub, tmp_path, widget, models_dir):
    """Even with a sure candidate (metadata URL + sha256), a file whose folder is not known is
    left for the user to place: nothing is written, least of all into models/unknown."""
    data = b"mystery weights"
    fake_hub.add_hf_repo("acme/mystery", {"mystery_weights.safetensors": data}, downloads=10)
    root = tmp_path / "ComfyUI"
    (root / "models" / "checkpoints").mkdir(parents=True)
    meta = {"name": widget, "hash": sha(data), "hash_type": "sha256",
            "url": "https://huggingface.co/acme/mystery/resolve/main/mystery_weights.safetensors"}
    if models_dir:
        meta["directory"] = models_dir
    wf = write_json(tmp_path / "wf.json", ui_workflow([node(1, "MysteryPackNode", ["opaque", widget])],
                                                      models=[meta]))
    config = config_for_hub(fake_hub, tmp_path, comfyui_root=root)
    with ComfyFixerCore(config) as core:
        analysis = core.analyze_workflows([wf])
        [ref] = analysis.references
        assert ref.expected_directory == "unknown" and ref.status == "missing"
        specs, failures = core.plan(analysis, 0.5, include_optional=True)
        assert specs == []
        assert [f.error_type for f in failures] == ["UnknownFolderError"]
        assert "choose the folder" in failures[0].reason
        run = core.run([wf])
    assert run.models_resolved == 0
    assert not (root / "models" / "unknown").exists()
    assert [p for p in root.rglob("*") if p.is_file()] == []
    with pytest.raises(ValueError):  # the library's own target refuses it too
        core.inventory.target_path("unknown", "x.safetensors")
