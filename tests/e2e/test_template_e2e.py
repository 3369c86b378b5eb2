"""Issue 8's end-to-end requirement: in a REAL ComfyUI 0.3.75 and Chromium, an official template
workflow (``flux_schnell_full_text_to_image``, four files in three folders, three of which
Hugging Face's search cannot find by name) with its ``models`` metadata removed: **Fix missing
models** -> **Download all**, and every file lands verified (sha256) in the right folder.

The candidates come from the known-model index.  The fake hub serves the files under their
real repos and paths (tiny stand-in safetensors); the test's index (``known_models_file``) is
built from the template's own ``models`` entries, as ``scripts/build_model_index.py`` builds
the bundled one, with the stand-ins' sha256 (the bundled index carries the real files'
hashes where it has any).  Decoys with the same names and other bytes sit in community repos.
"""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest

from comfyfixersmart.search import index_build
from templates_support import TEMPLATE, stripped, template_models
from fakehub import FakeHub, blob


LOAD_JS = """async (wf) => {
  await window.app.loadGraphData(wf, true, true, null,
    {showMissingModelsDialog: false, showMissingNodesDialog: false});
}"""


def tiny_safetensors(seed: int, size: int) -> bytes:
    """A valid .safetensors file (header + one U8 tensor) of about ``size`` bytes."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + blob(size, seed=seed)


@pytest.fixture
def world(tmp_path):
    wf = json.loads(TEMPLATE.read_text())
    files = {}
    with FakeHub() as hub:
        for i, m in enumerate(template_models(wf)):
            repo, path = m["url"].split("huggingface.co/", 1)[1].split("/resolve/main/", 1)
            data = tiny_safetensors(60 + i, 64 * 1024 + i)
            if repo in hub.hf_repos:
                hub.add_hf_file(repo, path, data)
            else:
                hub.add_hf_repo(repo, {path: data}, downloads=1000)
            files[m["name"]] = (m["directory"], data)
        # same names, other bytes, more downloads: what a name search would rank first
        hub.add_hf_repo("someone/flux-schnell-merge", {"flux1-schnell.safetensors": tiny_safetensors(7, 1024),
                                                       "ae.safetensors": tiny_safetensors(8, 1024)},
                        downloads=10**7)
        hub.add_civitai_model("T5 XXL fp16", {"t5xxl_fp16.safetensors": tiny_safetensors(9, 1024)},
                              type="TextEncoder", downloads=10**6)
        # the test's known-model index, built from the template's own models entries
        rows = [{"name": m["name"], "directory": m["directory"], "url": index_build.canonical_url(m["url"]),
                 "sha256": hashlib.sha256(files[m["name"]][1]).hexdigest(), "src": [0], "templates": 1}
                for m in template_models(wf)]
        index_file = tmp_path / "known_models.json"
        index_file.write_bytes(index_build.dumps_index({
            "format": 1, "models": rows,
            "sources": [{"package": "comfyui-workflow-templates-json", "version": "0.1.123", "license": "MIT",
                         "kind": "templates", "entries": len(rows)}]}))
        yield hub, stripped(wf), files, index_file


def _row(panel, filename: str):
    return panel.locator(f'[data-testid="comfyfixer-row"][data-filename="{filename}"]')


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("frontend", ["pinned", "newest"])
def test_official_template_without_metadata_is_fixed_from_the_index(frontend, world, tmp_path, comfyui_install,
                                                                   start_comfyui, open_comfyui, page, page_logs):
    from playwright.sync_api import expect

    hub, workflow, files, index_file = world
    assert not any((n.get("properties") or {}).get("models") for n in workflow["nodes"])
    base = tmp_path / "comfy"
    front_end_root = None if frontend == "pinned" else comfyui_install.frontend_newest_static
    server = start_comfyui(base, front_end_root=front_end_root, env={
        "COMFYFIXER_CIVITAI_BASE_URL": hub.civitai_url,
        "HF_ENDPOINT": hub.hf_url,
        "HF_HUB_DISABLE_XET": "1",
        "COMFYFIXER_ALLOWED_HOSTS": "127.0.0.1:*,localhost:*",
        "COMFYFIXER_STATE_DIR": str(tmp_path / "state"),
        "COMFYFIXER_CACHE_DIR": str(tmp_path / "cache"),
        "COMFYFIXER_KNOWN_MODELS_FILE": str(index_file),
    })
    open_comfyui(server, page)
    page.evaluate(LOAD_JS, workflow)

    opener = page.get_by_test_id("comfyfixer-open")
    expect(opener.get_by_test_id("comfyfixer-badge")).to_have_text("4", timeout=30_000)
    page.keyboard.press("Escape")
    opener.click()
    panel = page.get_by_test_id("comfyfixer-panel")
    expect(panel).to_be_visible()
    for name in files:
        expect(_row(panel, name)).to_have_attribute("data-status", "missing", timeout=30_000)

    download_all = panel.get_by_test_id("comfyfixer-download-all")
    expect(download_all).to_be_enabled(timeout=90_000)
    expect(download_all).to_have_text("Download all (4)", timeout=30_000)  # every file chosen automatically
    download_all.click()
    for name in files:
        expect(_row(panel, name)).to_have_attribute("data-status", "present", timeout=120_000)

    models = base / "models"
    folders = server.get_json("/comfyfixer/folders")["folders"]  # ComfyUI's own paths per folder key
    for name, (directory, data) in files.items():
        # diffusion_models' first path in ComfyUI 0.3.75 is models/unet (its legacy name)
        found = [Path(root) / name for root in folders[directory] if (Path(root) / name).is_file()]
        assert len(found) == 1, (name, folders[directory],
                                 sorted(p.relative_to(models).as_posix() for p in models.rglob("*") if p.is_file()))
        assert hashlib.sha256(found[0].read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    leftovers = [p.name for p in models.rglob("*") if p.name.endswith((".part", ".incomplete", ".tmp"))]
    assert not leftovers
    # the job verified each file against the hash the index gave, and fetched the real repos
    job = next(j for j in server.get_json("/comfyfixer/jobs")["jobs"] if j["kind"] == "download")
    assert job["state"] == "done"
    expected = {hashlib.sha256(data).hexdigest() for _, data in files.values()}
    assert {i["sha256"] for i in job["items"]} == expected
    fetched = {r.path for r in hub.find_requests(listener="hf", method="GET") if "/resolve/" in r.path}
    assert not any("someone/" in p for p in fetched), fetched
    assert not hub.find_requests("/api/v1/*"), "the index was decisive: Civitai was not searched"

    ours = [e for e in page_logs.errors if "comfyfixer" in e.lower() or "extensions/ComfyFixerSmart" in e]
    assert not ours, ours
