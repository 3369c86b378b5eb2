"""The known-model index: build from wheels, lookups, the ``index`` backend against the fake hub."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from comfyfixersmart.datamodel import ModelReference
from comfyfixersmart.errors import ValidationError
from comfyfixersmart.search import ModelSearch
from comfyfixersmart.search import index_build
from comfyfixersmart.search.index_backend import IndexBackend
from comfyfixersmart.search.known_models import KnownModelIndex, download_url_for, index_path
from fakehub import blob
from fakehub.fixtures import config_for_hub, fake_hub, hub_config  # noqa: F401

HF = "https://huggingface.co"


def write_index(path: Path, models, sources=None) -> Path:
    """A test index file in the bundled format (URLs on huggingface.co, like the real one)."""
    sources = sources or [{"package": "comfyui-workflow-templates-json", "version": "0.1.0", "license": "MIT",
                           "kind": "templates", "entries": len(models)},
                          {"package": "comfyui-manager", "version": "4.3", "license": "GPL-3.0-only",
                           "kind": "model-list", "entries": 0}]
    data = {"format": 1, "sources": sources, "models": [dict({"src": [0]}, **m) for m in models]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(index_build.dumps_index(data))
    return path


def ref(filename, directory="checkpoints", **kw) -> ModelReference:
    return ModelReference(filename=filename, node_type="CheckpointLoaderSimple", expected_type="checkpoint",
                          expected_directory=directory, **kw)


# -- the bundled snapshot ---------------------------------------------------------------------

def test_bundled_snapshot_knows_the_files_search_could_not_find():
    index = KnownModelIndex()
    sources = {s["package"]: s for s in index.sources_loaded()}
    assert sources["comfyui-workflow-templates-json"]["license"] == "MIT"
    assert sources["comfyui-manager"]["license"].startswith("GPL")
    assert len(index) > 500
    for name, folder, repo in (("sd_xl_turbo_1.0_fp16.safetensors", "checkpoints", "stabilityai/sdxl-turbo"),
                               ("t5xxl_fp16.safetensors", "text_encoders", "comfyanonymous/flux_text_encoders"),
                               ("sd3.5_large_fp8_scaled.safetensors", "checkpoints", "Comfy-Org/stable-diffusion-3.5-fp8"),
                               ("qwen_3_06b_base.safetensors", "text_encoders", None)):
        hits = index.lookup(name, folder)
        assert hits, name
        assert all(h.url.startswith(HF + "/") and "/resolve/" in h.url for h in hits)
        if repo:
            assert any(h.hf and h.hf[0] == repo for h in hits)
        assert all(h.sources for h in hits)
    # every entry is normalised: canonical HF URLs, known-looking folders, no blob links
    for m in index.models:
        assert m.name and m.directory and "/blob/" not in m.url
        assert not m.url.startswith("https://hf.co/")


def test_bundled_snapshot_hashes_are_well_formed_and_found():
    index = KnownModelIndex()
    hashed = [m for m in index.models if m.sha256]
    assert hashed
    for m in hashed:
        assert len(m.sha256) == 64 and m.sha256 == m.sha256.lower()
        assert m in index.by_sha256(m.sha256.upper())


# -- lookups ------------------------------------------------------------------------------------

@pytest.fixture
def small_index(tmp_path) -> KnownModelIndex:
    path = write_index(tmp_path / "idx.json", [
        {"name": "flux1-schnell.safetensors", "directory": "diffusion_models",
         "url": f"{HF}/Comfy-Org/flux1-schnell/resolve/main/flux1-schnell.safetensors", "templates": 3},
        {"name": "ae.safetensors", "directory": "vae", "url": f"{HF}/Comfy-Org/flux1-schnell/resolve/main/ae.safetensors",
         "sha256": "ab" * 32},
        {"name": "ae.safetensors", "directory": "vae", "url": f"{HF}/black-forest-labs/FLUX.1-dev/resolve/main/ae.safetensors",
         "src": [1], "subfolder": "FLUX1"},
        {"name": "control_v11p_sd15_canny.pth", "directory": "controlnet",
         "url": f"{HF}/lllyasviel/ControlNet-v1-1/resolve/main/control_v11p_sd15_canny.pth", "src": [1]},
    ])
    return KnownModelIndex(path)


def test_lookup_by_name_subfolder_case_and_folder(small_index):
    assert [m.directory for m in small_index.by_name("flux1-schnell.safetensors")] == ["diffusion_models"]
    # a sub-folder in the workflow's name is the user's own organisation: the file is the same
    assert small_index.by_name("FLUX/flux1-schnell.safetensors")[0].name == "flux1-schnell.safetensors"
    assert small_index.by_name("flux\\flux1-schnell.safetensors")
    # ComfyUI matches names exactly: a case-different hit is marked
    hit = small_index.by_name("Flux1-Schnell.safetensors")
    assert hit and hit[0].case_exact is False
    assert all(m.case_exact for m in small_index.by_name("ae.safetensors"))
    assert len(small_index.lookup("ae.safetensors", "vae")) == 2
    assert small_index.lookup("ae.safetensors", "checkpoints") == []
    assert small_index.lookup("flux1-schnell.safetensors", "unet")  # legacy folder name mapped
    assert small_index.by_name("") == [] and small_index.by_name("nothing.safetensors") == []
    # a bare name (embeddings are loaded without extension) finds the file
    assert [m.name for m in small_index.by_name("flux1-schnell")] == ["flux1-schnell.safetensors"]
    assert small_index.by_name("flux1") == [] and small_index.by_name("FLUX1-schnell")[0].case_exact is False
    m = small_index.lookup("ae.safetensors", "vae")[1]
    assert m.subfolder == "FLUX1" and m.in_manager and not m.in_templates
    assert "ComfyUI-Manager model list (comfyui-manager 4.3)" in m.describe()
    assert "official templates (comfyui-workflow-templates-json 0.1.0)" in small_index.by_name(
        "flux1-schnell.safetensors")[0].describe()


def test_lookup_by_sha256_and_corroborates(small_index):
    assert [m.url for m in small_index.by_sha256("AB" * 32)] == [f"{HF}/Comfy-Org/flux1-schnell/resolve/main/ae.safetensors"]
    assert small_index.by_sha256("cd" * 32) == [] and small_index.by_sha256("") == []
    assert small_index.corroborates("whatever.safetensors", None, "ab" * 32)
    # same repo and path on another endpoint and revision: the same file
    assert small_index.corroborates("ae.safetensors", "http://127.0.0.1:9/Comfy-Org/flux1-schnell/resolve/0123abc/ae.safetensors")
    assert small_index.corroborates("ae.safetensors", "Comfy-Org/flux1-schnell/ae.safetensors")
    assert not small_index.corroborates("ae.safetensors", "someone/flux-merge/ae.safetensors")
    assert not small_index.corroborates("other.safetensors", "Comfy-Org/flux1-schnell/ae.safetensors")
    assert not small_index.corroborates("ae.safetensors", None, "cd" * 32)


def test_index_file_is_read_lazily_and_checked(tmp_path):
    missing = KnownModelIndex(tmp_path / "nope.json")  # nothing read yet
    with pytest.raises(ValidationError, match="cannot read"):
        missing.by_name("x.safetensors")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": 99, "models": []}')
    with pytest.raises(ValidationError, match="unknown layout"):
        len(KnownModelIndex(bad))


def test_which_file_a_config_uses(make_config, tmp_path):
    config = make_config()
    assert index_path(config) is None  # the bundled snapshot
    refreshed = write_index(Path(config.cache_dir) / "known_models.json", [])
    assert index_path(config) == refreshed
    chosen = write_index(tmp_path / "mine.json", [])
    assert index_path(make_config(known_models_file=chosen)) == chosen


def test_a_damaged_refreshed_copy_falls_back_to_the_bundled_snapshot(make_config):
    config = make_config()
    Path(config.cache_dir).mkdir(parents=True)
    (Path(config.cache_dir) / "known_models.json").write_text("{not json")
    backend = IndexBackend(config, check=False)
    assert len(backend.index) > 500


def test_download_url_follows_the_endpoint_but_the_canonical_url_stays(small_index):
    m = small_index.by_name("flux1-schnell.safetensors")[0]
    assert download_url_for(m, HF) == m.url
    assert download_url_for(m, "http://127.0.0.1:8/") == \
        "http://127.0.0.1:8/Comfy-Org/flux1-schnell/resolve/main/flux1-schnell.safetensors"


# -- building from wheels -------------------------------------------------------------------

def make_wheel(folder: Path, name: str, version: str, files: dict, licence="MIT", requires=()) -> Path:
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    meta = f"Metadata-Version: 2.4\nName: {name}\nVersion: {version}\nLicense-Expression: {licence}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{dist}.dist-info/METADATA", meta)
        for member, data in files.items():
            zf.writestr(member, data if isinstance(data, (bytes, str)) else json.dumps(data))
    return path


def templates_wheel(folder: Path, version="0.1.2") -> Path:
    template = {
        "nodes": [
            {"id": 1, "type": "CheckpointLoaderSimple", "properties": {"models": [
                {"name": "sd_xl_turbo_1.0_fp16.safetensors", "directory": "checkpoints",
                 "url": "https://huggingface.co/stabilityai/sdxl-turbo/blob/main/sd_xl_turbo_1.0_fp16.safetensors",
                 "hash": "AA" * 32, "hash_type": "SHA256"}]}},
            {"id": 2, "type": "UNETLoader", "properties": {"models": [
                {"name": "model.safetensors", "directory": "unet", "url": "https://hf.co/org/repo/resolve/main/model.safetensors?download=true"},
                {"name": "bad.safetensors", "directory": "vae", "url": "javascript:alert(1)"},
                {"name": "repo.safetensors", "directory": "vae", "url": "https://huggingface.co/org/repo"},
                "not a dict"]}},
        ],
        "definitions": {"subgraphs": [{"nodes": [{"id": 3, "properties": {"models": [
            {"name": "clip_l.safetensors", "directory": "clip",
             "url": "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors"}]}}]}]},
        "models": [{"name": "sd_xl_turbo_1.0_fp16.safetensors", "directory": "checkpoints",
                    "url": "https://huggingface.co/stabilityai/sdxl-turbo/resolve/main/sd_xl_turbo_1.0_fp16.safetensors"}],
    }
    return make_wheel(folder, "comfyui-workflow-templates-json", version, {
        "comfyui_workflow_templates_json/templates/sdxl_turbo.json": template,
        "comfyui_workflow_templates_json/templates/index.json": [{"templates": []}],
        "comfyui_workflow_templates_json/templates/broken.json": "{",
    })


def manager_wheel(folder: Path, version="4.3") -> Path:
    models = {"models": [
        {"name": "x", "type": "checkpoint", "base": "SDXL", "save_path": "checkpoints/SDXL",
         "filename": "sd_xl_turbo_1.0_fp16.safetensors",
         "url": "https://huggingface.co/stabilityai/sdxl-turbo/resolve/main/sd_xl_turbo_1.0_fp16.safetensors"},
        {"name": "y", "type": "upscale", "save_path": "default", "filename": "4x.pth",
         "url": "https://github.com/x/y/releases/download/v1/4x.pth"},
        {"name": "z", "type": "clip", "save_path": "default", "filename": "t5.safetensors",
         "url": "deepseek-ai/Janus-Pro-1B"},
    ]}
    return make_wheel(folder, "comfyui_manager", version, {"comfyui_manager/model-list.json": models},
                      licence="GPL-3.0-only")


def test_build_index_from_wheels(tmp_path):
    data = index_build.build_index([templates_wheel(tmp_path), manager_wheel(tmp_path)],
                                   via={"comfyui-workflow-templates-json": "comfyui-workflow-templates 0.11"})
    assert [(s["package"], s["version"], s["license"], s["kind"]) for s in data["sources"]] == [
        ("comfyui-manager", "4.3", "GPL-3.0-only", "model-list"),
        ("comfyui-workflow-templates-json", "0.1.2", "MIT", "templates")]
    assert data["sources"][1]["via"] == "comfyui-workflow-templates 0.11"
    rows = {(m["directory"], m["name"], m["url"]): m for m in data["models"]}
    turbo = rows[("checkpoints", "sd_xl_turbo_1.0_fp16.safetensors",
                  f"{HF}/stabilityai/sdxl-turbo/resolve/main/sd_xl_turbo_1.0_fp16.safetensors")]
    # the /blob/ page link, the top-level entry and the manager entry are one file
    assert turbo["src"] == [0, 1] and turbo["sha256"] == "aa" * 32 and turbo["templates"] == 2
    assert turbo["subfolder"] == "SDXL"
    assert ("diffusion_models", "model.safetensors", f"{HF}/org/repo/resolve/main/model.safetensors") in rows
    assert ("text_encoders", "clip_l.safetensors",
            f"{HF}/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors") in rows
    assert ("upscale_models", "4x.pth", "https://github.com/x/y/releases/download/v1/4x.pth") in rows
    assert len(rows) == 4  # the javascript:, repo-page and non-URL entries are dropped
    # the written file loads back and is stable
    out = tmp_path / "idx.json"
    out.write_bytes(index_build.dumps_index(data))
    assert index_build.load_index_bytes(out.read_bytes()) == json.loads(out.read_text())
    index = KnownModelIndex(out)
    assert index.by_sha256("aa" * 32)[0].sources == ("comfyui-manager 4.3", "comfyui-workflow-templates-json 0.1.2")


def test_build_script_builds_from_a_wheel_folder(tmp_path):
    import subprocess
    import sys

    folder = tmp_path / "wheels"
    folder.mkdir()
    templates_wheel(folder)
    manager_wheel(folder)
    out = tmp_path / "out.json"
    script = Path(__file__).resolve().parents[1] / "scripts" / "build_model_index.py"
    done = subprocess.run([sys.executable, str(script), "--wheels", str(folder), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "4 models" in done.stdout
    assert len(KnownModelIndex(out)) == 4


def test_build_refuses_an_unrelated_wheel(tmp_path):
    other = make_wheel(tmp_path, "requests", "2.0", {})
    with pytest.raises(ValidationError, match="not a package"):
        index_build.build_index([other])


# -- the index backend against the fake hub --------------------------------------------------

def hub_index(tmp_path, models):
    return write_index(tmp_path / "known.json", models)


def entry(repo, path, directory, **kw):
    return dict({"name": path.rsplit("/", 1)[-1], "directory": directory,
                 "url": f"{HF}/{repo}/resolve/main/{path}"}, **kw)


def test_index_hit_confirmed_on_the_hub_is_decisive(fake_hub, tmp_path):
    data = blob(4096, seed=1)
    fake_hub.add_hf_repo("stabilityai/sdxl-turbo", {"sd_xl_turbo_1.0_fp16.safetensors": data})
    config = config_for_hub(fake_hub, tmp_path, known_models_file=hub_index(tmp_path, [
        entry("stabilityai/sdxl-turbo", "sd_xl_turbo_1.0_fp16.safetensors", "checkpoints")]))
    with ModelSearch(config) as search:
        assert search.backends[0] == "index"
        found = search.resolve(ref("sd_xl_turbo_1.0_fp16.safetensors"))
    best = found[0]
    assert best.backend == "index" and best.confidence >= 0.95
    assert "listed in ComfyUI's official templates (comfyui-workflow-templates-json 0.1.0)" in best.reason
    assert "confirmed on the hub" in best.reason
    assert best.download_url == f"{fake_hub.hf_url}/stabilityai/sdxl-turbo/resolve/main/sd_xl_turbo_1.0_fp16.safetensors"
    assert best.metadata["canonical_url"] == f"{HF}/stabilityai/sdxl-turbo/resolve/main/sd_xl_turbo_1.0_fp16.safetensors"
    assert best.hash_sha256 == hashlib.sha256(data).hexdigest() and best.size_bytes == 4096
    assert best.directory == "checkpoints" and best.save_as == "sd_xl_turbo_1.0_fp16.safetensors"
    # decisive: no search request on either hub
    assert fake_hub.request_count("/api/models*") == 0 and fake_hub.request_count("/api/v1/*") == 0


def test_index_hit_removed_from_the_hub_is_demoted(fake_hub, tmp_path):
    fake_hub.add_hf_repo("someone/moved", {"other.safetensors": blob(64)})
    config = config_for_hub(fake_hub, tmp_path, known_models_file=hub_index(tmp_path, [
        entry("someone/moved", "gone.safetensors", "loras"),
        entry("someone/vanished", "gone.safetensors", "loras")]))
    with ModelSearch(config, backends=["index"]) as search:
        found = search.resolve(ref("gone.safetensors", "loras"))
    assert len(found) == 2
    for r in found:
        assert r.confidence <= 0.3 and "not found (moved or removed)" in r.reason
        assert r.metadata["index_checked"] == "not-found"


def test_offline_index_hit_is_kept_but_not_auto_downloaded(tmp_path, make_config):
    path = hub_index(tmp_path, [entry("stabilityai/sdxl-turbo", "sd_xl_turbo_1.0_fp16.safetensors", "checkpoints")])
    config = make_config(known_models_file=path, hf_endpoint="http://127.0.0.1:9", civitai_base_url="http://127.0.0.1:9",
                         allowed_hosts=["127.0.0.1:*"])
    with ModelSearch(config, backends=["index"]) as search:
        (alone,) = search.resolve(ref("sd_xl_turbo_1.0_fp16.safetensors"))
        assert "not checked (offline)" in alone.reason and alone.confidence <= 0.85
        # the workflow's own URL names the same file: corroborated, kept high
        (backed,) = search.resolve(ref("sd_xl_turbo_1.0_fp16.safetensors",
                                       url=f"{HF}/stabilityai/sdxl-turbo/blob/main/sd_xl_turbo_1.0_fp16.safetensors"))
    assert backed.confidence >= 0.95 and "the workflow names the same file" in backed.reason


def test_same_name_with_other_bytes_is_never_decisive_but_mirrors_are(fake_hub, tmp_path):
    fake_hub.add_hf_repo("Comfy-Org/flux1-schnell", {"split_files/vae/ae.safetensors": blob(512, seed=1)})
    fake_hub.add_hf_repo("Comfy-Org/Lumina", {"split_files/vae/ae.safetensors": blob(512, seed=1)})
    fake_hub.add_hf_repo("someone/vae-merge", {"ae.safetensors": blob(512, seed=2)})
    mirrors = [entry("Comfy-Org/flux1-schnell", "split_files/vae/ae.safetensors", "vae"),
               entry("Comfy-Org/Lumina", "split_files/vae/ae.safetensors", "vae")]
    config = config_for_hub(fake_hub, tmp_path, known_models_file=hub_index(tmp_path, mirrors))
    with ModelSearch(config, backends=["index"]) as search:
        found = search.resolve(ref("ae.safetensors", "vae"))
    # identical bytes in two listed repos: one answer, decisive, the other copy a mirror
    (one,) = found
    assert one.confidence >= 0.95 and len(one.metadata["mirrors"]) == 1

    (tmp_path / "b").mkdir()
    config = config_for_hub(fake_hub, tmp_path / "b", known_models_file=hub_index(
        tmp_path / "b", mirrors + [entry("someone/vae-merge", "ae.safetensors", "vae")]))
    with ModelSearch(config, backends=["index"]) as search:
        found = search.resolve(ref("ae.safetensors", "vae"))
    assert len(found) == 2 and len(found[0].metadata["mirrors"]) == 1  # the two mirrors are one answer
    assert all(r.confidence < 0.9 for r in found)
    assert all("share this name" in r.reason for r in found)


def test_index_by_sha256_and_hash_mismatch(fake_hub, tmp_path):
    data = blob(300, seed=5)
    sha = hashlib.sha256(data).hexdigest()
    fake_hub.add_hf_repo("Comfy-Org/x", {"renamed.safetensors": data, "same_name.safetensors": blob(300, seed=6)})
    config = config_for_hub(fake_hub, tmp_path, known_models_file=hub_index(tmp_path, [
        entry("Comfy-Org/x", "renamed.safetensors", "loras", sha256=sha),
        entry("Comfy-Org/x", "same_name.safetensors", "loras", sha256="ee" * 32)]))
    with ModelSearch(config, backends=["index"]) as search:
        # a workflow's hash finds the file under another name
        (hit,) = search.resolve(ref("my_lora.safetensors", "loras", hash=sha, hash_type="sha256"))
        assert hit.confidence == 1.0 and "sha256 match" in hit.reason
        assert hit.save_as == "my_lora.safetensors"
        # the hub's bytes differ from the hash the index lists: not trusted
        (changed,) = search.resolve(ref("same_name.safetensors", "loras"))
    assert changed.confidence <= 0.55 and "other bytes" in changed.reason


def test_other_folder_gated_and_disagreeing_workflow(fake_hub, tmp_path):
    fake_hub.add_hf_repo("Comfy-Org/tools", {"tool.safetensors": blob(100)})
    fake_hub.add_hf_repo("black-forest-labs/FLUX.1-dev", {"flux1-dev.safetensors": blob(100, seed=3)}, gated=True)
    config = config_for_hub(fake_hub, tmp_path, known_models_file=hub_index(tmp_path, [
        entry("Comfy-Org/tools", "tool.safetensors", "upscale_models"),
        entry("black-forest-labs/FLUX.1-dev", "flux1-dev.safetensors", "diffusion_models")]))
    with ModelSearch(config, backends=["index"]) as search:
        (other,) = search.resolve(ref("tool.safetensors", "loras"))
        assert other.confidence == 0.7 and "for the folder 'upscale_models'" in other.reason
        (gated,) = search.resolve(ref("flux1-dev.safetensors", "diffusion_models"))
        assert gated.metadata["gated"] is True and "accept the licence" in gated.reason
        assert gated.metadata["access_error"]["type"] == "GatedRepoError"
        (disagree,) = search.resolve(ref("tool.safetensors", "upscale_models",
                                         url="https://huggingface.co/someone/else/resolve/main/tool.safetensors"))
    assert disagree.confidence < 0.95 and "the workflow names another URL" in disagree.reason


def test_search_by_file_name_and_free_text(fake_hub, tmp_path):
    fake_hub.add_hf_repo("Comfy-Org/tools", {"tool.safetensors": blob(100)})
    config = config_for_hub(fake_hub, tmp_path, known_models_file=hub_index(tmp_path, [
        entry("Comfy-Org/tools", "tool.safetensors", "upscale_models")]))
    with ModelSearch(config, backends=["index"]) as search:
        (hit,) = search.search("tool.safetensors")
        assert hit.backend == "index" and hit.directory == "upscale_models"
        assert search.search("a tool") == []


def test_civitai_and_other_host_entries(fake_hub, tmp_path):
    ids = fake_hub.add_civitai_model("Some LoRA", {"some_lora.safetensors": blob(200, seed=4)}, type="LORA")
    config = config_for_hub(fake_hub, tmp_path, known_models_file=hub_index(tmp_path, [
        {"name": "some_lora.safetensors", "directory": "loras",
         "url": f"https://civitai.com/api/download/models/{ids.version_id}?fileId={ids.file_id}"},
        {"name": "gone_lora.safetensors", "directory": "loras", "url": "https://civitai.com/api/download/models/424242"},
        {"name": "4x.pth", "directory": "upscale_models", "url": "https://github.com/x/y/releases/download/v1/4x.pth"},
    ]))
    with ModelSearch(config, backends=["index"]) as search:
        (civ,) = search.resolve(ref("some_lora.safetensors", "loras"))
        assert civ.confidence >= 0.95 and "confirmed on the hub" in civ.reason
        assert civ.download_url == f"{fake_hub.civitai_url}/api/download/models/{ids.version_id}?fileId={ids.file_id}"
        assert civ.metadata["canonical_url"].startswith("https://civitai.com/")
        (gone,) = search.resolve(ref("gone_lora.safetensors", "loras"))
        assert gone.confidence <= 0.3 and "not found" in gone.reason
        (other,) = search.resolve(ref("4x.pth", "upscale_models"))
    # github.com is not on this config's allow-list: offered, never auto-downloaded
    assert other.confidence <= 0.5 and "not on the allow-list" in other.reason
    assert other.download_url == "https://github.com/x/y/releases/download/v1/4x.pth"
    assert fake_hub.request_count("/api/v1/model-versions/*") == 2
