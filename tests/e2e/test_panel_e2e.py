"""The "Fix missing models" panel, end to end: a REAL ComfyUI 0.3.75 with this repo in
custom_nodes, a REAL Chromium (Playwright), and the fake hub as the far side of the wire.

The browser loads a real workflow (ComfyUI's own ``lora_multiple`` example) into the page, opens
the panel with ``comfyfixer-open``, relinks the file found in a sub-folder, presses
``comfyfixer-download-all`` and checks that the files arrive verified (sha256 equal to the
hub's bytes) in ComfyUI's models folders, rows turn present, sources are embedded in the graph,
and a page reload shows the finished job.  It runs against the frontend ComfyUI pins (1.32.x)
and against the newest ``comfyui-frontend-package`` (``--front-end-root``).

The pure helpers of web/ (formatting, URL and relink rules) are checked with Node, quickly.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fakehub import FakeHub, blob

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WEB = REPO / "web"
SCREENSHOT = REPO / "docs" / "screenshot-panel.png"
ARTIFACTS = HERE / "_artifacts"
WORKFLOW = "comfyanonymous__ComfyUI_examples__lora_multiple.png.workflow.json"

CKPT = "v1-5-pruned-emaonly.ckpt"                       # Hugging Face (pickle format)
LORA = "epiNoiseoffset_v2.safetensors"                  # Civitai
ELSEWHERE = "theovercomer8sContrastFix_sd15.safetensors"  # on disk, in loras/sd15/
HOSTILE = '<img src=x onerror="window.__cfxPwned=1">.safetensors'  # file names are hostile input

CKPT_BYTES = blob(3 * 1024 * 1024 + 17, seed=11)
LORA_BYTES = blob(1536 * 1024 + 5, seed=12)
ELSEWHERE_BYTES = blob(4096, seed=13)

LOAD_JS = """async (wf) => {
  // The frontends' own missing-model dialogs would cover the page; our panel is under test.
  await window.app.loadGraphData(wf, true, true, null,
    {showMissingModelsDialog: false, showMissingNodesDialog: false});
}"""

NODE_PROPS_JS = """(id) => {
  const n = window.app.rootGraph.getNodeById(id);
  return {widgets: n.widgets.map((w) => w.value), models: n.properties?.models ?? null};
}"""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def hub():
    """Civitai has the LoRA, Hugging Face the checkpoint; the same bytes every run."""
    with FakeHub() as h:
        h.add_civitai_model("epi_noiseoffset", {LORA: LORA_BYTES}, type="LORA", version_name="v2",
                            downloads=40000, tags=["noise offset"])
        h.add_hf_repo("stable-diffusion-v1-5/stable-diffusion-v1-5", {CKPT: CKPT_BYTES, "README.md": b"# sd15\n"},
                      downloads=900000, likes=5000)
        yield h


@pytest.fixture
def workflow(fixtures_dir) -> dict:
    wf = json.loads((fixtures_dir / "workflows" / WORKFLOW).read_text())
    # One more LoraLoader whose file name is an XSS attempt: it must never become markup.
    wf["nodes"].append({
        "id": 50, "type": "LoraLoader", "pos": [100, 700], "size": [315, 126], "flags": {}, "order": 9, "mode": 0,
        "inputs": [{"name": "model", "type": "MODEL", "link": None}, {"name": "clip", "type": "CLIP", "link": None}],
        "outputs": [{"name": "MODEL", "type": "MODEL", "links": None}, {"name": "CLIP", "type": "CLIP", "links": None}],
        "properties": {"Node name for S&R": "LoraLoader"}, "widgets_values": [HOSTILE, 1, 1],
    })
    wf["last_node_id"] = max(wf.get("last_node_id", 0), 50)
    return wf


def _server_env(hub: FakeHub, tmp_path: Path) -> dict:
    return {
        "COMFYFIXER_CIVITAI_BASE_URL": hub.civitai_url,
        "HF_ENDPOINT": hub.hf_url,
        "HF_HUB_DISABLE_XET": "1",
        "COMFYFIXER_ALLOWED_HOSTS": "127.0.0.1:*,localhost:*",
        "COMFYFIXER_STATE_DIR": str(tmp_path / "state"),
        "COMFYFIXER_CACHE_DIR": str(tmp_path / "cache"),
    }


def _frontend_root(install, which: str):
    return None if which == "pinned" else install.frontend_newest_static


def _row(panel, filename: str):
    value = filename.replace("\\", "\\\\").replace('"', '\\"')
    return panel.locator(f'[data-testid="comfyfixer-row"][data-filename="{value}"]')


def _open_panel(page):
    from playwright.sync_api import expect

    page.keyboard.press("Escape")  # a frontend toast or dialog may hold the focus
    page.get_by_test_id("comfyfixer-open").click()
    panel = page.get_by_test_id("comfyfixer-panel")
    expect(panel).to_be_visible()
    return panel


def _expand(row):
    """Rows are one line; a click opens the choices and details."""
    from playwright.sync_api import expect

    line = row.get_by_test_id("comfyfixer-row-line")
    if line.get_attribute("aria-expanded") != "true":
        line.click()
    expect(line).to_have_attribute("aria-expanded", "true")


def _tab(panel, name):
    from playwright.sync_api import expect

    panel.get_by_test_id(f"comfyfixer-tab-{name}").click()
    expect(panel.get_by_test_id(f"comfyfixer-tab-{name}")).to_have_attribute("aria-selected", "true")


def _files_under(root: Path):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# ---------------------------------------------------------------- the browser test

@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("frontend", ["pinned", "newest"])
def test_fix_missing_models_in_the_browser(frontend, hub, workflow, tmp_path, comfyui_install, start_comfyui,
                                           open_comfyui, page, page_logs):
    from playwright.sync_api import expect

    base = tmp_path / "comfy"
    models = base / "models"
    (models / "loras" / "sd15").mkdir(parents=True)
    (models / "loras" / "sd15" / ELSEWHERE).write_bytes(ELSEWHERE_BYTES)
    server = start_comfyui(base, front_end_root=_frontend_root(comfyui_install, frontend),
                           env=_server_env(hub, tmp_path))
    assert server.get_json("/comfyfixer/health")["comfyui"] is True

    open_comfyui(server, page)
    page.evaluate(LOAD_JS, workflow)

    # The automatic check after load counts the missing files on the open button.
    expect(page.get_by_test_id("comfyfixer-open").get_by_test_id("comfyfixer-badge")).to_have_text("2", timeout=30_000)
    assert page.get_by_test_id("comfyfixer-open").count() == 1

    panel = _open_panel(page)
    rows = panel.get_by_test_id("comfyfixer-row")
    expect(rows).to_have_count(3, timeout=30_000)
    expect(_row(panel, CKPT)).to_have_attribute("data-status", "missing")
    expect(_row(panel, LORA)).to_have_attribute("data-status", "missing")
    expect(_row(panel, ELSEWHERE)).to_have_attribute("data-status", "elsewhere")
    expect(panel.get_by_test_id("comfyfixer-summary")).to_contain_text("2 missing")
    expect(panel.get_by_test_id("comfyfixer-summary")).to_contain_text("1 elsewhere")

    # Hostile names are refused by the scanner; its warning quotes the name as text, never markup.
    warnings = panel.locator(".cf-warnings")
    warnings.locator("summary").click()
    expect(warnings).to_contain_text(HOSTILE)
    assert panel.locator("img").count() == 0
    assert page.evaluate("() => window.__cfxPwned") is None

    # The hub search fills the candidates: confidence as a percentage, the reason as text.
    download_all = panel.get_by_test_id("comfyfixer-download-all")
    expect(download_all).to_be_enabled(timeout=90_000)
    lora_row = _row(panel, LORA)
    _expand(lora_row)
    _expand(_row(panel, CKPT))
    expect(lora_row.get_by_test_id("comfyfixer-candidate")).to_be_visible()
    expect(lora_row.locator(".cf-reason .cf-conf")).to_have_text(re.compile(r"^\d{1,3}%$"))
    assert lora_row.get_by_test_id("comfyfixer-candidate").input_value() != "-1", "the exact Civitai match is confident"
    expect(lora_row.get_by_test_id("comfyfixer-url")).to_be_visible()  # or paste a URL

    # A pickle checkpoint may be offered without being auto-chosen: the user picks it.
    ckpt_select = _row(panel, CKPT).get_by_test_id("comfyfixer-candidate")
    expect(ckpt_select).to_be_visible()
    if ckpt_select.input_value() == "-1":
        ckpt_select.select_option(index=1)
    expect(download_all).to_have_text("Download all (2)")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"panel-{frontend}.png"))

    # Relink: the node now names the file where it really is.
    _expand(_row(panel, ELSEWHERE))
    _row(panel, ELSEWHERE).get_by_test_id("comfyfixer-relink").click()
    expect(_row(panel, f"sd15/{ELSEWHERE}")).to_have_attribute("data-status", "present", timeout=30_000)
    assert page.evaluate(NODE_PROPS_JS, 11)["widgets"][0] == f"sd15/{ELSEWHERE}"

    # Download all: both files arrive, verified, and the rows turn present.
    download_all.click()
    for name in (CKPT, LORA):
        expect(_row(panel, name)).to_have_attribute("data-status", "present", timeout=120_000)
        progress = _row(panel, name).get_by_test_id("comfyfixer-progress")
        expect(progress).to_have_attribute("data-state", "done")
        expect(progress).to_have_attribute("aria-valuenow", "100")
    expect(panel.get_by_test_id("comfyfixer-summary")).to_contain_text("0 missing")
    expect(page.get_by_text("Missing models fixed").first).to_be_visible(timeout=15_000)
    expect(page.get_by_test_id("comfyfixer-open").get_by_test_id("comfyfixer-badge")).to_be_hidden()

    assert _sha256((models / "checkpoints" / CKPT).read_bytes()) == _sha256(CKPT_BYTES)
    assert _sha256((models / "loras" / LORA).read_bytes()) == _sha256(LORA_BYTES)
    assert not [p for p in _files_under(models) if p.endswith((".part", ".incomplete", ".tmp"))], _files_under(models)

    # The node combos know the new files (refreshComboInNodes ran).
    values = page.evaluate("""() => window.app.rootGraph.getNodeById(10).widgets[0].options.values""")
    assert LORA in values

    # Embed sources (off after a download by default: it marks the workflow changed): on request,
    # properties.models on the loaders, in the frontend's schema, the hubs' canonical URLs, no secrets.
    panel.get_by_test_id("comfyfixer-embed").click()
    expect(page.get_by_text("Sources embedded").first).to_be_visible(timeout=15_000)
    lora_props = page.evaluate(NODE_PROPS_JS, 10)["models"]
    ckpt_props = page.evaluate(NODE_PROPS_JS, 4)["models"]
    assert lora_props and lora_props[-1]["name"] == LORA and lora_props[-1]["directory"] == "loras"
    assert lora_props[-1]["hash"] == _sha256(LORA_BYTES) and lora_props[-1]["hash_type"] == "sha256"
    assert lora_props[-1]["url"].startswith("https://civitai.com/api/download/models/"), lora_props
    assert ckpt_props and ckpt_props[-1]["name"] == CKPT and ckpt_props[-1]["directory"] == "checkpoints"
    assert ckpt_props[-1]["hash"] == _sha256(CKPT_BYTES)
    saved = page.evaluate("() => JSON.stringify(window.app.rootGraph.serialize())")
    assert ckpt_props[-1]["url"].startswith("https://huggingface.co/stable-diffusion-v1-5/"), ckpt_props
    assert "properties" in saved and hub.hf_url not in saved and "token=" not in saved.lower()

    # The server kept the job; a reload of the page shows it finished.
    jobs = server.get_json("/comfyfixer/jobs")["jobs"]
    job = next(j for j in jobs if j["kind"] == "download")
    assert job["state"] == "done" and {i["state"] for i in job["items"]} == {"done"}
    page.reload(wait_until="domcontentloaded")
    page.wait_for_function("() => !!(window.app && window.app.graph && window.app.extensionManager)", timeout=60_000)
    page.evaluate(LOAD_JS, workflow)
    panel = _open_panel(page)
    _tab(panel, "downloads")
    finished = panel.locator(f'[data-testid="comfyfixer-job"][data-job-id="{job["id"]}"]')
    expect(finished).to_have_attribute("data-state", "done", timeout=30_000)
    expect(finished).to_contain_text(LORA)
    _tab(panel, "models")
    expect(_row(panel, LORA)).to_have_attribute("data-status", "present", timeout=30_000)

    ours = [e for e in page_logs.errors if "comfyfixer" in e.lower() or "extensions/ComfyFixerSmart" in e]
    assert not ours, ours


SUBGRAPH_WORKFLOW = "Comfy-Org__ComfyUI_frontend__missing_models_in_subgraph.json"
SUBGRAPH_MODEL = "fake_model.safetensors"
SUBGRAPH_BYTES = blob(2 * 1024 * 1024 + 3, seed=21)

SUBGRAPH_PROPS_JS = """() => {
  const root = window.app.rootGraph;
  const sub = [...root.subgraphs.values()][0];
  // Newer frontends renumber inner nodes that clash with root ids: find the loaders by type.
  const loaders = sub.nodes.filter((n) => n.type === "CheckpointLoaderSimple");
  return loaders.map((n) => n.properties?.models ?? null);
}"""


@pytest.mark.e2e
@pytest.mark.slow
def test_subgraph_workflow_with_metadata_source(fixtures_dir, tmp_path, comfyui_install, start_comfyui,
                                               open_comfyui, page, page_logs):
    """The ComfyUI frontend's own fixture: the loaders live only inside a subgraph definition and
    the workflow's top-level ``models`` names the source.  Serialising the root graph must carry
    the subgraph, the download must land verified, and Embed sources must reach the inner nodes."""
    from playwright.sync_api import expect

    wf = json.loads((fixtures_dir / "workflows" / SUBGRAPH_WORKFLOW).read_text())
    with FakeHub() as hub:
        hub.add_hf_repo("comfy-org/fake-models", {SUBGRAPH_MODEL: SUBGRAPH_BYTES})
        url = f"{hub.hf_url}/comfy-org/fake-models/resolve/main/{SUBGRAPH_MODEL}"
        wf["models"][0]["url"] = url  # the fixture points at a devtools route that does not exist here
        base = tmp_path / "comfy"
        server = start_comfyui(base, front_end_root=comfyui_install.frontend_newest_static,
                               env=_server_env(hub, tmp_path))
        open_comfyui(server, page)
        page.evaluate(LOAD_JS, wf)
        panel = _open_panel(page)
        row = _row(panel, SUBGRAPH_MODEL)
        expect(row).to_have_attribute("data-status", "missing", timeout=30_000)
        _expand(row)
        expect(row).to_contain_text("subgraph")
        download_all = panel.get_by_test_id("comfyfixer-download-all")
        expect(download_all).to_be_enabled(timeout=60_000)
        download_all.click()
        expect(row).to_have_attribute("data-status", "present", timeout=60_000)
        panel.get_by_test_id("comfyfixer-embed").click()
        target = base / "models" / "checkpoints" / SUBGRAPH_MODEL
        assert _sha256(target.read_bytes()) == _sha256(SUBGRAPH_BYTES)

        # Sources embedded on both loaders inside the subgraph definition.
        expect(page.get_by_text("Missing models fixed").first).to_be_visible(timeout=15_000)
        expect(page.get_by_text("Sources embedded").first).to_be_visible(timeout=30_000)
        embedded = page.evaluate(SUBGRAPH_PROPS_JS)
        assert len(embedded) == 2
        # The resolver may pin the revision (resolve/<commit>/...): same repo and file either way.
        # The canonical hub URL, or the one the workflow itself named.
        same_source = re.compile(f"({re.escape('https://huggingface.co')}|{re.escape(hub.hf_url)})"
                                 + re.escape("/comfy-org/fake-models/resolve/") + r"[^/]+/"
                                 + re.escape(SUBGRAPH_MODEL) + "$")
        for models in embedded:
            entry = models[-1]
            assert same_source.match(entry.pop("url")), models
            assert entry == {"name": SUBGRAPH_MODEL, "directory": "checkpoints",
                             "hash": _sha256(SUBGRAPH_BYTES), "hash_type": "sha256"}
        saved = page.evaluate("() => window.app.rootGraph.serialize()")
        inner = saved["definitions"]["subgraphs"][0]["nodes"]
        assert all(same_source.match(n["properties"]["models"][-1]["url"]) for n in inner)

    ours = [e for e in page_logs.errors if "comfyfixer" in e.lower() or "extensions/ComfyFixerSmart" in e]
    assert not ours, ours


AUTH_LORA = "detail_tweaker_xl.safetensors"
AUTH_BYTES = blob(700 * 1024 + 9, seed=31)
CIVITAI_KEY = "civitai-test-key-0123456789"


def _single_lora_workflow(filename: str) -> dict:
    return {
        "last_node_id": 1, "last_link_id": 0, "links": [], "groups": [], "config": {}, "extra": {}, "version": 0.4,
        "nodes": [{
            "id": 1, "type": "LoraLoader", "pos": [100, 100], "size": [315, 126], "flags": {}, "order": 0, "mode": 0,
            "inputs": [{"name": "model", "type": "MODEL", "link": None}, {"name": "clip", "type": "CLIP", "link": None}],
            "outputs": [{"name": "MODEL", "type": "MODEL", "links": None}, {"name": "CLIP", "type": "CLIP", "links": None}],
            "properties": {"Node name for S&R": "LoraLoader"}, "widgets_values": [filename, 1, 1],
        }],
    }


@pytest.mark.e2e
@pytest.mark.slow
def test_login_required_is_explained_then_token_and_retry_fix_it(tmp_path, comfyui_install, start_comfyui,
                                                                 open_comfyui, page, page_logs):
    """A Civitai file that needs a login: the row explains it, the token goes in through the
    panel's settings (stored server-side, never shown again), and Retry fetches the file."""
    from playwright.sync_api import expect

    with FakeHub() as hub:
        hub.add_civitai_model("Detail Tweaker XL", {AUTH_LORA: AUTH_BYTES}, type="LORA", requires_auth=True,
                              base_model="SDXL 1.0")
        hub.add_civitai_token(CIVITAI_KEY)
        base = tmp_path / "comfy"
        server = start_comfyui(base, env=_server_env(hub, tmp_path))
        open_comfyui(server, page)
        page.evaluate(LOAD_JS, _single_lora_workflow(AUTH_LORA))
        panel = _open_panel(page)
        row = _row(panel, AUTH_LORA)
        _expand(row)
        select = row.get_by_test_id("comfyfixer-candidate")
        expect(select).to_be_visible(timeout=60_000)
        if select.input_value() == "-1":
            select.select_option(index=1)
        row.get_by_test_id("comfyfixer-download").click()

        expect(row).to_have_attribute("data-state", "failed", timeout=60_000)
        expect(panel.get_by_test_id("comfyfixer-retry-failed")).to_have_text("Retry failed (1)")
        error = row.locator(".cf-error")
        expect(error).to_contain_text("token")
        assert not (base / "models" / "loras" / AUTH_LORA).exists()

        _tab(panel, "settings")
        key_input = panel.get_by_label("Civitai API key")
        key_input.fill(CIVITAI_KEY)
        panel.get_by_test_id("comfyfixer-save-civitai_token").click()
        expect(panel.get_by_test_id("comfyfixer-civitai_token-status")).to_have_text("set", timeout=15_000)
        assert server.get_json("/comfyfixer/settings")["civitai_token_set"] is True
        assert CIVITAI_KEY not in page.content()

        _tab(panel, "models")
        _expand(row)
        row.get_by_test_id("comfyfixer-retry").click()
        expect(row).to_have_attribute("data-status", "present", timeout=60_000)
        assert _sha256((base / "models" / "loras" / AUTH_LORA).read_bytes()) == _sha256(AUTH_BYTES)
        downloads = [r for r in hub.requests if "/api/download/models/" in r.path]
        assert downloads and downloads[-1].authorization == f"Bearer {CIVITAI_KEY}"
        assert CIVITAI_KEY not in server.log_text()

    ours = [e for e in page_logs.errors if "comfyfixer" in e.lower() or "extensions/ComfyFixerSmart" in e]
    assert not ours, ours


# ---------------------------------------------------------------- shared by the tests below

def _loaders_workflow(loaders) -> dict:
    """A UI workflow of loader nodes ``(type, widgets_values)``, stacked down the left of the canvas."""
    outputs = {"CheckpointLoaderSimple": ["MODEL", "CLIP", "VAE"], "LoraLoader": ["MODEL", "CLIP"], "VAELoader": ["VAE"],
               "UpscaleModelLoader": ["UPSCALE_MODEL"]}
    inputs = {"LoraLoader": ["model", "clip"]}
    nodes = []
    for i, (node_type, values) in enumerate(loaders, start=1):
        nodes.append({
            "id": i, "type": node_type, "pos": [40, 190 * (i - 1)], "size": [340, 110], "flags": {},
            "order": i - 1, "mode": 0,
            "inputs": [{"name": n, "type": n.upper(), "link": None} for n in inputs.get(node_type, [])],
            "outputs": [{"name": n, "type": n, "links": None} for n in outputs[node_type]],
            "properties": {"Node name for S&R": node_type}, "widgets_values": values,
        })
    # The view: 1:1, the nodes left of where the panel opens (for the README screenshot).
    return {"last_node_id": len(nodes), "last_link_id": 0, "links": [], "groups": [], "config": {},
            "extra": {"ds": {"scale": 1.0, "offset": [40, 150]}}, "version": 0.4, "nodes": nodes}


def _our_errors(page_logs):
    return [e for e in page_logs.errors if "comfyfixer" in e.lower() or "extensions/ComfyFixerSmart" in e]


# The pinned frontend's "Introducing Nodes 2.0" banner: press its close button (the one without
# text next to "Try it out").
CLOSE_BANNER_JS = """() => {
  const tryIt = [...document.querySelectorAll("button")].find((b) => b.textContent.trim() === "Try it out");
  for (let el = tryIt?.parentElement; el && el !== document.body; el = el.parentElement) {
    const close = [...el.querySelectorAll("button")].find((b) => b !== tryIt && !b.textContent.trim());
    if (close) { close.click(); return true; }
  }
  return false;
}"""


def _clear_overlays(page) -> None:
    """Close what the frontends float over the canvas: banners, the newest one's "N issues found"
    overlay, toasts (for a clean screenshot)."""
    from playwright.sync_api import expect

    if page.evaluate(CLOSE_BANNER_JS):
        expect(page.get_by_role("button", name="Try it out")).to_have_count(0)
    overlay = page.get_by_test_id("error-overlay")
    if overlay.count() and overlay.first.is_visible():
        overlay.first.get_by_role("button", name="Close").click()
        expect(overlay).to_have_count(0)
    page.evaluate("() => window.app.extensionManager.toast?.removeAll?.()")


# ---------------------------------------------------------------- target folder, pasted URL, commands

PASTE_LORA = "my_private_style_v3.safetensors"   # no hub knows this name: the user pastes a URL
PASTE_BYTES = blob(900 * 1024 + 1, seed=41)
PASTE_REPO, PASTE_FILE = "acme/archive", "x_0042.safetensors"
ORPHAN = "4x_orphan_upscaler.safetensors"      # missing, no candidate, one upscale_models path: no choice


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("frontend", ["pinned", "newest"])
def test_target_folder_pasted_url_and_commands(frontend, tmp_path, comfyui_install, start_comfyui,
                                               open_comfyui, page, page_logs):
    """Issue items 2 and 4: a second ``loras`` path from extra_model_paths.yaml is offered per row
    and the download lands where the user picked; a URL pasted for a row without candidates
    downloads under the workflow's name.  The panel also opens from the top menu and by command."""
    from playwright.sync_api import expect

    base = tmp_path / "comfy"
    extra = tmp_path / "extra_models"
    (extra / "loras").mkdir(parents=True)
    config = tmp_path / "extra_model_paths.yaml"
    config.write_text(f"fixer_test:\n  base_path: {extra}\n  loras: loras\n")
    with FakeHub() as hub:
        hub.add_civitai_model("epi_noiseoffset", {LORA: LORA_BYTES}, type="LORA", version_name="v2", downloads=40000)
        hub.add_hf_repo(PASTE_REPO, {PASTE_FILE: PASTE_BYTES})
        server = start_comfyui(base, front_end_root=_frontend_root(comfyui_install, frontend),
                               env=_server_env(hub, tmp_path), extra_args=("--extra-model-paths-config", config))
        # ComfyUI's order: models/loras, then the extra path (its output/loras is not a model folder).
        loras = server.get_json("/comfyfixer/folders")["folders"]["loras"]
        assert [Path(p).resolve() for p in loras[:2]] == [(base / "models" / "loras").resolve(), (extra / "loras").resolve()]
        assert len(server.get_json("/comfyfixer/folders")["folders"]["upscale_models"]) == 1

        open_comfyui(server, page)
        page.evaluate(LOAD_JS, _loaders_workflow([
            ("LoraLoader", [LORA, 1, 1]), ("LoraLoader", [PASTE_LORA, 1, 1]), ("UpscaleModelLoader", [ORPHAN])]))
        panel = page.get_by_test_id("comfyfixer-panel")

        # Extensions > ComfyFixerSmart > Fix missing models, in the frontend's own top menu.
        page.keyboard.press("Escape")
        page.locator("svg.comfyui-logo").first.click()
        page.get_by_role("menuitem", name="Extensions", exact=True).first.hover()
        page.get_by_role("menuitem", name="ComfyFixerSmart", exact=True).hover()
        page.get_by_role("menuitem", name="Fix missing models", exact=True).click()
        expect(panel).to_be_visible()
        panel.get_by_test_id("comfyfixer-close").click()
        expect(panel).to_be_hidden()
        # The same command through the frontend's command service (keybindings, palette).
        assert page.evaluate("() => window.app.extensionManager.command.commands.some((c) => c.id === 'ComfyFixer.OpenPanel')")
        page.evaluate("() => window.app.extensionManager.command.execute('ComfyFixer.OpenPanel')")
        expect(panel).to_be_visible()

        lora_row, paste_row, orphan_row = _row(panel, LORA), _row(panel, PASTE_LORA), _row(panel, ORPHAN)
        expect(panel.get_by_test_id("comfyfixer-recheck")).to_be_enabled(timeout=60_000)  # the search is over
        for r in (lora_row, paste_row, orphan_row):
            _expand(r)
        expect(lora_row.get_by_test_id("comfyfixer-candidate")).not_to_have_value("-1", timeout=60_000)
        expect(paste_row).to_contain_text("No candidate found")

        # Several loras paths: each loras row offers them, ComfyUI's first one by default.
        target = lora_row.get_by_test_id("comfyfixer-folder")
        expect(target).to_have_value("0")
        # Every path of the key; ComfyUI's output/ is never one (the server leaves it out, and so
        # would the page).
        assert not any(Path(p).parent.name == "output" for p in loras), loras
        expect(target.locator("option")).to_have_count(len(loras))
        expect(target.locator("option").first).to_contain_text("(default)")
        expect(target.locator("option").nth(1)).to_have_attribute("title", loras[1])
        expect(target.locator("option").nth(1)).to_have_text("…/extra_models/loras")
        expect(paste_row.get_by_test_id("comfyfixer-folder")).to_have_value("0")
        expect(orphan_row).to_have_attribute("data-status", "missing")
        expect(orphan_row.get_by_test_id("comfyfixer-folder")).to_have_count(0)  # one path: nothing to choose
        target.select_option("1")
        expect(lora_row.get_by_test_id("comfyfixer-folder")).to_have_value("1")

        # Paste a URL: the row's Download turns on while the field still has the focus.
        download = paste_row.get_by_test_id("comfyfixer-download")
        expect(download).to_be_disabled()
        url_field = paste_row.get_by_test_id("comfyfixer-url")
        url_field.fill("javascript:alert(1)")
        expect(url_field).to_have_attribute("aria-invalid", "true")
        url_field.fill(f"{hub.hf_url}/{PASTE_REPO}/resolve/main/{PASTE_FILE}")
        expect(url_field).to_have_attribute("aria-invalid", "false")
        expect(download).to_be_enabled()
        expect(url_field).to_be_focused()
        expect(paste_row.get_by_test_id("comfyfixer-candidate")).to_have_count(0)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"panel-folders-{frontend}.png"))

        # Download all takes the confident candidate (to the chosen path) and the pasted URL.
        download_all = panel.get_by_test_id("comfyfixer-download-all")
        expect(download_all).to_have_text("Download all (2)")
        download_all.click()
        expect(lora_row).to_have_attribute("data-status", "present", timeout=60_000)
        expect(paste_row).to_have_attribute("data-status", "present", timeout=60_000)
        expect(paste_row).to_contain_text("verified")

        chosen = extra / "loras" / LORA
        assert _sha256(chosen.read_bytes()) == _sha256(LORA_BYTES)
        assert not (base / "models" / "loras" / LORA).exists()
        pasted = base / "models" / "loras" / PASTE_LORA
        assert _sha256(pasted.read_bytes()) == _sha256(PASTE_BYTES)
        assert not (extra / "loras" / PASTE_LORA).exists()
        assert not [p for p in _files_under(tmp_path) if p.endswith((".part", ".part.json"))]
        assert hub.request_count(f"/{PASTE_REPO}/resolve/main/{PASTE_FILE}", method="GET") >= 1

        job = next(j for j in server.get_json("/comfyfixer/jobs")["jobs"] if j["kind"] == "download")
        saved = {i["filename"]: Path(i["save_path"]).resolve() for i in job["items"]}
        assert saved == {LORA: chosen.resolve(), PASTE_LORA: pasted.resolve()}
        # The orphan stays missing with nothing to fetch; the badge counts it.
        expect(orphan_row).to_have_attribute("data-status", "missing")
        expect(page.get_by_test_id("comfyfixer-open").get_by_test_id("comfyfixer-badge")).to_have_text("1")

    assert not _our_errors(page_logs), page_logs.errors


# ---------------------------------------------------------------- live progress, cancel, retry

VAE = "vae-ft-mse-840000-ema-pruned.safetensors"
PROGRESS_CKPT_BYTES = blob(4 * 1024 * 1024 + 21, seed=51)
PROGRESS_LORA_BYTES = blob(6 * 1024 * 1024 + 22, seed=52)
VAE_BYTES = blob(200 * 1024 + 23, seed=53)
RATE = 1024 * 1024  # bytes/s per download: the CKPT takes ~4 s, the LoRA ~6 s
# A tidy canvas behind the panel: no minimap, no FPS/info corner.
SCREENSHOT_SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False, "Comfy.Graph.CanvasInfo": False}

# True once the VAE row is done and the checkpoint row is 40 % or more of the way: the moment
# of the screenshot (every number read from the DOM the user sees).
MID_DOWNLOAD_JS = """([vae, ckpt]) => {
  const bar = (name) => document.querySelector(
    `[data-testid="comfyfixer-row"][data-filename="${name}"] [data-testid="comfyfixer-progress"]`);
  const v = bar(vae), c = bar(ckpt);
  const pct = Number(c?.getAttribute("aria-valuenow"));
  return v?.dataset.state === "done" && c?.dataset.state === "downloading" && pct >= 40 && pct <= 80;
}"""


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("frontend", ["pinned", "newest"])
def test_live_progress_cancel_retry(frontend, tmp_path, comfyui_install, start_comfyui, open_comfyui, page,
                                    page_logs):
    """Issue item 2: with the hub at 1 MB/s per file, the rows show live progress (an intermediate
    percentage, speed, ETA) while one row is already done; Cancel stops a row mid-download without
    leaving a file under its final name; Retry resumes it and the sha256 is right.  The pinned run
    takes the README screenshot (docs/screenshot-panel.png) in the middle of the download."""
    from playwright.sync_api import expect

    base = tmp_path / "comfy"
    loras = base / "models" / "loras"
    with FakeHub() as hub:
        hub.add_civitai_model("epi_noiseoffset", {LORA: PROGRESS_LORA_BYTES}, type="LORA", version_name="v2",
                              downloads=40000, tags=["noise offset"])
        hub.add_hf_repo("stable-diffusion-v1-5/stable-diffusion-v1-5", {CKPT: PROGRESS_CKPT_BYTES},
                        downloads=900000, likes=5000)
        hub.add_hf_repo("stabilityai/sd-vae-ft-mse-original", {VAE: VAE_BYTES}, downloads=500000)
        server = start_comfyui(base, front_end_root=_frontend_root(comfyui_install, frontend),
                               env=_server_env(hub, tmp_path), user_settings=SCREENSHOT_SETTINGS)
        open_comfyui(server, page)
        page.evaluate(LOAD_JS, _loaders_workflow([
            ("CheckpointLoaderSimple", [CKPT]), ("LoraLoader", [LORA, 0.8, 0.8]), ("VAELoader", [VAE])]))
        panel = _open_panel(page)
        download_all = panel.get_by_test_id("comfyfixer-download-all")
        expect(download_all).to_be_enabled(timeout=60_000)
        for name in (CKPT, LORA, VAE):
            _expand(_row(panel, name))
            select = _row(panel, name).get_by_test_id("comfyfixer-candidate")
            expect(select).to_be_visible()
            if select.input_value() == "-1":  # a pickle checkpoint is offered, not taken: the user picks it
                select.select_option(index=1)
        expect(download_all).to_have_text("Download all (3)")

        hub.rate_limit_bytes_per_s = RATE
        download_all.click()
        page.wait_for_function(MID_DOWNLOAD_JS, arg=[VAE, CKPT], timeout=30_000, polling=50)
        # One read of the bar (events keep arriving): its value and the text the user sees with it.
        ckpt_bar = _row(panel, CKPT).get_by_test_id("comfyfixer-progress")
        pct, text = ckpt_bar.evaluate("(el) => [Number(el.getAttribute('aria-valuenow')), el.innerText]")
        assert 0 < pct < 100
        assert re.search(rf"Downloading {pct}%", text), text
        assert re.search(r"MB / 4\.0 MB · [\d.]+ (KB|MB)/s · ETA \d+:\d\d", text), text
        vae_row = _row(panel, VAE)
        expect(vae_row.get_by_test_id("comfyfixer-progress")).to_have_attribute("aria-valuenow", "100")
        expect(vae_row.get_by_test_id("comfyfixer-progress")).to_contain_text("…/models/vae")
        # Done, rescan pending: nothing to download again, nor for Download all.
        expect(vae_row.get_by_test_id("comfyfixer-download")).to_have_count(0)
        expect(download_all).to_have_text("Download all")

        _clear_overlays(page)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / f"panel-progress-{frontend}.png"
        page.screenshot(path=str(shot))
        if frontend == "pinned" and (os.environ.get("COMFYFIXER_UPDATE_SCREENSHOT") == "1" or not SCREENSHOT.exists()):
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, SCREENSHOT)

        # Cancel the LoRA mid-download (it needs ~6 s at this rate).
        lora_row = _row(panel, LORA)
        lora_bar = lora_row.get_by_test_id("comfyfixer-progress")
        expect(lora_bar).to_have_attribute("data-state", "downloading")
        lora_row.get_by_test_id("comfyfixer-cancel").click()
        expect(lora_row).to_have_attribute("data-state", "cancelled", timeout=15_000)
        expect(lora_bar).to_have_attribute("data-state", "cancelled")
        expect(lora_row.get_by_test_id("comfyfixer-retry")).to_be_visible()
        cancelled_at = int(lora_bar.get_attribute("aria-valuenow"))
        assert 0 < cancelled_at < 100, cancelled_at
        assert not (loras / LORA).exists()
        # The other rows carry on and finish.
        expect(_row(panel, CKPT)).to_have_attribute("data-status", "present", timeout=30_000)
        expect(_row(panel, VAE)).to_have_attribute("data-status", "present")
        expect(lora_row).to_have_attribute("data-status", "missing")
        # A partial outcome is a warning that says what was not fixed, never "fixed".
        expect(page.get_by_text("2 of 3 models fixed").first).to_be_visible(timeout=15_000)
        expect(page.get_by_text(f"Cancelled: {LORA}").first).to_be_visible()
        assert _sha256((base / "models" / "checkpoints" / CKPT).read_bytes()) == _sha256(PROGRESS_CKPT_BYTES)
        assert _sha256((base / "models" / "vae" / VAE).read_bytes()) == _sha256(VAE_BYTES)
        # The engine discards a cancelled part file today; if it ever keeps one, Retry must resume it.
        kept = (loras / (LORA + ".part")).is_file()

        # Retry, at full speed now: it resumes from the kept part file and ends verified.
        hub.rate_limit_bytes_per_s = None
        hub.clear_log()
        lora_row.get_by_test_id("comfyfixer-retry").click()
        expect(lora_row).to_have_attribute("data-status", "present", timeout=60_000)
        assert _sha256((loras / LORA).read_bytes()) == _sha256(PROGRESS_LORA_BYTES)
        assert not [p for p in _files_under(base / "models") if ".part" in p], _files_under(base / "models")
        if kept:
            ranges = [v for r in hub.find_requests(listener="storage", method="GET")
                      for k, v in r.headers.items() if k.lower() == "range"]
            assert any(r and not r.startswith("bytes=0-") for r in ranges), ranges
        job = next(j for j in server.get_json("/comfyfixer/jobs")["jobs"] if j["kind"] == "download")
        assert {i["filename"]: i["state"] for i in job["items"]} == {CKPT: "done", LORA: "done", VAE: "done"}

    assert not _our_errors(page_logs), page_logs.errors


# ---------------------------------------------------------------- pure helpers, with Node

NODE_SCRIPT = r"""
import assert from "node:assert/strict";
const web = process.argv[1];
const f = await import(web + "/format.js");
const g = await import(web + "/graph.js");

assert.equal(f.formatBytes(0), "0 B");
assert.equal(f.formatBytes(1536), "1.5 KB");
assert.equal(f.formatBytes(5 * 1024 ** 3), "5.0 GB");
assert.equal(f.formatBytes(null), "?");
assert.equal(f.formatBytes(1048575), "1.0 MB");  // never "1024 KB"
assert.equal(f.formatBytes(1023.7), "1.0 KB");
assert.equal(f.formatBytes(1047552), "1023 KB");
assert.deepEqual(f.shortPaths(["/c/models/loras", "/d/extra_models/loras", "/c/output/loras"]),
  ["…/models/loras", "…/extra_models/loras", "…/output/loras"]);
assert.deepEqual(f.shortPaths(["/a/models/loras", "/b/models/loras"]), ["…/a/models/loras", "…/b/models/loras"]);
assert.deepEqual(f.shortPaths(["C:\\m\\loras", "/loras"]), ["…/m/loras", "/loras"]);
assert.deepEqual(f.shortPaths(["/x/y/"]), ["…/x/y"]);
assert.equal(f.formatSpeed(2 * 1024 * 1024), "2.0 MB/s");
assert.equal(f.formatSpeed(0), "");
assert.equal(f.formatEta(42), "0:42");
assert.equal(f.formatEta(3725), "1:02:05");
assert.equal(f.formatEta(undefined), "");
assert.equal(f.formatPercent(0.923), "92%");
assert.equal(f.formatPercent(1.7), "100%");
assert.equal(f.progressFraction(5, 10), 0.5);
assert.equal(f.progressFraction(5, null), null);
assert.equal(f.summaryText({missing: 3, present: 2, elsewhere: 1}), "3 missing · 1 elsewhere · 2 present");
// One count per row, the same for the badge, the header and the groups.
const refs = [{status: "missing"}, {status: "missing", optional: true}, {status: "elsewhere"}, {status: "present"}, {status: "missing"}];
assert.deepEqual(f.countRows(refs), {missing: 2, optional_missing: 1, elsewhere: 1, present: 1});
assert.equal(f.rowGroup({status: "missing", optional: true}), "optional");
// A node listed by its widget and by properties.models counts once; subgraph copies apart.
assert.equal(f.uniqueNodes({nodes: [{node_id: 4, where: "inputs.ckpt_name"}, {node_id: 4, where: "properties.models"},
  {node_id: 4, subgraph_path: [9]}]}).length, 2);
assert.equal(f.plainReason("similar name (0.60), precision differs"), "similar name, 60% alike, precision differs");
assert.deepEqual(f.folderChoices("unet", ["/c/models/unet", "/c/models/diffusion_models", "/c/output/unet"]).map((x) => [x.index, x.label]),
  [[0, "diffusion_models (default)"], [1, "…/models/diffusion_models"]]);
assert.equal(f.canonicalHubUrl("http://127.0.0.1:9/org/r/resolve/main/a.safetensors", "huggingface"),
  "https://huggingface.co/org/r/resolve/main/a.safetensors");
assert.equal(f.canonicalHubUrl("https://hf-mirror.com/org/r/resolve/abc/a.gguf", "huggingface"), "https://huggingface.co/org/r/resolve/abc/a.gguf");
assert.equal(f.canonicalHubUrl("http://127.0.0.1:9/api/download/models/5?type=Model", "civitai"), "https://civitai.com/api/download/models/5?type=Model");
assert.equal(f.canonicalHubUrl("https://example.org/x.safetensors", "pasted"), "https://example.org/x.safetensors");
assert.equal(f.hubName("civitai"), "Civitai");
assert.equal(f.hubName("huggingface"), "Hugging Face");
assert.equal(f.summaryText({missing: 0, present: 4, elsewhere: 0}), "0 missing · 4 present");
assert.equal(f.progressText({downloaded: 1048576, total: 2097152, speed: 1048576, eta: 1, state: "downloading"}),
             "1.0 MB / 2.0 MB · 1.0 MB/s · ETA 0:01");
assert.equal(f.progressText({downloaded: 10, total: null, state: "connecting"}), "10 B / ?");
assert.equal(f.basename("a/b\\c.safetensors"), "c.safetensors");
assert.match(f.explainError({type: "GatedRepoError", message: "x"}).hint, /licence/);
assert.equal(f.explainError({type: "Weird", message: "m"}).hint, "");

assert.deepEqual(g.relinkTarget({directory: "loras", found_path: "loras/sd15/x.safetensors"}), {value: "sd15/x.safetensors"});
assert.match(g.relinkTarget({directory: "loras", found_path: "checkpoints/x.safetensors", node_type: "LoraLoader"}).reason, /move the file/);
assert.ok(g.relinkTarget({directory: "loras"}).reason);
assert.equal(g.cleanSourceUrl("https://civitai.com/api/download/models/1?type=Model"), "https://civitai.com/api/download/models/1?type=Model");
assert.equal(g.cleanSourceUrl("https://civitai.com/api/download/models/1?token=abc"), null);
assert.equal(g.cleanSourceUrl("https://h/x?X-Amz-Signature=1"), null);
assert.equal(g.cleanSourceUrl("https://user:pw@h/x"), null);
assert.equal(g.cleanSourceUrl("javascript:alert(1)"), null);
assert.deepEqual(g.modelEntry("a.safetensors", "loras", "https://h/a", "AB".repeat(32)),
  {name: "a.safetensors", url: "https://h/a", directory: "loras", hash: "ab".repeat(32), hash_type: "sha256"});
assert.deepEqual(g.modelEntry("a", "vae", "https://h/a", "nope"), {name: "a", url: "https://h/a", directory: "vae"});
assert.equal(g.normName("a\\b/c"), "a/b/c");
// Relink / download: the widget AND the node's properties.models entry follow the new name.
const mkNode = (id, value) => ({id, widgets: [{name: "lora_name", value, options: {values: ["sd15/x.safetensors"]}}],
  properties: {models: [{name: value, url: "https://h/x", directory: "loras"}]}});
const n1 = mkNode(1, "x.safetensors");
const fakeGraph = {getNodeById: (id) => (id === 1 ? n1 : null), nodes: [n1]};
const fakeApp = {rootGraph: fakeGraph, canvas: {setDirty() {}}};
const xref = {filename: "x.safetensors", directory: "loras", found_path: "loras/sd15/x.safetensors",
  nodes: [{node_id: 1, where: "inputs.lora_name", subgraph_path: []}]};
assert.equal(g.listedByComfyUI(fakeApp, xref), false);  // the widget names a file ComfyUI does not list
assert.equal(g.relinkReference(fakeApp, xref), 1);
assert.equal(n1.widgets[0].value, "sd15/x.safetensors");
assert.equal(n1.properties.models[0].name, "sd15/x.safetensors");
assert.equal(g.listedByComfyUI(fakeApp, {...xref, filename: "sd15/x.safetensors"}), true);
// Locate: selects the node and centres the canvas on it.
const seen = [];
const canvas = {graph: fakeGraph, deselectAll: () => seen.push("deselect"), selectNode: (n) => seen.push(`select ${n.id}`),
  centerOnNode: (n) => seen.push(`center ${n.id}`), setDirty() {}};
assert.equal(g.locateNode({rootGraph: fakeGraph, canvas}, {node_id: 1, subgraph_path: []}), true);
assert.deepEqual(seen, ["deselect", "select 1", "center 1"]);
assert.equal(g.locateNode({rootGraph: fakeGraph, canvas}, {node_id: 7, subgraph_path: []}), false);
console.log("ok");
"""


def test_web_helpers_with_node():
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    res = subprocess.run([node, "--input-type=module", "-e", NODE_SCRIPT, WEB.as_uri()], check=False,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr or res.stdout


def test_web_modules_never_use_innerhtml_and_one_module_calls_the_api():
    sources = {p.name: p.read_text() for p in WEB.glob("*.js")}
    assert {"comfyfixer.js", "api.js", "panel.js", "graph.js"} <= set(sources)
    for name, text in sources.items():
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text and "outerHTML =" not in text, name
        if name != "api.js":
            assert "fetchApi" not in text and "fetch(" not in text, f"{name} must call the server through api.js"
    assert "../../scripts/app.js" in sources["comfyfixer.js"]
